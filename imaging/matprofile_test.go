//go:build matprofile

package imaging

import (
	"bytes"
	"testing"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
)

// TestNoMatLeaks runs 1,000 extractions and presence checks (successful
// and failing ones) and checks that every Mat they created was closed. Run
// with: go test -tags matprofile -run NoMatLeaks ./imaging
func TestNoMatLeaks(t *testing.T) {
	r, err := sim.NewRenderer(W, H, 1)
	if err != nil {
		t.Fatal(err)
	}
	v := sim.DefaultVariation()
	var frames []sensor.Frame
	for i := 0; i < 10; i++ {
		p := v.Sample(sim.NewIdentity(uint64(i)), i%2, i, W, H)
		f, _ := render(t, r, &p, 100)
		frames = append(frames, f)
	}
	empty, _ := render(t, r, nil, 100)
	frames = append(frames, empty, sensor.Frame{Width: 3, Height: 3, Pix: make([]byte, 9)})
	r.Close()

	before := gocv.MatProfile.Count()
	e := NewExtractor(DefaultConfig())
	d := NewPresenceDetector(DefaultPresenceConfig())
	roi := gocv.NewMat()
	for i := 0; i < 1000; i++ {
		f := frames[i%len(frames)]
		var out *gocv.Mat
		if i%3 == 0 {
			out = &roi
		}
		_, _ = e.Extract(&f, out)
		_, _ = d.Check(&f, &frames[(i+1)%len(frames)])
		if i%10 == 0 {
			_, _ = e.FromROI(f.Pix[:ROISize*ROISize], ROISize, ROISize)
			_, _ = e.FromROI(f.Pix[:10], 5, 2) // rejected before any Mat exists
		}
	}
	roi.Close()
	d.Close()
	e.Close()
	if after := gocv.MatProfile.Count(); after != before {
		var b bytes.Buffer
		_ = gocv.MatProfile.WriteTo(&b, 1)
		t.Fatalf("%d Mats leaked over 1,000 extractions:\n%s", after-before, b.String())
	}
	t.Logf("Mats alive before and after 1,000 extractions: %d", before)
}
