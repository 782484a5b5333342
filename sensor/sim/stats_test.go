package sim

import (
	"math"
	"slices"
	"testing"
)

// realRange is one row of the figures measured on real contactless 940 nm
// palm captures (median and p10–p90 over images), which the simulator's
// median over a generated set must fall within.
type realRange struct {
	name        string
	median      float64
	lo, hi      float64
	get         func(Stats) float64
	description string
}

var realCaptureFigures = []realRange{
	{"coverage", 0.32, 0.25, 0.36, func(s Stats) float64 { return s.Coverage }, "share of the frame covered by the hand"},
	{"hand_mean", 92, 82, 102, func(s Stats) float64 { return s.HandMean }, "mean grey of the hand"},
	{"bg_mean", 18, 16, 20, func(s Stats) float64 { return s.BgMean }, "mean grey of the background"},
	{"bg_p99", 56, 52, 68, func(s Stats) float64 { return s.BgP99 }, "background 99th percentile"},
	{"palm_mean", 100, 89, 114, func(s Stats) float64 { return s.PalmMean }, "mean grey of the palm interior"},
	{"palm_std", 12.8, 10.5, 15.3, func(s Stats) float64 { return s.PalmStd }, "std of the palm interior"},
	{"vein_contrast", 2.1, 1.8, 2.9, func(s Stats) float64 { return s.VeinContrast }, "std of (image − G σ8) in the palm"},
	{"vein_p5", -3.3, -4.3, -2.7, func(s Stats) float64 { return s.VeinP5 }, "p5 of (image − G σ8) in the palm"},
	{"fine_noise", 0.58, 0.50, 0.69, func(s Stats) float64 { return s.FineNoise }, "std of (image − G σ1) in the palm"},
	{"laplacian_var", 4.6, 3.5, 6.4, func(s Stats) float64 { return s.LaplacianVar }, "variance of the 3×3 Laplacian in the palm"},
	// Only the median is known for saturation (0.002); accept the same
	// order of magnitude.
	{"saturated", 0.002, 0.0005, 0.006, func(s Stats) float64 { return s.Saturated }, "share of pixels ≥ 250"},
}

// TestStatisticsMatchRealCaptures renders a cross-session set of
// presentations and checks that the median of every figure lies in the
// p10–p90 range measured on real captures. The figures are printed so
// that they can be compared by eye.
func TestStatisticsMatchRealCaptures(t *testing.T) {
	const w, h = 640, 480
	const identities, samples = 16, 4
	v := DefaultVariation()
	var all []Stats
	buf := make([]byte, w*h)
	mask := make([]byte, w*h)
	for i := 0; i < identities; i++ {
		// Each identity is captured on a different terminal background.
		r, err := NewRenderer(w, h, uint64(1000+i))
		if err != nil {
			t.Fatal(err)
		}
		id := NewIdentity(uint64(500 + i))
		for k := 0; k < samples; k++ {
			p := v.Sample(id, k/2, k, w, h)
			tr, err := r.Render(buf, &p, Lighting{Level: 100}, [2]float64{}, uint64(i*samples+k))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.HandMask(mask); err != nil {
				t.Fatal(err)
			}
			s, err := Measure(buf, w, h, mask, PalmInterior(tr))
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, s)
		}
		r.Close()
	}
	t.Logf("%-14s %9s %9s %9s %9s   %s", "figure", "sim p10", "sim med", "sim p90", "real med", "real p10–p90")
	for _, f := range realCaptureFigures {
		vals := make([]float64, len(all))
		for i, s := range all {
			vals[i] = f.get(s)
		}
		slices.Sort(vals)
		q := func(p float64) float64 { return vals[int(math.Round(p*float64(len(vals)-1)))] }
		med := q(0.5)
		t.Logf("%-14s %9.4g %9.4g %9.4g %9.4g   %.4g–%.4g", f.name, q(0.1), med, q(0.9), f.median, f.lo, f.hi)
		if med < f.lo || med > f.hi {
			t.Errorf("%s (%s): simulated median %.4g outside the real range %.4g–%.4g", f.name, f.description, med, f.lo, f.hi)
		}
	}
}
