// Package templatetest makes templates for tests: palm-like bit planes
// (the sign of smooth random fields, as veins and creases are long broad
// structures) without rendering or extracting anything.
package templatetest

import (
	"math"
	"math/rand/v2"
	"slices"

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

// Mosaic returns a template made of the four quadrants of four different
// sources (chosen by seed): a stand-in for another person's palm when a
// gallery must be larger than the palms that can be rendered. Each
// quadrant keeps its source's local structure and the features people
// share at that place of the palm (the coarse course of the main lines);
// what a mosaic lacks is agreement between quadrants beyond that, so its
// distances to a probe are somewhat less extreme than a real impostor's.
// Sources must be of people other than the probes'; at least four.
func Mosaic(sources []*template.Template, seed uint64) *template.Template {
	r := rand.New(rand.NewPCG(seed, 0x3054_1c))
	out := &template.Template{Version: template.AlgorithmVersion, Quality: 80}
	const half = template.Grid / 2
	var picked [4]int
	for q := range picked {
		for {
			picked[q] = r.IntN(len(sources))
			if len(sources) < 4 || !slices.Contains(picked[:q], picked[q]) {
				break
			}
		}
		src := sources[picked[q]]
		cols := uint32(1)<<half - 1
		if q%2 == 1 {
			cols <<= half
		}
		for y := (q / 2) * half; y < (q/2+1)*half; y++ {
			for m := range out.Planes {
				out.Mask[m][y] |= src.Mask[m][y] & cols
				for o := range out.Planes[m] {
					out.Planes[m][o][y] |= src.Planes[m][o][y] & cols
				}
			}
		}
	}
	return out
}
