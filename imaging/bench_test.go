package imaging

import (
	"testing"

	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/template"
)

// benchFrames renders n cross-session presentations of different people.
func benchFrames(b *testing.B, n int) []sensor.Frame {
	b.Helper()
	r := renderer(b)
	v := sim.DefaultVariation()
	frames := make([]sensor.Frame, n)
	for i := range frames {
		p := v.Sample(sim.NewIdentity(uint64(900+i)), i%2, i, W, H)
		p.Spread = max(p.Spread, 0.5)
		frames[i], _ = render(b, r, &p, 100)
	}
	return frames
}

// BenchmarkExtract measures a full 640×480 frame → template (target ≤ 20 ms
// on one core: run with -cpu 1 and taskset to pin it).
func BenchmarkExtract(b *testing.B) {
	frames := benchFrames(b, 8)
	e := extractor(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frames[i%len(frames)]
		if _, err := e.Extract(&f, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPresence measures one lit/unlit presence check (target ≤ 1 ms).
func BenchmarkPresence(b *testing.B) {
	frames := benchFrames(b, 2)
	r := renderer(b)
	unlit, _ := render(b, r, nil, 0)
	d := NewPresenceDetector(DefaultPresenceConfig())
	defer d.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Check(&frames[i%2], &unlit); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompareReal compares templates extracted from simulated palms
// (target ≤ 20 µs).
func BenchmarkCompareReal(b *testing.B) {
	frames := benchFrames(b, 8)
	e := extractor(b)
	tpls := make([]template.Template, len(frames))
	for i := range frames {
		res, err := e.Extract(&frames[i], nil)
		if err != nil {
			b.Fatal(err)
		}
		tpls[i] = res.Template
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := template.Compare(&tpls[i%8], &tpls[(i+3)%8]); err != nil {
			b.Fatal(err)
		}
	}
}
