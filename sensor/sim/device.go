package sim

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palmd/palmd/sensor"
)

// Config configures a simulated terminal.
type Config struct {
	// Width and Height of the frames; zero means 640×480.
	Width, Height int
	// FPS is the frame rate; zero means 30.
	FPS float64
	// Realtime paces frames at FPS against the wall clock, as a camera
	// does; otherwise NextFrame renders the next frame at once (tests,
	// data sets).
	Realtime bool
	// Seed picks the terminal's background (box, stray light, glints).
	Seed uint64
	// Scenario is the timeline of presentations; nil means an empty scene.
	Scenario *Scenario
	// Variation is how presentations differ; the zero value means
	// DefaultVariation.
	Variation *Variation
	// Limits are the illuminator's eye-safety limits. Without Realtime
	// and without a Clock of their own, the guard runs on the scene's
	// time (one frame period per rendered frame), not the wall clock.
	Limits sensor.GuardLimits
}

// Defaults of Config: a VGA NIR camera at 30 fps.
const (
	DefaultWidth  = 640
	DefaultHeight = 480
	DefaultFPS    = 30
)

func (c Config) withDefaults() Config {
	if c.Width == 0 {
		c.Width = DefaultWidth
	}
	if c.Height == 0 {
		c.Height = DefaultHeight
	}
	if c.FPS == 0 {
		c.FPS = DefaultFPS
	}
	if c.Scenario == nil {
		c.Scenario = &Scenario{Loop: true, Steps: []Step{{Kind: StepEmpty, Hold: 1}}}
	}
	if c.Variation == nil {
		v := DefaultVariation()
		c.Variation = &v
	}
	return c
}

// Sensor is a simulated terminal: its camera sees the scenario lit by its
// own illuminator, its presence input fires when a hand is in range, and its
// indicator records what it was told to show.
type Sensor struct {
	Camera      *Camera
	Light       *Light
	Illuminator *sensor.GuardedIlluminator
	Presence    *Presence
	Indicator   *Indicator
}

// New builds a simulated terminal.
func New(cfg Config) (*Sensor, error) {
	cfg = cfg.withDefaults()
	if cfg.FPS <= 0 || cfg.FPS > 1000 || math.IsNaN(cfg.FPS) {
		return nil, fmt.Errorf("sim: fps %v outside (0, 1000]", cfg.FPS)
	}
	tl, err := NewTimeline(cfg.Scenario, *cfg.Variation, cfg.Width, cfg.Height)
	if err != nil {
		return nil, err
	}
	tl.fps = cfg.FPS
	r, err := NewRenderer(cfg.Width, cfg.Height, cfg.Seed)
	if err != nil {
		return nil, err
	}
	light := &Light{}
	var clock *frameClock
	limits := cfg.Limits
	if !cfg.Realtime && limits.Clock == nil {
		clock = newFrameClock(time.Now())
		limits.Clock = clock
	}
	ill, err := sensor.NewGuardedIlluminator(light, limits)
	if err != nil {
		r.Close()
		return nil, err
	}
	cam := &Camera{cfg: cfg, renderer: r, timeline: tl, light: light, clock: clock, exposure: NominalExposure, gain: 1}
	return &Sensor{
		Camera:      cam,
		Light:       light,
		Illuminator: ill,
		Presence:    &Presence{cam: cam, closed: make(chan struct{})},
		Indicator:   &Indicator{},
	}, nil
}

// Device returns the simulated parts as the interfaces the daemon uses.
func (s *Sensor) Device() *sensor.Device {
	return &sensor.Device{Camera: s.Camera, Illuminator: s.Illuminator, Presence: s.Presence, Indicator: s.Indicator}
}

// Light is the simulated illuminator hardware (a sensor.LightDriver): it
// only remembers its level, which the simulated camera reads at each
// exposure.
type Light struct {
	level  atomic.Int32
	closed atomic.Bool
}

// SetLevel implements sensor.LightDriver.
func (l *Light) SetLevel(percent int) error {
	if l.closed.Load() {
		return sensor.ErrClosed
	}
	if percent < 0 || percent > 100 {
		return fmt.Errorf("sim: light level %d outside 0..100", percent)
	}
	l.level.Store(int32(percent))
	return nil
}

// Level reports the current level.
func (l *Light) Level() int { return int(l.level.Load()) }

// Close implements sensor.LightDriver.
func (l *Light) Close() error { l.closed.Store(true); return nil }

// Camera is the simulated camera. It implements sensor.Camera.
type Camera struct {
	cfg      Config
	timeline *Timeline
	light    *Light
	clock    *frameClock // scene time in fast mode; nil in real time or with the caller's clock

	mu        sync.Mutex // guards everything below
	renderer  *Renderer
	streaming bool
	closed    bool
	started   time.Time
	frame     int // scenario frame of the next NextFrame in fast mode
	seq       uint64
	exposure  time.Duration
	gain      float64
	last      Truth
	lastStep  Moment
}

// Start implements sensor.Camera.
func (c *Camera) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sensor.ErrClosed
	}
	if !c.streaming {
		c.streaming = true
		c.started = time.Now()
		c.frame = 0
	}
	return nil
}

// Stop implements sensor.Camera.
func (c *Camera) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sensor.ErrClosed
	}
	c.streaming = false
	return nil
}

// NextFrame implements sensor.Camera. In real-time mode it waits for the
// next frame slot of the wall clock and skips the scenario ahead by the
// time that passed, as a real camera drops frames nobody reads.
func (c *Camera) NextFrame(ctx context.Context) (sensor.Frame, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return sensor.Frame{}, sensor.ErrClosed
	}
	if !c.streaming {
		c.mu.Unlock()
		return sensor.Frame{}, sensor.ErrNotStreaming
	}
	idx := c.frame
	if c.cfg.Realtime {
		period := time.Duration(float64(time.Second) / c.cfg.FPS)
		elapsed := time.Since(c.started)
		idx = max(int(elapsed/period)+1, c.frame)
		due := c.started.Add(time.Duration(idx) * period)
		c.mu.Unlock()
		if err := sleepUntil(ctx, due); err != nil {
			return sensor.Frame{}, err
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return sensor.Frame{}, sensor.ErrClosed
		}
	} else if err := ctx.Err(); err != nil {
		c.mu.Unlock()
		return sensor.Frame{}, ctxErr(err)
	} else if c.clock != nil {
		// The frame period passes before this exposure: a guard cut-off
		// due in it darkens this frame. The guard only touches the
		// light, never the camera, so the lock can stay held.
		c.clock.advance(time.Duration(float64(time.Second) / c.cfg.FPS))
	}
	defer c.mu.Unlock()
	c.frame = idx + 1
	m := c.timeline.At(idx)
	level := c.light.Level()
	f := sensor.Frame{
		Width: c.cfg.Width, Height: c.cfg.Height, Pix: make([]byte, c.cfg.Width*c.cfg.Height),
		Illuminated: level > 0, Exposure: c.exposure, Gain: c.gain,
	}
	// Motion blur scales with the exposure's share of the frame period.
	share := c.exposure.Seconds() * c.cfg.FPS
	motion := [2]float64{m.Motion[0] * share, m.Motion[1] * share}
	truth, err := c.renderer.Render(f.Pix, m.Presentation, Lighting{Level: level, Exposure: c.exposure, Gain: c.gain},
		motion, frameNoiseSeed(c.cfg.Seed, idx))
	if err != nil {
		return sensor.Frame{}, fmt.Errorf("sim: rendering frame %d: %w", idx, err)
	}
	c.seq++
	f.Seq = c.seq
	f.Timestamp = time.Now()
	c.last, c.lastStep = truth, m
	return f, nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctxErr(ctx.Err())
	}
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		// The frame cannot arrive in time: wait out the deadline as a
		// camera would, then report the timeout.
		tm := time.NewTimer(time.Until(dl))
		defer tm.Stop()
		select {
		case <-ctx.Done():
		case <-tm.C:
		}
		return fmt.Errorf("%w: %w", sensor.ErrFrameTimeout, context.DeadlineExceeded)
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctxErr(ctx.Err())
	case <-tm.C:
		return nil
	}
}

func ctxErr(err error) error {
	if err == context.DeadlineExceeded {
		return fmt.Errorf("%w: %w", sensor.ErrFrameTimeout, err)
	}
	return err
}

// SetExposure implements sensor.Camera (clamped to 50 µs–100 ms).
func (c *Camera) SetExposure(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sensor.ErrClosed
	}
	c.exposure = min(max(d, 50*time.Microsecond), 100*time.Millisecond)
	return nil
}

// SetGain implements sensor.Camera (clamped to 1–16).
func (c *Camera) SetGain(g float64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sensor.ErrClosed
	}
	if math.IsNaN(g) {
		return fmt.Errorf("sim: gain is NaN")
	}
	c.gain = min(max(g, 1), 16)
	return nil
}

// Format implements sensor.Camera.
func (c *Camera) Format() sensor.Format {
	return sensor.Format{Width: c.cfg.Width, Height: c.cfg.Height, FPS: c.cfg.FPS, Pixel: "sim"}
}

// Truth returns the ground truth of the last frame returned, and the
// scenario moment it showed.
func (c *Camera) Truth() (Truth, Moment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last, c.lastStep
}

// Ended reports whether a non-looping scenario has played to its end.
func (c *Camera) Ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.timeline.Ended(c.currentFrameLocked())
}

func (c *Camera) currentFrameLocked() int {
	if c.cfg.Realtime && c.streaming {
		return int(time.Since(c.started) / time.Duration(float64(time.Second)/c.cfg.FPS))
	}
	return c.frame
}

// Close implements sensor.Camera.
func (c *Camera) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed, c.streaming = true, false
	c.renderer.Close()
	return nil
}

// Presence is the simulated wake-up input: a proximity sensor that sees a
// hand (or a photo) closer than PresenceRange. It follows the camera's
// scenario clock, so it only changes while the camera streams.
type Presence struct {
	cam       *Camera
	closeOnce sync.Once
	closed    chan struct{}
}

// PresenceRange is how far the simulated proximity sensor reaches, mm.
const PresenceRange = 300.0

// Present implements sensor.PresenceInput.
func (p *Presence) Present() (bool, error) {
	select {
	case <-p.closed:
		return false, sensor.ErrClosed
	default:
	}
	c := p.cam
	c.mu.Lock()
	frame := c.currentFrameLocked()
	c.mu.Unlock()
	m := c.timeline.At(frame)
	return m.Presentation != nil && m.Presentation.Pose.Distance <= PresenceRange, nil
}

// WaitForPresence implements sensor.PresenceInput by polling the scenario
// every 5 ms, well inside a real sensor's response time.
func (p *Presence) WaitForPresence(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := p.Present()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.closed:
			return sensor.ErrClosed
		case <-tick.C:
		}
	}
}

// Close implements sensor.PresenceInput.
func (p *Presence) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

// Indicator is the simulated user feedback: it records every signal shown,
// for tests and the demo to read back.
type Indicator struct {
	mu      sync.Mutex
	shown   []sensor.Signal
	current sensor.Signal
	closed  bool
	// OnShow, when set, is called (without locks held) with each signal.
	OnShow func(sensor.Signal)
}

// Show implements sensor.Indicator.
func (i *Indicator) Show(s sensor.Signal) error {
	i.mu.Lock()
	if i.closed {
		i.mu.Unlock()
		return sensor.ErrClosed
	}
	i.shown = append(i.shown, s)
	i.current = s
	cb := i.OnShow
	i.mu.Unlock()
	if cb != nil {
		cb(s)
	}
	return nil
}

// History returns every signal shown so far, oldest first.
func (i *Indicator) History() []sensor.Signal {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]sensor.Signal(nil), i.shown...)
}

// Current returns the signal shown now.
func (i *Indicator) Current() sensor.Signal {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.current
}

// Close implements sensor.Indicator.
func (i *Indicator) Close() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.closed = true
	return nil
}

// Interface checks.
var (
	_ sensor.Camera        = (*Camera)(nil)
	_ sensor.PresenceInput = (*Presence)(nil)
	_ sensor.Indicator     = (*Indicator)(nil)
	_ sensor.LightDriver   = (*Light)(nil)
)

// frameNoiseSeed picks frame idx's sensor noise. A camera's noise is new in
// every frame; the renderer reads one precomputed field at an offset, so
// consecutive frames must land on unrelated offsets (a mixing hash), not
// on neighbouring ones, or their noise would be the same pattern moved by
// a pixel — static texture to anything comparing frames.
func frameNoiseSeed(seed uint64, idx int) uint64 {
	z := seed<<32 ^ uint64(idx) + 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// LitUnlit takes a frame with the illuminator at level and the next with
// it off, as the daemon does between presentations to tell what answers
// its light from ambient light and the static box; the camera must have
// been started.
func (s *Sensor) LitUnlit(ctx context.Context, level int) (lit, unlit sensor.Frame, err error) {
	if err := s.Illuminator.On(level); err != nil {
		return lit, unlit, fmt.Errorf("sim: illuminator on: %w", err)
	}
	if lit, err = s.Camera.NextFrame(ctx); err != nil {
		return lit, unlit, err
	}
	if err := s.Illuminator.Off(); err != nil {
		return lit, unlit, fmt.Errorf("sim: illuminator off: %w", err)
	}
	unlit, err = s.Camera.NextFrame(ctx)
	return lit, unlit, err
}
