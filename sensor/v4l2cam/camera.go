// Package v4l2cam is the NIR camera on Linux V4L2, through
// github.com/blackjack/webcam (pure Go: this package must stay free of cgo
// and gocv, so that its tests can run statically linked inside a VM).
//
// It opens a device by path or by its stable /dev/v4l/by-id name, picks the
// best pixel format (GREY/Y8, then YUYV's luma, then MJPEG decoded with
// image/jpeg), handles row padding, sets frame size and rate, turns
// auto-exposure off and sets exposure and gain, copies every frame out of
// the driver's buffer before returning it (the driver reuses its buffers),
// gives frame deadlines sub-second precision (webcam's WaitForFrame takes
// whole seconds), and runs a watchdog: no frame for Watchdog, or the device
// gone (ENODEV), closes the device and reopens it with backoff, counting
// each reopen.
package v4l2cam

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/blackjack/webcam"

	"github.com/palmd/palmd/sensor"
)

// V4L2 control ids (linux/v4l2-controls.h).
const (
	CIDExposureAuto     webcam.ControlID = 0x009a0901
	CIDExposureAbsolute webcam.ControlID = 0x009a0902 // units of 100 µs
	CIDAutogain         webcam.ControlID = 0x00980912
	CIDGain             webcam.ControlID = 0x00980913
	exposureManual                       = 1 // V4L2_EXPOSURE_MANUAL
)

// Config configures the camera.
type Config struct {
	// Device is /dev/videoN or a /dev/v4l/by-id/... name.
	Device        string
	Width, Height int
	FPS           float64
	Exposure      time.Duration
	Gain          float64
	// Watchdog reopens the device after this long without a frame while
	// streaming; 0 means 3 s.
	Watchdog time.Duration
	// Buffers for the driver's queue; 0 means 4.
	Buffers uint32
	// Formats overrides the pixel-format preference (fourcc codes, best
	// first); empty means GREY, Y8, YUYV, MJPG.
	Formats []uint32
}

// Defaults a terminal's configuration starts from: the first V4L2 device,
// VGA at 30 fps, a 10 ms exposure (the NIR flash is short) at unit gain.
const (
	DefaultDevice   = "/dev/video0"
	DefaultWidth    = 640
	DefaultHeight   = 480
	DefaultFPS      = 30
	DefaultExposure = 10 * time.Millisecond
	DefaultGain     = 1
)

// Camera implements sensor.Camera.
type Camera struct {
	cfg Config

	mu        sync.Mutex
	cam       *webcam.Webcam
	path      string
	pixel     uint32
	width     int
	height    int
	streaming bool
	closed    bool
	seq       uint64
	lastFrame time.Time
	reopens   int
	exposure  time.Duration
	gain      float64
}

// Open opens and configures the camera (it does not start streaming).
func Open(cfg Config) (*Camera, error) {
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > sensor.MaxFrameSide || cfg.Height > sensor.MaxFrameSide {
		return nil, fmt.Errorf("v4l2cam: frame size %dx%d", cfg.Width, cfg.Height)
	}
	if cfg.Watchdog == 0 {
		cfg.Watchdog = 3 * time.Second
	}
	if cfg.Buffers == 0 {
		cfg.Buffers = 4
	}
	c := &Camera{cfg: cfg, exposure: cfg.Exposure, gain: cfg.Gain}
	if err := c.open(); err != nil {
		return nil, err
	}
	return c, nil
}

// open (re)opens the device and negotiates the format. mu held or not
// yet shared.
func (c *Camera) open() error {
	path, err := filepath.EvalSymlinks(c.cfg.Device) // /dev/v4l/by-id/... → /dev/videoN
	if err != nil {
		return fmt.Errorf("v4l2cam: camera %s: %w", c.cfg.Device, err)
	}
	cam, err := webcam.Open(path)
	if err != nil {
		return fmt.Errorf("v4l2cam: opening camera %s: %w", c.cfg.Device, err)
	}
	supported := cam.GetSupportedFormats()
	pref := c.cfg.Formats
	if len(pref) == 0 {
		pref = preference
	}
	var pick uint32
	for _, f := range pref {
		if _, ok := supported[webcam.PixelFormat(f)]; ok {
			pick = f
			break
		}
	}
	if pick == 0 {
		cam.Close()
		return fmt.Errorf("v4l2cam: %s offers none of GREY, Y8, YUYV, MJPG", c.cfg.Device)
	}
	got, w, h, err := cam.SetImageFormat(webcam.PixelFormat(pick), uint32(c.cfg.Width), uint32(c.cfg.Height))
	if err != nil {
		cam.Close()
		return fmt.Errorf("v4l2cam: setting %s %dx%d: %w", fourcc(pick), c.cfg.Width, c.cfg.Height, err)
	}
	if c.cfg.FPS > 0 {
		_ = cam.SetFramerate(float32(c.cfg.FPS)) // drivers without frame intervals refuse; not fatal
	}
	if err := cam.SetBufferCount(c.cfg.Buffers); err != nil {
		cam.Close()
		return err
	}
	c.cam, c.path, c.pixel, c.width, c.height = cam, path, uint32(got), int(w), int(h)
	// NIR capture wants manual exposure; not every sensor has these.
	_ = cam.SetControl(CIDExposureAuto, exposureManual)
	_ = cam.SetControl(CIDAutogain, 0)
	c.applyControls()
	return nil
}

func (c *Camera) applyControls() {
	if c.exposure > 0 {
		_ = c.cam.SetControl(CIDExposureAbsolute, int32(c.exposure/(100*time.Microsecond)))
	}
	if c.gain > 0 {
		_ = c.cam.SetControl(CIDGain, int32(c.gain*16)) // common Q4 fixed point; drivers clamp
	}
}

// Start implements sensor.Camera. If the driver refuses to stream, the
// device is closed and reopened so that no half-mapped buffers are left.
func (c *Camera) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sensor.ErrClosed
	}
	if c.streaming {
		return nil
	}
	if err := c.cam.StartStreaming(); err != nil {
		c.cam.Close()
		if rerr := c.open(); rerr != nil {
			return errors.Join(fmt.Errorf("v4l2cam: start streaming: %w", err), rerr)
		}
		return fmt.Errorf("v4l2cam: start streaming: %w", err)
	}
	c.streaming, c.lastFrame = true, time.Now()
	return nil
}

// Stop implements sensor.Camera.
func (c *Camera) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sensor.ErrClosed
	}
	if !c.streaming {
		return nil
	}
	c.streaming = false
	return c.cam.StopStreaming()
}

// Reopens counts the watchdog's reopenings.
func (c *Camera) Reopens() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reopens
}

// NextFrame implements sensor.Camera.
func (c *Camera) NextFrame(ctx context.Context) (sensor.Frame, error) {
	for {
		if err := ctx.Err(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return sensor.Frame{}, fmt.Errorf("%w: %w", sensor.ErrFrameTimeout, err)
			}
			return sensor.Frame{}, err
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return sensor.Frame{}, sensor.ErrClosed
		}
		if !c.streaming {
			c.mu.Unlock()
			return sensor.Frame{}, sensor.ErrNotStreaming
		}
		err := c.cam.WaitForFrame(0) // poll; sub-second waits are ours
		if err == nil {
			f, ferr := c.grab()
			c.mu.Unlock()
			if ferr == nil {
				return f, nil
			}
			if !errors.Is(ferr, syscall.EAGAIN) {
				if rerr := c.recover(ferr); rerr != nil {
					return sensor.Frame{}, rerr
				}
			}
			continue
		}
		var to *webcam.Timeout
		if !errors.As(err, &to) {
			c.mu.Unlock()
			if rerr := c.recover(err); rerr != nil {
				return sensor.Frame{}, rerr
			}
			continue
		}
		stale := time.Since(c.lastFrame) > c.cfg.Watchdog
		c.mu.Unlock()
		if stale {
			if rerr := c.recover(errors.New("no frame within the watchdog period")); rerr != nil {
				return sensor.Frame{}, rerr
			}
			continue
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return sensor.Frame{}, fmt.Errorf("%w: %w", sensor.ErrFrameTimeout, ctx.Err())
			}
			return sensor.Frame{}, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// grab dequeues a frame, copies it out and requeues the buffer. mu held.
func (c *Camera) grab() (sensor.Frame, error) {
	buf, idx, err := c.cam.GetFrame()
	if err != nil {
		return sensor.Frame{}, err
	}
	f := sensor.Frame{Width: c.width, Height: c.height, Pix: make([]byte, c.width*c.height),
		Timestamp: time.Now(), Exposure: c.exposure, Gain: c.gain}
	cerr := toGrey(f.Pix, buf, c.pixel, c.width, c.height)
	if err := c.cam.ReleaseFrame(idx); err != nil && cerr == nil {
		cerr = err
	}
	if cerr != nil {
		return sensor.Frame{}, cerr
	}
	c.seq++
	f.Seq = c.seq
	c.lastFrame = f.Timestamp
	return f, nil
}

// recover closes the device and reopens it, with backoff, after it stopped
// delivering or disappeared (ENODEV: unplugged).
func (c *Camera) recover(cause error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sensor.ErrClosed
	}
	c.cam.Close()
	c.streaming = false
	delay := 100 * time.Millisecond
	for attempt := 0; attempt < 8; attempt++ {
		if err := c.open(); err == nil {
			if err := c.cam.StartStreaming(); err == nil {
				c.streaming, c.lastFrame = true, time.Now()
				c.reopens++
				return nil
			}
			c.cam.Close()
		}
		c.mu.Unlock()
		time.Sleep(delay)
		c.mu.Lock()
		if c.closed {
			return sensor.ErrClosed
		}
		delay = min(2*delay, 2*time.Second)
	}
	return fmt.Errorf("v4l2cam: camera %s lost (%v) and did not come back", c.cfg.Device, cause)
}

// SetExposure implements sensor.Camera.
func (c *Camera) SetExposure(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sensor.ErrClosed
	}
	if err := controlError("exposure", c.cam.SetControl(CIDExposureAbsolute, int32(d/(100*time.Microsecond)))); err != nil {
		return err
	}
	c.exposure = d
	return nil
}

// SetGain implements sensor.Camera.
func (c *Camera) SetGain(g float64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sensor.ErrClosed
	}
	if err := controlError("gain", c.cam.SetControl(CIDGain, int32(g*16))); err != nil {
		return err
	}
	c.gain = g
	return nil
}

// controlError names a control the driver refused; EINVAL from
// VIDIOC_S_CTRL means the device has no such control (V4L2's spec), which
// callers see as sensor.ErrUnsupported. The frames go on reporting the
// value in force.
func controlError(name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("v4l2cam: %s: %w (%v)", name, sensor.ErrUnsupported, err)
	}
	return fmt.Errorf("v4l2cam: %s: %w", name, err)
}

// SetControl sets a V4L2 control (for diagnostics and tests).
func (c *Camera) SetControl(id webcam.ControlID, v int32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sensor.ErrClosed
	}
	return c.cam.SetControl(id, v)
}

// ControlByName finds a control's id by its driver name.
func (c *Camera) ControlByName(name string) (webcam.ControlID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, false
	}
	for id, ctl := range c.cam.GetControls() {
		if ctl.Name == name {
			return id, true
		}
	}
	return 0, false
}

// Control reads a V4L2 control (for diagnostics and tests).
func (c *Camera) Control(id webcam.ControlID) (int32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, sensor.ErrClosed
	}
	return c.cam.GetControl(id)
}

// Format implements sensor.Camera.
func (c *Camera) Format() sensor.Format {
	c.mu.Lock()
	defer c.mu.Unlock()
	fps := c.cfg.FPS
	if c.cam != nil {
		if r, err := c.cam.GetFramerate(); err == nil && r > 0 {
			fps = float64(r)
		}
	}
	return sensor.Format{Width: c.width, Height: c.height, FPS: fps, Pixel: fourcc(c.pixel)}
}

// Close implements sensor.Camera.
func (c *Camera) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed, c.streaming = true, false
	return c.cam.Close()
}

var _ sensor.Camera = (*Camera)(nil)
