package template

import (
	_ "embed"
	"fmt"
	"math"
	"sync"
)

// Offsets: Template.Offset is in OffsetUnits of distance and bounded by
// MaxOffset.
const (
	OffsetUnit = 1e-5
	// MaxOffset bounds an offset (in OffsetUnits: 0.015 of distance,
	// about three times the spread of real templates' offsets, 0.0047 on
	// the calibrated set). The bound is a security one too: a template
	// crafted to lie far from every palm (all bits set, say) would
	// otherwise loosen the threshold for its own comparisons at will;
	// bounded, it can move it by half of MaxOffset at most (the threshold
	// 0.254 for FAR 1e-6 becomes 0.2615, a FAR of about 4e-6).
	MaxOffset = 1500
)

// cohortWire is the reference cohort, CohortSize templates in wire
// format one after another: one capture each of CohortSize synthetic
// people (palmctl synth --seed CohortSeed, extracted by today's
// pipeline; make cohort writes it again). No real person's palm.
//
//go:embed cohort.bin
var cohortWire []byte

// The reference cohort's make-up (make cohort).
const (
	CohortSize = 32
	CohortSeed = 900001
)

// cohort decodes the reference cohort once, and its templates' mean
// distance to one another: the offset's zero.
var cohort = sync.OnceValues(func() ([]Template, float64) {
	c := make([]Template, 0, CohortSize)
	for p := cohortWire; len(p) >= WireSize; p = p[WireSize:] {
		var t Template
		if _, err := t.decode(p[:WireSize]); err != nil {
			panic(fmt.Sprintf("template: embedded cohort: %v", err)) // a build defect, caught by TestCohort
		}
		c = append(c, t)
	}
	sum, n := 0.0, 0
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if d, ok := unturned(&c[i], &c[j]); ok {
				sum += d
				n++
			}
		}
	}
	return c, sum / float64(max(n, 1))
})

// Centre sets t.Offset: how much farther than the typical template t
// lies from the reference cohort's palms, which Compare then takes off
// (half of each template's offset).
//
// Some palms lie nearer to everyone than others (their feature bits
// less balanced, their lines in commoner places), and their genuine
// distances with them: a fixed threshold then fails some people's
// genuine pairs while it lets other people's impostors through. With
// each template's mean distance to a fixed set of unrelated palms taken
// as its zero (Z-normalisation against a cohort, as speaker
// verification does), on the calibrated set (make eval, 400 × 6; a
// cohort of 32 synthetic people of other seeds): EER across sessions 0.53 → 0.47 %,
// FRR at FAR 1e-4 1.18 → 0.73 %, at 1e-5 1.72 → 1.22 %, impostor
// distances 0.3380 ± 0.0159 → 0.3379 ± 0.0150; 16 people gain 0.02–0.08 %
// less, 64 barely more. Centring both templates of a pair, not only the
// probe, is worth 0.07 % of FRR at FAR 1e-4. The distances to the cohort
// are Compare's without its turns (unturned): a third of the cost
// (about 6 ms on one core for the 32) for offsets worth as much.
//
// The matcher centres every template it receives (never trusting an
// offset from a device) and every one it enrols; a template centred
// keeps its offset in the wire format. It returns ErrOverlap, leaving
// the offset zero, when t overlaps too few of the cohort.
func Centre(t *Template) error {
	if t.Version != AlgorithmVersion {
		return fmt.Errorf("%w (%d)", ErrVersion, t.Version)
	}
	c, zero := cohort()
	sum, n := 0.0, 0
	for i := range c {
		if d, ok := unturned(t, &c[i]); ok {
			sum += d
			n++
		}
	}
	if n < len(c)/2 {
		t.Offset = 0
		return fmt.Errorf("%w: centring against %d of %d cohort templates", ErrOverlap, n, len(c))
	}
	off := math.Round((sum/float64(n) - zero) / OffsetUnit)
	t.Offset = int16(max(-MaxOffset, min(MaxOffset, off)))
	return nil
}

// unturned is Compare's distance without the templates' offsets and
// without turning either (the translations and the local alignment
// only); ok is false when they overlap too little.
func unturned(a, b *Template) (float64, bool) {
	var c comparer
	a, b = c.unturned(a, b)
	return c.aligned(b, nil)
}

// unturned orders a pair as Compare does and packs the first, unturned,
// into c; it returns the pair in that order. Ties between shifts are
// broken by the order tried, which depends on which template is shifted,
// and only the second is turned: fixing the order makes distances
// exactly symmetric.
func (c *comparer) unturned(a, b *Template) (first, second *Template) {
	if before(b, a) {
		a, b = b, a
	}
	a.pack(&c.a, 0)
	return a, b
}
