package liveness_test

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/sensor"
)

// The decision on one presentation: every cue measured is standardised
// against living palms, and evidence on several cues adds up. Here the
// palm's fine detail stays put from frame to frame, as a print's toner
// grain does, and the hand's brightness shows no heartbeat.
func ExampleCalibration_Fuse() {
	cal := liveness.DefaultCalibration()
	raw := map[liveness.Cue]float64{
		liveness.CueSurface: 0.30,  // static detail shared by consecutive frames
		liveness.CueTexture: 1.2,   // fine detail above the camera's noise
		liveness.CueEdge:    1.59,  // outline as soft as skin's
		liveness.CueVeins:   0.007, // veins present
		liveness.CuePulse:   0.001, // no pulse
	}
	d := cal.Fuse(raw, liveness.DefaultThreshold)
	fmt.Printf("attack: %v, named cue: %s, score above %.1f\n", d.Attack, d.Cue, liveness.DefaultThreshold)
	// Output: attack: true, named cue: surface_detail, score above 4.0
}

// A terminal model's own calibration travels as a file: the cues' living
// medians and spreads measured on its pilot, and the threshold chosen on
// them. The cues' directions are the detector's, never the file's.
func ExampleParseCalibrationFile() {
	cal := liveness.DefaultCalibration()
	texture := cal[liveness.CueTexture]
	texture.Median = 1.25 // this camera is noisier than the simulated one
	cal[liveness.CueTexture] = texture
	data, err := liveness.CalibrationFile{Calibration: cal, Threshold: 3.8, Presentations: 640}.Marshal()
	if err != nil {
		fmt.Println(err)
		return
	}
	f, err := liveness.ParseCalibrationFile(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	n := f.Calibration[liveness.CueTexture]
	fmt.Printf("%d presentations, threshold %.1f, print_texture median %.2f (high means attack: %v)\n",
		f.Presentations, f.Threshold, n.Median, n.High)
	// Output: 640 presentations, threshold 3.8, print_texture median 1.25 (high means attack: true)
}

// A terminal model measures its camera's noise once: pairs of frames of a
// still scene (here a grey card, at two grey levels), one after the
// other; their differences are noise alone.
func ExampleNoiseMeter() {
	var m liveness.NoiseMeter
	r := rand.New(rand.NewPCG(1, 2))
	card := func(grey float64) *sensor.Frame {
		f := &sensor.Frame{Width: 128, Height: 128, Pix: make([]byte, 128*128), Gain: 1}
		for i := range f.Pix {
			g := grey + float64(i%128)/64 // a little unevenly lit
			sd := math.Sqrt(0.6*0.6 + 0.004*g)
			f.Pix[i] = uint8(math.Round(g + sd*r.NormFloat64()))
		}
		return f
	}
	for _, grey := range []float64{20, 60, 110, 170, 230} {
		for range 6 {
			if err := m.AddPair(card(grey), card(grey)); err != nil {
				fmt.Println(err)
				return
			}
		}
	}
	fit, err := m.Fit()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("read %.1f grey levels, shot %.3f, crosstalk %.1f px\n", fit.Model.Read, fit.Model.Shot, fit.Model.Corr)
	// Output: read 0.6 grey levels, shot 0.004, crosstalk 0.1 px
}
