package sensor

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/palmd/palmd/clock"
)

// LightDriver is the raw hardware behind an illuminator: something that can
// set a light level and nothing else. It has no safety logic of its own;
// wrap it with NewGuardedIlluminator.
type LightDriver interface {
	// SetLevel sets the light to percent (0 = off, 1–100 = on).
	SetLevel(percent int) error
	// Close releases the hardware. It is called after SetLevel(0).
	Close() error
}

// Clock abstracts time for the guard so tests can drive it. The zero value
// of GuardLimits uses the real clock.
type Clock = clock.Clock

// GuardLimits are the eye-safety limits of an illuminator.
type GuardLimits struct {
	// MaxOnTime is the longest the light may stay on continuously. Zero
	// means DefaultMaxOnTime.
	MaxOnTime time.Duration
	// MaxDuty is the largest share of DutyWindow the light may be on, in
	// (0, 1]. Zero means DefaultMaxDuty.
	MaxDuty float64
	// DutyWindow is the sliding window the duty cycle is measured over.
	// Zero means DefaultDutyWindow.
	DutyWindow time.Duration
	// Clock drives the cut-off timer; nil means the real clock.
	Clock Clock
}

// Default eye-safety limits: a presentation needs about a second of light, so
// five seconds continuous and half of every minute leave ample room while
// keeping a stuck caller from lighting an eye indefinitely.
const (
	DefaultMaxOnTime  = 5 * time.Second
	DefaultMaxDuty    = 0.5
	DefaultDutyWindow = time.Minute
	// MaxOnTimeBound is the longest MaxOnTime any configuration may set.
	MaxOnTimeBound = 30 * time.Second
)

// LimitError is a GuardLimits value out of its bounds; Field names it
// (max_on, max_duty, duty_window) so configuration can point at its key.
type LimitError struct {
	Field, Problem string
}

func (e *LimitError) Error() string { return "sensor: illuminator " + e.Field + ": " + e.Problem }

// Validate checks limits as given (zero fields take their defaults).
func (l GuardLimits) Validate() error {
	_, err := l.withDefaults()
	return err
}

func (l GuardLimits) withDefaults() (GuardLimits, error) {
	if l.MaxOnTime == 0 {
		l.MaxOnTime = DefaultMaxOnTime
	}
	if l.MaxDuty == 0 {
		l.MaxDuty = DefaultMaxDuty
	}
	if l.DutyWindow == 0 {
		l.DutyWindow = DefaultDutyWindow
	}
	l.Clock = clock.Or(l.Clock)
	switch {
	case l.MaxOnTime < 0 || l.MaxOnTime > MaxOnTimeBound:
		return l, &LimitError{"max_on", fmt.Sprintf("%v outside (0, %v]: eye safety", l.MaxOnTime, MaxOnTimeBound)}
	case l.MaxDuty < 0 || l.MaxDuty > 1:
		return l, &LimitError{"max_duty", fmt.Sprintf("%v outside (0, 1]", l.MaxDuty)}
	case l.DutyWindow < l.MaxOnTime:
		return l, &LimitError{"duty_window", fmt.Sprintf("%v shorter than max_on %v", l.DutyWindow, l.MaxOnTime)}
	}
	return l, nil
}

// GuardedIlluminator makes any LightDriver an Illuminator that enforces
// GuardLimits: a timer switches the light off after MaxOnTime, and On is
// refused with ErrOnTimeLimit while the on-time within the last DutyWindow
// has reached MaxDuty of it.
type GuardedIlluminator struct {
	drv    LightDriver
	limits GuardLimits

	mu        sync.Mutex
	closed    bool
	on        bool
	level     int
	since     time.Time
	totalOn   time.Duration
	cutoffs   int
	stopTimer func() bool
	epoch     uint64     // invalidates a cut-off timer that fires after Off
	history   []interval // closed on-intervals within the duty window
}

type interval struct{ from, to time.Time }

// NewGuardedIlluminator switches drv off and returns it wrapped in the guard.
func NewGuardedIlluminator(drv LightDriver, limits GuardLimits) (*GuardedIlluminator, error) {
	l, err := limits.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := drv.SetLevel(0); err != nil {
		return nil, fmt.Errorf("sensor: switching illuminator off at start: %w", err)
	}
	return &GuardedIlluminator{drv: drv, limits: l, since: l.Clock.Now()}, nil
}

// On implements Illuminator. Calling On while already on changes the level
// but does not restart the continuous on-time.
func (g *GuardedIlluminator) On(level int) error {
	if level < 1 || level > 100 {
		return fmt.Errorf("sensor: illuminator level %d outside 1..100", level)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	now := g.limits.Clock.Now()
	if g.on {
		if err := g.drv.SetLevel(level); err != nil {
			return fmt.Errorf("sensor: setting illuminator level: %w", err)
		}
		g.level = level
		return nil
	}
	budget := time.Duration(g.limits.MaxDuty*float64(g.limits.DutyWindow)) - g.usedLocked(now)
	if budget <= 0 {
		return fmt.Errorf("sensor: illuminator duty cycle above %.0f%% of %v: %w",
			g.limits.MaxDuty*100, g.limits.DutyWindow, ErrOnTimeLimit)
	}
	if err := g.drv.SetLevel(level); err != nil {
		// The light may be in an unknown state: force it dark.
		_ = g.drv.SetLevel(0)
		return fmt.Errorf("sensor: switching illuminator on: %w", err)
	}
	g.on, g.level, g.since = true, level, now
	g.epoch++
	epoch := g.epoch
	g.stopTimer = g.limits.Clock.AfterFunc(min(g.limits.MaxOnTime, budget), func() { g.cutoff(epoch) })
	return nil
}

func (g *GuardedIlluminator) cutoff(epoch uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.on || g.epoch != epoch {
		return
	}
	g.cutoffs++
	_ = g.offLocked()
}

// usedLocked returns the on-time inside the duty window ending at now.
func (g *GuardedIlluminator) usedLocked(now time.Time) time.Duration {
	start := now.Add(-g.limits.DutyWindow)
	kept := g.history[:0]
	var used time.Duration
	for _, iv := range g.history {
		if iv.to.Before(start) {
			continue
		}
		kept = append(kept, iv)
		used += iv.to.Sub(later(iv.from, start))
	}
	g.history = kept
	if g.on {
		used += now.Sub(later(g.since, start))
	}
	return used
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Off implements Illuminator.
func (g *GuardedIlluminator) Off() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	return g.offLocked()
}

func (g *GuardedIlluminator) offLocked() error {
	err := g.drv.SetLevel(0)
	if !g.on {
		return wrapOff(err)
	}
	now := g.limits.Clock.Now()
	if g.stopTimer != nil {
		g.stopTimer()
		g.stopTimer = nil
	}
	g.history = append(g.history, interval{g.since, now})
	g.totalOn += now.Sub(g.since)
	g.on, g.level, g.since = false, 0, now
	return wrapOff(err)
}

func wrapOff(err error) error {
	if err != nil {
		return fmt.Errorf("sensor: switching illuminator off: %w", err)
	}
	return nil
}

// State implements Illuminator.
func (g *GuardedIlluminator) State() IlluminatorState {
	g.mu.Lock()
	defer g.mu.Unlock()
	total := g.totalOn
	if g.on {
		total += g.limits.Clock.Now().Sub(g.since)
	}
	now := g.limits.Clock.Now()
	duty := g.usedLocked(now).Seconds() / g.limits.DutyWindow.Seconds()
	return IlluminatorState{On: g.on, Level: g.level, Since: g.since, TotalOn: total, Cutoffs: g.cutoffs,
		Duty: duty, MaxDuty: g.limits.MaxDuty}
}

// Limits returns the limits in force, defaults filled in.
func (g *GuardedIlluminator) Limits() GuardLimits { return g.limits }

// Close implements Illuminator: the light is switched off before the driver
// is released, and stays off.
func (g *GuardedIlluminator) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return errors.Join(g.offLocked(), g.drv.Close())
}
