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
