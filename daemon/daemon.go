// Package daemon assembles palmd from its parts — configuration, keys,
// sensor, uplink, orchestrator, process hardening and systemd integration —
// so that cmd/palmd stays a thin main.
package daemon

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/palmd/palmd/config"
	"github.com/palmd/palmd/diag"
	"github.com/palmd/palmd/hardening"
	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/internal/cmalloc"
	"github.com/palmd/palmd/keyfile"
	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/gpiohw"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/sensor/v4l2cam"
	"github.com/palmd/palmd/uplink"
	"github.com/palmd/palmd/version"
)

// Options are the hooks around a run.
type Options struct {
	Logger *slog.Logger
	// OnOutcome is called after every presentation (tests collect them).
	OnOutcome func(orchestrator.Presentation)
	// StopWhenScenarioEnds stops the daemon once a simulated scenario has
	// played (demo and tests).
	StopWhenScenarioEnds bool
	// ConfigPath is the file cfg came from, read again on every value
	// from Hangups (SIGHUP; see StopOnSignals); LogLevel is the logger's
	// level, which a reload sets. Without Hangups palmd does not reload.
	ConfigPath string
	Hangups    <-chan struct{}
	LogLevel   *slog.LevelVar
}

// Run runs palmd until ctx is cancelled (SIGTERM/SIGINT) or, with
// StopWhenScenarioEnds, the simulated scenario ends. It tells systemd when
// it is ready, stopping, and alive.
func Run(ctx context.Context, cfg *config.Config, o Options) (err error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := tuneProcess(cfg, log); err != nil {
		return err
	}
	k, err := loadKeys(cfg)
	if err != nil {
		return err
	}
	log.Info("keys loaded", "device", cfg.DeviceID, "matcher_key", k.matcher.ID.String(), "suite", k.matcher.Suite.String())
	live, fileThreshold, err := livenessConfig(cfg)
	if err != nil {
		return err
	}
	if cfg.Liveness.CalibrationFile != "" {
		log.Info("liveness calibration loaded", "file", cfg.Liveness.CalibrationFile, "threshold", live.Threshold, "file_threshold", fileThreshold)
	}
	if cfg.Liveness.Noise != (config.Noise{}) {
		log.Info("liveness noise model configured", "read", cfg.Liveness.Noise.Read, "shot", cfg.Liveness.Noise.Shot, "corr", cfg.Liveness.Noise.Corr)
	}
	for _, w := range livenessWarnings(cfg) {
		log.Warn(w)
	}

	dev, simSensor, err := openSensor(cfg)
	if err != nil {
		return err
	}
	defer func() {
		// The illuminator is switched off first by Device.Close.
		if cerr := dev.Close(); cerr != nil {
			log.Warn("closing sensor", "err", cerr)
		}
		log.Info("sensor closed, illuminator off")
	}()

	var orch *orchestrator.Orchestrator
	up, err := startUplink(cfg, k, log, func() map[string]any {
		if orch == nil {
			return nil
		}
		t := map[string]any{"frames": orch.Frames(), "fps": math.Round(orch.FrameRate()*10) / 10, "outcomes": orch.Outcomes(),
			"state": string(orch.State()), "attacks_refused": orch.Attacks()}
		if why := orch.Degraded(); len(why) > 0 {
			t["degraded"] = why
		}
		if until := orch.LockedUntil(); !until.IsZero() {
			t["locked_until"] = until.UTC().Format(time.RFC3339)
		}
		return t
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if cerr := up.Close(cctx); cerr != nil {
			log.Warn("uplink close", "err", cerr)
		}
		log.Info("uplink closed")
	}()

	var alive atomic.Int64
	alive.Store(time.Now().UnixNano())
	beat := watchdog(log)
	heartbeat := func() {
		alive.Store(time.Now().UnixNano())
		if beat != nil {
			beat()
		}
	}
	var diagSrv *diag.Server
	onStage := func(stage string, d time.Duration) {
		if diagSrv != nil {
			diagSrv.ObserveStage(stage, d)
		}
	}
	seq, err := openSequence(cfg.StateDir)
	if err != nil {
		return err
	}
	sealer := &protocol.Sealer{DeviceID: cfg.DeviceID, DeviceKey: k.device, Matcher: k.matcher, Lifetime: cfg.MQTT.EnvelopeLifetime.D(),
		Sequence: seq, ClockSynced: clockSynced}
	orch, err = orchestrator.New(dev, sealer, up, orchestrator.Config{
		IlluminatorLevel: cfg.Illuminator.Level, Burst: cfg.Capture.Burst, CaptureFrames: cfg.Capture.MaxFrames,
		Feedback: cfg.Capture.Feedback.D(), LeaveFrames: cfg.Capture.LeaveFrames, Logger: log, Heartbeat: heartbeat,
		OnStage: onStage, Scene: sceneOf(simSensor),
		LivenessOff: cfg.Liveness.Disabled,
		Liveness:    live,
		AttackLimit: orchestrator.AttackLimit{Max: cfg.Liveness.MaxAttacks, Window: cfg.Liveness.AttackWindow.D(), Lockout: cfg.Liveness.Lockout.D()},
	})
	if err != nil {
		return err
	}
	orch.OnOutcome(func(p orchestrator.Presentation) {
		cmalloc.Trim()
		log.Info("presentation", "outcome", string(p.Outcome), "scene", p.Scene, "purpose", p.Purpose.String(),
			"quality", p.Quality, "score", fmt.Sprintf("%.3f", p.Score), "subject", p.Subject,
			"liveness", fmt.Sprintf("%.2f", p.Liveness.Score), "attack", string(p.Attack),
			"in_view_to_result_ms", p.InViewToResult.Milliseconds(), "still_to_result_ms", p.StillToResult.Milliseconds())
		if o.OnOutcome != nil {
			o.OnOutcome(p)
		}
	})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	src := diag.Source{DeviceID: cfg.DeviceID, Orchestrator: orch, Uplink: up, Camera: dev.Camera,
		Illuminator: dev.Illuminator, Alive: func() time.Time { return time.Unix(0, alive.Load()) }}
	if diagSrv, err = serveDiagnostics(runCtx, cfg, src, log); err != nil {
		return err
	}
	if o.StopWhenScenarioEnds && simSensor != nil {
		go stopWhenScenarioEnds(runCtx, simSensor, stop)
	}
	go publishDegraded(runCtx, orch, up, log)
	if o.Hangups != nil {
		level := o.LogLevel
		if level == nil {
			level = new(slog.LevelVar)
		}
		cur := *cfg
		cur.Liveness.Threshold = live.Threshold // the file's, when it came from there
		r := &reloader{path: o.ConfigPath, cur: &cur, level: level, orch: orch, diag: diagSrv, log: log, fileThreshold: fileThreshold}
		go r.loop(runCtx, o.Hangups)
	}
	notify(log, sd.SdNotifyReady)
	log.Info("palmd running", "version", version.Version, "sensor", cfg.Sensor.Kind, "brokers", cfg.MQTT.Brokers)
	err = orch.Run(runCtx)
	notify(log, sd.SdNotifyStopping)
	log.Info("palmd stopping", "outcomes", orch.Outcomes())
	return err
}

// tuneProcess makes the process safe to hold biometric data (no core
// dumps, memory locked when configured) and bounds OpenCV's C heap.
func tuneProcess(cfg *config.Config, log *slog.Logger) error {
	if err := hardening.DisableCoreDumps(); err != nil {
		log.Warn("core dumps could not be disabled", "err", err)
	}
	// OpenCV allocates from glibc's malloc: bound its arenas (one per
	// thread by default) before the pipeline's threads start, and hand
	// free pages back after each presentation (internal/memreport).
	if err := cmalloc.LimitArenas(cmalloc.DefaultArenas); err != nil {
		log.Warn("malloc arenas not bounded", "err", err)
	}
	if cfg.Security.LockMemory {
		return hardening.LockMemory()
	}
	return nil
}

// keys are the terminal's keys, as configured.
type keys struct {
	device          ed25519.PrivateKey
	matcher         *protocol.MatcherPublicKey
	result, command ed25519.PublicKey // command: nil when commands are refused
}

func loadKeys(cfg *config.Config) (k keys, err error) {
	if k.device, err = keyfile.LoadDevicePrivateKey(cfg.Keys.Device); err != nil {
		return k, err
	}
	if k.matcher, err = keyfile.LoadMatcherPublicKey(keyfile.Resolve(cfg.Keys.Matcher)); err != nil {
		return k, err
	}
	if k.result, err = keyfile.LoadDevicePublicKey(keyfile.Resolve(cfg.Keys.Result)); err != nil {
		return k, fmt.Errorf("keys.result: %w", err)
	}
	if cfg.Keys.Command != "" {
		if k.command, err = keyfile.LoadDevicePublicKey(keyfile.Resolve(cfg.Keys.Command)); err != nil {
			return k, fmt.Errorf("keys.command: %w", err)
		}
	}
	return k, nil
}

// livenessConfig is the detector's configuration: the built-in
// calibration, or liveness.calibration_file's norms and (unless
// liveness.threshold is set) its threshold, which it also returns apart
// (0 without a file): what a reloaded configuration that leaves
// liveness.threshold unset means.
func livenessConfig(cfg *config.Config) (lc liveness.Config, fileThreshold float64, err error) {
	lc = liveness.Config{Threshold: cfg.Liveness.Threshold, MinStillFrames: cfg.Liveness.StillFrames, Noise: cfg.Liveness.Noise.Model()}
	if cfg.Liveness.CalibrationFile == "" {
		return lc, 0, nil
	}
	path := keyfile.Resolve(cfg.Liveness.CalibrationFile)
	f, err := os.Open(path)
	if err != nil {
		return lc, 0, fmt.Errorf("liveness.calibration_file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, liveness.MaxCalibrationFileBytes+1))
	if err != nil {
		return lc, 0, fmt.Errorf("liveness.calibration_file: %s: %w", path, err)
	}
	cf, err := liveness.ParseCalibrationFile(data)
	if err != nil {
		return lc, 0, fmt.Errorf("liveness.calibration_file: %s: %w", path, err)
	}
	// Its print_texture norm is on the scale of the noise model its pilot
	// measured against; another model would read every palm off it.
	if run := lc.Noise.OrDefault(); cf.Noise != (liveness.NoiseModel{}) && cf.Noise != run {
		return lc, 0, fmt.Errorf("liveness.calibration_file: %s was measured against camera noise model {read %g, shot %g, corr %g}, and palmd would measure against {read %g, shot %g, corr %g}: set liveness.noise to the pilot's, or calibrate again",
			path, cf.Noise.Read, cf.Noise.Shot, cf.Noise.Corr, run.Read, run.Shot, run.Corr)
	}
	lc.Calibration = cf.Calibration
	if lc.Threshold == 0 {
		lc.Threshold = cf.Threshold
	}
	return lc, cf.Threshold, nil
}

// livenessWarnings says what of the liveness detector's set-up on real
// hardware is still the simulator's: its noise model and its
// calibration, which a terminal model measures on its own camera
// (README, "Running on a real terminal").
func livenessWarnings(cfg *config.Config) []string {
	if cfg.Sensor.Kind != "hardware" || cfg.Liveness.Disabled {
		return nil
	}
	var w []string
	if cfg.Liveness.Noise == (config.Noise{}) {
		w = append(w, "liveness measures fine detail against the simulated camera's noise: measure this camera's (palmctl camera-noise) and set liveness.noise")
	}
	if cfg.Liveness.CalibrationFile == "" {
		w = append(w, "liveness runs on the simulator's calibration: calibrate it on this terminal model's living hands (palmctl liveness-cues, then eval --pad --calibrate) and set liveness.calibration_file")
	}
	return w
}

// startUplink connects to the broker in the background.
func startUplink(cfg *config.Config, k keys, log *slog.Logger, telemetry func() map[string]any) (*uplink.Client, error) {
	ucfg := uplink.Config{
		DeviceID: cfg.DeviceID, BaseTopic: cfg.MQTT.BaseTopic, Brokers: cfg.MQTT.Brokers, Username: cfg.MQTT.Username, Password: cfg.MQTT.Password,
		ResultDeadline: cfg.MQTT.ResultDeadline.D(), OutboxEntries: cfg.MQTT.OutboxEntries,
		TelemetryInterval: cfg.MQTT.TelemetryInterval.D(), ResultKey: k.result, CommandKey: k.command,
		Version: version.Version, Logger: log, Telemetry: telemetry,
	}
	if cfg.MQTT.CA != "" {
		var err error
		if ucfg.TLS, err = keyfile.LoadTLS(cfg.MQTT.CA, cfg.MQTT.Cert, cfg.MQTT.Key); err != nil {
			return nil, err
		}
	}
	up, err := uplink.New(ucfg)
	if err != nil {
		return nil, err
	}
	up.Start()
	return up, nil
}

// serveDiagnostics opens the technicians' port when a token is
// configured (nil server otherwise) and serves it until ctx is done.
func serveDiagnostics(ctx context.Context, cfg *config.Config, src diag.Source, log *slog.Logger) (*diag.Server, error) {
	token := diagToken(cfg, log)
	if token == "" {
		return nil, nil
	}
	srv, err := diag.New(src, token, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Diagnostics.Listen)
	if err != nil {
		return nil, fmt.Errorf("diagnostics.listen %s: %w", cfg.Diagnostics.Listen, err)
	}
	go func() {
		if err := srv.ServeListener(ctx, ln); err != nil {
			log.Error("diagnostics port", "err", err)
		}
	}()
	log.Info("diagnostics port listening", "addr", ln.Addr().String())
	return srv, nil
}

// stopWhenScenarioEnds calls stop once the simulated scenario has played.
func stopWhenScenarioEnds(ctx context.Context, s *sim.Sensor, stop func()) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.Camera.Ended() {
				stop()
				return
			}
		}
	}
}

// openSequence checks the state folder as sealing will use it (readable
// bound, writable folder) so that a terminal that could not seal fails at
// start, naming the folder.
func openSequence(dir string) (protocol.SequenceFile, error) {
	f := protocol.SequenceFile{Path: filepath.Join(dir, "sequence")}
	if _, _, err := f.Load(); err != nil {
		return f, fmt.Errorf("state_dir %s: %w", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return f, fmt.Errorf("state_dir %s: not writable (systemd: StateDirectory=palmd): %w", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return f, nil
}

// diagToken returns the diagnostics token ($PALMD_DIAG_TOKEN, else the
// token file or credential), or "" (port disabled) when there is none.
func diagToken(cfg *config.Config, log *slog.Logger) string {
	if t := strings.TrimSpace(os.Getenv("PALMD_DIAG_TOKEN")); t != "" {
		return t
	}
	if cfg.Diagnostics.TokenFile == "" {
		log.Warn("diagnostics port disabled: no token (diagnostics.token_file or $PALMD_DIAG_TOKEN)")
		return ""
	}
	b, err := keyfile.ReadSecret(keyfile.Resolve(cfg.Diagnostics.TokenFile))
	if err != nil {
		log.Warn("diagnostics port disabled", "err", err)
		return ""
	}
	defer clear(b)
	return strings.TrimSpace(string(b))
}

// sceneOf labels presentations with the simulator's script, when there is
// one.
func sceneOf(s *sim.Sensor) func() string {
	if s == nil {
		return nil
	}
	return func() string {
		_, m := s.Camera.Truth()
		return m.Label
	}
}

// openSensor builds the configured sensor.
func openSensor(cfg *config.Config) (*sensor.Device, *sim.Sensor, error) {
	limits := sensor.GuardLimits{MaxOnTime: cfg.Illuminator.MaxOn.D(), MaxDuty: cfg.Illuminator.MaxDuty, DutyWindow: cfg.Illuminator.DutyWindow.D()}
	switch cfg.Sensor.Kind {
	case "sim":
		s := cfg.Sensor.Sim
		var scen *sim.Scenario
		if s.Scenario != "" {
			f, err := os.Open(s.Scenario)
			if err != nil {
				return nil, nil, fmt.Errorf("sensor.sim.scenario: %w", err)
			}
			scen, err = sim.ParseScenario(f)
			f.Close()
			if err != nil {
				return nil, nil, fmt.Errorf("sensor.sim.scenario %s: %w", s.Scenario, err)
			}
		}
		ss, err := sim.New(sim.Config{Width: s.Width, Height: s.Height, FPS: s.FPS, Realtime: *s.Realtime, Seed: s.Seed, Scenario: scen, Limits: limits})
		if err != nil {
			return nil, nil, err
		}
		return ss.Device(), ss, nil
	case "hardware":
		h := cfg.Sensor.Hardware
		// The camera first: a terminal without one fails at once, with
		// the device in the message.
		cam, err := v4l2cam.Open(v4l2cam.Config{Device: h.Camera, Width: h.Width, Height: h.Height, FPS: h.FPS,
			Exposure: h.Exposure.D(), Gain: h.Gain})
		if err != nil {
			return nil, nil, fmt.Errorf("sensor.hardware.camera: %w", err)
		}
		if err := gpiohw.Init(); err != nil {
			cam.Close()
			return nil, nil, err
		}
		ill, pres, ind, err := gpiohw.Open(gpiohw.Lines{Illuminator: h.IlluminatorLine, PWM: h.IlluminatorPWM,
			Presence: h.PresenceLine, GreenLED: h.GreenLED, RedLED: h.RedLED, Buzzer: h.Buzzer}, limits)
		if err != nil {
			cam.Close()
			return nil, nil, err
		}
		dev := &sensor.Device{Camera: cam, Illuminator: ill, Indicator: ind}
		if pres != nil {
			dev.Presence = pres
		}
		return dev, nil, nil
	}
	return nil, nil, fmt.Errorf("sensor.kind %q", cfg.Sensor.Kind)
}

func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("sd_notify", "state", state, "err", err)
	}
}

// watchdog returns a heartbeat that pings systemd's watchdog at half its
// interval, from the main loop: if the pipeline wedges, the pings stop and
// systemd restarts palmd.
func watchdog(log *slog.Logger) func() {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return nil
	}
	var mu sync.Mutex
	var last time.Time
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) >= interval/2 {
			last = time.Now()
			notify(log, sd.SdNotifyWatchdog)
		}
	}
}

// degradedPoll is how often the orchestrator's health is looked at for
// the retained status.
const degradedPoll = time.Second

// publishDegraded keeps the retained status "degraded" (with why) while
// the camera or the illuminator fails, and "online" once they work,
// logging each change.
func publishDegraded(ctx context.Context, orch *orchestrator.Orchestrator, up *uplink.Client, log *slog.Logger) {
	t := time.NewTicker(degradedPoll)
	defer t.Stop()
	// A change is a part failing or working again; a failing part's
	// message may differ from one attempt to the next without being news.
	parts := func(why []string) []string {
		var p []string
		for _, w := range why {
			part, _, _ := strings.Cut(w, ":")
			p = append(p, part)
		}
		return p
	}
	var last []string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		why := orch.Degraded()
		if slices.Equal(parts(why), parts(last)) {
			continue
		}
		if len(why) > 0 {
			log.Error("terminal degraded", "problems", why)
		} else {
			log.Info("terminal working again")
		}
		last = why
		up.SetDegraded(why)
	}
}
