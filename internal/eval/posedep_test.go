package eval

import (
	"fmt"
	"math"
	"testing"

	"github.com/palmd/palmd/internal/dataset"
	"github.com/palmd/palmd/sensor/sim"
)

// TestMeasurePoseDependence builds sets whose genuine distances follow one
// part of the pose difference, or none, and checks the correlations and
// the medians of failing and passing pairs.
func TestMeasurePoseDependence(t *testing.T) {
	// roi is a square ROI of side s centred at (x, y), turned by a degrees.
	roi := func(a, s, x, y float64) [4][2]float64 {
		sin, cos := math.Sincos(a * math.Pi / 180)
		var c [4][2]float64
		for i, p := range [4][2]float64{{-1, -1}, {1, -1}, {1, 1}, {-1, 1}} {
			u, v := p[0]*s/2, p[1]*s/2
			c[i] = [2]float64{x + u*cos - v*sin, y + u*sin + v*cos}
		}
		return c
	}
	m := &dataset.Manifest{Width: 640}
	var angles, sides, xs []float64
	for i := 0; i < 12; i++ {
		// Three pose parts that vary independently of each other.
		a, s, x := float64(i*7%11), 100*(1+0.02*float64(i*5%7)), 300+4*float64(i*3%13)
		angles, sides, xs = append(angles, a), append(sides, s), append(xs, x)
		m.Images = append(m.Images, dataset.Entry{File: fmt.Sprintf("0_%02d.png", i), Truth: sim.Truth{Hand: true, ROI: roi(a, s, x, 240)}})
	}
	pairs := func(score func(i, j int) float64) *ScoreSet {
		set := &ScoreSet{}
		for i := range m.Images {
			for j := i + 1; j < len(m.Images); j++ {
				set.Pairs = append(set.Pairs, Score{A: m.Images[i].File, B: m.Images[j].File, Genuine: true, Score: score(i, j)})
			}
		}
		set.Pairs = append(set.Pairs, Score{A: "0_00.png", B: "x.png", Score: 0.9}) // an impostor: ignored
		return set
	}
	for _, tc := range []struct {
		name  string
		score func(i, j int) float64
		want  [3]float64 // correlations at least (NaN: |r| below 0.5)
	}{
		{"grows with the rotation", func(i, j int) float64 { return 0.2 + 0.01*math.Abs(angles[i]-angles[j]) }, [3]float64{0.99, math.NaN(), math.NaN()}},
		{"grows with the scale", func(i, j int) float64 { return 0.2 + math.Abs(math.Log(sides[i]/sides[j])) }, [3]float64{math.NaN(), 0.99, math.NaN()}},
		{"grows with the shift", func(i, j int) float64 { return 0.2 + 0.002*math.Abs(xs[i]-xs[j]) }, [3]float64{math.NaN(), math.NaN(), 0.99}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := MeasurePoseDependence(pairs(tc.score), m, 0.25)
			if err != nil {
				t.Fatal(err)
			}
			if d.Pairs != 66 {
				t.Errorf("%d genuine pairs, want 66", d.Pairs)
			}
			for k, got := range [3]float64{d.Rotation, d.Scale, d.Shift} {
				if w := tc.want[k]; (math.IsNaN(w) && math.Abs(got) > 0.5) || (!math.IsNaN(w) && got < w) {
					t.Errorf("correlation %d is %.3f, want %v", k, got, w)
				}
			}
			k := 0
			for i, w := range tc.want {
				if !math.IsNaN(w) {
					k = i
				}
			}
			if !(d.Failing[k] > d.Passing[k]) {
				t.Errorf("failing pairs differ by %.2f, passing by %.2f: want more", d.Failing[k], d.Passing[k])
			}
		})
	}
	if _, err := MeasurePoseDependence(&ScoreSet{}, m, 0.3); err == nil {
		t.Error("no pairs: no error")
	}
	if _, err := MeasurePoseDependence(pairs(func(int, int) float64 { return 0.3 }), &dataset.Manifest{Images: m.Images}, 0.3); err == nil {
		t.Error("manifest without a width: no error")
	}
}
