// Package sensortest provides fakes of the sensor interfaces for tests, as
// periph's gpiotest does for GPIO: a manual clock.Clock for the illuminator
// guard, the orchestrator and anything else that takes one, and a light
// driver that records every level written. Their exported fields may be set directly.
package sensortest

import (
	"sync"
	"time"

	"github.com/palmd/palmd/sensor"
)

// Clock is a manual sensor.Clock: time moves only when Advance moves it,
// and timers fire, synchronously, when it passes them. The zero value
// starts at the zero time; NewClock starts at a fixed, realistic instant.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

type timer struct {
	at      time.Time
	f       func()
	stopped bool
}

// NewClock returns a clock at 2026-06-01 00:00 UTC: a plausible time, so
// sealing on it works (protocol.EarliestPlausibleTime).
func NewClock() *Clock { return &Clock{now: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)} }

// Now implements sensor.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements sensor.Clock.
func (c *Clock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Advance moves time forward by d, running the timers that come due, in
// the calling goroutine.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*timer
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			t.stopped = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// Light is a sensor.LightDriver that records every level written.
type Light struct {
	// Fail, when set, is returned for every level but 0 (a driver that
	// cannot switch on, but can always switch off).
	Fail error

	mu     sync.Mutex
	levels []int
	closed bool
}

// SetLevel implements sensor.LightDriver.
func (l *Light) SetLevel(p int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Fail != nil && p != 0 {
		return l.Fail
	}
	l.levels = append(l.levels, p)
	return nil
}

// Close implements sensor.LightDriver.
func (l *Light) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}

// Level returns the last level written (0 when none was).
func (l *Light) Level() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.levels) == 0 {
		return 0
	}
	return l.levels[len(l.levels)-1]
}

// Levels returns every level written, in order.
func (l *Light) Levels() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.levels...)
}

// Closed reports whether Close was called.
func (l *Light) Closed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

var (
	_ sensor.Clock       = (*Clock)(nil)
	_ sensor.LightDriver = (*Light)(nil)
)
