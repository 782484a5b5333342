package sim

import (
	"sort"
	"sync"
	"time"
)

// frameClock is the scene's time when frames are not paced by the wall
// clock: it moves one frame period per rendered frame. The illuminator's
// eye-safety guard runs on it, so the light is cut off after the same
// number of frames however fast or slow the machine renders them; on the
// wall clock, a loaded machine would cut the light off mid-presentation
// and the scene would stop being reproducible.
//
// Timers fire synchronously inside advance, before the frame that passes
// their deadline is exposed, so that frame already sees their effect.
type frameClock struct {
	mu     sync.Mutex
	now    time.Time
	next   uint64
	timers map[uint64]frameTimer
}

type frameTimer struct {
	at time.Time
	f  func()
}

func newFrameClock(start time.Time) *frameClock {
	return &frameClock{now: start, timers: map[uint64]frameTimer{}}
}

// Now implements sensor.Clock.
func (c *frameClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements sensor.Clock.
func (c *frameClock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.next
	c.next++
	c.timers[id] = frameTimer{at: c.now.Add(d), f: f}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, pending := c.timers[id]
		delete(c.timers, id)
		return pending
	}
}

// advance moves the clock by d and runs, in deadline order, the timers
// it passes. They run without the clock's lock held: they may read the
// clock or set new timers.
func (c *frameClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []frameTimer
	for id, t := range c.timers {
		if !t.at.After(c.now) {
			due = append(due, t)
			delete(c.timers, id)
		}
	}
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, t := range due {
		t.f()
	}
}
