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
