package protocol

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Envelope sequence numbers must grow across everything a terminal lives
// through: restarts, and a wall clock that is wrong at boot (a board
// without a real-time clock starts from an old time until NTP steps it)
// and then jumps. A sealer numbers each envelope max(last + 1, clock in
// µs): the clock keeps numbers ahead of anything sealed before a restart
// while it is right, and "last + 1" keeps them growing when it steps back.
// What the clock cannot promise across a restart — it may start behind —
// a SequenceStore does: a bound reserved ahead of use and kept in a small
// file (nothing biometric), written about once an hour of sealing, from
// which the sealer resumes.

// SequenceReserve is how far ahead of the last sequence number a sealer
// reserves in its store: an hour of clock-derived numbers, so the store is
// written about once an hour, not once a capture.
const SequenceReserve = uint64(time.Hour / time.Microsecond)

// EarliestPlausibleTime is a lower bound on any true time a sealer runs
// at (this release's year): a clock before it has not been set, and a
// sealer refuses to seal with it.
var EarliestPlausibleTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// ClockTolerance is how far a sealer's clock may be behind the time its
// store was last written before it refuses to seal: further behind, the
// clock is known wrong (it has gone back since), and the matcher would
// reject the capture's times anyway.
const ClockTolerance = time.Minute

// ErrClock is returned by Seal when the clock is implausible; the error
// says why and what the terminal waits for.
var ErrClock = errors.New("template: clock not plausible: waiting for time synchronisation")

// SequenceStore keeps a sealer's reserved sequence bound across restarts.
type SequenceStore interface {
	// Load returns the reserved bound and the wall time it was saved at;
	// zeros when nothing was saved yet.
	Load() (reserved uint64, at time.Time, err error)
	// Save durably records a new reserved bound.
	Save(reserved uint64, at time.Time) error
}

// SequenceFile is a SequenceStore in one small text file, replaced
// atomically and durably (temporary file, fsync, rename, fsync of the
// folder), so a power cut leaves the old bound or the new one.
type SequenceFile struct {
	Path string
}

const sequenceFileMagic = "palmd-sequence v1"

// Load implements SequenceStore. A missing file is zeros, not an error.
func (f SequenceFile) Load() (uint64, time.Time, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("template: sequence file: %w", err)
	}
	return parseSequenceFile(b)
}

func parseSequenceFile(b []byte) (uint64, time.Time, error) {
	fields := strings.Fields(string(b))
	if len(b) > 128 || len(fields) != 4 || fields[0]+" "+fields[1] != sequenceFileMagic {
		return 0, time.Time{}, errors.New("template: sequence file: not a palmd sequence file")
	}
	res, err1 := strconv.ParseUint(fields[2], 10, 64)
	ms, err2 := strconv.ParseInt(fields[3], 10, 64)
	if err1 != nil || err2 != nil || ms < 0 {
		return 0, time.Time{}, errors.New("template: sequence file: bad numbers")
	}
	return res, time.UnixMilli(ms), nil
}

// Save implements SequenceStore.
func (f SequenceFile) Save(reserved uint64, at time.Time) error {
	dir := filepath.Dir(f.Path)
	tmp, err := os.CreateTemp(dir, ".sequence-*")
	if err != nil {
		return fmt.Errorf("template: sequence file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = fmt.Fprintf(tmp, "%s %d %d\n", sequenceFileMagic, reserved, at.UnixMilli())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.Path)
	}
	if err != nil {
		return fmt.Errorf("template: sequence file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename's durability; not every file system supports it
		d.Close()
	}
	return nil
}

// nextSequence returns a sequence number larger than any this device
// sealed before (see the comment at the top of this file), or an error when
// the clock is implausible or the store cannot be written. s.mu is held.
func (s *Sealer) nextSequence(now time.Time) (uint64, error) {
	if !s.loaded {
		if s.Sequence != nil {
			res, at, err := s.Sequence.Load()
			if err != nil {
				return 0, err
			}
			s.last, s.reserved, s.floor = res, res, at
		}
		s.loaded = true
	}
	switch {
	case now.Before(EarliestPlausibleTime):
		return 0, fmt.Errorf("%w: the clock says %s, before %s", ErrClock, now.UTC().Format(time.RFC3339), EarliestPlausibleTime.Format("2006-01-02"))
	case now.Before(s.floor.Add(-ClockTolerance)) && (s.ClockSynced == nil || !s.ClockSynced()):
		return 0, fmt.Errorf("%w: the clock says %s, %v before this terminal last sealed (%s)", ErrClock,
			now.UTC().Format(time.RFC3339), s.floor.Sub(now).Round(time.Second), s.floor.UTC().Format(time.RFC3339))
	}
	seq := max(s.last+1, uint64(now.UnixMicro()))
	if s.Sequence != nil && seq > s.reserved {
		res := seq + SequenceReserve
		if err := s.Sequence.Save(res, now); err != nil {
			return 0, err
		}
		s.reserved = res
		if now.After(s.floor) {
			s.floor = now
		}
	}
	s.last = seq
	return seq, nil
}
