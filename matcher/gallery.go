package matcher

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/palmd/palmd/template"
)

// The gallery file before FileStore (read only, to convert it): magic "PGAL\x03", nonce, then AES-256-GCM of: u32 entry
// count, entries (u16 subject length, subject, u16 count, count × template
// wire encoding), u32 session count, sessions (16-byte session id, u8
// device length, device, u8 samples wanted, i64 expiry in Unix ms, u8
// closed, u16 count, templates). The sessions are in the file too so that
// several instances sharing the file (and the load) complete each other's
// enrolments and all know which sessions are used up.
var galleryMagic = []byte("PGAL\x03")

// galleryMagicV2 is the format before enrolment sessions were bound to
// commands: its entries are read, its open sessions (unbound) dropped.
var galleryMagicV2 = []byte("PGAL\x02")

var errTruncated = errors.New("matcher: gallery file truncated")

func decodeGallery(p []byte) ([]Entry, map[[16]byte]*session, error) {
	need := func(n int) error {
		if len(p) < n {
			return errTruncated
		}
		return nil
	}
	readTemplates := func() ([]*template.Template, error) {
		if err := need(2); err != nil {
			return nil, err
		}
		cnt := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		if err := need(cnt * template.WireSize); err != nil {
			return nil, err
		}
		ts := make([]*template.Template, 0, cnt)
		for i := 0; i < cnt; i++ {
			t := &template.Template{}
			if err := t.UnmarshalBinary(p[:template.WireSize]); err != nil {
				return nil, fmt.Errorf("matcher: gallery: %w", err)
			}
			ts = append(ts, t)
			p = p[template.WireSize:]
		}
		return ts, nil
	}
	if err := need(4); err != nil {
		return nil, nil, err
	}
	n := int(binary.BigEndian.Uint32(p))
	p = p[4:]
	var entries []Entry
	for i := 0; i < n; i++ {
		if err := need(2); err != nil {
			return nil, nil, err
		}
		sl := int(binary.BigEndian.Uint16(p))
		if err := need(2 + sl); err != nil {
			return nil, nil, err
		}
		e := Entry{Subject: string(p[2 : 2+sl])}
		p = p[2+sl:]
		ts, err := readTemplates()
		if err != nil {
			return nil, nil, err
		}
		e.Templates = ts
		entries = append(entries, e)
	}
	if err := need(4); err != nil {
		return nil, nil, err
	}
	ns := int(binary.BigEndian.Uint32(p))
	p = p[4:]
	sessions := map[[16]byte]*session{}
	for i := 0; i < ns; i++ {
		if err := need(17); err != nil {
			return nil, nil, err
		}
		var id [16]byte
		copy(id[:], p)
		dl := int(p[16])
		p = p[17:]
		if err := need(dl + 10); err != nil {
			return nil, nil, err
		}
		s := &session{device: string(p[:dl]), want: int(p[dl]),
			expires: time.UnixMilli(int64(binary.BigEndian.Uint64(p[dl+1:]))), closed: p[dl+9] != 0}
		p = p[dl+10:]
		if s.closed && len(p) >= 2 && binary.BigEndian.Uint16(p) != 0 {
			return nil, nil, errors.New("matcher: gallery: closed session with samples")
		}
		ts, err := readTemplates()
		if err != nil {
			return nil, nil, err
		}
		s.samples = ts
		if _, dup := sessions[id]; dup {
			return nil, nil, errors.New("matcher: gallery: session listed twice")
		}
		sessions[id] = s
	}
	if len(p) != 0 {
		return nil, nil, errors.New("matcher: trailing bytes in gallery file")
	}
	return entries, sessions, nil
}

// readGalleryWith decrypts and decodes a gallery file of the earlier
// whole-file formats (FileStore converts them).
func readGalleryWith(path string, aead cipher.AEAD) (entries []Entry, sessions map[[16]byte]*session, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("matcher: %w", err)
	}
	n := len(galleryMagic) + aead.NonceSize()
	if len(b) < n {
		return nil, nil, errors.New("matcher: not a gallery file")
	}
	magic := b[:len(galleryMagic)]
	plain, err := aead.Open(nil, b[len(galleryMagic):n], b[n:], magic)
	if err != nil {
		return nil, nil, errors.New("matcher: gallery file does not decrypt with this key")
	}
	defer clear(plain)
	if string(magic) == string(galleryMagicV2) {
		entries, err = decodeGalleryV2(plain)
		return entries, map[[16]byte]*session{}, err
	}
	return decodeGallery(plain)
}

// decodeGalleryV2 reads the entries of a version 2 file: v2's session
// records (id, templates) end the file and are not needed.
func decodeGalleryV2(p []byte) ([]Entry, error) {
	if len(p) < 4 {
		return nil, errTruncated
	}
	n := int(binary.BigEndian.Uint32(p))
	p = p[4:]
	var entries []Entry
	for i := 0; i < n; i++ {
		if len(p) < 2 || len(p) < 4+int(binary.BigEndian.Uint16(p)) {
			return nil, errTruncated
		}
		sl := int(binary.BigEndian.Uint16(p))
		e := Entry{Subject: string(p[2 : 2+sl])}
		cnt := int(binary.BigEndian.Uint16(p[2+sl:]))
		p = p[4+sl:]
		if len(p) < cnt*template.WireSize {
			return nil, errTruncated
		}
		for j := 0; j < cnt; j++ {
			t := &template.Template{}
			if err := t.UnmarshalBinary(p[:template.WireSize]); err != nil {
				return nil, fmt.Errorf("matcher: gallery: %w", err)
			}
			e.Templates = append(e.Templates, t)
			p = p[template.WireSize:]
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func galleryAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("matcher: gallery key must be 32 bytes, got %d", len(key))
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}
