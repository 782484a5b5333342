package template

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestTranslated(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	a := randomTemplate(r)
	for _, tc := range []struct {
		name   string
		dx, dy int
	}{
		{"none", 0, 0}, {"right and down", 2, 3}, {"left and up", -3, -1}, {"out of the grid", Grid, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := a.Translated(tc.dx, tc.dy)
			for y := 0; y < Grid; y++ {
				for x := 0; x < Grid; x++ {
					sx, sy := x-tc.dx, y-tc.dy
					inside := sx >= 0 && sx < Grid && sy >= 0 && sy < Grid
					for mo := range m.Mask {
						want := inside && a.Mask[mo][sy]>>uint(sx)&1 == 1
						if got := m.Mask[mo][y]>>uint(x)&1 == 1; got != want {
							t.Fatalf("cell (%d,%d) reliable %v, want %v", x, y, got, want)
						}
						if want && m.Planes[mo][2][y]>>uint(x)&1 != a.Planes[mo][2][sy]>>uint(sx)&1 {
							t.Fatalf("cell (%d,%d) bit not carried over", x, y)
						}
					}
				}
			}
		})
	}
}

// TestFuse: a fused template of noisy, shifted captures is closer to a new
// capture than the captures are on average; degenerate inputs are
// refused.
func TestFuse(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	a := randomTemplate(r)
	samples := []*Template{noisy(a, r, 0.2, 0, 0), noisy(a, r, 0.2, 1, 0), noisy(a, r, 0.2, 0, -1)}
	f, err := Fuse(samples)
	if err != nil {
		t.Fatal(err)
	}
	var single, fused float64
	for i := 0; i < 20; i++ {
		probe := noisy(a, r, 0.2, 0, 1)
		d, _ := Compare(probe, &f)
		fused += d
		for _, s := range samples {
			d, _ := Compare(probe, s)
			single += d / float64(len(samples))
		}
	}
	if fused >= single {
		t.Errorf("fused template mean distance %.4f, single samples %.4f: fusing did not help", fused/20, single/20)
	}
	for _, tc := range []struct {
		name    string
		samples []*Template
		want    error
	}{
		{"none", nil, ErrNoSamples},
		{"wrong version", []*Template{{Version: 1}}, ErrVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Fuse(tc.samples); !errors.Is(err, tc.want) {
				t.Errorf("Fuse: %v, want %v", err, tc.want)
			}
		})
	}
	if one, err := Fuse(samples[:1]); err != nil || one != *samples[0] {
		t.Errorf("one sample: %v, not kept as it is", err)
	}
}

// TestFuseFollowsTheSkinsGive: captures whose top-left quarter sits two
// cells apart while the rest agrees (skin that gave between captures)
// fuse into the palm as it is there, because each is brought onto the
// reference block by block; moved as a whole, the quarter would be
// voted from three different places.
func TestFuseFollowsTheSkinsGive(t *testing.T) {
	// Independent bits, so that a misplaced cell is as often wrong as
	// right (a palm's smooth bit planes would hide a small misplacement).
	r := rand.New(rand.NewPCG(11, 12))
	a := &Template{Version: AlgorithmVersion, Quality: 80}
	for m := range a.Planes {
		for y := 0; y < Grid; y++ {
			a.Mask[m][y] = ^uint32(0)
			for o := range a.Planes[m] {
				a.Planes[m][o][y] = r.Uint32()
			}
		}
	}
	var samples []*Template
	for _, dx := range []int{0, 2, -2} {
		var give blockShifts
		give.fill(0, 0, dx, 0)
		s := a.warped(&give)
		samples = append(samples, &s)
	}
	f, err := Fuse(samples)
	if err != nil {
		t.Fatal(err)
	}
	// Agreement with the palm inside the quarter, away from its edges
	// (where cells moved in from outside are unreliable).
	same, n := 0, 0
	for m := range f.Planes {
		for y := 2; y < Grid/2-2; y++ {
			for x := 2; x < Grid/2-2; x++ {
				if f.Mask[m][y]>>uint(x)&1 == 0 {
					continue
				}
				for o := range f.Planes[m] {
					n++
					if f.Planes[m][o][y]>>uint(x)&1 == a.Planes[m][o][y]>>uint(x)&1 {
						same++
					}
				}
			}
		}
	}
	if n == 0 || float64(same)/float64(n) < 0.98 {
		t.Errorf("fused quarter agrees with the palm in %d of %d bits; want ≥ 98 %%", same, n)
	}
}

// BenchmarkFuse is an enrolment's cost in the matcher: three captures
// (the medoid's three comparisons, then two captures brought onto it).
func BenchmarkFuse(b *testing.B) {
	r := rand.New(rand.NewPCG(13, 14))
	a := randomTemplate(r)
	samples := []*Template{noisy(a, r, 0.2, 0, 0), noisy(a, r, 0.2, 1, 0), noisy(a, r, 0.2, 0, -1)}
	b.ReportAllocs()
	for b.Loop() {
		f, err := Fuse(samples)
		if err != nil {
			b.Fatal(err)
		}
		f.Zero()
	}
}
