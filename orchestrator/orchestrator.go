// Package orchestrator is the per-presentation state machine of the
// terminal: idle → presence → capture (burst, quality gates, guidance) →
// liveness → extract → seal → publish → await result → feedback →
// cool-down → idle. An attack (imaging/liveness) ends the presentation red
// before anything is extracted or sealed.
// It drives the sensor, runs the imaging pipeline, seals templates and hands
// them to the uplink, and shows the outcome on the indicator. It owns the
// illuminator's safety on every exit path: the light is off when Run returns,
// whatever the reason, panics included.
package orchestrator

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/palmd/palmd/clock"
	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/uplink"
)

// Uplink is what the orchestrator needs from the link to the matcher
// (uplink.Client implements it).
type Uplink interface {
	Submit(ctx context.Context, env []byte, hdr protocol.Header) (protocol.Result, error)
	Commands() <-chan protocol.Command
	// AckCommand answers a command taken from Commands: accepted, or
	// refused with a reason (a stable word); detail adds figures.
	AckCommand(cmd protocol.Command, accepted bool, reason, detail string)
}

// Config tunes a presentation. Zero values take the defaults noted.
type Config struct {
	// IlluminatorLevel is the NIR level during presence pulses and
	// capture, 1–100; 100.
	IlluminatorLevel int
	// Burst is how many frames that pass every gate are collected; the
	// best wins. 3.
	Burst int
	// CaptureFrames bounds the frames examined per presentation before
	// giving up (about 2 s at 30 fps); 60.
	CaptureFrames int
	// FrameTimeout is the deadline for each camera frame; 1 s.
	FrameTimeout time.Duration
	// Feedback is how long the outcome stays on the indicator; 1.5 s.
	Feedback time.Duration
	// LeaveFrames is how many frames the hand must be gone before the
	// next presentation (cool-down); 4.
	LeaveFrames int
	Gates       imaging.Config
	Presence    imaging.PresenceConfig
	Logger      *slog.Logger
	// Heartbeat, when set, is called from the main loop at least once per
	// frame, and every 500 ms (from another goroutine) while the loop
	// waits for a result, but not past the capture's expiry: the systemd
	// watchdog is fed from it, so a wedged pipeline gets the process
	// restarted. It must be safe for concurrent use.
	Heartbeat func()
	// OnStage, when set, receives the duration of each pipeline stage
	// ("extract", "seal", "result") for the latency histograms.
	OnStage func(stage string, d time.Duration)
	// Scene, when set, names what is in front of the sensor (the
	// simulator's script label) for the presentation record; never
	// anything biometric.
	Scene func() string
	// Clock tells the time for stage timings, records, feedback, the
	// watchdog's beats and the stop grace; nil means the system clock.
	// (Waits on the camera and the presence input run on real time: they
	// are the hardware's.)
	Clock clock.Clock
	// StopGrace is how long a stop request waits for the result of a
	// capture already sealed and sent: the shopper is waiting for it, and
	// the matcher decides on it either way; DefaultStopGrace.
	StopGrace time.Duration
	// Liveness configures presentation-attack detection (zero value: the
	// calibrated defaults). LivenessOff turns it off — every presentation
	// is then taken for a living hand; only for a terminal model whose
	// camera is not calibrated yet, never the default.
	Liveness    liveness.Config
	LivenessOff bool
	// AttackLimit locks the terminal after repeated attacks.
	AttackLimit AttackLimit
}

// AttackLimit rate-limits attacks: more than Max within Window lock the
// terminal for Lockout — every presentation is refused red without a
// capture — and the lockout is counted and reported in telemetry, so an
// attacker cannot iterate on an instrument at the terminal.
type AttackLimit struct {
	Max     int
	Window  time.Duration
	Lockout time.Duration
}

// Defaults of AttackLimit.
const (
	DefaultAttackMax     = 3
	DefaultAttackWindow  = 5 * time.Minute
	DefaultAttackLockout = 2 * time.Minute
)

// DefaultStopGrace bounds the wait for a pending result when stopping; the
// unit's TimeoutStopSec= leaves room for it.
const DefaultStopGrace = 5 * time.Second

// Defaults of Config.
const (
	DefaultIlluminatorLevel = 100
	DefaultBurst            = 3
	DefaultCaptureFrames    = 60
	DefaultFeedback         = 1500 * time.Millisecond
	DefaultLeaveFrames      = 4
)

func (c *Config) defaults() {
	if c.IlluminatorLevel == 0 {
		c.IlluminatorLevel = DefaultIlluminatorLevel
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.CaptureFrames == 0 {
		c.CaptureFrames = DefaultCaptureFrames
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = time.Second
	}
	if c.Feedback == 0 {
		c.Feedback = DefaultFeedback
	}
	if c.LeaveFrames == 0 {
		c.LeaveFrames = DefaultLeaveFrames
	}
	if c.Gates == (imaging.Config{}) {
		c.Gates = imaging.DefaultConfig()
	}
	if c.Presence == (imaging.PresenceConfig{}) {
		c.Presence = imaging.DefaultPresenceConfig()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.StopGrace == 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.AttackLimit.Max == 0 {
		c.AttackLimit.Max = DefaultAttackMax
	}
	if c.AttackLimit.Window == 0 {
		c.AttackLimit.Window = DefaultAttackWindow
	}
	if c.AttackLimit.Lockout == 0 {
		c.AttackLimit.Lockout = DefaultAttackLockout
	}
	c.Clock = clock.Or(c.Clock)
}

// Outcome is how a presentation ended.
type Outcome string

// The outcomes.
const (
	OutcomeMatch     Outcome = "match"
	OutcomeNoMatch   Outcome = "no_match"
	OutcomeEnrolled  Outcome = "enrolled"
	OutcomeRetry     Outcome = "retry"      // matcher asked for another try
	OutcomeNoCapture Outcome = "no_capture" // no frame passed the gates
	OutcomeExpired   Outcome = "expired"    // capture not delivered in time
	OutcomeNoResult  Outcome = "no_result"  // delivered, no answer in time
	OutcomeError     Outcome = "error"
	// OutcomeAbandoned: palmd stopped while the capture awaited its
	// result, and the result did not come within StopGrace. The matcher
	// may still decide on it; the record (with its request id) is how
	// the two are reconciled.
	OutcomeAbandoned Outcome = "abandoned"
	// OutcomeClock: nothing was sealed because the clock is implausible
	// (protocol.ErrClock; the reason is in LastError).
	OutcomeClock Outcome = "clock"
	// OutcomeAttack: liveness detection refused the presentation as an
	// attack (the cue is in Presentation.Attack); nothing was extracted,
	// sealed or sent.
	OutcomeAttack Outcome = "attack"
	// OutcomeLockedOut: refused without a capture because the terminal
	// is locked after repeated attacks (AttackLimit).
	OutcomeLockedOut Outcome = "locked_out"
)

// Presentation is the record of one presentation (no biometric data).
type Presentation struct {
	Outcome Outcome
	// Gates counts the frames that failed each gate.
	Gates   map[string]int
	Quality int
	Purpose protocol.Purpose
	Score   float64
	// StillToResult is the time from the first good frame to the
	// result; InViewToResult from the first frame the hand (or the
	// instrument) was seen: the whole interaction the shopper lives
	// through.
	StillToResult, InViewToResult time.Duration
	// Liveness is the presentation-attack detector's decision (cue
	// scores, no image); Attack names the cue that refused an attack.
	Liveness  liveness.Decision
	Attack    liveness.Cue
	RequestID string
	// Scene is Config.Scene's label at the first good frame.
	Scene string
	// Subject is the matcher's opaque gallery id for a match or an
	// enrolment.
	Subject string
	// At is when the result was shown (the orchestrator's clock).
	At time.Time
}

// Tunables are the settings that may change while the orchestrator runs
// (palmd reloads them on SIGHUP); zero values take the defaults.
type Tunables struct {
	LivenessThreshold float64
	AttackLimit       AttackLimit
}

// Retune applies t from the next presentation on.
func (o *Orchestrator) Retune(t Tunables) {
	c := Config{Liveness: liveness.Config{Threshold: t.LivenessThreshold}, AttackLimit: t.AttackLimit}
	c.defaults()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cfg.Liveness.Threshold = c.Liveness.Threshold // 0: the detector's default
	o.cfg.AttackLimit = c.AttackLimit
}

// Stages names the pipeline stages Config.OnStage reports.
func Stages() []string { return []string{"assess", "liveness", "extract", "seal", "result"} }

// AllOutcomes lists every outcome, for metrics that show each from the start.
func AllOutcomes() []Outcome {
	return []Outcome{OutcomeMatch, OutcomeNoMatch, OutcomeEnrolled, OutcomeRetry, OutcomeNoCapture, OutcomeExpired,
		OutcomeNoResult, OutcomeError, OutcomeAbandoned, OutcomeClock, OutcomeAttack, OutcomeLockedOut}
}

// State names what the terminal is doing, for diagnostics.
type State string

// The states.
const (
	StateIdle        State = "idle"
	StateCapture     State = "capture"
	StateSeal        State = "seal"
	StateAwaitResult State = "await_result"
	StateFeedback    State = "feedback"
	StateCooldown    State = "cooldown"
	StateStopped     State = "stopped"
)

// enrolment is an enrolment session started by a command.
type enrolment struct {
	session   [16]byte
	remaining int
}

// Orchestrator runs the terminal. Create with New, then Run.
type Orchestrator struct {
	dev    *sensor.Device
	sealer *protocol.Sealer
	up     Uplink
	cfg    Config

	pres     *imaging.PresenceDetector
	ext      *imaging.Extractor
	pad      *liveness.Detector
	occluder *liveness.Occluder
	// inView is when the hand now in view was first seen (zero when
	// none); occluded reports that the idle check found an instrument
	// that reflects no NIR (a screen) instead of a hand.
	inView   time.Time
	occluded bool
	// sheet holds the idle checks' measurements of what surrounds the
	// hand now coming in (liveness.OccluderCheck.Sheet), for the
	// presentation's liveness decision.
	sheet []float64

	mu        sync.Mutex
	state     State
	outcomes  map[Outcome]int
	last      []Presentation
	frames    uint64
	rate      frameRate
	gateFails map[string]uint64 // frames refused by each quality gate, all presentations
	// cameraFault and lightFault describe the last failure of the camera
	// and of the illuminator; "" once they work again.
	cameraFault, lightFault string
	enrol                   *enrolment
	onOutcome               func(Presentation)
	between                 chan func(context.Context) // jobs the main loop runs between presentations
	lastErr                 string
	attacks                 []time.Time // recent attacks, for AttackLimit
	lockedTil               time.Time
	byCue                   map[liveness.Cue]int
	livenessLog             []LivenessRecord // a ring of LivenessLogEntries
	livenessNext            int              // where the ring writes next
}

// LivenessRecord is one presentation as the liveness detector measured it:
// its raw cue values and timings, numbers only (no image, no template, no
// time of day) — what a terminal model's own liveness calibration is
// measured from (palmctl liveness-cues, then palmctl eval --pad
// --calibrate --cues-in).
type LivenessRecord struct {
	Outcome                       Outcome
	InViewToResult, StillToResult time.Duration
	Raw                           map[liveness.Cue]float64
}

// LivenessLogEntries is how many LivenessRecords an orchestrator keeps,
// in memory only: a supervised pilot's afternoon, about 150 kB.
const LivenessLogEntries = 2000

// New prepares an orchestrator for dev, sealing with sealer and sending
// through up.
func New(dev *sensor.Device, sealer *protocol.Sealer, up Uplink, cfg Config) (*Orchestrator, error) {
	if dev == nil || dev.Camera == nil || dev.Illuminator == nil || dev.Indicator == nil {
		return nil, errors.New("orchestrator: device needs a camera, an illuminator and an indicator")
	}
	if sealer == nil || up == nil {
		return nil, errors.New("orchestrator: sealer and uplink are required")
	}
	cfg.defaults()
	return &Orchestrator{dev: dev, sealer: sealer, up: up, cfg: cfg, state: StateIdle, outcomes: map[Outcome]int{},
		between: make(chan func(context.Context), 1), byCue: map[liveness.Cue]int{}, gateFails: map[string]uint64{}}, nil
}

// OnOutcome registers f to be called after every presentation (for the
// demo and tests). Call before Run.
func (o *Orchestrator) OnOutcome(f func(Presentation)) { o.onOutcome = f }

// State reports the current state.
func (o *Orchestrator) State() State {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.state
}

// Outcomes returns the count of each outcome so far.
func (o *Orchestrator) Outcomes() map[Outcome]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.outcomes)
}

// Frames returns how many frames the camera delivered.
func (o *Orchestrator) Frames() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.frames
}

func (o *Orchestrator) setState(s State) {
	o.mu.Lock()
	prev := o.state
	o.state = s
	o.mu.Unlock()
	if prev != s {
		o.cfg.Logger.Debug("state", "from", string(prev), "to", string(s))
	}
}

// Run drives the terminal until ctx is cancelled. The illuminator is off
// when Run returns, on every path.
func (o *Orchestrator) Run(ctx context.Context) (err error) {
	o.pres = imaging.NewPresenceDetector(o.cfg.Presence)
	o.ext = imaging.NewExtractor(o.cfg.Gates)
	o.pad = liveness.NewDetector(o.cfg.Liveness)
	o.occluder = liveness.NewOccluder(liveness.OccluderConfig{})
	defer func() {
		// Eye safety first, whatever happened.
		offErr := o.dev.Illuminator.Off()
		o.pres.Close()
		o.ext.Close()
		o.pad.Close()
		o.occluder.Close()
		o.setState(StateStopped)
		if r := recover(); r != nil {
			err = fmt.Errorf("orchestrator: panic: %v", r)
		}
		if err == nil && offErr != nil && !errors.Is(offErr, sensor.ErrClosed) {
			err = offErr
		}
	}()
	if err := o.dev.Camera.Start(ctx); err != nil {
		return fmt.Errorf("orchestrator: starting camera: %w", err)
	}
	defer o.dev.Camera.Stop()
	o.show(sensor.SignalIdle)
	for {
		if ctx.Err() != nil {
			return nil
		}
		o.takeCommands(ctx)
		o.runBetween(ctx)
		triggered, err := o.idle(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !triggered {
			continue
		}
		p := o.present(ctx)
		// Recorded even when stopping: a capture sent is never lost
		// without a word.
		o.record(p)
		if ctx.Err() != nil {
			return nil
		}
		if err := o.cooldown(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		o.show(sensor.SignalIdle)
	}
}

func (o *Orchestrator) show(s sensor.Signal) {
	if err := o.dev.Indicator.Show(s); err != nil {
		o.cfg.Logger.Warn("indicator", "err", err)
	}
}

func (o *Orchestrator) beat() {
	if o.cfg.Heartbeat != nil {
		o.cfg.Heartbeat()
	}
}

// beatUntil keeps the heartbeat going while the loop waits for the
// matcher, which can legitimately take up to the result deadline (longer
// than a watchdog interval allows between frames), but never past
// deadline: a wait that outlives the capture's expiry is a wedge, and the
// watchdog must see it. The returned function stops the beats.
func (o *Orchestrator) beatUntil(deadline time.Time) (stop func()) {
	if o.cfg.Heartbeat == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := clock.NewTicker(o.cfg.Clock, 500*time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if now.After(deadline) {
					return
				}
				o.beat()
			}
		}
	}()
	return func() { close(done); <-finished }
}

// frame takes one frame with the illuminator at level (0 = off).
func (o *Orchestrator) frame(ctx context.Context, level int) (sensor.Frame, error) {
	var err error
	if level > 0 {
		err = o.dev.Illuminator.On(level)
	} else {
		err = o.dev.Illuminator.Off()
	}
	if err != nil && !errors.Is(err, sensor.ErrOnTimeLimit) {
		o.mu.Lock()
		o.lightFault = err.Error()
		o.mu.Unlock()
		return sensor.Frame{}, fmt.Errorf("orchestrator: illuminator: %w", err)
	}
	fctx, cancel := context.WithTimeout(ctx, o.cfg.FrameTimeout)
	defer cancel()
	f, err := o.dev.Camera.NextFrame(fctx)
	o.beat()
	// One lock per frame: the light answered, the camera did or did not.
	o.mu.Lock()
	o.lightFault = ""
	if err != nil {
		if ctx.Err() == nil {
			o.cameraFault = err.Error()
		}
		o.mu.Unlock()
		return f, fmt.Errorf("orchestrator: camera: %w", err)
	}
	o.cameraFault = ""
	o.frames++
	o.rate.tick(o.cfg.Clock.Now())
	o.mu.Unlock()
	return f, nil
}

// frameRate measures the frames per second the camera delivers, over
// windows of about a second.
type frameRate struct {
	start, last time.Time
	n           int
	fps         float64
}

func (r *frameRate) tick(now time.Time) {
	if r.start.IsZero() {
		r.start = now
	}
	r.last = now
	r.n++
	if el := now.Sub(r.start); el >= time.Second {
		r.fps = float64(r.n) / el.Seconds()
		r.start, r.n = now, 0
	}
}

// Degraded lists what keeps the terminal from working fully (the camera
// delivers no frames, the illuminator cannot be driven), in words; empty
// when all works. The uplink publishes it as the "degraded" status.
func (o *Orchestrator) Degraded() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var why []string
	if o.cameraFault != "" {
		why = append(why, "camera: "+o.cameraFault)
	}
	if o.lightFault != "" {
		why = append(why, "illuminator: "+o.lightFault)
	}
	return why
}

// rateStale is how long without a frame before the measured rate is 0.
const rateStale = 2 * time.Second

// FrameRate is the frame rate the camera delivered over the last second
// or so; 0 when no frame came for two seconds.
func (o *Orchestrator) FrameRate() float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rate.last.IsZero() || o.cfg.Clock.Now().Sub(o.rate.last) > rateStale {
		return 0
	}
	return o.rate.fps
}

// maxSheetChecks is how many of the approach's idle checks the
// surroundings cue keeps (the debounce needs 3 to trigger).
const maxSheetChecks = 8

// idle pulses the illuminator (a lit and an unlit frame) and reports
// whether a hand has just arrived.
func (o *Orchestrator) idle(ctx context.Context) (bool, error) {
	o.setState(StateIdle)
	if o.dev.Presence != nil {
		// A wake-up input: wait on it briefly instead of lighting up.
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err := o.dev.Presence.WaitForPresence(wctx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			if errors.Is(err, context.Canceled) {
				return false, err
			}
			o.cfg.Logger.Warn("presence input", "err", err)
		}
	}
	lit, err := o.frame(ctx, o.cfg.IlluminatorLevel)
	if err != nil {
		return false, err
	}
	defer lit.Zero()
	unlit, err := o.frame(ctx, 0)
	if err != nil {
		return false, err
	}
	defer unlit.Zero()
	p, err := o.pres.Check(&lit, &unlit)
	if err != nil {
		return false, err
	}
	// The shopper's interaction starts with the first frame the hand is
	// seen in.
	if p.Hand {
		if o.inView.IsZero() {
			o.inView = o.cfg.Clock.Now()
		}
	} else if !p.Present {
		o.inView = time.Time{}
		o.sheet = o.sheet[:0]
	}
	if o.cfg.LivenessOff {
		return p.Triggered, nil
	}
	oc, err := o.occluder.Check(&lit, &unlit, handView(p.Hand, liveness.HandArriving))
	if err != nil {
		return false, err
	}
	if oc.Sheet >= 0 {
		// The approach's last few checks: a hand that lingers in view
		// without triggering must not grow the list.
		if len(o.sheet) == maxSheetChecks {
			o.sheet = append(o.sheet[:0], o.sheet[1:]...)
		}
		o.sheet = append(o.sheet, oc.Sheet)
	}
	if oc.Triggered && !p.Present {
		o.occluded = true
		if o.inView.IsZero() {
			o.inView = o.cfg.Clock.Now()
		}
		return true, nil
	}
	return p.Triggered, nil
}

// present runs one presentation from the trigger to the outcome: capture
// a burst, seal the best frame's template, await the matcher's result,
// show it.
func (o *Orchestrator) present(ctx context.Context) Presentation {
	rec := Presentation{Gates: map[string]int{}}
	inView := o.inView
	if inView.IsZero() {
		inView = o.cfg.Clock.Now()
	}
	defer func() { o.inView = time.Time{} }()
	if o.lockedOut() {
		rec.Outcome = OutcomeLockedOut
		o.cfg.Logger.Warn("presentation refused: terminal locked after repeated attacks")
		o.feedback(ctx, sensor.SignalFailure)
		return rec
	}
	if o.occluded {
		// Held in view but reflecting no NIR: a screen, not a hand.
		o.occluded = false
		o.refuse(ctx, &rec, liveness.Decision{Attack: true, Cue: liveness.CueOccluder}, inView)
		return rec
	}
	frame, best, firstGood := o.captureBurst(ctx, &rec)
	defer clear(frame)
	if best == nil {
		if rec.Outcome == "" {
			rec.Outcome = OutcomeNoCapture
		}
		o.feedback(ctx, sensor.SignalRetry)
		return rec
	}
	rec.Quality = best.Quality.Score
	if !o.cfg.LivenessOff {
		t0 := o.cfg.Clock.Now()
		o.mu.Lock()
		o.pad.SetThreshold(o.cfg.Liveness.Threshold) // a reload may have changed it
		o.mu.Unlock()
		rec.Liveness = o.pad.Decide()
		o.stage("liveness", o.since(t0))
		if rec.Liveness.Attack {
			o.refuse(ctx, &rec, rec.Liveness, inView)
			return rec
		}
	}
	// Live: only now is a template made, from the best frame.
	t0 := o.cfg.Clock.Now()
	best, err := o.ext.Extract(&sensor.Frame{Width: best.Frame.X, Height: best.Frame.Y, Pix: frame}, nil)
	o.stage("extract", o.since(t0))
	if err != nil {
		o.noteError(err)
		rec.Outcome = OutcomeNoCapture
		o.feedback(ctx, sensor.SignalRetry)
		return rec
	}
	env, hdr, err := o.seal(best, &rec)
	if err != nil {
		o.feedback(ctx, sensor.SignalError)
		return rec
	}
	res, err := o.awaitResult(ctx, env, hdr, &rec)
	if rec.Outcome == OutcomeAbandoned {
		return rec
	}
	rec.StillToResult = o.since(firstGood)
	rec.InViewToResult = o.since(inView)
	o.decide(res, err, &rec)
	// The shopper sees the answer even when palmd is stopping.
	o.feedback(context.WithoutCancel(ctx), o.signalFor(&rec, err))
	return rec
}

// captureBurst lights the palm and assesses frames until Burst of them
// pass every gate (or CaptureFrames were seen), guiding the user on the
// indicator and feeding every frame to liveness detection. It returns a
// copy of the best frame's pixels and its assessment (nil when none
// passed; no template is made yet) and when the first good frame came. The
// illuminator is off when it returns.
func (o *Orchestrator) captureBurst(ctx context.Context, rec *Presentation) (frame []byte, best *imaging.Result, firstGood time.Time) {
	o.setState(StateCapture)
	o.show(sensor.SignalScanning)
	defer func() {
		if err := o.dev.Illuminator.Off(); err != nil {
			o.cfg.Logger.Warn("illuminator off", "err", err)
		}
	}()
	good := 0
	lastSignal := sensor.SignalScanning
	var prev *imaging.ROIGeometry
	o.pad.Reset()
	// What surrounds the hand can only be seen with the illuminator on
	// and off, which the idle checks of its approach did.
	for _, v := range o.sheet {
		o.pad.ObserveSurroundings(v)
	}
	o.sheet = o.sheet[:0]
	// Liveness wants a still phase long enough to see the blood's pulse;
	// the burst takes its best frame from it.
	// A hand that will not stay still that long is judged on what was
	// seen within a few frames more (the pulse cue then abstains).
	still := o.cfg.Liveness.MinStillFrames
	if still == 0 {
		still = liveness.DefaultMinStillFrames
	}
	firstGoodAt := -1
	enough := func(i int) bool {
		return good >= o.cfg.Burst && (o.cfg.LivenessOff || o.pad.Ready() || i-firstGoodAt >= still+stillSlack)
	}
	for i := 0; i < o.cfg.CaptureFrames && !enough(i); i++ {
		f, err := o.frame(ctx, o.cfg.IlluminatorLevel)
		if err != nil {
			rec.Outcome = OutcomeError
			o.noteError(err)
			o.cfg.Logger.Warn("capture", "err", err)
			break
		}
		t0 := o.cfg.Clock.Now()
		res, err := o.ext.Assess(&f)
		o.stage("assess", o.since(t0))
		// A hand still coming in or drifting passes the gates frame by
		// frame but is not still: its template would come from a moving
		// hand, and liveness judges the still phase.
		if err == nil {
			if prev != nil && imaging.Moved(*prev, res.ROI, f.Width) {
				err = &imaging.GateError{Gate: imaging.GateMoving, Err: errors.New("the palm moved since the last frame")}
			}
			r := res.ROI
			prev = &r
		} else {
			prev = nil
		}
		if !o.cfg.LivenessOff {
			var roi *imaging.ROIGeometry
			if err == nil {
				roi = &res.ROI
			}
			t0 = o.cfg.Clock.Now()
			if perr := o.pad.Observe(&f, roi); perr != nil {
				o.cfg.Logger.Debug("liveness", "err", perr)
			}
			o.stage("liveness", o.since(t0))
		}
		if err != nil {
			f.Zero()
			g := imaging.GateOf(err)
			rec.Gates[g.String()]++
			if s := g.Signal(); s != lastSignal && g != imaging.GateNoHand {
				o.show(s)
				lastSignal = s
			}
			continue
		}
		good++
		if firstGood.IsZero() {
			firstGood, firstGoodAt = o.cfg.Clock.Now(), i
			if o.cfg.Scene != nil {
				rec.Scene = o.cfg.Scene()
			}
		}
		if best == nil || res.Quality.Score > best.Quality.Score {
			clear(frame)
			frame, best = f.Pix, res
		} else {
			f.Zero()
		}
	}
	return frame, best, firstGood
}

// stillSlack is how many frames beyond liveness's still phase a capture
// waits for the hand to hold still that long.
const stillSlack = 6

// refuse ends a presentation refused as an attack: red, counted by cue,
// remembered for the attack limit, logged without anything biometric.
func (o *Orchestrator) refuse(ctx context.Context, rec *Presentation, d liveness.Decision, inView time.Time) {
	rec.Outcome, rec.Attack, rec.Liveness = OutcomeAttack, d.Cue, d
	if rec.Scene == "" && o.cfg.Scene != nil {
		rec.Scene = o.cfg.Scene()
	}
	now := o.cfg.Clock.Now()
	o.mu.Lock()
	limit := o.cfg.AttackLimit
	o.byCue[d.Cue]++
	o.attacks = append(o.attacks, now)
	for len(o.attacks) > 0 && now.Sub(o.attacks[0]) > limit.Window {
		o.attacks = o.attacks[1:]
	}
	locked := len(o.attacks) > limit.Max
	if locked {
		o.lockedTil = now.Add(limit.Lockout)
		o.attacks = o.attacks[:0]
	}
	o.mu.Unlock()
	o.cfg.Logger.Warn("presentation attack refused", "cue", string(d.Cue), "score", fmt.Sprintf("%.1f", d.Score))
	if locked {
		o.cfg.Logger.Error("terminal locked after repeated attacks", "attacks", limit.Max+1,
			"within", limit.Window, "for", limit.Lockout)
	}
	rec.InViewToResult = o.since(inView)
	o.feedback(ctx, sensor.SignalFailure)
}

// lockedOut reports whether the attack limit has locked the terminal.
func (o *Orchestrator) lockedOut() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cfg.Clock.Now().Before(o.lockedTil)
}

// LockedUntil reports when the attack lockout ends (zero when none).
func (o *Orchestrator) LockedUntil() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cfg.Clock.Now().Before(o.lockedTil) {
		return o.lockedTil
	}
	return time.Time{}
}

// Attacks returns the attacks refused so far, by the cue that refused them.
func (o *Orchestrator) Attacks() map[liveness.Cue]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := make(map[liveness.Cue]int, len(o.byCue))
	for k, v := range o.byCue {
		m[k] = v
	}
	return m
}

// seal seals the best template for the current purpose (an enrolment
// session's, or identification), zeroing it; on failure the outcome says
// why.
func (o *Orchestrator) seal(best *imaging.Result, rec *Presentation) ([]byte, protocol.Header, error) {
	o.setState(StateSeal)
	purpose, session := protocol.PurposeIdentify, [16]byte{}
	o.mu.Lock()
	if o.enrol != nil {
		purpose, session = protocol.PurposeEnroll, o.enrol.session
	}
	o.mu.Unlock()
	rec.Purpose = purpose
	t0 := o.cfg.Clock.Now()
	env, hdr, err := o.sealer.Seal(&best.Template, purpose, session) // zeroes the template
	o.stage("seal", o.since(t0))
	if err != nil {
		o.noteError(err)
		o.cfg.Logger.Error("seal", "err", err)
		rec.Outcome = OutcomeError
		if errors.Is(err, protocol.ErrClock) {
			rec.Outcome = OutcomeClock
		}
		return nil, hdr, err
	}
	rec.RequestID = hex.EncodeToString(hdr.RequestID[:])
	return env, hdr, nil
}

// awaitResult sends the capture and waits for the matcher's result,
// keeping the watchdog fed; a stop request leaves it StopGrace, after
// which the presentation is recorded as abandoned.
func (o *Orchestrator) awaitResult(ctx context.Context, env []byte, hdr protocol.Header, rec *Presentation) (protocol.Result, error) {
	o.setState(StateAwaitResult)
	t0 := o.cfg.Clock.Now()
	stopBeat := o.beatUntil(hdr.Expiry.Add(time.Second))
	sctx, release := o.outliveStop(ctx, rec.RequestID)
	res, err := o.up.Submit(sctx, env, hdr)
	release()
	stopBeat()
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		rec.Outcome = OutcomeAbandoned
		o.noteError(fmt.Errorf("capture %s abandoned at stop: no result within %v", rec.RequestID, o.cfg.StopGrace))
		o.cfg.Logger.Error("capture abandoned at stop: no result in time; the matcher may still decide on it",
			"request", rec.RequestID, "grace", o.cfg.StopGrace)
		o.show(sensor.SignalError)
		return res, err
	}
	o.stage("result", o.since(t0))
	return res, err
}

// decide turns the uplink's answer into the presentation's outcome and
// counts an enrolment sample taken.
func (o *Orchestrator) decide(res protocol.Result, err error, rec *Presentation) {
	switch {
	case errors.Is(err, uplink.ErrExpired):
		rec.Outcome = OutcomeExpired
	case errors.Is(err, uplink.ErrNoResult), errors.Is(err, uplink.ErrOutboxFull):
		rec.Outcome = OutcomeNoResult
	case err != nil:
		o.noteError(err)
		rec.Outcome = OutcomeError
	default:
		rec.Score, rec.Subject = res.Score, res.Subject
		switch res.Decision {
		case protocol.DecisionMatch:
			rec.Outcome = OutcomeMatch
		case protocol.DecisionNoMatch:
			rec.Outcome = OutcomeNoMatch
		case protocol.DecisionEnrolled:
			rec.Outcome = OutcomeEnrolled
		case protocol.DecisionRetry:
			rec.Outcome = OutcomeRetry
		default:
			rec.Outcome = OutcomeError
		}
	}
	if rec.Purpose == protocol.PurposeEnroll && err == nil {
		o.mu.Lock()
		if o.enrol != nil {
			if o.enrol.remaining--; o.enrol.remaining <= 0 {
				o.enrol = nil
			}
		}
		o.mu.Unlock()
	}
}

// signalFor is what the indicator shows for an outcome.
func (o *Orchestrator) signalFor(rec *Presentation, err error) sensor.Signal {
	switch rec.Outcome {
	case OutcomeMatch, OutcomeEnrolled:
		return sensor.SignalSuccess
	case OutcomeNoMatch:
		return sensor.SignalFailure
	case OutcomeError:
		return sensor.SignalError
	}
	// An enrolment sample accepted by the matcher answers "enrolled" only
	// for the last one; intermediate samples come back as retry: show them
	// as success so the user presents again.
	if rec.Purpose == protocol.PurposeEnroll && rec.Outcome == OutcomeRetry && err == nil {
		return sensor.SignalSuccess
	}
	return sensor.SignalRetry
}

func (o *Orchestrator) since(t time.Time) time.Duration { return o.cfg.Clock.Now().Sub(t) }

// outliveStop returns the context for awaiting a sent capture's result: a
// stop request (ctx done) leaves it StopGrace more, logged with the
// request id. release ends it once the wait is over.
func (o *Orchestrator) outliveStop(ctx context.Context, request string) (sctx context.Context, release func()) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var mu sync.Mutex
	var grace func() bool
	unwatch := context.AfterFunc(ctx, func() {
		o.cfg.Logger.Warn("stopping while a capture awaits its result: waiting for it", "request", request, "up_to", o.cfg.StopGrace)
		mu.Lock()
		grace = o.cfg.Clock.AfterFunc(o.cfg.StopGrace, cancel)
		mu.Unlock()
	})
	return sctx, func() {
		unwatch()
		mu.Lock()
		if grace != nil {
			grace()
		}
		mu.Unlock()
		cancel()
	}
}

func (o *Orchestrator) feedback(ctx context.Context, s sensor.Signal) {
	o.setState(StateFeedback)
	o.show(s)
	t := clock.NewTimer(o.cfg.Clock, o.cfg.Feedback)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// cooldown waits until the hand has left (LeaveFrames without presence),
// so one presentation gives one result.
func (o *Orchestrator) cooldown(ctx context.Context) error {
	o.setState(StateCooldown)
	o.pres.Reset()
	gone := 0
	for gone < o.cfg.LeaveFrames {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		lit, err := o.frame(ctx, o.cfg.IlluminatorLevel)
		if err != nil {
			return err
		}
		unlit, err := o.frame(ctx, 0)
		if err != nil {
			lit.Zero()
			return err
		}
		p, err := o.pres.Check(&lit, &unlit)
		var oc liveness.OccluderCheck
		if err == nil && !o.cfg.LivenessOff {
			oc, err = o.occluder.Check(&lit, &unlit, handView(p.Hand, liveness.HandLeaving))
		}
		lit.Zero()
		unlit.Zero()
		if err != nil {
			return err
		}
		if p.Hand || oc.Dark {
			gone = 0
		} else {
			gone++
		}
	}
	o.pres.Reset()
	return nil
}

// handView is what the occluder is told is in view: the hand, arriving
// or leaving as the caller knows, when presence saw one, else nothing.
func handView(hand bool, moving liveness.View) liveness.View {
	if hand {
		return moving
	}
	return liveness.NoHand
}

func (o *Orchestrator) stage(name string, d time.Duration) {
	if o.cfg.OnStage != nil {
		o.cfg.OnStage(name, d)
	}
}

// takeCommands applies pending commands without blocking.
func (o *Orchestrator) takeCommands(ctx context.Context) {
	for {
		select {
		case c := <-o.up.Commands():
			switch c.Kind {
			case protocol.CommandEnroll:
				var s [16]byte
				b, err := hex.DecodeString(c.Session)
				if err != nil || len(b) != 16 {
					o.cfg.Logger.Warn("enrol command with a bad session id")
					o.up.AckCommand(c, false, "bad_session", "")
					continue
				}
				copy(s[:], b)
				o.mu.Lock()
				o.enrol = &enrolment{session: s, remaining: c.Samples}
				o.mu.Unlock()
				o.cfg.Logger.Info("enrolment session started", "samples", c.Samples)
				o.up.AckCommand(c, true, "", fmt.Sprintf("%d samples to take", c.Samples))
			case protocol.CommandSelfTest:
				r := o.selfTest(ctx)
				o.cfg.Logger.Info("self-test (by command)", "passed", r.Passed, "delta", r.Delta, "fps", r.FPS, "problems", r.Problems)
				detail := fmt.Sprintf("passed=%v illuminator_delta_grey=%.1f measured_fps=%.1f", r.Passed, r.Delta, r.FPS)
				if len(r.Problems) > 0 {
					detail += "; " + strings.Join(r.Problems, "; ")
				}
				o.up.AckCommand(c, true, "", detail)
			default:
				o.up.AckCommand(c, false, "unknown_command", "")
			}
		default:
			return
		}
	}
}

// Enrolling reports the samples still to take in the current enrolment
// session (0 when none).
func (o *Orchestrator) Enrolling() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.enrol == nil {
		return 0
	}
	return o.enrol.remaining
}

func (o *Orchestrator) record(p Presentation) {
	p.At = o.cfg.Clock.Now()
	o.mu.Lock()
	o.outcomes[p.Outcome]++
	for g, n := range p.Gates {
		o.gateFails[g] += uint64(n)
	}
	o.last = append(o.last, p)
	if len(o.last) > 32 {
		o.last = o.last[1:]
	}
	if len(p.Liveness.Raw) > 0 {
		r := LivenessRecord{Outcome: p.Outcome, InViewToResult: p.InViewToResult, StillToResult: p.StillToResult, Raw: maps.Clone(p.Liveness.Raw)}
		if len(o.livenessLog) < LivenessLogEntries {
			o.livenessLog = append(o.livenessLog, r)
		} else {
			o.livenessLog[o.livenessNext] = r
		}
		o.livenessNext = (o.livenessNext + 1) % LivenessLogEntries
	}
	o.mu.Unlock()
	o.cfg.Logger.Debug("presentation", "outcome", string(p.Outcome), "quality", p.Quality, "gates", p.Gates)
	if o.onOutcome != nil {
		o.onOutcome(p)
	}
}

func (o *Orchestrator) noteError(err error) {
	o.mu.Lock()
	o.lastErr = o.cfg.Clock.Now().UTC().Format(time.RFC3339) + " " + err.Error()
	o.mu.Unlock()
}

// LastError returns the most recent error of the capture path, with its
// time ("" when none).
func (o *Orchestrator) LastError() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastErr
}

// GateFailures counts the frames each quality gate refused, over all
// presentations, by gate name (imaging.Gate.String).
func (o *Orchestrator) GateFailures() map[string]uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.gateFails)
}

// Recent returns the last presentations, oldest first.
func (o *Orchestrator) Recent() []Presentation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Presentation(nil), o.last...)
}

// LivenessLog returns the last LivenessLogEntries presentations the
// liveness detector measured, oldest first; the caller owns the copy.
func (o *Orchestrator) LivenessLog() []LivenessRecord {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := slices.Clone(o.livenessLog)
	if len(out) == LivenessLogEntries {
		out = append(out[o.livenessNext:], out[:o.livenessNext]...)
	}
	for i := range out {
		out[i].Raw = maps.Clone(out[i].Raw)
	}
	return out
}

// LivenessNoise is the camera noise model the liveness detector measures
// print_texture against: what a calibration from LivenessLog's cues is
// only good for.
func (o *Orchestrator) LivenessNoise() liveness.NoiseModel { return o.cfg.Liveness.Noise.OrDefault() }

// SelfTestResult is the outcome of a self-test (numbers only).
type SelfTestResult struct {
	// LitMean and UnlitMean are the mean grey of frames with the
	// illuminator on and off; Delta their difference: a working
	// illuminator adds tens of grey levels even with nothing in view.
	LitMean, UnlitMean, Delta float64
	// FPS is the frame rate measured over the test.
	FPS float64
	// Focus is the band-pass sharpness of the scene's centre (see
	// imaging.Quality.Focus); useful with a test card over the window.
	Focus    float64
	Frames   int
	Passed   bool
	Problems []string
	At       time.Time
}

// SelfTest asks the main loop to run a self-test between presentations and
// waits for the result.
func (o *Orchestrator) SelfTest(ctx context.Context) (SelfTestResult, error) {
	return between(ctx, o, "self-test", o.selfTest)
}

// between asks the main loop to run job between presentations, with the
// camera and the illuminator to itself, and waits for its result. One
// job waits at a time: a second is refused, not queued behind it.
func between[T any](ctx context.Context, o *Orchestrator, what string, job func(context.Context) T) (T, error) {
	var zero T
	reply := make(chan T, 1)
	select {
	case o.between <- func(ctx context.Context) { reply <- job(ctx) }:
	case <-ctx.Done():
		return zero, ctx.Err()
	default:
		return zero, fmt.Errorf("orchestrator: %s refused: a self-test or a noise measurement is already queued", what)
	}
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// runBetween runs the job waiting to run between presentations, if any.
func (o *Orchestrator) runBetween(ctx context.Context) {
	select {
	case job := <-o.between:
		job(ctx)
	default:
	}
}

// selfTest alternates lit and unlit frames: the illuminator must brighten
// the scene, the camera must keep its frame rate.
func (o *Orchestrator) selfTest(ctx context.Context) SelfTestResult {
	r := SelfTestResult{At: o.cfg.Clock.Now()}
	var lit, unlit []float64
	var first, last time.Time
	for i := 0; i < 12; i++ {
		level := 0
		if i%2 == 0 {
			level = o.cfg.IlluminatorLevel
		}
		f, err := o.frame(ctx, level)
		if err != nil {
			r.Problems = append(r.Problems, err.Error())
			break
		}
		if first.IsZero() {
			first = f.Timestamp
		}
		last = f.Timestamp
		m := meanGrey(f.Pix)
		if level > 0 {
			lit = append(lit, m)
			if r.Focus == 0 {
				r.Focus = imaging.FrameFocus(&f)
			}
		} else {
			unlit = append(unlit, m)
		}
		f.Zero()
		r.Frames++
	}
	_ = o.dev.Illuminator.Off()
	r.LitMean, r.UnlitMean = mean(lit), mean(unlit)
	r.Delta = r.LitMean - r.UnlitMean
	if r.Frames > 1 && last.After(first) {
		r.FPS = float64(r.Frames-1) / last.Sub(first).Seconds()
	}
	if r.Delta < 3 {
		r.Problems = append(r.Problems, fmt.Sprintf("illuminator adds only %.1f grey levels", r.Delta))
	}
	if r.Frames < 12 {
		r.Problems = append(r.Problems, "camera did not deliver every frame")
	}
	r.Passed = len(r.Problems) == 0
	return r
}

func meanGrey(p []byte) float64 {
	var s int
	for _, v := range p {
		s += int(v)
	}
	return float64(s) / float64(max(1, len(p)))
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
