//go:build matprofile

package liveness

import (
	"bytes"
	"context"
	"testing"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
)

// TestNoMatLeaks runs 300 observations, decisions and screen checks on
// hands, prints and bad frames, and a noise measurement on them, and checks that every Mat they created was
// closed. Run with: go test -tags matprofile -run NoMatLeaks ./imaging/liveness
func TestNoMatLeaks(t *testing.T) {
	var frames []sensor.Frame
	var rois []*imaging.ROIGeometry
	ex := imaging.NewExtractor(imaging.DefaultConfig())
	for _, kind := range []sim.StepKind{sim.StepEmpty, sim.StepPresent, sim.StepPhoto, sim.StepScreen} {
		s, err := sim.New(sim.Config{Scenario: &sim.Scenario{Steps: []sim.Step{{Kind: kind, Identity: 9, Hold: 8}}}})
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Camera.Start(context.Background())
		for i := 0; i < 4; i++ {
			_ = s.Illuminator.On(100)
			f, _ := s.Camera.NextFrame(context.Background())
			var roi *imaging.ROIGeometry
			if res, err := ex.Assess(&f); err == nil {
				roi = &res.ROI
			}
			frames, rois = append(frames, f), append(rois, roi)
		}
		_ = s.Device().Close()
	}
	ex.Close()
	frames = append(frames, sensor.Frame{Width: 3, Height: 3, Pix: make([]byte, 9)})
	rois = append(rois, nil)

	before := gocv.MatProfile.Count()
	d := NewDetector(Config{})
	o := NewOccluder(OccluderConfig{})
	for i := 0; i < 300; i++ {
		k := i % len(frames)
		_ = d.Observe(&frames[k], rois[k])
		if rois[k] != nil {
			_, _ = d.FrameCues(&frames[k], *rois[k])
		}
		// Empty views teach it the box; with a hand it also measures the
		// hand's surroundings.
		view := NoHand
		if rois[k] != nil {
			view = HandArriving
		}
		_, _ = o.Check(&frames[k], &frames[(k+1)%len(frames)], view)
		if i%10 == 9 {
			_ = d.Decide()
			d.Reset()
		}
	}
	d.Close()
	o.Close()
	// The noise meter's spectra, over pairs of every frame.
	var m NoiseMeter
	for k := range frames {
		_ = m.AddPair(&frames[k], &frames[(k+1)%len(frames)])
	}
	_, _ = m.Fit()
	if after := gocv.MatProfile.Count(); after != before {
		var b bytes.Buffer
		_ = gocv.MatProfile.WriteTo(&b, 1)
		t.Fatalf("%d Mats leaked over 300 observations:\n%s", after-before, b.String())
	}
}
