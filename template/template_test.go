package template

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// randomTemplate returns a template with the statistics of a real palm's:
// each bit plane is the sign of a random smooth field (veins and creases
// are long, broad structures, so neighbouring cells agree), and the mask is
// mostly set.
func randomTemplate(r *rand.Rand) *Template {
	t := &Template{Version: AlgorithmVersion, Quality: 80}
	for m := range t.Planes {
		for o := range t.Planes[m] {
			var waves [6][3]float64
			for k := range waves {
				a := r.Float64() * 2 * math.Pi
				f := 0.15 + 0.35*r.Float64() // 2–7 cells per half-period
				waves[k] = [3]float64{f * math.Cos(a), f * math.Sin(a), r.Float64() * 2 * math.Pi}
			}
			for y := range t.Planes[m][o] {
				var row uint32
				for x := 0; x < Grid; x++ {
					v := 0.0
					for _, w := range waves {
						v += math.Sin(w[0]*float64(x) + w[1]*float64(y) + w[2])
					}
					if v < 0 {
						row |= 1 << uint(x)
					}
				}
				t.Planes[m][o][y] = row
			}
		}
		for y := range t.Mask[m] {
			t.Mask[m][y] = r.Uint32() | r.Uint32() | r.Uint32() // ≈ 7/8 reliable
		}
	}
	return t
}

// noisy copies t, flipping each feature bit with probability p and
// translating it by (dx, dy) cells.
func noisy(t *Template, r *rand.Rand, p float64, dx, dy int) *Template {
	out := &Template{Version: t.Version, Quality: t.Quality}
	for m := range t.Planes {
		for y := 0; y < Grid; y++ {
			ys := y - dy
			if ys < 0 || ys >= Grid {
				continue
			}
			out.Mask[m][y] = shiftRow32(t.Mask[m][ys], dx)
			for o := range t.Planes[m] {
				row := shiftRow32(t.Planes[m][o][ys], dx)
				for b := 0; b < Grid; b++ {
					if r.Float64() < p {
						row ^= 1 << uint(b)
					}
				}
				out.Planes[m][o][y] = row
			}
		}
	}
	return out
}

func TestCompare(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	a, b := randomTemplate(r), randomTemplate(r)
	tests := []struct {
		name   string
		x, y   *Template
		lo, hi float64
	}{
		{"self", a, a, 0, 0},
		{"unrelated", a, b, 0.35, 0.5},
		{"noisy genuine", a, noisy(a, r, 0.2, 0, 0), 0.15, 0.25},
		{"shifted genuine", a, noisy(a, r, 0.1, 2, -1), 0.05, 0.15},
		// A palm's ROIs lie up to 5–6 mm apart between captures.
		{"shifted to the search's edge", a, noisy(a, r, 0.1, -5, 5), 0.05, 0.15},
		{"shift beyond search", a, noisy(a, r, 0.0, 12, 0), 0.3, 0.5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Compare(tc.x, tc.y)
			if err != nil {
				t.Fatal(err)
			}
			if s < tc.lo || s > tc.hi {
				t.Errorf("score %.4f outside [%.2f, %.2f]", s, tc.lo, tc.hi)
			}
			if back, _ := Compare(tc.y, tc.x); back != s {
				t.Errorf("Compare not symmetric: %v vs %v", s, back)
			}
		})
	}
}

// TestLineBitsWeighLess flips the same number of bits in one modality or
// the other: line bits, less stable between captures, must cost less.
func TestLineBitsWeighLess(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	a := randomTemplate(r)
	flip := func(m Modality) *Template {
		b := *a
		for o := range b.Planes[m] {
			for y := 0; y < Grid; y += 2 {
				b.Planes[m][o][y] ^= 0x0f0f0f0f
			}
		}
		return &b
	}
	vein, err := Compare(a, flip(Vein))
	if err != nil {
		t.Fatal(err)
	}
	line, err := Compare(a, flip(Line))
	if err != nil {
		t.Fatal(err)
	}
	if !(line < vein) || line == 0 {
		t.Errorf("flipping line bits costs %.4f, vein bits %.4f: want line < vein (weight %.2f)", line, vein, LineWeight)
	}
}

func TestCompareRejectsMismatched(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	a := randomTemplate(r)
	old := *a
	old.Version = AlgorithmVersion + 1
	if _, err := Compare(a, &old); !errors.Is(err, ErrVersion) {
		t.Errorf("different versions: %v", err)
	}
	var zero Template
	if _, err := Compare(&zero, &zero); !errors.Is(err, ErrVersion) {
		t.Errorf("zero templates: %v", err)
	}
	sparse := *a
	sparse.Mask = [Modalities][Grid]uint32{}
	sparse.Mask[Vein][0] = 0xffff
	if _, err := Compare(a, &sparse); !errors.Is(err, ErrOverlap) {
		t.Errorf("almost empty mask: %v", err)
	}
}

func TestZero(t *testing.T) {
	a := randomTemplate(rand.New(rand.NewPCG(5, 6)))
	a.Zero()
	if *a != (Template{}) {
		t.Fatal("Zero left data behind")
	}
}

func BenchmarkCompare(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	x, y := randomTemplate(r), randomTemplate(r)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Compare(x, y); err != nil {
			b.Fatal(err)
		}
	}
}

func shiftRow32(r uint32, dx int) uint32 {
	if dx >= 0 {
		return r << uint(dx)
	}
	return r >> uint(-dx)
}

// TestCompareFollowsRotation turns a template by the searched angles and
// beyond them: Compare must find a copy turned by a searched angle
// (almost) identical and clearly closer than the translations and local
// alignment alone find it, and one turned further no farther than they
// do. (The test's templates are smooth, so turning them costs less than
// it costs a palm's, and the local alignment's fine field follows much of
// a small turn by itself.)
func TestCompareFollowsRotation(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	a := randomTemplate(r)
	for _, deg := range []float64{-7, -5, 5, 7} {
		t.Run(fmt.Sprintf("%+.0f°", deg), func(t *testing.T) {
			m := rotationMap(deg)
			var turned Template
			noisy(a, r, 0, 0, 0).rotate(&turned, &m)
			d, err := Compare(a, &turned)
			if err != nil {
				t.Fatal(err)
			}
			var c comparer
			a.pack(&c.a, 0)
			rigid, ok := c.aligned(&turned, nil)
			if !ok {
				t.Fatal("no overlap without rotation")
			}
			searched := math.Abs(deg) == 5
			if searched && (d > 0.002 || rigid < d+0.005) || !searched && (d > rigid || d > 0.01) {
				t.Errorf("turned by %+.0f°: distance %.4f, without the rotation search %.4f", deg, d, rigid)
			}
			if back, _ := Compare(&turned, a); back != d {
				t.Errorf("Compare not symmetric: %v vs %v", d, back)
			}
		})
	}
}

// given returns t with every cell moved by its own displacement (u, v),
// rounded to the nearest cell: skin that gives smoothly between captures.
func given(t *Template, u, v func(x, y int) float64) *Template {
	out := t.displaced(func(x, y int) (int, int) {
		return int(math.Round(u(x, y))), int(math.Round(v(x, y)))
	})
	return &out
}

// TestCompareFollowsSmoothGive: skin folded in a wave a few cells deep
// and 12–24 cells long (15–35 mm on a palm) between two captures. Shifts
// held constant over each 8 × 8-cell sub-block (version 4) leave steps in
// such a fold; the field interpolated between 4 × 4-cell blocks follows
// it. The bounds lie between what each gave on these templates (the
// worst of eight, noted by each case).
func TestCompareFollowsSmoothGive(t *testing.T) {
	wave := func(amp, cells, phase float64, along func(x, y int) int) func(x, y int) float64 {
		return func(x, y int) float64 { return amp * math.Sin(2*math.Pi*float64(along(x, y))/cells+phase) }
	}
	byX := func(x, _ int) int { return x }
	byY := func(_, y int) int { return y }
	none := func(int, int) float64 { return 0 }
	for _, tc := range []struct {
		name  string
		u, v  func(x, y int) float64
		below float64
	}{
		{"sideways fold along the palm, 2 cells deep, 24 long", wave(2, 24, 0.3, byY), none, 0.035},      // version 4: 0.051, 5: 0.021
		{"lengthways fold across the palm, 2 cells deep, 16 long", none, wave(2, 16, 1.1, byX), 0.06},    // 0.090, 0.039
		{"both, 1.5 cells deep, 12 and 20 long", wave(1.5, 12, 0.7, byY), wave(1.5, 20, 2.0, byX), 0.05}, // 0.067, 0.035
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(11, 12))
			var worst float64
			for i := 0; i < 8; i++ {
				a := randomTemplate(r)
				b := given(a, tc.u, tc.v)
				d, err := Compare(a, b)
				if err != nil {
					t.Fatal(err)
				}
				if back, _ := Compare(b, a); back != d {
					t.Errorf("Compare not symmetric: %v vs %v", d, back)
				}
				worst = max(worst, d)
			}
			t.Logf("worst of 8: %.4f", worst)
			if worst >= tc.below {
				t.Errorf("worst distance %.4f of 8 folded copies, want below %.2f", worst, tc.below)
			}
		})
	}
}
