package liveness

import (
	"context"
	"testing"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
)

// BenchmarkPresentation measures what liveness adds to one presentation:
// Observe on each of the still frames the detector waits for (with the ROI
// the quality gates already found) and Decide. Target: ≤ 30 ms on one core
// (run with -cpu 1); the daemon also saves the template extraction it no
// longer makes on every frame of the burst (BenchmarkExtract −
// BenchmarkAssess in imaging, per frame).
func BenchmarkPresentation(b *testing.B) {
	s, err := sim.New(sim.Config{Scenario: &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepPresent, Identity: 3, Hold: 40}}}})
	if err != nil {
		b.Fatal(err)
	}
	dev := s.Device()
	defer dev.Close()
	ctx := context.Background()
	_ = dev.Camera.Start(ctx)
	_ = dev.Illuminator.On(100)
	ex := imaging.NewExtractor(imaging.DefaultConfig())
	defer ex.Close()
	var frames []sensor.Frame
	var rois []*imaging.ROIGeometry
	for len(frames) < DefaultMinStillFrames {
		f, err := dev.Camera.NextFrame(ctx)
		if err != nil {
			b.Fatal(err)
		}
		res, err := ex.Assess(&f)
		if err != nil {
			continue
		}
		frames, rois = append(frames, f), append(rois, &res.ROI)
	}
	d := NewDetector(Config{})
	defer d.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.Reset()
		for k := range frames {
			if err := d.Observe(&frames[k], rois[k]); err != nil {
				b.Fatal(err)
			}
		}
		if dec := d.Decide(); len(dec.Raw) == 0 {
			b.Fatal("no cue measured")
		}
	}
}

// BenchmarkFrameCues is the single-frame part on one frame.
func BenchmarkFrameCues(b *testing.B) {
	r, err := sim.NewRenderer(W, H, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	p := sim.DefaultVariation().Sample(sim.NewIdentity(5), 0, 0, W, H)
	f := sensor.Frame{Width: W, Height: H, Pix: make([]byte, W*H)}
	if _, err := r.Render(f.Pix, &p, sim.Lighting{Level: 100}, [2]float64{}, 1); err != nil {
		b.Fatal(err)
	}
	ex := imaging.NewExtractor(imaging.DefaultConfig())
	defer ex.Close()
	res, err := ex.Assess(&f)
	if err != nil {
		b.Fatal(err)
	}
	d := NewDetector(Config{})
	defer d.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.FrameCues(&f, res.ROI); err != nil {
			b.Fatal(err)
		}
	}
}
