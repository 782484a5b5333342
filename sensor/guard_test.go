package sensor

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a manual clock: timers fire only when Advance passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Advance moves time forward, running due timers synchronously.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
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

// recordingLight is a LightDriver that records every level written.
type recordingLight struct {
	mu     sync.Mutex
	levels []int
	fail   error
	closed bool
}

func (l *recordingLight) SetLevel(p int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil && p != 0 {
		return l.fail
	}
	l.levels = append(l.levels, p)
	return nil
}
func (l *recordingLight) Close() error { l.mu.Lock(); defer l.mu.Unlock(); l.closed = true; return nil }
func (l *recordingLight) level() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.levels[len(l.levels)-1]
}

func TestGuardCutsOffAfterMaxOnTime(t *testing.T) {
	clk := newFakeClock()
	drv := &recordingLight{}
	g, err := NewGuardedIlluminator(drv, GuardLimits{MaxOnTime: 2 * time.Second, MaxDuty: 0.5, DutyWindow: time.Minute, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if drv.level() != 0 {
		t.Fatal("illuminator not switched off at start")
	}
	if err := g.On(80); err != nil {
		t.Fatal(err)
	}
	clk.Advance(1999 * time.Millisecond)
	if !g.State().On || drv.level() != 80 {
		t.Fatal("cut off too early")
	}
	clk.Advance(time.Millisecond)
	st := g.State()
	if st.On || drv.level() != 0 || st.Cutoffs != 1 {
		t.Fatalf("not cut off after max on-time: state %+v, level %d", st, drv.level())
	}
	if st.TotalOn != 2*time.Second {
		t.Errorf("total on-time %v, want 2s", st.TotalOn)
	}
}

func TestGuardOffCancelsCutoff(t *testing.T) {
	clk := newFakeClock()
	drv := &recordingLight{}
	g, _ := NewGuardedIlluminator(drv, GuardLimits{MaxOnTime: time.Second, Clock: clk})
	_ = g.On(50)
	clk.Advance(500 * time.Millisecond)
	_ = g.Off()
	_ = g.On(50) // a new on-period gets its own full allowance
	clk.Advance(700 * time.Millisecond)
	if !g.State().On {
		t.Fatal("the first period's timer cut off the second period")
	}
	clk.Advance(300 * time.Millisecond)
	if g.State().On || g.State().Cutoffs != 1 {
		t.Fatalf("second period not cut off at its own limit: %+v", g.State())
	}
}

func TestGuardDutyCycle(t *testing.T) {
	clk := newFakeClock()
	drv := &recordingLight{}
	g, _ := NewGuardedIlluminator(drv, GuardLimits{MaxOnTime: 5 * time.Second, MaxDuty: 0.25, DutyWindow: 20 * time.Second, Clock: clk})
	// Budget: 5 s of light in any 20 s.
	for i := 0; i < 4; i++ {
		if err := g.On(100); err != nil {
			t.Fatalf("pulse %d refused: %v", i, err)
		}
		clk.Advance(time.Second)
		_ = g.Off()
		clk.Advance(100 * time.Millisecond)
	}
	// 4 s used: the next pulse is cut at the remaining 1 s of budget.
	if err := g.On(100); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if g.State().On {
		t.Fatal("pulse outlived the duty budget")
	}
	if err := g.On(100); !errors.Is(err, ErrOnTimeLimit) {
		t.Fatalf("On with the budget spent: got %v, want ErrOnTimeLimit", err)
	}
	if drv.level() != 0 {
		t.Fatal("light on although refused")
	}
	clk.Advance(20 * time.Second) // the window slides past the pulses
	if err := g.On(100); err != nil {
		t.Fatalf("budget not restored after the window: %v", err)
	}
}

func TestGuardCloseSwitchesOff(t *testing.T) {
	clk := newFakeClock()
	drv := &recordingLight{}
	g, _ := NewGuardedIlluminator(drv, GuardLimits{Clock: clk})
	_ = g.On(100)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if drv.level() != 0 || !drv.closed {
		t.Fatal("Close left the light on or the driver open")
	}
	if err := g.On(10); !errors.Is(err, ErrClosed) {
		t.Fatalf("On after Close: %v", err)
	}
	clk.Advance(time.Hour) // a stale timer must not touch a closed driver
}

func TestGuardDriverFailureLeavesLightOff(t *testing.T) {
	drv := &recordingLight{}
	g, _ := NewGuardedIlluminator(drv, GuardLimits{Clock: newFakeClock()})
	drv.fail = errors.New("i2c write failed")
	if err := g.On(100); err == nil {
		t.Fatal("driver failure not reported")
	}
	if g.State().On || drv.level() != 0 {
		t.Fatal("light not forced off after a failed switch-on")
	}
}

func TestGuardLimitsValidation(t *testing.T) {
	for _, l := range []GuardLimits{
		{MaxOnTime: -time.Second},
		{MaxDuty: 1.5},
		{MaxOnTime: time.Minute, DutyWindow: time.Second},
	} {
		if _, err := NewGuardedIlluminator(&recordingLight{}, l); err == nil {
			t.Errorf("limits %+v accepted", l)
		}
	}
	for _, level := range []int{0, -1, 101} {
		g, _ := NewGuardedIlluminator(&recordingLight{}, GuardLimits{Clock: newFakeClock()})
		if err := g.On(level); err == nil {
			t.Errorf("level %d accepted", level)
		}
	}
}

func TestFrameValidate(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
		ok   bool
	}{
		{"good", Frame{Width: 4, Height: 2, Pix: make([]byte, 8)}, true},
		{"short", Frame{Width: 4, Height: 2, Pix: make([]byte, 7)}, false},
		{"zero", Frame{}, false},
		{"negative", Frame{Width: -4, Height: -2, Pix: make([]byte, 8)}, false},
		{"huge", Frame{Width: MaxFrameSide + 1, Height: 1, Pix: make([]byte, MaxFrameSide+1)}, false},
	}
	for _, tc := range tests {
		if err := tc.f.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", tc.name, err)
		}
	}
}

func TestSignalNames(t *testing.T) {
	seen := map[string]bool{}
	for s := SignalIdle; s <= SignalError; s++ {
		n := s.String()
		if seen[n] || n == "" {
			t.Errorf("signal %d has a duplicate or empty name %q", s, n)
		}
		seen[n] = true
	}
	if Signal(99).String() != "signal(99)" {
		t.Error("unknown signal name")
	}
}
