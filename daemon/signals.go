package daemon

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/palmd/palmd/config"
	"github.com/palmd/palmd/sensor/gpiohw"
)

// StopSignals are the signals on which palmd stops through its light-off
// path. Every signal whose default action ends the process and that can
// be caught is here: SIGQUIT and SIGABRT (what systemd's watchdog sends)
// would otherwise dump goroutine stacks and exit with the illuminator in
// whatever state it was; SIGUSR1/2 would end the process outright.
// SIGKILL cannot be caught: the unit's ExecStopPost= (IlluminatorOff)
// covers it.
var StopSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGABRT, syscall.SIGUSR1, syscall.SIGUSR2}

// StopOnSignals returns a context cancelled on the first of StopSignals,
// logging which, and a channel that receives a value for every SIGHUP
// (several before one is handled count as one): Options.Hangups, on which
// palmd reloads what it can. SIGHUP is caught from here on, so that it
// never ends the process. Later stop signals while stopping are logged
// and otherwise ignored: the light-off path is already running, and
// systemd's SIGKILL after TimeoutStopSec= is the backstop.
func StopOnSignals(parent context.Context, log *slog.Logger) (context.Context, context.CancelFunc, <-chan struct{}) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 4)
	hangups := make(chan struct{}, 1)
	signal.Notify(sigs, append([]os.Signal{syscall.SIGHUP}, StopSignals...)...)
	go func() {
		stopping := false
		for {
			select {
			case <-parent.Done():
				return
			case s := <-sigs:
				switch {
				case s == syscall.SIGHUP:
					select {
					case hangups <- struct{}{}:
					default: // a reload is already pending
					}
				case stopping:
					log.Warn("already stopping", "signal", s.String())
				default:
					stopping = true
					log.Info("stopping", "signal", s.String())
					cancel()
				}
			}
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }, hangups
}

// IlluminatorOff drives the configured illuminator and indicator lines
// off (gpiohw.ForceOff). systemd runs it as ExecStopPost= after palmd
// has stopped however it stopped, SIGKILL included; palmd's own path
// switches the light off on every exit it sees. With the simulated sensor
// there is nothing to switch.
func IlluminatorOff(cfg *config.Config, log *slog.Logger) error {
	if cfg.Sensor.Kind != "hardware" {
		log.Info("illuminator off: simulated sensor, no lines to drive")
		return nil
	}
	h := cfg.Sensor.Hardware
	if err := gpiohw.Init(); err != nil {
		return err
	}
	if err := gpiohw.ForceOff(gpiohw.Lines{Illuminator: h.IlluminatorLine, PWM: h.IlluminatorPWM,
		GreenLED: h.GreenLED, RedLED: h.RedLED, Buzzer: h.Buzzer}); err != nil {
		return err
	}
	log.Info("illuminator off", "line", h.IlluminatorLine)
	return nil
}

// ExportPWM readies the configured PWM channel of the illuminator's level
// for palmd's user (gpiohw.ExportPWM): systemd runs it as root before
// palmd starts. Without a hardware sensor or a PWM channel it does
// nothing.
func ExportPWM(cfg *config.Config) error {
	h := cfg.Sensor.Hardware
	if cfg.Sensor.Kind != "hardware" || h.IlluminatorPWM == "" {
		return nil
	}
	return gpiohw.ExportPWM(h.IlluminatorPWM, gpiohw.PWMGroup)
}
