// Package clock is the one injectable clock of palmd: what reads the time
// or sets a timer takes a Clock, so tests can set and advance time instead
// of sleeping (sensor/sensortest.Clock is a manual one).
package clock

import "time"

// Clock tells the time and runs functions later.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d, unless the returned
	// stop function is called first (it reports whether it stopped f).
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// Real is the system clock. Its zero value is ready to use.
type Real struct{}

// Now implements Clock.
func (Real) Now() time.Time { return time.Now() }

// AfterFunc implements Clock.
func (Real) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// Func is a clock whose time is what the function says (a clock set to
// a fixed or offset time); its timers run on real time.
type Func func() time.Time

// Now implements Clock.
func (c Func) Now() time.Time { return c() }

// AfterFunc implements Clock.
func (Func) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// Or returns c, or Real when c is nil: the documented zero value of every
// Clock field.
func Or(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}

// Timer is a one-shot timer on a Clock.
type Timer struct {
	// C is closed when the timer fires.
	C    <-chan struct{}
	stop func() bool
}

// NewTimer returns a timer that fires after d on c.
func NewTimer(c Clock, d time.Duration) *Timer {
	ch := make(chan struct{})
	return &Timer{C: ch, stop: c.AfterFunc(d, func() { close(ch) })}
}

// Stop stops the timer; it reports whether it stopped it before it fired.
func (t *Timer) Stop() bool { return t.stop() }

// Ticker delivers ticks every period on a Clock; a slow receiver misses
// ticks rather than queueing them, as with time.Ticker.
type Ticker struct {
	// C receives the clock's time at each tick.
	C <-chan time.Time

	c      Clock
	period time.Duration
	ch     chan time.Time
	mu     chan struct{} // a one-slot lock: held while arming
	stop   func() bool
	done   bool
}

// NewTicker returns a ticker on c with the given period (> 0).
func NewTicker(c Clock, period time.Duration) *Ticker {
	t := &Ticker{c: c, period: period, ch: make(chan time.Time, 1), mu: make(chan struct{}, 1)}
	t.C = t.ch
	t.arm()
	return t
}

func (t *Ticker) arm() {
	t.mu <- struct{}{}
	defer func() { <-t.mu }()
	if t.done {
		return
	}
	t.stop = t.c.AfterFunc(t.period, func() {
		select {
		case t.ch <- t.c.Now():
		default:
		}
		t.arm()
	})
}

// Stop stops the ticker; no tick is delivered after it returns.
func (t *Ticker) Stop() {
	t.mu <- struct{}{}
	defer func() { <-t.mu }()
	t.done = true
	if t.stop != nil {
		t.stop()
	}
}
