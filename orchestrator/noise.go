package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/sensor"
)

// What a noise measurement takes: NoisePairs pairs of frames at each of
// its settings, after NoiseSettleFrames frames for a new exposure to take
// effect (a V4L2 control applies a frame or two later). At five settings
// that is 40 lit frames, 1.3 s at 30 fps: well within the illuminator's
// on-time limit.
const (
	NoisePairs        = 3
	NoiseSettleFrames = 2
)

// NoiseResult is a measurement of the camera's temporal noise (numbers
// only; no frame is kept).
type NoiseResult struct {
	// Fit is the noise model and what it was measured on.
	Fit liveness.NoiseFit
	// Exposures are the exposures the pairs were taken at, or, for a
	// camera whose exposure cannot be set, the operating one.
	Exposures []time.Duration
	// Levels are the illuminator levels (percent) the pairs were taken at.
	Levels []int
	// Problem says why no model was fitted ("" when one was).
	Problem string
	At      time.Time
}

// Passed reports that a noise model was fitted.
func (r NoiseResult) Passed() bool { return r.Problem == "" }

// MeasureNoise asks the main loop to measure the camera's noise between
// presentations (liveness.NoiseMeter) and waits for the result. The scene
// must hold still: a grey card over the window, or the empty box.
func (o *Orchestrator) MeasureNoise(ctx context.Context) (NoiseResult, error) {
	return between(ctx, o, "noise measurement", o.measureNoise)
}

// measureNoise takes pairs of lit frames at exposures from a quarter to
// four times the operating one (a range of grey levels from one scene, as
// EMVA 1288 does), or at several illuminator levels when the camera's
// exposure cannot be set, then restores the exposure and fits the noise.
func (o *Orchestrator) measureNoise(ctx context.Context) (res NoiseResult) {
	res.At = o.cfg.Clock.Now()
	defer func() {
		if err := o.dev.Illuminator.Off(); err != nil && res.Problem == "" {
			res.Problem = fmt.Sprintf("illuminator off: %v", err)
		}
	}()
	level := o.cfg.IlluminatorLevel
	first, err := o.frame(ctx, level)
	if err != nil {
		res.Problem = err.Error()
		return res
	}
	exposure := first.Exposure
	first.Zero()
	var m liveness.NoiseMeter
	defer m.Forget()
	take := func(exp time.Duration, lvl int) error {
		for range NoiseSettleFrames {
			f, err := o.frame(ctx, lvl)
			if err != nil {
				return err
			}
			f.Zero()
		}
		for range NoisePairs {
			a, err := o.frame(ctx, lvl)
			if err != nil {
				return err
			}
			b, err := o.frame(ctx, lvl)
			if err != nil {
				a.Zero()
				return err
			}
			err = m.AddPair(&a, &b)
			a.Zero()
			b.Zero()
			if err != nil {
				return fmt.Errorf("two consecutive frames are not a pair (size, exposure or gain changed): %w", err)
			}
		}
		res.Exposures = append(res.Exposures, exp)
		res.Levels = append(res.Levels, lvl)
		return nil
	}
	if exposure > 0 {
		for _, k := range []float64{0.25, 0.5, 1, 2, 4} {
			e := time.Duration(k * float64(exposure))
			if err = o.dev.Camera.SetExposure(e); errors.Is(err, sensor.ErrUnsupported) {
				break
			} else if err != nil {
				// Beyond this camera's range (at this frame rate): the
				// other exposures still span grey levels.
				o.cfg.Logger.Info("noise measurement: exposure refused", "exposure", e, "err", err)
				err = nil
				continue
			}
			if err = take(e, level); err != nil {
				break
			}
		}
		if rerr := o.dev.Camera.SetExposure(exposure); rerr != nil && !errors.Is(rerr, sensor.ErrUnsupported) {
			err = errors.Join(err, fmt.Errorf("restoring the exposure: %w", rerr))
		}
	}
	if exposure <= 0 || errors.Is(err, sensor.ErrUnsupported) {
		// A fixed exposure: the illuminator's level spans the grey
		// levels instead (with the ambient light under it).
		err = nil
		m.Forget()
		res.Exposures, res.Levels = nil, nil
		for _, pct := range []int{25, 50, 75, 100} {
			if err = take(exposure, max(1, level*pct/100)); err != nil {
				break
			}
		}
	}
	if err != nil {
		res.Problem = err.Error()
		return res
	}
	res.Fit, err = m.Fit()
	if err != nil {
		res.Problem = err.Error()
	}
	return res
}
