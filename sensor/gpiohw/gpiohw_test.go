package gpiohw

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/palmd/palmd/sensor"
)

func pin(name string) *gpiotest.Pin {
	return &gpiotest.Pin{N: name, EdgesChan: make(chan gpio.Level, 8)}
}

func TestIlluminatorSwitchesAndIsGuarded(t *testing.T) {
	p := pin("ILLUM")
	ill, err := sensor.NewGuardedIlluminator(&Light{Pin: p}, sensor.GuardLimits{MaxOnTime: 50 * time.Millisecond, MaxDuty: 1, DutyWindow: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if p.Read() != gpio.Low {
		t.Fatal("line not low at start")
	}
	if err := ill.On(100); err != nil || p.Read() != gpio.High {
		t.Fatalf("On: %v, line %v", err, p.Read())
	}
	// The caller forgets to switch it off: the guard does.
	deadline := time.Now().Add(2 * time.Second)
	for p.Read() == gpio.High && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p.Read() != gpio.Low || ill.State().Cutoffs != 1 {
		t.Fatalf("not cut off: line %v state %+v", p.Read(), ill.State())
	}
	_ = ill.On(60)
	if err := ill.Close(); err != nil || p.Read() != gpio.Low {
		t.Fatalf("Close: %v, line %v", err, p.Read())
	}
}

func TestPWMLevel(t *testing.T) {
	dir := t.TempDir() // stands in for /sys/class/pwm/pwmchip0/pwm0
	for _, a := range []string{"period", "duty_cycle", "enable"} {
		if err := os.WriteFile(filepath.Join(dir, a), []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pwm, err := OpenPWM(dir, 20*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	l := &Light{Pin: pin("ILLUM"), PWM: pwm}
	read := func(a string) string { b, _ := os.ReadFile(filepath.Join(dir, a)); return strings.TrimSpace(string(b)) }
	if err := l.SetLevel(25); err != nil {
		t.Fatal(err)
	}
	if read("period") != "20000" || read("duty_cycle") != "5000" || read("enable") != "1" {
		t.Fatalf("pwm at 25%%: period %s duty %s enable %s", read("period"), read("duty_cycle"), read("enable"))
	}
	_ = l.SetLevel(0)
	if read("enable") != "0" || read("duty_cycle") != "0" {
		t.Fatal("pwm not off")
	}
	if _, err := OpenPWM(filepath.Join(dir, "missing"), time.Millisecond); err == nil {
		t.Error("unexported PWM channel accepted")
	}
}

func TestPresenceEdgesAndDebounce(t *testing.T) {
	p := pin("PRESENCE")
	pres, err := NewPresence(p, gpio.High, 0, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := pres.Present(); ok {
		t.Fatal("present with the line low")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if err := pres.WaitForPresence(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with nothing in range: %v", err)
	}
	go func() {
		time.Sleep(30 * time.Millisecond)
		p.EdgesChan <- gpio.High // a hand breaks the beam
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := pres.WaitForPresence(ctx2); err != nil {
		t.Fatalf("edge not seen: %v", err)
	}
	if ok, _ := pres.Present(); !ok {
		t.Fatal("not present after the edge")
	}
	_ = pres.Close()
	if _, err := pres.Present(); !errors.Is(err, sensor.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	if err := pres.WaitForPresence(context.Background()); !errors.Is(err, sensor.ErrClosed) {
		t.Fatalf("wait after Close: %v", err)
	}
}

func TestIndicatorPatterns(t *testing.T) {
	g, r, bz := pin("GREEN"), pin("RED"), pin("BUZZ")
	ind := &Indicator{Green: g, Red: r, Buzzer: bz}
	cases := []struct {
		s          sensor.Signal
		green, red gpio.Level
	}{
		{sensor.SignalIdle, gpio.Low, gpio.Low},
		{sensor.SignalScanning, gpio.High, gpio.High},
		{sensor.SignalSuccess, gpio.High, gpio.Low},
		{sensor.SignalFailure, gpio.Low, gpio.High},
	}
	for _, c := range cases {
		t.Run(c.s.String(), func(t *testing.T) {
			if err := ind.Show(c.s); err != nil {
				t.Fatal(err)
			}
			if g.Read() != c.green || r.Read() != c.red {
				t.Errorf("green %v red %v", g.Read(), r.Read())
			}
		})
	}
	if bz.Read() != gpio.High {
		t.Error("failure did not beep")
	}
	time.Sleep(600 * time.Millisecond)
	if bz.Read() != gpio.Low {
		t.Error("beep did not stop")
	}
	if err := ind.Show(sensor.Signal(99)); err == nil {
		t.Error("unknown signal accepted")
	}
	_ = ind.Show(sensor.SignalSuccess)
	_ = ind.Close()
	if g.Read() != gpio.Low || r.Read() != gpio.Low || bz.Read() != gpio.Low {
		t.Error("Close left something on")
	}
	if err := ind.Show(sensor.SignalIdle); !errors.Is(err, sensor.ErrClosed) {
		t.Error("Show after Close")
	}
}

func TestOpenByName(t *testing.T) {
	names := map[string]*gpiotest.Pin{}
	for _, n := range []string{"T_ILLUM", "T_PRES", "T_GREEN", "T_RED"} {
		names[n] = pin(n)
		if err := gpioreg.Register(names[n]); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = gpioreg.Unregister(n) })
	}
	ill, pres, ind, err := Open(Lines{Illuminator: "T_ILLUM", Presence: "T_PRES", GreenLED: "T_GREEN", RedLED: "T_RED"}, sensor.GuardLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ill.On(100); err != nil || names["T_ILLUM"].Read() != gpio.High {
		t.Fatal("illuminator line not driven")
	}
	dev := &sensor.Device{Illuminator: ill, Presence: pres, Indicator: ind}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if names["T_ILLUM"].Read() != gpio.Low {
		t.Fatal("illuminator on after Close")
	}
	if _, _, _, err := Open(Lines{Illuminator: "NOPE"}, sensor.GuardLimits{}); err == nil || !strings.Contains(err.Error(), `"NOPE"`) {
		t.Fatalf("missing line: %v", err)
	}
	if _, _, _, err := Open(Lines{}, sensor.GuardLimits{}); err == nil {
		t.Fatal("no illuminator line accepted")
	}
}

// TestForceOff: what ExecStopPost= runs after palmd died with the light on
// finds the lines by name and drives them low.
func TestForceOff(t *testing.T) {
	names := map[string]*gpiotest.Pin{}
	for _, n := range []string{"F_ILLUM", "F_GREEN", "F_RED"} {
		names[n] = pin(n)
		names[n].L = gpio.High // as a killed palmd left them
		if err := gpioreg.Register(names[n]); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = gpioreg.Unregister(n) })
	}
	dir := t.TempDir()
	for a, v := range map[string]string{"period": "20000", "duty_cycle": "20000", "enable": "1"} {
		if err := os.WriteFile(filepath.Join(dir, a), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := ForceOff(Lines{Illuminator: "F_ILLUM", PWM: dir, GreenLED: "F_GREEN", RedLED: "F_RED"}); err != nil {
		t.Fatal(err)
	}
	for n, p := range names {
		if p.Read() != gpio.Low {
			t.Errorf("%s still high", n)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "enable")); strings.TrimSpace(string(b)) != "0" {
		t.Errorf("PWM still enabled: %q", b)
	}
	if err := ForceOff(Lines{Illuminator: "F_MISSING", GreenLED: "F_GREEN"}); err == nil || !strings.Contains(err.Error(), "F_MISSING") {
		t.Errorf("a missing line: %v", err)
	}
}
