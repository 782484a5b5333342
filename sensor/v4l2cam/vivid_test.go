package v4l2cam

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/blackjack/webcam"

	"github.com/palmd/palmd/sensor"
)

// The tests below run inside the VM (vm_test.go boots it), against the
// kernel's vivid driver; elsewhere they skip.
func inVM(t *testing.T) {
	if os.Getenv("PALMD_IN_VM") != "1" {
		t.Skip("runs inside the test VM (make vmtest)")
	}
}

func frames(t *testing.T, c *Camera, n int) []sensor.Frame {
	t.Helper()
	var out []sensor.Frame
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		f, err := c.NextFrame(ctx)
		cancel()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		out = append(out, f)
	}
	return out
}

func TestVividGreyStreaming(t *testing.T) {
	inVM(t)
	c, err := Open(Config{Device: "/dev/video0", Width: 640, Height: 480, FPS: 30, Formats: []uint32{FormatGREY}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if f := c.Format(); f.Pixel != "GREY" || f.Width != 640 || f.Height != 480 {
		t.Fatalf("format %v", f)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs := frames(t, c, 300)
	changed := 0
	for i, f := range fs {
		if err := f.Validate(); err != nil || f.Width != 640 || f.Height != 480 {
			t.Fatalf("frame %d: %v", i, err)
		}
		if i > 0 && f.Seq != fs[i-1].Seq+1 {
			t.Fatalf("sequence %d after %d", f.Seq, fs[i-1].Seq)
		}
		if i > 0 && !bytes.Equal(f.Pix, fs[i-1].Pix) {
			changed++
		}
	}
	if changed < 100 {
		t.Errorf("only %d of 299 frames differ from the one before", changed)
	}
	t.Logf("300 GREY frames, %d changed, format %v", changed, c.Format())
}

func TestVividYUYV(t *testing.T) {
	inVM(t)
	c, err := Open(Config{Device: "/dev/video0", Width: 640, Height: 480, Formats: []uint32{FormatYUYV}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if f := c.Format(); f.Pixel != "YUYV" {
		t.Fatalf("format %v", f)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs := frames(t, c, 30)
	if fs[29].Width != 640 || len(fs[29].Pix) != 640*480 {
		t.Fatal("YUYV luma frame has the wrong size")
	}
}

func TestVividControlsAndDeadline(t *testing.T) {
	inVM(t)
	c, err := Open(Config{Device: "/dev/video0", Width: 640, Height: 480})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const brightness = 0x00980900 // V4L2_CID_BRIGHTNESS
	if err := c.SetControl(brightness, 100); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Control(brightness); err != nil || v != 100 {
		t.Fatalf("brightness read back %d (%v)", v, err)
	}
	// Exposure and gain: set when the driver has the control, refused as
	// unsupported when it has not — and then the frames keep reporting the
	// value in force, which a noise measurement pairs frames by.
	wantExposure := c.exposure
	for _, ctl := range []struct {
		name string
		id   webcam.ControlID
		set  func() error
	}{
		{"exposure", CIDExposureAbsolute, func() error { return c.SetExposure(20 * time.Millisecond) }},
		{"gain", CIDGain, func() error { return c.SetGain(2) }},
	} {
		_, getErr := c.Control(ctl.id)
		err := ctl.set()
		t.Logf("%s: get %v, set %v", ctl.name, getErr, err)
		if getErr == nil && err != nil {
			t.Errorf("%s: the driver has it, and setting it failed: %v", ctl.name, err)
		}
		if getErr != nil && !errors.Is(err, sensor.ErrUnsupported) {
			t.Errorf("%s: the driver lacks it (%v), and setting it said %v, want sensor.ErrUnsupported", ctl.name, getErr, err)
		}
		if ctl.name == "exposure" && err == nil {
			wantExposure = 20 * time.Millisecond
		}
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Microsecond)
	defer cancel()
	time.Sleep(time.Millisecond)
	if _, err := c.NextFrame(ctx); !errors.Is(err, sensor.ErrFrameTimeout) {
		t.Fatalf("expired deadline: %v", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel2()
	f, err := c.NextFrame(ctx2)
	if err != nil {
		t.Fatalf("150 ms deadline at 30 fps: %v", err)
	}
	if f.Exposure != wantExposure {
		t.Errorf("frame reports exposure %v, want %v (the value in force)", f.Exposure, wantExposure)
	}
}

func TestVividDisconnectAndRecovery(t *testing.T) {
	inVM(t)
	c, err := Open(Config{Device: "/dev/video0", Width: 640, Height: 480, Watchdog: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	frames(t, c, 10)
	// VIVID_CID_DISCONNECT (drivers/media/test-drivers/vivid/vivid-ctrls.c):
	// a private control webcam's enumeration does not list.
	id, ok := c.ControlByName("Disconnect")
	if !ok {
		id = 0x00f0f000 + 65
	}
	if err := c.SetControl(id, 1); err != nil {
		t.Fatalf("pressing Disconnect: %v", err)
	}
	frames(t, c, 20) // the camera comes back by itself
	if c.Reopens() < 1 {
		t.Fatal("no reopen counted after the disconnect")
	}
	t.Logf("recovered after disconnect with %d reopen(s)", c.Reopens())
}
