package imaging_test

import (
	"fmt"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
)

// Extraction from one lit frame: the palm's region is found from the
// finger valleys and turned into a template; the frame is the caller's and
// is zeroed once used.
func ExampleExtractor_Extract() {
	const w, h = 640, 480
	r, err := sim.NewRenderer(w, h, 1)
	if err != nil {
		panic(err)
	}
	defer r.Close()
	p := sim.DefaultVariation().Sample(sim.NewIdentity(31), 0, 0, w, h)
	p.Spread, p.TiltX, p.TiltY = 0.7, 0, 0
	p.Pose.Angle, p.Pose.Distance, p.Pose.X, p.Pose.Y = 0, 175, w/2, h/2+40
	f := sensor.Frame{Width: w, Height: h, Pix: make([]byte, w*h), Illuminated: true}
	if _, err := r.Render(f.Pix, &p, sim.Lighting{Level: 100}, [2]float64{}, 7); err != nil {
		panic(err)
	}

	e := imaging.NewExtractor(imaging.DefaultConfig())
	defer e.Close()
	res, err := e.Extract(&f, nil)
	f.Zero()
	if err != nil {
		fmt.Println("refused:", imaging.GateOf(err))
		return
	}
	defer res.Template.Zero()
	fmt.Println("template version", res.Template.Version, "quality over 50:", res.Quality.Score > 50)
	// Output: template version 6 quality over 50: true
}
