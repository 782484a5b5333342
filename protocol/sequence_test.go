package protocol

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/palmd/palmd/clock"
	"github.com/palmd/palmd/template"
	"github.com/palmd/palmd/template/templatetest"
)

// clockRig is a device and a matcher whose clocks the test sets.
type clockRig struct {
	key    ed25519.PrivateKey
	mk     *MatcherPrivateKey
	opener *Opener
	device time.Time // the device's clock
	truth  time.Time // the matcher's (true) clock
}

func newClockRig(t *testing.T) *clockRig {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(nil)
	mk, err := GenerateMatcherKey(SuiteX25519)
	if err != nil {
		t.Fatal(err)
	}
	r := &clockRig{key: key, mk: mk, truth: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	r.device = r.truth
	r.opener = &Opener{Keys: map[KeyID]*MatcherPrivateKey{mk.ID: mk},
		Devices: func(string) (ed25519.PublicKey, bool) { return pub, true }, Clock: clock.Func(func() time.Time { return r.truth })}
	return r
}

// boot returns the sealer of a new run of the daemon.
func (r *clockRig) boot(store SequenceStore, synced bool) *Sealer {
	return &Sealer{DeviceID: "term-clock", DeviceKey: r.key, Matcher: r.mk.Public(), Lifetime: 2 * time.Minute,
		Clock: clock.Func(func() time.Time { return r.device }), Sequence: store, ClockSynced: func() bool { return synced }}
}

// seal seals and opens n captures, returning how many the matcher took and
// the first sealing error.
func (r *clockRig) seal(t *testing.T, s *Sealer, n int) (opened int, err error) {
	t.Helper()
	for i := 0; i < n; i++ {
		env, _, err := s.Seal(testTemplate(int64(i)), PurposeIdentify, [16]byte{})
		if err != nil {
			return opened, err
		}
		if _, _, err := r.opener.Open(env); err == nil {
			opened++
		} else if !errors.Is(err, &RejectError{Reason: ReasonReplay}) {
			t.Fatalf("capture %d: %v", i, err)
		}
		r.device = r.device.Add(time.Second)
		r.truth = r.truth.Add(time.Second)
	}
	return opened, nil
}

// TestSequenceSurvivesClockSteps: captures keep opening through restarts
// and a wall clock that is wrong at boot and then stepped, the life of a
// board without a real-time clock.
func TestSequenceSurvivesClockSteps(t *testing.T) {
	t.Run("behind then stepped forward, one run", func(t *testing.T) {
		r := newClockRig(t)
		if n, _ := r.seal(t, r.boot(nil, false), 3); n != 3 {
			t.Fatalf("first run: %d of 3 opened", n)
		}
		s := r.boot(nil, false) // restart; the clock starts a minute behind…
		r.device = r.truth.Add(-50 * time.Second)
		r.seal(t, s, 3)
		r.device = r.truth // …and NTP steps it right: every capture opens again
		if n, err := r.seal(t, s, 3); n != 3 || err != nil {
			t.Fatalf("after the step: %d of 3 opened (%v)", n, err)
		}
	})
	t.Run("restart with the clock behind, store", func(t *testing.T) {
		r := newClockRig(t)
		store := SequenceFile{Path: filepath.Join(t.TempDir(), "sequence")}
		if n, err := r.seal(t, r.boot(store, false), 3); n != 3 || err != nil {
			t.Fatalf("first run: %d of 3 opened (%v)", n, err)
		}
		r.device = r.truth.Add(-30 * time.Second) // behind, within ClockTolerance
		if n, err := r.seal(t, r.boot(store, false), 3); n != 3 || err != nil {
			t.Fatalf("second run, clock behind: %d of 3 opened (%v)", n, err)
		}
	})
	t.Run("restart with the clock an hour behind refuses to seal until the step", func(t *testing.T) {
		r := newClockRig(t)
		store := SequenceFile{Path: filepath.Join(t.TempDir(), "sequence")}
		r.seal(t, r.boot(store, false), 1)
		s := r.boot(store, false)
		r.device = r.truth.Add(-time.Hour)
		if _, err := r.seal(t, s, 1); !errors.Is(err, ErrClock) {
			t.Fatalf("sealed with a clock an hour behind the last seal: %v", err)
		}
		r.device = r.truth
		if n, err := r.seal(t, s, 3); n != 3 || err != nil {
			t.Fatalf("after the step: %d of 3 opened (%v)", n, err)
		}
	})
	t.Run("a synchronised clock is trusted even behind the store", func(t *testing.T) {
		r := newClockRig(t)
		store := SequenceFile{Path: filepath.Join(t.TempDir(), "sequence")}
		r.device = r.truth.Add(time.Hour) // the last run's clock was wrong ahead
		if _, _, err := r.boot(store, false).Seal(testTemplate(9), PurposeIdentify, [16]byte{}); err != nil {
			t.Fatal(err)
		}
		r.device = r.truth
		if n, err := r.seal(t, r.boot(store, true), 3); n != 3 || err != nil {
			t.Fatalf("synchronised clock: %d of 3 opened (%v)", n, err)
		}
	})
	t.Run("a clock that was never set", func(t *testing.T) {
		r := newClockRig(t)
		r.device = time.Unix(0, 0)
		if _, err := r.seal(t, r.boot(nil, true), 1); !errors.Is(err, ErrClock) {
			t.Fatalf("sealed in 1970: %v", err)
		}
	})
}

// TestSequenceStore: the bound is written ahead of use, rarely, and a
// store that cannot be written stops sealing rather than risk a number
// used before.
func TestSequenceStore(t *testing.T) {
	dir := t.TempDir()
	r := newClockRig(t)
	saves := 0
	store := &countingStore{SequenceFile: SequenceFile{Path: filepath.Join(dir, "sequence")}, saves: &saves}
	s := r.boot(store, false)
	var last uint64
	for i := 0; i < 100; i++ {
		_, h, err := s.Seal(testTemplate(int64(i)), PurposeIdentify, [16]byte{})
		if err != nil {
			t.Fatal(err)
		}
		if h.Sequence <= last {
			t.Fatalf("sequence %d after %d", h.Sequence, last)
		}
		last = h.Sequence
		r.device = r.device.Add(10 * time.Second)
	}
	if saves != 1 {
		t.Errorf("%d writes for 100 captures over 17 minutes, want 1", saves)
	}
	res, _, err := store.Load()
	if err != nil || res <= last {
		t.Fatalf("stored bound %d, last used %d (%v)", res, last, err)
	}
	if err := os.WriteFile(store.Path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.boot(store, false).Seal(testTemplate(1), PurposeIdentify, [16]byte{}); err == nil {
		t.Error("sealed with an unreadable sequence file")
	}
	ro := SequenceFile{Path: filepath.Join(dir, "missing", "sequence")}
	if _, _, err := r.boot(ro, false).Seal(testTemplate(1), PurposeIdentify, [16]byte{}); err == nil {
		t.Error("sealed with a sequence file that cannot be written")
	}
}

type countingStore struct {
	SequenceFile
	saves *int
}

func (c *countingStore) Save(res uint64, at time.Time) error {
	*c.saves++
	return c.SequenceFile.Save(res, at)
}

// testTemplate is a palm-like template for seed.
func testTemplate(seed int64) *template.Template { return templatetest.Palm(uint64(seed), 0, 0) }
