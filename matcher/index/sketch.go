package index

import (
	"math/bits"

	"github.com/palmd/palmd/template"
)

// Sketch geometry: the template's 32×32 cells pooled into an 8×8 grid of
// 4×4-cell blocks, one bit per block, orientation and modality (the
// majority of the block's reliable cells), and a block reliable when at
// least half of its cells are.
const (
	blockCells = 4
	sketchSide = template.Grid / blockCells // 8
)

// Sketch is a 208-byte summary of a template for pre-selection: 768
// feature bits, the subset of them that are sure, and 128 block
// reliability bits. Pooling 16 cells into one bit keeps what a palm's
// coarse vein and line layout says and drops most of the cell-level noise,
// so a genuine pair's sketches agree far more than an impostor's, and a
// comparison is a few dozen popcounts instead of Compare's thousands.
type Sketch struct {
	// Bits[m][o] bit (y·8 + x) is block (x, y)'s majority bit.
	Bits [template.Modalities][template.Orientations]uint64
	// Sure[m][o] marks the bits of Bits whose majority is clear (by at
	// least sureMargin votes): a bit near a tie flips between captures of
	// one palm, so comparing only sure bits (the "fragile bits" of iris
	// codes, Hollingsworth et al. 2009) brings a palm's sketches closer
	// without bringing strangers' closer.
	Sure [template.Modalities][template.Orientations]uint64
	// Mask[m] bit (y·8 + x) is set when block (x, y) is reliable.
	Mask [template.Modalities]uint64
}

// sureMargin is the least vote margin (ones − zeros, in cells, of the
// block's reliable cells) of a sure bit. Measured on the calibrated set
// (make eval): comparing only bits with margin ≥ 4 puts 0.17 % of the
// mates found at a million-entry threshold outside the nearest 0.1 % of
// sketches, against 0.75 % when every bit counts.
const sureMargin = 4

// SketchOf pools t into its sketch.
func SketchOf(t *template.Template) Sketch {
	var s Sketch
	for m := range t.Planes {
		for by := 0; by < sketchSide; by++ {
			// Per block of this block row, counted in bytes: even
			// blocks in lo, odd ones in hi (SWAR: a block's four columns
			// are one nibble of a row).
			var relLo, relHi uint32
			var oneLo, oneHi [template.Orientations]uint32
			for y := by * blockCells; y < (by+1)*blockCells; y++ {
				mk := t.Mask[m][y]
				lo, hi := nibbleCounts(mk)
				relLo, relHi = relLo+lo, relHi+hi
				for o := range oneLo {
					lo, hi := nibbleCounts(t.Planes[m][o][y] & mk)
					oneLo[o], oneHi[o] = oneLo[o]+lo, oneHi[o]+hi
				}
			}
			for bx := 0; bx < sketchSide; bx++ {
				sh := uint(8 * (bx / 2))
				rel, ones := relLo, &oneLo
				if bx%2 == 1 {
					rel, ones = relHi, &oneHi
				}
				reliable := int(rel >> sh & 0xff)
				if 2*reliable < blockCells*blockCells {
					continue
				}
				bit := uint64(1) << uint(by*sketchSide+bx)
				s.Mask[m] |= bit
				for o := range ones {
					margin := 2*int(ones[o]>>sh&0xff) - reliable
					if margin > 0 {
						s.Bits[m][o] |= bit
					}
					if margin >= sureMargin || -margin >= sureMargin {
						s.Sure[m][o] |= bit
					}
				}
			}
		}
	}
	return s
}

// nibbleCounts counts the set bits in each 4-bit nibble of r: those of
// nibbles 0, 2, 4, 6 in bytes 0–3 of lo, of nibbles 1, 3, 5, 7 in hi.
func nibbleCounts(r uint32) (lo, hi uint32) {
	c := r - (r>>1)&0x55555555
	c = c&0x33333333 + (c>>2)&0x33333333
	return c & 0x0f0f0f0f, (c >> 4) & 0x0f0f0f0f
}

// minSketchBlocks is the fewest blocks, both modalities together, that
// must be reliable in both sketches for their distance to mean anything: a
// quarter, as template.MinOverlap asks of cells; minSureBits likewise for
// sure bits.
const (
	minSketchBlocks = 2 * sketchSide * sketchSide / 4
	minSureBits     = minSketchBlocks * template.Orientations / 2
)

// fine is the second stage's distance: the share of differing bits among
// the entry's sure bits over the probe's reliable blocks, or 1 when too
// few. Unrolled: it runs for every probe shift on every entry the coarse
// stage keeps.
func fine(p, e *Sketch) float32 {
	p0, p1 := p.Mask[0], p.Mask[1]
	w00, w01, w02, w03, w04, w05 := e.Sure[0][0]&p0, e.Sure[0][1]&p0, e.Sure[0][2]&p0, e.Sure[0][3]&p0, e.Sure[0][4]&p0, e.Sure[0][5]&p0
	w10, w11, w12, w13, w14, w15 := e.Sure[1][0]&p1, e.Sure[1][1]&p1, e.Sure[1][2]&p1, e.Sure[1][3]&p1, e.Sure[1][4]&p1, e.Sure[1][5]&p1
	n := bits.OnesCount64(w00) + bits.OnesCount64(w01) + bits.OnesCount64(w02) + bits.OnesCount64(w03) +
		bits.OnesCount64(w04) + bits.OnesCount64(w05) + bits.OnesCount64(w10) + bits.OnesCount64(w11) +
		bits.OnesCount64(w12) + bits.OnesCount64(w13) + bits.OnesCount64(w14) + bits.OnesCount64(w15)
	if n < minSureBits {
		return 1
	}
	d := bits.OnesCount64((p.Bits[0][0]^e.Bits[0][0])&w00) + bits.OnesCount64((p.Bits[0][1]^e.Bits[0][1])&w01) +
		bits.OnesCount64((p.Bits[0][2]^e.Bits[0][2])&w02) + bits.OnesCount64((p.Bits[0][3]^e.Bits[0][3])&w03) +
		bits.OnesCount64((p.Bits[0][4]^e.Bits[0][4])&w04) + bits.OnesCount64((p.Bits[0][5]^e.Bits[0][5])&w05) +
		bits.OnesCount64((p.Bits[1][0]^e.Bits[1][0])&w10) + bits.OnesCount64((p.Bits[1][1]^e.Bits[1][1])&w11) +
		bits.OnesCount64((p.Bits[1][2]^e.Bits[1][2])&w12) + bits.OnesCount64((p.Bits[1][3]^e.Bits[1][3])&w13) +
		bits.OnesCount64((p.Bits[1][4]^e.Bits[1][4])&w14) + bits.OnesCount64((p.Bits[1][5]^e.Bits[1][5])&w15)
	return float32(d) / float32(n)
}

// Probe translations, in cells. A palm's residual placement error (up to
// template.MaxShift cells) and its give between captures move features
// across block boundaries; sketching the probe again at shifted positions
// finds the gallery sketch wherever it lies. The coarse stage, which sees
// every entry, tries half-block steps within coarseReach; the fine stage,
// which sees a few per cent of them, every shift Compare tries.
//
// The fine stage does not try all 121 shifts on every entry: only the
// 7 × 7 around the coarse stage's best shift for that entry (fineReach
// cells each way), which covers every shift within template.MaxShift once
// the coarse grid's are included. Measured with make identify (599 mated
// searches, 10,200 entries, stages sized as for a million): coarse shifts
// within 2 cells lose 8 mates; within 4 (25 shifts) 12, because every
// extra shift is another chance for a stranger's sketch to come close; 3
// cells apart (within 3) 32.
var (
	CoarseShifts = shifts(coarseStep, coarseReach)
	FineShifts   = shifts(1, template.MaxShift)
)

// coarseStep is the coarse grid's spacing and coarseReach its extent;
// fineReach is how far the fine stage looks from a coarse shift, so that
// coarseReach + fineReach reaches template.MaxShift.
const (
	coarseStep  = 2
	coarseReach = 2
	fineReach   = template.MaxShift - coarseReach
)

// fineSide is the side of the fine shift grid.
const fineSide = 2*template.MaxShift + 1

// shifts lists the translations of a square grid, row by row.
func shifts(step, reach int) (out [][2]int) {
	for dy := -reach; dy <= reach; dy += step {
		for dx := -reach; dx <= reach; dx += step {
			out = append(out, [2]int{dx, dy})
		}
	}
	return out
}

// probeSketches sketches t at each of the shifts.
func probeSketches(t *template.Template, at [][2]int) []Sketch {
	out := make([]Sketch, len(at))
	for i, s := range at {
		if s == [2]int{} {
			out[i] = SketchOf(t)
			continue
		}
		moved := t.Translated(s[0], s[1])
		out[i] = SketchOf(&moved)
		moved.Zero()
	}
	return out
}

// coarseSketch is what the coarse stage reads of an entry's sketch: three
// of the six orientations (neighbouring orientations' bits are strongly
// correlated, so half of them carry most of the information) and the
// block masks, in one 64-byte cache line. The coarse stage reads every
// entry of the gallery on every search, so its bytes are the search's
// memory traffic.
type coarseSketch struct {
	bits [template.Modalities][template.Orientations / 2]uint64
	mask [template.Modalities]uint64
}

func (s *Sketch) coarse() (c coarseSketch) {
	for m := range s.Bits {
		for k := range c.bits[m] {
			c.bits[m][k] = s.Bits[m][2*k]
		}
		c.mask[m] = s.Mask[m]
	}
	return c
}

// coarseDistance is the coarse stage's distance from a probe (its coarse
// sketches at CoarseShifts) to an entry: the nearest shift's, and which
// shift that was. On amd64 it runs in assembly (coarse_amd64.s), where
// every popcount is one instruction: in Go each is a CPU-feature check
// and a fallback call that clobbers registers, unless the build sets
// GOAMD64=v2 or later, and this loop is most of a search's time.
func coarseDistance(ps []coarseSketch, e *coarseSketch) (float32, uint8) {
	var d, n, v int
	if haveCoarseASM {
		d, n, v = coarseBestASM(&ps[0], len(ps), e)
	} else {
		d, n, v = coarseBest(ps, e)
	}
	return float32(d) / float32(n), uint8(v)
}

// coarseBest returns the differing bits d over the compared bits n of the
// nearest shift v (d = n = 1 when none overlaps enough).
func coarseBest(ps []coarseSketch, e *coarseSketch) (bestD, bestN, best int) {
	e00, e01, e02 := e.bits[0][0], e.bits[0][1], e.bits[0][2]
	e10, e11, e12 := e.bits[1][0], e.bits[1][1], e.bits[1][2]
	em0, em1 := e.mask[0], e.mask[1]
	bestD, bestN = 1, 1
	for v := range ps {
		p := &ps[v]
		m0, m1 := p.mask[0]&em0, p.mask[1]&em1
		n := bits.OnesCount64(m0) + bits.OnesCount64(m1)
		if n < minSketchBlocks {
			continue
		}
		// The six words' popcounts summed with carry-save adders: three
		// popcounts instead of six.
		a0, a1, a2 := (p.bits[0][0]^e00)&m0, (p.bits[0][1]^e01)&m0, (p.bits[0][2]^e02)&m0
		b0, b1, b2 := (p.bits[1][0]^e10)&m1, (p.bits[1][1]^e11)&m1, (p.bits[1][2]^e12)&m1
		s1, c1 := a0^a1^a2, a0&a1|a2&(a0^a1)
		s2, c2 := b0^b1^b2, b0&b1|b2&(b0^b1)
		ones, c3 := s1^s2, s1&s2
		twos, fours := c1^c2^c3, c1&c2|c3&(c1^c2)
		d := bits.OnesCount64(ones) + 2*bits.OnesCount64(twos) + 4*bits.OnesCount64(fours)
		n *= template.Orientations / 2
		if d*bestN < bestD*n {
			bestD, bestN, best = d, n, v
		}
	}
	return bestD, bestN, best
}

// coarseProbe returns the probe's coarse sketches at CoarseShifts.
func coarseProbe(t *template.Template) []coarseSketch {
	ps := probeSketches(t, CoarseShifts)
	out := make([]coarseSketch, len(ps))
	for i := range ps {
		out[i] = ps[i].coarse()
	}
	return out
}

// fineDistance is the fine stage's distance from a probe (its sketches at
// FineShifts) to an entry: the nearest of the shifts within one cell of
// CoarseShifts[coarse] (all of them when coarse is out of range), and that
// shift's index in FineShifts.
func fineDistance(ps []Sketch, e *Sketch, coarse uint8) (float32, uint8) {
	d, best := float32(2), 0
	try := func(v int) {
		if dv := fine(&ps[v], e); dv < d {
			d, best = dv, v
		}
	}
	if int(coarse) >= len(CoarseShifts) {
		for v := range ps {
			try(v)
		}
		return min(d, 1), uint8(best)
	}
	c := CoarseShifts[coarse]
	for dy := max(-template.MaxShift, c[1]-fineReach); dy <= min(template.MaxShift, c[1]+fineReach); dy++ {
		for dx := max(-template.MaxShift, c[0]-fineReach); dx <= min(template.MaxShift, c[0]+fineReach); dx++ {
			try((dy+template.MaxShift)*fineSide + dx + template.MaxShift)
		}
	}
	return min(d, 1), uint8(best)
}

// SketchDistance is the distance pre-selection sees between a probe and an
// entry's template (for measurement).
func SketchDistance(probe, entry *template.Template) float32 {
	e := SketchOf(entry)
	d, _ := fineDistance(probeSketches(probe, FineShifts), &e, 255)
	return d
}
