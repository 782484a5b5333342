package clock

import (
	"testing"
	"time"
)

func TestClocks(t *testing.T) {
	fixed := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		c    Clock
		want func(time.Time) bool
	}{
		{"nil is the system clock", Or(nil), func(now time.Time) bool { return time.Since(now).Abs() < time.Minute }},
		{"Func says its time", Or(Func(func() time.Time { return fixed })), func(now time.Time) bool { return now.Equal(fixed) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if now := tc.c.Now(); !tc.want(now) {
				t.Fatalf("Now() = %v", now)
			}
			fired := make(chan struct{})
			tc.c.AfterFunc(time.Millisecond, func() { close(fired) })
			select {
			case <-fired:
			case <-time.After(5 * time.Second):
				t.Fatal("AfterFunc did not fire")
			}
			stop := tc.c.AfterFunc(time.Hour, func() { t.Error("a stopped timer fired") })
			if !stop() {
				t.Error("stop did not stop a pending timer")
			}
		})
	}
}

// manual is a minimal manual clock for these tests (sensor/sensortest has
// the shared one; it cannot be imported here).
type manual struct {
	now    time.Time
	timers []struct {
		at time.Time
		f  func()
		ok *bool
	}
}

func (m *manual) Now() time.Time { return m.now }
func (m *manual) AfterFunc(d time.Duration, f func()) func() bool {
	ok := true
	m.timers = append(m.timers, struct {
		at time.Time
		f  func()
		ok *bool
	}{m.now.Add(d), f, &ok})
	return func() bool { was := ok; ok = false; return was }
}
func (m *manual) advance(d time.Duration) {
	m.now = m.now.Add(d)
	for i := 0; i < len(m.timers); i++ {
		if t := m.timers[i]; *t.ok && !t.at.After(m.now) {
			*t.ok = false
			t.f()
		}
	}
}

func TestTimerAndTicker(t *testing.T) {
	m := &manual{now: time.Unix(1000, 0)}
	tm := NewTimer(m, time.Second)
	tk := NewTicker(m, time.Second)
	m.advance(500 * time.Millisecond)
	select {
	case <-tm.C:
		t.Fatal("timer fired early")
	case <-tk.C:
		t.Fatal("ticker ticked early")
	default:
	}
	m.advance(600 * time.Millisecond)
	<-tm.C
	<-tk.C
	m.advance(time.Second)
	<-tk.C // ticks again
	tk.Stop()
	m.advance(time.Second)
	select {
	case <-tk.C:
		t.Fatal("tick after Stop")
	default:
	}
	if NewTimer(m, time.Hour).Stop() != true {
		t.Error("Stop of a pending timer")
	}
}
