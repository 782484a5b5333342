package sensor_test

import (
	"errors"
	"testing"
	"time"

	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sensortest"
)

func TestGuardCutsOffAfterMaxOnTime(t *testing.T) {
	clk := sensortest.NewClock()
	drv := &sensortest.Light{}
	g, err := sensor.NewGuardedIlluminator(drv, sensor.GuardLimits{MaxOnTime: 2 * time.Second, MaxDuty: 0.5, DutyWindow: time.Minute, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if drv.Level() != 0 {
		t.Fatal("illuminator not switched off at start")
	}
	if err := g.On(80); err != nil {
		t.Fatal(err)
	}
	clk.Advance(1999 * time.Millisecond)
	if !g.State().On || drv.Level() != 80 {
		t.Fatal("cut off too early")
	}
	clk.Advance(time.Millisecond)
	st := g.State()
	if st.On || drv.Level() != 0 || st.Cutoffs != 1 {
		t.Fatalf("not cut off after max on-time: state %+v, level %d", st, drv.Level())
	}
	if st.TotalOn != 2*time.Second {
		t.Errorf("total on-time %v, want 2s", st.TotalOn)
	}
}

func TestGuardOffCancelsCutoff(t *testing.T) {
	clk := sensortest.NewClock()
	drv := &sensortest.Light{}
	g, _ := sensor.NewGuardedIlluminator(drv, sensor.GuardLimits{MaxOnTime: time.Second, Clock: clk})
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
	clk := sensortest.NewClock()
	drv := &sensortest.Light{}
	g, _ := sensor.NewGuardedIlluminator(drv, sensor.GuardLimits{MaxOnTime: 5 * time.Second, MaxDuty: 0.25, DutyWindow: 20 * time.Second, Clock: clk})
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
	if err := g.On(100); !errors.Is(err, sensor.ErrOnTimeLimit) {
		t.Fatalf("On with the budget spent: got %v, want sensor.ErrOnTimeLimit", err)
	}
	if drv.Level() != 0 {
		t.Fatal("light on although refused")
	}
	clk.Advance(20 * time.Second) // the window slides past the pulses
	if err := g.On(100); err != nil {
		t.Fatalf("budget not restored after the window: %v", err)
	}
}

func TestGuardCloseSwitchesOff(t *testing.T) {
	clk := sensortest.NewClock()
	drv := &sensortest.Light{}
	g, _ := sensor.NewGuardedIlluminator(drv, sensor.GuardLimits{Clock: clk})
	_ = g.On(100)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if drv.Level() != 0 || !drv.Closed() {
		t.Fatal("Close left the light on or the driver open")
	}
	if err := g.On(10); !errors.Is(err, sensor.ErrClosed) {
		t.Fatalf("On after Close: %v", err)
	}
	clk.Advance(time.Hour) // a stale timer must not touch a closed driver
}

func TestGuardDriverFailureLeavesLightOff(t *testing.T) {
	drv := &sensortest.Light{}
	g, _ := sensor.NewGuardedIlluminator(drv, sensor.GuardLimits{Clock: sensortest.NewClock()})
	drv.Fail = errors.New("i2c write failed")
	if err := g.On(100); err == nil {
		t.Fatal("driver failure not reported")
	}
	if g.State().On || drv.Level() != 0 {
		t.Fatal("light not forced off after a failed switch-on")
	}
}

func TestGuardLimitsValidation(t *testing.T) {
	for _, l := range []sensor.GuardLimits{
		{MaxOnTime: -time.Second},
		{MaxDuty: 1.5},
		{MaxOnTime: time.Minute, DutyWindow: time.Second},
	} {
		if _, err := sensor.NewGuardedIlluminator(&sensortest.Light{}, l); err == nil {
			t.Errorf("limits %+v accepted", l)
		}
	}
	for _, level := range []int{0, -1, 101} {
		g, _ := sensor.NewGuardedIlluminator(&sensortest.Light{}, sensor.GuardLimits{Clock: sensortest.NewClock()})
		if err := g.On(level); err == nil {
			t.Errorf("level %d accepted", level)
		}
	}
}

func TestFrameValidate(t *testing.T) {
	tests := []struct {
		name string
		f    sensor.Frame
		ok   bool
	}{
		{"good", sensor.Frame{Width: 4, Height: 2, Pix: make([]byte, 8)}, true},
		{"short", sensor.Frame{Width: 4, Height: 2, Pix: make([]byte, 7)}, false},
		{"zero", sensor.Frame{}, false},
		{"negative", sensor.Frame{Width: -4, Height: -2, Pix: make([]byte, 8)}, false},
		{"huge", sensor.Frame{Width: sensor.MaxFrameSide + 1, Height: 1, Pix: make([]byte, sensor.MaxFrameSide+1)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.f.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

func TestSignalNames(t *testing.T) {
	seen := map[string]bool{}
	for s := sensor.SignalIdle; s <= sensor.SignalError; s++ {
		n := s.String()
		if seen[n] || n == "" {
			t.Errorf("signal %d has a duplicate or empty name %q", s, n)
		}
		seen[n] = true
	}
	if sensor.Signal(99).String() != "signal(99)" {
		t.Error("unknown signal name")
	}
}
