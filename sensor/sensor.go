// Package sensor defines the hardware interfaces the rest of palmd is written
// against: the NIR camera, the illuminator, an optional presence (wake-up)
// input and the user-facing indicator.
//
// Concrete implementations live in sub-packages: the simulator in sensor/sim,
// and the real hardware drivers (V4L2 camera, GPIO illuminator, presence input
// and LEDs). Code above this package (orchestration, imaging) sees only these
// interfaces, so the same state machine runs on a terminal and in CI.
//
// # Memory and privacy
//
// A Frame holds raw biometric data while a hand is in view. Implementations
// must never log, persist or export a frame; callers own the frames they get
// and should zero them (Frame.Zero) once they are done with them.
package sensor

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors shared by every implementation. Implementations wrap them with
// context; test with errors.Is.
var (
	// ErrClosed is returned by any method called after Close.
	ErrClosed = errors.New("sensor: device closed")
	// ErrNotStreaming is returned by Camera.NextFrame before Start or after Stop.
	ErrNotStreaming = errors.New("sensor: camera not streaming")
	// ErrFrameTimeout is returned by Camera.NextFrame when the context's
	// deadline passes before a frame arrives. The returned error also matches
	// context.DeadlineExceeded.
	ErrFrameTimeout = errors.New("sensor: no frame before deadline")
	// ErrOnTimeLimit is returned by Illuminator.On when switching on would
	// break the duty-cycle budget, and is reported by Illuminator.State after
	// the guard has cut the illuminator off.
	ErrOnTimeLimit = errors.New("sensor: illuminator on-time limit")
	// ErrUnsupported is returned for a control the device does not have.
	ErrUnsupported = errors.New("sensor: not supported by this device")
)

// Frame is one 8-bit greyscale image from the camera.
//
// Pix is packed row-major, Width bytes per row with no padding (drivers remove
// any row padding the hardware adds), so len(Pix) == Width*Height. The Frame
// and its Pix belong to the caller once NextFrame returns: the camera never
// reads or writes them again, so they may be kept, modified or wrapped by
// gocv without copying.
type Frame struct {
	Width, Height int
	Pix           []byte
	// Seq counts frames delivered since the camera was opened, starting at
	// 1. A gap means the driver dropped frames.
	Seq uint64
	// Timestamp is when the exposure ended, as reported by the driver or,
	// failing that, when the frame was dequeued.
	Timestamp time.Time
	// Illuminated reports whether the NIR illuminator was on for the whole
	// exposure. Frames taken while it switched are reported as not
	// illuminated, so on/off differencing never mixes the two.
	Illuminated bool
	// Exposure and Gain in effect for this frame.
	Exposure time.Duration
	Gain     float64
}

// Validate reports whether the frame's geometry is consistent, so that code
// that wraps Pix in an image or Mat never reads out of bounds.
func (f *Frame) Validate() error {
	switch {
	case f.Width <= 0 || f.Height <= 0:
		return fmt.Errorf("sensor: frame size %dx%d is not positive", f.Width, f.Height)
	case f.Width > MaxFrameSide || f.Height > MaxFrameSide:
		return fmt.Errorf("sensor: frame size %dx%d exceeds %d", f.Width, f.Height, MaxFrameSide)
	case len(f.Pix) != f.Width*f.Height:
		return fmt.Errorf("sensor: frame has %d bytes, want %dx%d=%d", len(f.Pix), f.Width, f.Height, f.Width*f.Height)
	}
	return nil
}

// Zero overwrites the pixels, for use once a frame is no longer needed.
func (f *Frame) Zero() { clear(f.Pix) }

// MaxFrameSide bounds frame width and height; larger frames are rejected as
// malformed rather than allocated.
const MaxFrameSide = 8192

// Format describes what the camera is streaming.
type Format struct {
	Width, Height int
	// FPS is the nominal frame rate.
	FPS float64
	// Pixel names the format on the wire before conversion to 8-bit grey,
	// e.g. "GREY", "YUYV", "MJPG" or "sim".
	Pixel string
}

func (f Format) String() string {
	return fmt.Sprintf("%dx%d %s @ %.1f fps", f.Width, f.Height, f.Pixel, f.FPS)
}

// Camera is the NIR camera.
//
// Start, Stop, SetExposure, SetGain and Close may be called from any
// goroutine; NextFrame must be called from one goroutine at a time. After
// Close every method returns ErrClosed.
type Camera interface {
	// Start begins streaming. Starting a streaming camera is a no-op.
	Start(ctx context.Context) error
	// Stop ends streaming and releases driver buffers; frames already
	// returned stay valid. Stopping a stopped camera is a no-op.
	Stop() error
	// NextFrame blocks until the next frame arrives or ctx is done. When
	// ctx's deadline passes first it returns an error matching both
	// ErrFrameTimeout and context.DeadlineExceeded; when ctx is cancelled,
	// an error matching context.Canceled. The frame is the caller's (see
	// Frame).
	NextFrame(ctx context.Context) (Frame, error)
	// SetExposure sets the exposure time; automatic exposure is off for NIR
	// capture. Values are clamped to what the device supports.
	SetExposure(d time.Duration) error
	// SetGain sets the analogue gain as a multiple of unity (1.0 = none).
	SetGain(g float64) error
	// Format reports the negotiated format.
	Format() Format
	// Close stops streaming and releases the device.
	Close() error
}

// Illuminator is the NIR light source.
//
// Eye safety is the implementation's job, not the caller's: an illuminator
// switches itself off once it has been on continuously for its maximum on-time
// even if Off is never called, refuses On while its duty-cycle budget is
// spent, and is off after Close. All methods are safe for concurrent use and
// none blocks for longer than a hardware write.
type Illuminator interface {
	// On switches the light on at level percent (1–100).
	On(level int) error
	// Off switches it off. Off on a dark illuminator is a no-op.
	Off() error
	// State reports what the light is doing now.
	State() IlluminatorState
	// Close switches the light off and releases the hardware.
	Close() error
}

// IlluminatorState is a snapshot of an Illuminator.
type IlluminatorState struct {
	On    bool
	Level int
	// Since is when the light last changed state.
	Since time.Time
	// TotalOn is the cumulative on-time since the illuminator was opened.
	TotalOn time.Duration
	// Cutoffs counts the times the guard switched the light off because a
	// caller left it on past the maximum on-time.
	Cutoffs int
	// Duty is the share of the duty window the light has been on, and
	// MaxDuty the share the guard allows (both 0..1; zero when the
	// illuminator keeps no window).
	Duty, MaxDuty float64
}

// PresenceInput is an optional wake-up input (a proximity sensor or an IR
// break-beam) that tells the daemon something is over the scanner before the
// camera is fully awake.
type PresenceInput interface {
	// WaitForPresence blocks until the input reports an object in range
	// (returning immediately when one is already there) or ctx is done, in
	// which case it returns ctx.Err().
	WaitForPresence(ctx context.Context) error
	// Present reports the current debounced state without blocking.
	Present() (bool, error)
	// Close releases the input; a pending WaitForPresence returns ErrClosed.
	Close() error
}

// Signal is what the indicator shows the user.
type Signal int

// The signals, in the order a presentation usually meets them.
const (
	SignalIdle          Signal = iota // ready: waiting for a hand
	SignalScanning                    // a hand is seen; keep it there
	SignalHoldStill                   // the hand moves too much
	SignalMoveCloser                  // the hand is too far away (too small)
	SignalMoveAway                    // the hand is too close (too big or saturated)
	SignalCenter                      // the hand is off-centre or partly outside the view
	SignalSpreadFingers               // the fingers are closed: valleys cannot be found
	SignalSuccess                     // accepted (green)
	SignalFailure                     // rejected (red)
	SignalRetry                       // no decision: present again
	SignalError                       // the terminal is out of order
)

var signalNames = [...]string{
	SignalIdle: "idle", SignalScanning: "scanning", SignalHoldStill: "hold_still",
	SignalMoveCloser: "move_closer", SignalMoveAway: "move_away", SignalCenter: "center",
	SignalSpreadFingers: "spread_fingers", SignalSuccess: "success", SignalFailure: "failure",
	SignalRetry: "retry", SignalError: "error",
}

// String returns the signal's stable snake_case name, used in logs and metrics.
func (s Signal) String() string {
	if s >= 0 && int(s) < len(signalNames) {
		return signalNames[s]
	}
	return fmt.Sprintf("signal(%d)", int(s))
}

// Indicator shows feedback to the user: LEDs, a buzzer, a screen.
type Indicator interface {
	// Show replaces whatever is shown with s. It must not block on anything
	// slower than a hardware write.
	Show(s Signal) error
	// Close shows nothing and releases the hardware.
	Close() error
}

// Device bundles the parts of one terminal. Presence is nil when the terminal
// has no wake-up input.
type Device struct {
	Camera      Camera
	Illuminator Illuminator
	Presence    PresenceInput
	Indicator   Indicator
}

// Close closes every part, switching the illuminator off first, and returns
// the first error.
func (d *Device) Close() error {
	var errs []error
	closeOne := func(c interface{ Close() error }) {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.Illuminator != nil {
		closeOne(d.Illuminator)
	}
	if d.Camera != nil {
		closeOne(d.Camera)
	}
	if d.Presence != nil {
		closeOne(d.Presence)
	}
	if d.Indicator != nil {
		closeOne(d.Indicator)
	}
	return errors.Join(errs...)
}
