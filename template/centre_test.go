package template

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// TestCohort: the embedded cohort decodes whole, and its templates lie
// at the distance unrelated palms do.
func TestCohort(t *testing.T) {
	if len(cohortWire) != CohortSize*WireSize {
		t.Fatalf("cohort.bin: %d bytes, want %d templates of %d", len(cohortWire), CohortSize, WireSize)
	}
	c, zero := cohort()
	if len(c) != CohortSize {
		t.Fatalf("%d cohort templates, want %d", len(c), CohortSize)
	}
	if zero < 0.30 || zero > 0.40 {
		t.Fatalf("cohort's mean distance %.4f: not that of unrelated palms (about 0.34)", zero)
	}
	for i := range c {
		if c[i].Offset != 0 {
			t.Fatalf("cohort template %d has offset %d: the reference's own are zero", i, c[i].Offset)
		}
	}
}

func TestCentre(t *testing.T) {
	c, zero := cohort()
	// A palm-like template outside the cohort: the top half of one
	// member over the bottom half of another.
	member := c[1]
	for m := range member.Planes {
		for y := Grid / 2; y < Grid; y++ {
			member.Mask[m][y] = c[2].Mask[m][y]
			for o := range member.Planes[m] {
				member.Planes[m][o][y] = c[2].Planes[m][o][y]
			}
		}
	}
	if err := Centre(&member); err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for i := range c {
		d, _ := unturned(&member, &c[i])
		sum += d
	}
	want := math.Round((sum/float64(len(c)) - zero) / OffsetUnit)
	if float64(member.Offset) != want || math.Abs(want) >= MaxOffset {
		t.Fatalf("offset %d, want %v (within ±%d)", member.Offset, want, MaxOffset)
	}
	again := member
	if Centre(&again); again.Offset != member.Offset {
		t.Fatal("centring is not repeatable")
	}
	for _, tc := range []struct {
		name string
		bits uint32
		want int16
	}{
		// Every bit set lies far from every palm: bounded.
		{"every bit set", ^uint32(0), MaxOffset},
		{"no bit set", 0, MaxOffset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crafted := Template{Version: AlgorithmVersion}
			for m := range crafted.Planes {
				for y := range Grid {
					crafted.Mask[m][y] = ^uint32(0)
					for o := range crafted.Planes[m] {
						crafted.Planes[m][o][y] = tc.bits
					}
				}
			}
			if err := Centre(&crafted); err != nil || crafted.Offset != tc.want {
				t.Fatalf("offset %d (%v), want %d", crafted.Offset, err, tc.want)
			}
		})
	}
	empty := Template{Version: AlgorithmVersion, Offset: 9}
	if err := Centre(&empty); !errors.Is(err, ErrOverlap) || empty.Offset != 0 {
		t.Fatalf("template with no reliable cell: offset %d, %v; want 0 and ErrOverlap", empty.Offset, err)
	}
	if err := Centre(&Template{}); !errors.Is(err, ErrVersion) {
		t.Fatalf("template of no version: %v, want ErrVersion", err)
	}
}

// TestCompareTakesOffOffsets: Compare is the aligned distance less the
// mean of both offsets, symmetric, never negative.
func TestCompareTakesOffOffsets(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	a, b := randomTemplate(r), randomTemplate(r)
	raw, err := Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		oa, ob int16
	}{
		{"both farther", 800, 400},
		{"one nearer", -1200, 300},
		{"bounds", MaxOffset, -MaxOffset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.Offset, b.Offset = tc.oa, tc.ob
			want := raw - OffsetUnit*(float64(tc.oa)+float64(tc.ob))/2
			for _, order := range [][2]*Template{{a, b}, {b, a}} {
				d, err := Compare(order[0], order[1])
				if err != nil || math.Abs(d-want) > 1e-12 {
					t.Fatalf("Compare %v (%v), want %v", d, err, want)
				}
			}
		})
	}
	a.Offset, b.Offset = 0, 0
	same := *a
	same.Offset, a.Offset = MaxOffset, MaxOffset
	if d, _ := Compare(a, &same); d != 0 {
		t.Fatalf("identical templates with offsets: %v, want 0 (never negative)", d)
	}
}

// BenchmarkCentre: what the matcher adds to every capture it receives.
func BenchmarkCentre(b *testing.B) {
	c, _ := cohort()
	t := c[0]
	for b.Loop() {
		_ = Centre(&t)
	}
}
