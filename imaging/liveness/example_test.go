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
	// Output: attack: true, named cue: surface_detail, score above 3.6
}
