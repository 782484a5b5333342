package matcher

import (
	"bufio"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/palmd/palmd/template"
)

// FileStore is a Store in one encrypted, append-only file, shared by the
// instances on a host (or a shared file system) under a file lock.
//
// Format ("PGAL\x04"): the magic, a random 16-byte file id, then records:
// u32 length (of the rest), u8 flags, 12-byte nonce, and the change
// sealed with AES-256-GCM, its additional data the magic, file id and the
// record's offset (so a record cannot be moved or copied into another
// file). A record superseded by a later one for the same subject or
// session (a deletion, a session's next state) is wiped in place — flags
// 1, nonce and ciphertext zeroed — so that a deleted subject's template is
// gone from the file, not merely hidden, when the deletion returns. The
// file is rewritten without the wiped records when they outweigh the live
// ones (at open), under a new file id, which tells other instances to load
// it again.
//
// Files of the earlier whole-file formats (PGAL\x02 and \x03) are
// converted on open: each subject's samples are fused into one template.
type FileStore struct {
	path     string
	aead     cipher.AEAD
	lockFile *os.File

	// mu serialises this process's use (the file lock serialises
	// processes): a matcher syncs from every capture's goroutine.
	mu sync.Mutex

	id     [16]byte
	off    int64             // bytes of the file read so far
	latest map[string]record // each key's live record
	live   int64
	dead   int64
}

var galleryMagicV4 = []byte("PGAL\x04")

// record locates a record in the file: offset and size (length prefix
// included).
type record struct{ off, size int64 }

const (
	fileHeaderSize = 5 + 16
	flagWiped      = 1
	// maxRecord bounds a record's length: a session of maxSamples
	// templates and the encoding's fields, sealed.
	maxRecord = 1 + 12 + 64 + maxDevice + maxSamples*template.WireSize + 16
)

// compactAbove is the least number of wiped bytes worth rewriting the
// file for.
const compactAbove = 1 << 20

// OpenFileStore opens (creating when missing) the gallery file at path,
// encrypted with key (32 bytes). Load it next.
func OpenFileStore(path string, key []byte) (*FileStore, error) {
	aead, err := galleryAEAD(key)
	if err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	return &FileStore{path: path, aead: aead, lockFile: lock, latest: map[string]record{}}, nil
}

// Close releases the lock file.
func (s *FileStore) Close() error { return s.lockFile.Close() }

// lock takes this process's mutex and the file lock (LOCK_SH or LOCK_EX);
// the function it returns releases both.
func (s *FileStore) lock(how int) (func(), error) {
	s.mu.Lock()
	if err := syscall.Flock(int(s.lockFile.Fd()), how); err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("matcher: lock %s: %w", s.path, err)
	}
	return func() { _ = syscall.Flock(int(s.lockFile.Fd()), syscall.LOCK_UN); s.mu.Unlock() }, nil
}

// Load implements Store: every change from the start of the file. An old
// format is converted first; a file mostly made of wiped records is
// compacted.
func (s *FileStore) Load(apply func(Change) error) error {
	unlock, err := s.lock(syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.convertOld(); err != nil {
		return err
	}
	if err := s.readFrom(apply, nil, true); err != nil {
		return err
	}
	if s.dead > compactAbove && s.dead > s.live {
		return s.compact()
	}
	return nil
}

// Sync implements Store.
func (s *FileStore) Sync(apply func(Change) error, reset func()) error {
	unlock, err := s.lock(syscall.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	return s.readFrom(apply, reset, false)
}

// Update implements Store.
func (s *FileStore) Update(apply func(Change) error, reset func(), f func() ([]Change, error)) error {
	unlock, err := s.lock(syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.readFrom(apply, reset, false); err != nil {
		return err
	}
	changes, ferr := f()
	if err := s.append(changes); err != nil {
		return err
	}
	return ferr
}

// readFrom reads the records after s.off (all of them when from the
// start, or when the file was replaced: then reset is called first). The
// caller holds the lock.
func (s *FileStore) readFrom(apply func(Change) error, reset func(), start bool) error {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	defer f.Close()
	var head [fileHeaderSize]byte
	if _, err := io.ReadFull(f, head[:]); err != nil || string(head[:5]) != string(galleryMagicV4) {
		return fmt.Errorf("matcher: %s is not a gallery file", s.path)
	}
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	if !start && ([16]byte(head[5:]) != s.id || info.Size() < s.off) {
		if reset != nil {
			reset()
		}
		start = true
	}
	if start {
		s.id, s.off, s.live, s.dead = [16]byte(head[5:]), fileHeaderSize, 0, 0
		clear(s.latest)
	}
	if _, err := f.Seek(s.off, io.SeekStart); err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, 0, template.WireSize+64)
	defer clear(buf[:cap(buf)])
	for {
		var rh [4]byte
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			// The end, or a record cut short by a crash mid-append (the
			// next append overwrites it).
			return nil
		}
		n := int64(binary.BigEndian.Uint32(rh[:]))
		if n < 1+12+16 || n > int64(maxRecord) {
			return fmt.Errorf("matcher: %s: record of %d bytes at offset %d: corrupt", s.path, n, s.off)
		}
		if int64(cap(buf)) < n {
			clear(buf[:cap(buf)])
			buf = make([]byte, n)
		}
		rec := buf[:n]
		if _, err := io.ReadFull(r, rec); err != nil {
			return nil // cut short, as above
		}
		at := s.off
		s.off += 4 + n
		if rec[0]&flagWiped != 0 {
			s.dead += 4 + n
			continue
		}
		plain, err := s.aead.Open(rec[13:13], rec[1:13], rec[13:], s.aad(at))
		if err != nil {
			return fmt.Errorf("matcher: %s: record at offset %d does not decrypt with this key (corrupt, moved, or another key)", s.path, at)
		}
		c, err := UnmarshalChange(plain)
		clear(plain)
		if err != nil {
			return fmt.Errorf("matcher: %s: record at offset %d: %w", s.path, at, err)
		}
		if prev, ok := s.latest[c.Key()]; ok {
			// Superseded but not yet wiped (a crash between append and
			// wipe): counted as dead, dropped by the next compaction.
			s.dead += prev.size
			s.live -= prev.size
		}
		s.latest[c.Key()] = record{at, 4 + n}
		s.live += 4 + n
		if err := apply(c); err != nil {
			return err
		}
	}
}

func (s *FileStore) aad(off int64) []byte {
	a := append(append([]byte{}, galleryMagicV4...), s.id[:]...)
	return binary.BigEndian.AppendUint64(a, uint64(off))
}

// append seals and appends changes at the end of the file (creating it),
// syncs, then wipes the records they supersede and syncs again. The
// caller holds the exclusive lock and has read the file to its end.
func (s *FileStore) append(changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		if err := s.create(nil); err != nil {
			return err
		}
		f, err = os.OpenFile(s.path, os.O_RDWR, 0)
	}
	if err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	defer f.Close()
	var out []byte
	defer func() { clear(out) }()
	recs := make([]record, len(changes))
	for i, c := range changes {
		at := s.off + int64(len(out))
		if out, err = s.seal(out, c, at); err != nil {
			return err
		}
		recs[i] = record{at, s.off + int64(len(out)) - at}
	}
	if _, err := f.WriteAt(out, s.off); err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	// A record cut short by a crash may lie beyond what was just written.
	if err := f.Truncate(s.off + int64(len(out))); err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	s.off += int64(len(out))
	wiped := false
	for i, c := range changes {
		if prev, ok := s.latest[c.Key()]; ok {
			if err := wipeRecord(f, prev.off); err != nil {
				return err
			}
			s.dead += prev.size
			s.live -= prev.size
			wiped = true
		}
		s.latest[c.Key()] = recs[i]
		s.live += recs[i].size
	}
	if wiped {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("matcher: %w", err)
		}
	}
	return nil
}

// seal appends the record of change c at file offset off to out.
func (s *FileStore) seal(out []byte, c Change, off int64) ([]byte, error) {
	plain, err := c.AppendBinary(nil)
	defer clear(plain)
	if err != nil {
		return out, err
	}
	return s.sealRaw(out, plain, off)
}

// sealRaw appends a record holding plain at file offset off to out.
func (s *FileStore) sealRaw(out, plain []byte, off int64) ([]byte, error) {
	n := 1 + 12 + len(plain) + s.aead.Overhead()
	out = binary.BigEndian.AppendUint32(out, uint32(n))
	out = append(out, 0)
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		return out, err
	}
	out = append(out, nonce...)
	return s.aead.Seal(out, nonce, plain, s.aad(off)), nil
}

// wipeRecord overwrites the record at off with zeros, flagged wiped.
func wipeRecord(f *os.File, off int64) error {
	var rh [4]byte
	if _, err := f.ReadAt(rh[:], off); err != nil {
		return fmt.Errorf("matcher: wiping a record: %w", err)
	}
	n := int(binary.BigEndian.Uint32(rh[:]))
	z := make([]byte, n)
	z[0] = flagWiped
	if _, err := f.WriteAt(z, off+4); err != nil {
		return fmt.Errorf("matcher: wiping a record: %w", err)
	}
	return nil
}

// create atomically replaces the file with a new one of a new id holding
// changes. The caller holds the exclusive lock.
func (s *FileStore) create(changes []Change) error {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	old := struct {
		id         [16]byte
		off        int64
		latest     map[string]record
		live, dead int64
	}{s.id, s.off, s.latest, s.live, s.dead}
	restore := func() { s.id, s.off, s.latest, s.live, s.dead = old.id, old.off, old.latest, old.live, old.dead }
	s.id, s.off, s.live, s.dead, s.latest = id, fileHeaderSize, 0, 0, map[string]record{}
	out := append(append([]byte{}, galleryMagicV4...), id[:]...)
	defer func() { clear(out) }()
	var err error
	for _, c := range changes {
		at := s.off
		if out, err = s.seal(out, c, at); err != nil {
			restore()
			return err
		}
		s.off = int64(len(out))
		s.latest[c.Key()] = record{at, s.off - at}
		s.live += s.off - at
	}
	if err := writeFileAtomic(s.path, out); err != nil {
		restore()
		return err
	}
	return nil
}

// compact rewrites the file with its live records only. The caller holds
// the exclusive lock and has read the whole file.
func (s *FileStore) compact() error {
	var changes []Change
	defer func() {
		for i := range changes {
			changes[i].zero()
		}
	}()
	s.off = fileHeaderSize
	clear(s.latest)
	if err := s.readFrom(func(c Change) error { changes = append(changes, c); return nil }, nil, true); err != nil {
		return err
	}
	// Keep each key's latest only.
	last := map[string]int{}
	for i, c := range changes {
		last[c.Key()] = i
	}
	var keep []Change
	for i, c := range changes {
		if last[c.Key()] == i && c.Kind != ChangeDelete {
			keep = append(keep, c)
		}
	}
	return s.create(keep)
}

// convertOld rewrites a gallery file of the earlier whole-file formats in
// this one. The caller holds the exclusive lock.
func (s *FileStore) convertOld() error {
	head := make([]byte, 5)
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || (string(head) != string(galleryMagic) && string(head) != string(galleryMagicV2)) {
		return nil // this format, or not a gallery (readFrom says which)
	}
	entries, sessions, err := readGalleryWith(s.path, s.aead)
	if err != nil {
		return err
	}
	var changes []Change
	defer func() {
		for i := range changes {
			changes[i].zero()
		}
	}()
	for _, e := range entries {
		fused, err := template.Fuse(e.Templates)
		for _, t := range e.Templates {
			t.Zero()
		}
		if err != nil {
			return fmt.Errorf("matcher: converting %s: subject %q: %w", s.path, e.Subject, err)
		}
		changes = append(changes, Change{Kind: ChangePut, Subject: e.Subject, Template: &fused})
	}
	for id, ss := range sessions {
		changes = append(changes, Change{Kind: ChangeSession, Session: id, State: SessionState{
			Device: ss.device, Want: ss.want, Expires: ss.expires, Closed: ss.closed, Samples: ss.samples}})
	}
	return s.create(changes)
}

// writeFileAtomic replaces path with data durably: a temporary file,
// synced, renamed over it, and the directory synced.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".gallery-*")
	if err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("matcher: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("matcher: %w", err)
	}
	// Sync before rename so a power cut leaves the old or the new gallery,
	// never an empty file under the real name.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("matcher: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		_ = dir.Sync() // makes the rename durable; not all file systems support it
		dir.Close()
	}
	return nil
}
