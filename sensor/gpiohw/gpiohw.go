// Package gpiohw drives a terminal's GPIO hardware through periph.io (the
// gpiochip character-device driver of periph.io/x/host/v3): the NIR
// illuminator (an output line switching its driver transistor, and
// optionally a /sys/class/pwm channel for its level), the presence input
// (proximity sensor or break-beam, debounced, with edge waits) and the
// indicator (green and red LEDs, buzzer). Lines are found by name
// (gpioreg.ByName), as the configuration gives them.
//
// The illuminator is only ever exposed wrapped in sensor.GuardedIlluminator,
// which enforces the eye-safety limits and switches it off on Close.
package gpiohw

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpioutil"
	"periph.io/x/host/v3"

	"github.com/palmd/palmd/sensor"
)

// Lines names the GPIO lines of a terminal (empty: not fitted).
type Lines struct {
	Illuminator string
	// PWM is a /sys/class/pwm/pwmchipN/pwmM directory (already exported)
	// that sets the illuminator's level; empty: on/off only.
	PWM      string
	Presence string
	GreenLED string
	RedLED   string
	Buzzer   string
}

// Init loads periph's host drivers (the gpiochip driver on Linux).
func Init() error {
	if _, err := host.Init(); err != nil {
		return fmt.Errorf("gpiohw: periph host init: %w", err)
	}
	return nil
}

func byName(name string) (gpio.PinIO, error) {
	p := gpioreg.ByName(name)
	if p == nil {
		return nil, fmt.Errorf("gpiohw: no GPIO line named %q (see gpioinfo)", name)
	}
	return p, nil
}

// Open finds the lines and returns the terminal's GPIO parts. The
// illuminator is off when Open returns. Presence is nil when not fitted.
func Open(l Lines, limits sensor.GuardLimits) (*sensor.GuardedIlluminator, *Presence, *Indicator, error) {
	if l.Illuminator == "" {
		return nil, nil, nil, errors.New("gpiohw: the illuminator line is required")
	}
	pin, err := byName(l.Illuminator)
	if err != nil {
		return nil, nil, nil, err
	}
	var pwm *PWM
	if l.PWM != "" {
		if pwm, err = OpenPWM(l.PWM, 20*time.Microsecond); err != nil {
			return nil, nil, nil, err
		}
	}
	ill, err := sensor.NewGuardedIlluminator(&Light{Pin: pin, PWM: pwm}, limits)
	if err != nil {
		return nil, nil, nil, err
	}
	var pres *Presence
	if l.Presence != "" {
		p, err := byName(l.Presence)
		if err != nil {
			ill.Close()
			return nil, nil, nil, err
		}
		if pres, err = NewPresence(p, gpio.High, 5*time.Millisecond, 50*time.Millisecond); err != nil {
			ill.Close()
			return nil, nil, nil, err
		}
	}
	ind := &Indicator{}
	for _, x := range []struct {
		name string
		dst  *gpio.PinOut
	}{{l.GreenLED, &ind.Green}, {l.RedLED, &ind.Red}, {l.Buzzer, &ind.Buzzer}} {
		if x.name == "" {
			continue
		}
		p, err := byName(x.name)
		if err != nil {
			ill.Close()
			return nil, nil, nil, err
		}
		*x.dst = p
	}
	if err := ind.Show(sensor.SignalIdle); err != nil {
		ill.Close()
		return nil, nil, nil, err
	}
	return ill, pres, ind, nil
}

// ForceOff drives the illuminator line low (and disables its PWM
// channel), and the indicator's lines low, without any other state: what
// systemd runs after palmd has stopped for whatever reason (ExecStopPost=,
// "palmd -illuminator-off"), SIGKILL and crashes included, when palmd's own
// light-off path did not run. Every line is tried; the errors are joined.
func ForceOff(l Lines) error {
	if l.Illuminator == "" {
		return errors.New("gpiohw: the illuminator line is required")
	}
	var errs []error
	if pin, err := byName(l.Illuminator); err != nil {
		errs = append(errs, err)
	} else if err := pin.Out(gpio.Low); err != nil {
		errs = append(errs, fmt.Errorf("gpiohw: illuminator line %s: %w", l.Illuminator, err))
	}
	if l.PWM != "" {
		if _, err := os.Stat(filepath.Join(l.PWM, "duty_cycle")); err == nil {
			p := &PWM{dir: l.PWM}
			errs = append(errs, p.write("duty_cycle", "0"), p.write("enable", "0"))
		}
	}
	for _, name := range []string{l.GreenLED, l.RedLED, l.Buzzer} {
		if name == "" {
			continue
		}
		if pin, err := byName(name); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, pin.Out(gpio.Low))
		}
	}
	return errors.Join(errs...)
}

// Light is the raw illuminator: an output line and an optional PWM level.
// It implements sensor.LightDriver; use it only through the guard.
type Light struct {
	Pin gpio.PinOut
	PWM *PWM
}

// SetLevel implements sensor.LightDriver.
func (l *Light) SetLevel(percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("gpiohw: level %d outside 0..100", percent)
	}
	if percent == 0 {
		err := l.Pin.Out(gpio.Low)
		if l.PWM != nil {
			err = errors.Join(err, l.PWM.Set(0))
		}
		return err
	}
	if l.PWM != nil {
		if err := l.PWM.Set(percent); err != nil {
			_ = l.Pin.Out(gpio.Low)
			return err
		}
	}
	return l.Pin.Out(gpio.High)
}

// Close implements sensor.LightDriver: the line is driven low.
func (l *Light) Close() error { return l.SetLevel(0) }

// PWM is a sysfs PWM channel (/sys/class/pwm/pwmchipN/pwmM). Its
// attributes are kernel controls, not files: nothing is stored.
type PWM struct {
	dir    string
	period time.Duration
}

// OpenPWM prepares an exported channel with the given period.
func OpenPWM(dir string, period time.Duration) (*PWM, error) {
	p := &PWM{dir: dir, period: period}
	if _, err := os.Stat(filepath.Join(dir, "duty_cycle")); err != nil {
		return nil, fmt.Errorf("gpiohw: PWM channel %s not exported: %w", dir, err)
	}
	if err := p.write("period", strconv.FormatInt(period.Nanoseconds(), 10)); err != nil {
		return nil, err
	}
	return p, p.Set(0)
}

func (p *PWM) write(attr, v string) error {
	f, err := os.OpenFile(filepath.Join(p.dir, attr), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("gpiohw: %w", err)
	}
	_, err = f.WriteString(v)
	return errors.Join(err, f.Close())
}

// Set sets the duty cycle to percent and enables the channel (0 disables).
func (p *PWM) Set(percent int) error {
	duty := p.period.Nanoseconds() * int64(percent) / 100
	if err := p.write("duty_cycle", strconv.FormatInt(duty, 10)); err != nil {
		return err
	}
	en := "0"
	if percent > 0 {
		en = "1"
	}
	return p.write("enable", en)
}

// Presence is the wake-up input, debounced (gpioutil.Debounce). It
// implements sensor.PresenceInput.
type Presence struct {
	pin    gpio.PinIO
	active gpio.Level
	closed atomic.Bool
}

// NewPresence configures pin as a debounced input that reads active when
// something is in range.
func NewPresence(pin gpio.PinIO, active gpio.Level, denoise, debounce time.Duration) (*Presence, error) {
	d, err := gpioutil.Debounce(pin, denoise, debounce, gpio.BothEdges)
	if err != nil {
		return nil, fmt.Errorf("gpiohw: presence input: %w", err)
	}
	if err := d.In(gpio.PullNoChange, gpio.BothEdges); err != nil {
		return nil, fmt.Errorf("gpiohw: presence input: %w", err)
	}
	return &Presence{pin: d, active: active}, nil
}

// Present implements sensor.PresenceInput.
func (p *Presence) Present() (bool, error) {
	if p.closed.Load() {
		return false, sensor.ErrClosed
	}
	return p.pin.Read() == p.active, nil
}

// WaitForPresence implements sensor.PresenceInput: it waits on edges in
// short slices so that cancellation and Close are noticed within 100 ms.
func (p *Presence) WaitForPresence(ctx context.Context) error {
	for {
		ok, err := p.Present()
		if err != nil || ok {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		p.pin.WaitForEdge(100 * time.Millisecond)
	}
}

// Close implements sensor.PresenceInput.
func (p *Presence) Close() error {
	p.closed.Store(true)
	return p.pin.Halt()
}

// Indicator shows signals on a green and a red LED and a buzzer. It
// implements sensor.Indicator.
type Indicator struct {
	Green, Red, Buzzer gpio.PinOut

	mu     sync.Mutex
	closed bool
	beep   *time.Timer
}

// pattern is what each signal lights: green, red, and a beep length.
var pattern = map[sensor.Signal]struct {
	green, red bool
	beep       time.Duration
}{
	sensor.SignalIdle:          {false, false, 0},
	sensor.SignalScanning:      {true, true, 0},
	sensor.SignalHoldStill:     {true, true, 0},
	sensor.SignalMoveCloser:    {true, true, 0},
	sensor.SignalMoveAway:      {true, true, 0},
	sensor.SignalCenter:        {true, true, 0},
	sensor.SignalSpreadFingers: {true, true, 0},
	sensor.SignalSuccess:       {true, false, 80 * time.Millisecond},
	sensor.SignalFailure:       {false, true, 400 * time.Millisecond},
	sensor.SignalRetry:         {false, true, 80 * time.Millisecond},
	sensor.SignalError:         {false, true, time.Second},
}

func set(p gpio.PinOut, on bool) error {
	if p == nil {
		return nil
	}
	l := gpio.Low
	if on {
		l = gpio.High
	}
	return p.Out(l)
}

// Show implements sensor.Indicator. A beep is switched off by a timer, so
// Show never blocks for its length.
func (i *Indicator) Show(s sensor.Signal) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return sensor.ErrClosed
	}
	pt, ok := pattern[s]
	if !ok {
		return fmt.Errorf("gpiohw: unknown signal %v", s)
	}
	err := errors.Join(set(i.Green, pt.green), set(i.Red, pt.red))
	if i.Buzzer != nil && pt.beep > 0 {
		if i.beep != nil {
			i.beep.Stop()
		}
		err = errors.Join(err, set(i.Buzzer, true))
		i.beep = time.AfterFunc(pt.beep, func() { _ = set(i.Buzzer, false) })
	}
	return err
}

// Close implements sensor.Indicator: everything off.
func (i *Indicator) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return nil
	}
	i.closed = true
	if i.beep != nil {
		i.beep.Stop()
	}
	return errors.Join(set(i.Green, false), set(i.Red, false), set(i.Buzzer, false))
}

var (
	_ sensor.LightDriver   = (*Light)(nil)
	_ sensor.PresenceInput = (*Presence)(nil)
	_ sensor.Indicator     = (*Indicator)(nil)
)
