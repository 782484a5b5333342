package liveness_test

import (
	"fmt"

	"github.com/palmd/palmd/imaging/liveness"
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
