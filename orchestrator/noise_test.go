package orchestrator

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
)

// fixedExposure is a camera whose exposure cannot be set.
type fixedExposure struct{ sensor.Camera }

func (fixedExposure) SetExposure(time.Duration) error { return sensor.ErrUnsupported }

// TestMeasureNoise: between presentations, the terminal measures its
// camera's noise on the empty box — over exposures when it can set them
// (and puts the exposure back), over illuminator levels when it cannot —
// and gets the simulated camera's read and shot noise.
func TestMeasureNoise(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fixed     bool
		exposures int
	}{
		{"over exposures", false, 5},
		{"over illuminator levels, the exposure fixed", true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, o, _ := setup(t, &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 30}}})
			if tc.fixed {
				o.dev.Camera = fixedExposure{s.Camera}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- o.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			mctx, mcancel := context.WithTimeout(ctx, 30*time.Second)
			defer mcancel()
			res, err := o.MeasureNoise(mctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", res)
			if !res.Passed() {
				t.Fatalf("no noise model: %s", res.Problem)
			}
			got, want := res.Fit.Model, liveness.DefaultNoise
			if math.Abs(got.Read-want.Read) > 0.05*want.Read || math.Abs(got.Shot-want.Shot) > 0.05*want.Shot {
				t.Errorf("read %.4g and shot %.4g, the simulator renders %.4g and %.4g", got.Read, got.Shot, want.Read, want.Shot)
			}
			if len(res.Exposures) != tc.exposures || len(res.Levels) != tc.exposures || res.Fit.Pairs != tc.exposures*NoisePairs {
				t.Errorf("measured at exposures %v and levels %v in %d pairs", res.Exposures, res.Levels, res.Fit.Pairs)
			}
			f, err := s.Camera.NextFrame(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if f.Exposure != sim.NominalExposure {
				t.Errorf("exposure %v after the measurement, want %v back", f.Exposure, sim.NominalExposure)
			}
		})
	}
}

// TestMeasureNoiseOneAtATime: a noise measurement or a self-test asked for
// while another waits for the main loop is refused at once, not queued.
func TestMeasureNoiseOneAtATime(t *testing.T) {
	_, o, _ := setup(t, &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 30}}})
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan error, 1)
	go func() { _, err := o.SelfTest(ctx); waiting <- err }() // the main loop is not running: it waits
	for len(o.between) == 0 {
		time.Sleep(time.Millisecond)
	}
	_, err := o.MeasureNoise(context.Background())
	if err == nil || !strings.Contains(err.Error(), "already queued") {
		t.Errorf("a second job while one waits: %v", err)
	}
	cancel()
	if err := <-waiting; !errors.Is(err, context.Canceled) {
		t.Errorf("the waiting self-test, cancelled: %v", err)
	}
}

// shortExposure is a camera that refuses exposures above max, as a
// sensor does beyond its frame period.
type shortExposure struct {
	sensor.Camera
	max time.Duration
}

func (c shortExposure) SetExposure(d time.Duration) error {
	if d > c.max {
		return errors.New("numerical result out of range")
	}
	return c.Camera.SetExposure(d)
}

// TestMeasureNoiseWithinTheCamerasRange: exposures the camera refuses are
// left out, and the others still span enough grey levels.
func TestMeasureNoiseWithinTheCamerasRange(t *testing.T) {
	s, o, _ := setup(t, &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 30}}})
	o.dev.Camera = shortExposure{s.Camera, 2 * sim.NominalExposure}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	res, err := o.MeasureNoise(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{sim.NominalExposure / 4, sim.NominalExposure / 2, sim.NominalExposure, 2 * sim.NominalExposure}
	if !res.Passed() || !slices.Equal(res.Exposures, want) {
		t.Errorf("measured at %v (problem %q), want %v", res.Exposures, res.Problem, want)
	}
}
