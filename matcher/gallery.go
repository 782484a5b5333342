package matcher

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/palmd/palmd/template"
)

// Gallery file: magic "PGAL\x03", nonce, then AES-256-GCM of: u32 entry
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

func encodeGallery(entries []Entry, sessions map[[16]byte]*session) ([]byte, error) {
	var p []byte
	var err error
	appendTemplates := func(ts []*template.Template) {
		p = binary.BigEndian.AppendUint16(p, uint16(len(ts)))
		for _, t := range ts {
			if err == nil {
				p, err = t.AppendBinary(p)
			}
		}
	}
	p = binary.BigEndian.AppendUint32(p, uint32(len(entries)))
	for _, e := range entries {
		p = binary.BigEndian.AppendUint16(p, uint16(len(e.Subject)))
		p = append(p, e.Subject...)
		appendTemplates(e.Templates)
	}
	p = binary.BigEndian.AppendUint32(p, uint32(len(sessions)))
	for id, s := range sessions {
		if len(s.device) > 255 || s.want > 255 {
			return p, errors.New("matcher: session does not fit the gallery format")
		}
		p = append(p, id[:]...)
		p = append(p, byte(len(s.device)))
		p = append(p, s.device...)
		p = append(p, byte(s.want))
		p = binary.BigEndian.AppendUint64(p, uint64(s.expires.UnixMilli()))
		closed := byte(0)
		if s.closed {
			closed = 1
		}
		p = append(p, closed)
		appendTemplates(s.samples)
	}
	return p, err
}

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

// SaveGallery writes the gallery and open sessions encrypted with key (32
// bytes), atomically (temporary file, then rename).
func (m *Matcher) SaveGallery(path string, key []byte) error {
	_, err := m.saveGallery(path, key)
	return err
}

// saveGallery is SaveGallery, returning the written file's version.
func (m *Matcher) saveGallery(path string, key []byte) (version []byte, err error) {
	m.mu.RLock()
	plain, err := encodeGallery(m.gallery, m.sessions)
	m.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	return writeGallery(path, key, plain)
}

// writeGallery encrypts plain (then zeroes it) and atomically replaces the
// file at path, durably: the data and the rename are synced before it
// returns. It returns the file's version (its random nonce), which every
// write changes; readers compare versions instead of modification times,
// whose granularity can hide a second write in the same clock tick.
func writeGallery(path string, key, plain []byte) (version []byte, err error) {
	defer clear(plain)
	aead, err := galleryAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append(append([]byte{}, galleryMagic...), nonce...)
	out = aead.Seal(out, nonce, plain, galleryMagic)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".gallery-*")
	if err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("matcher: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("matcher: %w", err)
	}
	// Sync before rename so a power cut leaves the old or the new gallery,
	// never an empty file under the real name.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("matcher: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		_ = dir.Sync() // makes the rename durable; not all file systems support it
		dir.Close()
	}
	return nonce, nil
}

// galleryVersion reads only the header of the gallery file at path and
// returns its version (see writeGallery).
func galleryVersion(path string, key []byte) ([]byte, error) {
	aead, err := galleryAEAD(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	defer f.Close()
	head := make([]byte, len(galleryMagic)+aead.NonceSize())
	if _, err := io.ReadFull(f, head); err != nil ||
		(string(head[:len(galleryMagic)]) != string(galleryMagic) && string(head[:len(galleryMagic)]) != string(galleryMagicV2)) {
		return nil, errors.New("matcher: not a gallery file")
	}
	return head[len(galleryMagic):], nil
}

// readGallery decrypts and decodes the gallery file at path; version is
// the file's version (see writeGallery).
func readGallery(path string, key []byte) (entries []Entry, sessions map[[16]byte]*session, version []byte, err error) {
	aead, err := galleryAEAD(key)
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("matcher: %w", err)
	}
	n := len(galleryMagic) + aead.NonceSize()
	if len(b) < n {
		return nil, nil, nil, errors.New("matcher: not a gallery file")
	}
	magic := b[:len(galleryMagic)]
	if string(magic) != string(galleryMagic) && string(magic) != string(galleryMagicV2) {
		return nil, nil, nil, errors.New("matcher: not a gallery file")
	}
	plain, err := aead.Open(nil, b[len(galleryMagic):n], b[n:], magic)
	if err != nil {
		return nil, nil, nil, errors.New("matcher: gallery file does not decrypt with this key")
	}
	defer clear(plain)
	if string(magic) == string(galleryMagicV2) {
		entries, err = decodeGalleryV2(plain)
		return entries, map[[16]byte]*session{}, b[len(galleryMagic):n], err
	}
	entries, sessions, err = decodeGallery(plain)
	return entries, sessions, b[len(galleryMagic):n], err
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

// LoadGallery replaces the gallery and sessions with the file's.
func (m *Matcher) LoadGallery(path string, key []byte) error {
	entries, sessions, _, err := readGallery(path, key)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.gallery, m.sessions = entries, sessions
	m.mu.Unlock()
	return nil
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
