package matcher

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palmd/palmd/template"
)

func collect(changes *[]Change) func(Change) error {
	return func(c Change) error { *changes = append(*changes, c); return nil }
}

// TestDeleteSubject: a deletion removes the subject from the instance that
// deleted it, from another instance sharing the file at its next
// identification, and from the file itself: the template's record is
// wiped, so no copy remains for a key holder to decrypt.
func TestDeleteSubject(t *testing.T) {
	key := bytes.Repeat([]byte{9}, 32)
	path := filepath.Join(t.TempDir(), "gallery")
	putDirect(t, path, key, map[string][]*template.Template{"alice": {palm(1, 0, 0)}, "bob": {palm(2, 0, 0)}})
	before, _ := os.ReadFile(path)
	a, b := newRig(t), newRig(t)
	for _, r := range []*rig{a, b} {
		if err := r.m.UseStore(path, key); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.m.store.Close() })
	}
	if err := a.m.Delete("alice"); err != nil {
		t.Fatal(err)
	}
	if err := a.m.Delete("alice"); !errors.Is(err, ErrUnknownSubject) {
		t.Errorf("deleting again: %v, want ErrUnknownSubject", err)
	}
	if s, _ := a.m.Identify(palm(1, 0.05, 3)); s == "alice" || a.m.Size() != 1 {
		t.Errorf("deleting instance still finds alice (%d entries)", a.m.Size())
	}
	if s, _ := b.m.Identify(palm(1, 0.05, 3)); s == "alice" || b.m.Size() != 1 {
		t.Errorf("other instance still finds alice (%d entries)", b.m.Size())
	}
	// The offline tool's way (palm-matcher -delete-subject).
	tool, err := OpenFileStore(path, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := DeleteSubject(tool, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteSubject(tool, "bob"); !errors.Is(err, ErrUnknownSubject) {
		t.Errorf("tool deleting again: %v", err)
	}
	tool.Close()
	if s, _ := b.m.Identify(palm(2, 0.05, 3)); s == "bob" || b.m.Size() != 0 {
		t.Errorf("instance still finds bob after the tool deleted him (%d entries)", b.m.Size())
	}
	after, _ := os.ReadFile(path)
	// Every byte of the original file that was not zero and changed is
	// the wiped record: at least a template's worth of ciphertext.
	wiped := 0
	for i := fileHeaderSize; i < len(before); i++ {
		if before[i] != after[i] && after[i] == 0 {
			wiped++
		}
	}
	if wiped < 2*template.WireSize {
		t.Errorf("%d bytes of the file wiped by the deletion; want the whole record (≥ %d)", wiped, template.WireSize)
	}
	var changes []Change
	s, _ := OpenFileStore(path, key)
	defer s.Close()
	if err := s.Load(collect(&changes)); err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Kind == ChangePut {
			t.Errorf("the file still yields %s's template", c.Subject)
		}
	}
}

// TestFileStoreSurvivesACutAppend: a record cut short by a crash is
// ignored on load and overwritten by the next append.
func TestFileStoreSurvivesACutAppend(t *testing.T) {
	key := bytes.Repeat([]byte{4}, 32)
	path := filepath.Join(t.TempDir(), "gallery")
	putDirect(t, path, key, map[string][]*template.Template{"alice": {palm(1, 0, 0)}})
	good, _ := os.ReadFile(path)
	putDirect(t, path, key, map[string][]*template.Template{"bob": {palm(2, 0, 0)}})
	full, _ := os.ReadFile(path)
	if err := os.WriteFile(path, full[:len(good)+100], 0o600); err != nil { // bob's record cut short
		t.Fatal(err)
	}
	r := newRig(t)
	if err := r.m.UseStore(path, key); err != nil || r.m.Size() != 1 {
		t.Fatalf("load after a cut append: %v, %d entries", err, r.m.Size())
	}
	r.m.store.Close()
	putDirect(t, path, key, map[string][]*template.Template{"carol": {palm(3, 0, 0)}})
	r2 := newRig(t)
	if err := r2.m.UseStore(path, key); err != nil || r2.m.Size() != 2 {
		t.Fatalf("load after the next append: %v, %d entries", err, r2.m.Size())
	}
	r2.m.store.Close()
}

// TestFileStoreRefusesTampering: a flipped byte, a record moved to another
// offset and a wrong key are load errors, never a silently smaller
// gallery.
func TestFileStoreRefusesTampering(t *testing.T) {
	key := bytes.Repeat([]byte{6}, 32)
	dir := t.TempDir()
	path := filepath.Join(dir, "gallery")
	putDirect(t, path, key, map[string][]*template.Template{"alice": {palm(1, 0, 0)}})
	good, _ := os.ReadFile(path)
	for _, tc := range []struct {
		name string
		file func() []byte
		key  []byte
	}{
		{"flipped byte", func() []byte { b := bytes.Clone(good); b[len(b)-20] ^= 1; return b }, key},
		{"record duplicated", func() []byte { return append(bytes.Clone(good), good[fileHeaderSize:]...) }, key},
		{"wrong key", func() []byte { return good }, bytes.Repeat([]byte{7}, 32)},
		{"garbage length", func() []byte { return append(bytes.Clone(good), 0xff, 0xff, 0xff, 0xff, 0) }, key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, tc.file(), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := OpenFileStore(p, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Load(func(Change) error { return nil }); err == nil {
				t.Error("loaded")
			}
		})
	}
}

// TestOldGalleryConverted: a PGAL\x03 file (several templates a subject,
// sessions) is converted on open: one fused template a subject, the
// sessions kept.
func TestOldGalleryConverted(t *testing.T) {
	key := bytes.Repeat([]byte{2}, 32)
	path := filepath.Join(t.TempDir(), "gallery")
	plain, err := encodeGallery([]Entry{{Subject: "alice", Templates: []*template.Template{palm(1, 0.05, 1), palm(1, 0.05, 2), palm(1, 0.05, 3)}}},
		map[[16]byte]*session{{1}: {device: "term-m1", want: 3, expires: time.Now().Add(time.Hour), samples: []*template.Template{palm(2, 0, 0)}}})
	if err != nil {
		t.Fatal(err)
	}
	aead, _ := galleryAEAD(key)
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	if err := os.WriteFile(path, aead.Seal(append(append([]byte{}, galleryMagic...), nonce...), nonce, plain, galleryMagic), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	if err := r.m.UseStore(path, key); err != nil {
		t.Fatal(err)
	}
	defer r.m.store.Close()
	if s, d := r.m.Identify(palm(1, 0.1, 7)); s != "alice" || d > 0.3 || len(r.m.sessions) != 1 || len(r.m.sessions[[16]byte{1}].samples) != 1 {
		t.Errorf("converted: %q at %.3f, %d sessions", s, d, len(r.m.sessions))
	}
	raw, _ := os.ReadFile(path)
	if !bytes.HasPrefix(raw, galleryMagicV4) {
		t.Errorf("file not rewritten in the current format: %q", raw[:5])
	}
}

// FuzzChange feeds any bytes to the change decoder (records are
// authenticated, so this is what a key holder could write): no panic, and
// whatever decodes encodes back to the same bytes.
func FuzzChange(f *testing.F) {
	for _, c := range []Change{
		{Kind: ChangePut, Subject: "abc", Template: palm(1, 0, 0)},
		{Kind: ChangeDelete, Subject: "abc"},
		{Kind: ChangeSession, Session: [16]byte{1}, State: SessionState{Device: "term-m1", Want: 3, Expires: time.UnixMilli(5), Samples: []*template.Template{palm(2, 0, 0)}}},
	} {
		b, err := c.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := UnmarshalChange(b)
		if err != nil {
			return
		}
		again, err := c.AppendBinary(nil)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoded change differs: %v", err)
		}
	})
}

// FuzzFileStore writes any bytes as a gallery file, both raw after a valid
// header (the framing) and sealed as a record by the key holder (the
// change decoder behind the authentication): loading never panics, and
// either fails or yields changes that encode again.
func FuzzFileStore(f *testing.F) {
	put, _ := Change{Kind: ChangePut, Subject: "abc", Template: palm(1, 0, 0)}.AppendBinary(nil)
	f.Add(put)
	f.Add([]byte{0, 0, 0, 40, 0})
	f.Add([]byte{3, 1})
	key := bytes.Repeat([]byte{3}, 32)
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		for _, sealed := range []bool{false, true} {
			path := filepath.Join(dir, "gallery")
			s, err := OpenFileStore(path, key)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.create(nil); err != nil {
				t.Fatal(err)
			}
			file, _ := os.ReadFile(path)
			if sealed {
				file, err = s.sealRaw(file, b, int64(len(file)))
				if err != nil {
					t.Fatal(err)
				}
			} else {
				file = append(file, b...)
			}
			if err := os.WriteFile(path, file, 0o600); err != nil {
				t.Fatal(err)
			}
			_ = s.Load(func(c Change) error {
				if _, err := c.AppendBinary(nil); err != nil {
					t.Fatalf("a loaded change does not encode: %v", err)
				}
				return nil
			})
			s.Close()
		}
	})
}

// TestStoreUnderConcurrentCaptures: identifications (each syncing the
// store) run while the same matcher deletes and another instance enrols,
// as palm-matcher's per-capture goroutines do (run with -race).
func TestStoreUnderConcurrentCaptures(t *testing.T) {
	key := bytes.Repeat([]byte{8}, 32)
	path := filepath.Join(t.TempDir(), "gallery")
	subjects := map[string][]*template.Template{}
	for i := 0; i < 20; i++ {
		subjects[fmt.Sprint("s", i)] = []*template.Template{palm(uint64(100+i), 0, 0)}
	}
	putDirect(t, path, key, subjects)
	r := newRig(t)
	if err := r.m.UseStore(path, key); err != nil {
		t.Fatal(err)
	}
	defer r.m.store.Close()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 20; k++ {
				r.m.Identify(palm(uint64(100+(g*5+k)%20), 0.1, uint64(k)))
			}
		}(g)
	}
	for i := 0; i < 10; i++ {
		if err := r.m.Delete(fmt.Sprint("s", i)); err != nil {
			t.Error(err)
		}
		putDirect(t, path, key, map[string][]*template.Template{fmt.Sprint("n", i): {palm(uint64(200+i), 0, 0)}})
	}
	wg.Wait()
	if s, _ := r.m.Identify(palm(209, 0.1, 1)); s != "n9" || r.m.Size() != 20 {
		t.Errorf("after the changes: found %q, %d entries", s, r.m.Size())
	}
}

// TestReloadKeepsServing: when another instance rewrites the file (a
// compaction), this instance loads it again into a fresh gallery and
// swaps it in whole: identifications meanwhile still find the enrolled.
func TestReloadKeepsServing(t *testing.T) {
	key := bytes.Repeat([]byte{5}, 32)
	path := filepath.Join(t.TempDir(), "gallery")
	subjects := map[string][]*template.Template{"alice": {palm(1, 0, 0)}}
	for i := 0; i < 200; i++ {
		subjects[fmt.Sprint("s", i)] = []*template.Template{palm(uint64(100+i), 0, 0)}
	}
	putDirect(t, path, key, subjects)
	r := newRig(t)
	if err := r.m.UseStore(path, key); err != nil {
		t.Fatal(err)
	}
	defer r.m.store.Close()
	other, err := OpenFileStore(path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	stop := make(chan struct{})
	misses := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if m := r.m.idx.Load().Search(palm(1, 0.1, 3)); m.Subject != "alice" {
				select {
				case misses <- m.Subject:
				default:
				}
			}
		}
	}()
	for i := 0; i < 20; i++ {
		if err := other.Load(func(c Change) error { c.zero(); return nil }); err != nil {
			t.Fatal(err)
		}
		unlock, _ := other.lock(syscall.LOCK_EX)
		err := other.compact()
		unlock()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.m.sync(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	select {
	case s := <-misses:
		t.Errorf("a search during a reload found %q, not alice", s)
	default:
	}
	if r.m.Size() != 201 {
		t.Errorf("%d entries after the reloads", r.m.Size())
	}
}
