// Package templatetest makes templates for tests: palm-like bit planes
// (the sign of smooth random fields, as veins and creases are long broad
// structures) without rendering or extracting anything.
package templatetest

import (
	"math"
	"math/rand/v2"

	"github.com/palmd/palmd/template"
)

// Palm returns a template of person seed with fraction flip of its bits
// changed at random (noise picks which), as another capture of the same
// palm differs; the mask is fully set.
func Palm(seed uint64, flip float64, noise uint64) *template.Template {
	r := rand.New(rand.NewPCG(seed, 99))
	n := rand.New(rand.NewPCG(noise, 7))
	t := &template.Template{Version: template.AlgorithmVersion, Quality: 80}
	for m := range t.Planes {
		for o := range t.Planes[m] {
			var w [6][3]float64
			for k := range w {
				a, f := r.Float64()*2*math.Pi, 0.15+0.35*r.Float64()
				w[k] = [3]float64{f * math.Cos(a), f * math.Sin(a), r.Float64() * 2 * math.Pi}
			}
			for y := range t.Planes[m][o] {
				var row uint32
				for x := 0; x < template.Grid; x++ {
					v := 0.0
					for _, q := range w {
						v += math.Sin(q[0]*float64(x) + q[1]*float64(y) + q[2])
					}
					if (v < 0) != (n.Float64() < flip) {
						row |= 1 << uint(x)
					}
				}
				t.Planes[m][o][y] = row
			}
		}
		for y := range t.Mask[m] {
			t.Mask[m][y] = 0xffffffff
		}
	}
	return t
}
