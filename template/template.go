// Package template defines the palm template — what the recognition pipeline
// extracts from a frame and the matcher compares — and its comparison.
//
// A Template holds binary orientation features (the BOCV family: the signs
// of six oriented even-Gabor responses per cell) for two modalities, veins
// and palm lines, on a Grid×Grid cell grid over the normalised palm ROI,
// plus a reliability mask per modality. Two templates are compared by the
// masked, normalised Hamming distance of their bit planes, minimised over
// small translations, with the modalities fused.
//
// A template is as sensitive as a password that can never be changed: call
// Zero as soon as one is no longer needed.
package template

import (
	"errors"
	"fmt"
	"math/bits"
)

// Grid is the number of feature cells per side; each row of a bit plane is
// one uint32 (bit x = column x).
const Grid = 32

// Orientations is the number of Gabor orientations per modality.
const Orientations = 6

// Modality indexes a feature type.
type Modality int

// The modalities.
const (
	Vein Modality = iota // broad, faint subcutaneous veins
	Line                 // thin palm creases
	Modalities
)

func (m Modality) String() string {
	switch m {
	case Vein:
		return "vein"
	case Line:
		return "line"
	}
	return fmt.Sprintf("modality(%d)", int(m))
}

// AlgorithmVersion identifies the feature extractor. Templates from
// different versions are not comparable.
const AlgorithmVersion = 1

// Template is a palm template. The zero value is an empty template of no
// version, which Compare rejects.
type Template struct {
	// Version is the AlgorithmVersion of the extractor that made it.
	Version uint8
	// Quality of the capture it came from, 0–100.
	Quality uint8
	// Planes[m][o][y] holds bit x of orientation o of modality m at cell
	// (x, y): set when the response is negative (a dark line of that
	// orientation crosses the cell).
	Planes [Modalities][Orientations][Grid]uint32
	// Mask[m][y] bit x is set where modality m's bits are reliable.
	Mask [Modalities][Grid]uint32
}

// Zero wipes the template's features.
func (t *Template) Zero() { *t = Template{} }

// ValidBits reports how many cells of modality m are marked reliable.
func (t *Template) ValidBits(m Modality) int {
	n := 0
	for _, r := range t.Mask[m] {
		n += bits.OnesCount32(r)
	}
	return n
}

// Errors from Compare.
var (
	ErrVersion = errors.New("template: algorithm versions differ or are unknown")
	ErrOverlap = errors.New("template: too few reliable cells overlap")
)

// Comparison parameters.
const (
	// MaxShift is the translation search range in cells each way: the ROI
	// is already normalised for position, rotation and scale, so only
	// residual placement error (about 1 mm RMS) remains.
	MaxShift = 3
	// MinOverlap is the least share of cells that must be reliable in both
	// templates, per modality, for a comparison to mean anything.
	MinOverlap = 0.25
)

// packed holds a template's rows with both modalities side by side in one
// word (vein in the low 32 bits, lines in the high 32), so one XOR and one
// popcount cover a row of both.
type packed struct {
	planes [Grid][Orientations]uint64
	mask   [Grid]uint64
}

func (t *Template) pack(p *packed, dx int) {
	keep := keepMask(dx)
	for y := 0; y < Grid; y++ {
		p.mask[y] = shiftWord(uint64(t.Mask[Vein][y])|uint64(t.Mask[Line][y])<<32, dx) & keep
		for o := 0; o < Orientations; o++ {
			p.planes[y][o] = shiftWord(uint64(t.Planes[Vein][o][y])|uint64(t.Planes[Line][o][y])<<32, dx) & keep
		}
	}
}

// shiftWord moves both halves' bits by dx columns (positive: toward higher
// x); keepMask(dx) clears what crossed from one half into the other, so
// shifted-out cells become unreliable rather than wrong.
func shiftWord(w uint64, dx int) uint64 {
	if dx >= 0 {
		return w << uint(dx)
	}
	return w >> uint(-dx)
}

func keepMask(dx int) uint64 {
	half := uint64(1)<<32 - 1
	var lo uint64
	if dx >= 0 {
		lo = half &^ (uint64(1)<<uint(dx) - 1)
	} else {
		lo = half >> uint(-dx)
	}
	return lo | lo<<32
}

// Compare returns the distance between two templates: the masked,
// normalised Hamming distance of their bit planes, pooled over both
// modalities and minimised over translations of up to MaxShift cells. It is
// 0 for identical templates and about 0.5 for unrelated ones, symmetric,
// and never reads outside the templates.
//
// The translation search descends from no shift to the best neighbouring
// shift until no neighbour is better: a genuine pair's distance falls
// smoothly toward its true alignment (veins are broad), so this finds the
// minimum of the full search at a third of its cost, which matters when one
// capture is compared with a whole gallery.
func Compare(a, b *Template) (float64, error) {
	if a.Version != AlgorithmVersion || b.Version != AlgorithmVersion {
		return 0, fmt.Errorf("%w (%d vs %d)", ErrVersion, a.Version, b.Version)
	}
	// The descent's path depends on which template is shifted; fixing the
	// order makes Compare exactly symmetric.
	if before(b, a) {
		a, b = b, a
	}
	var c comparer
	a.pack(&c.a, 0)
	c.b = b
	const unset = -1.0
	for i := range c.memo {
		for j := range c.memo[i] {
			c.memo[i][j] = unset
		}
	}
	x, y := 0, 0
	best := c.score(0, 0)
	for {
		bx, by := x, y
		for dy := -1; dy <= 1; dy++ {
			for dx := -1; dx <= 1; dx++ {
				nx, ny := x+dx, y+dy
				if (dx == 0 && dy == 0) || nx < -MaxShift || nx > MaxShift || ny < -MaxShift || ny > MaxShift {
					continue
				}
				if s := c.score(nx, ny); s < best {
					best, bx, by = s, nx, ny
				}
			}
		}
		if bx == x && by == y {
			break
		}
		x, y = bx, by
	}
	if best <= 1 {
		best = min(best, c.local(x, y))
	}
	if best > 1 {
		// No usable overlap near the centre: fall back to every shift.
		for dy := -MaxShift; dy <= MaxShift; dy++ {
			for dx := -MaxShift; dx <= MaxShift; dx++ {
				best = min(best, c.score(dx, dy))
			}
		}
	}
	if best > 1 {
		return 0, ErrOverlap
	}
	return best, nil
}

// before orders templates by their feature bits.
func before(a, b *Template) bool {
	for m := range a.Planes {
		for o := range a.Planes[m] {
			for y := range a.Planes[m][o] {
				if x, z := a.Planes[m][o][y], b.Planes[m][o][y]; x != z {
					return x < z
				}
			}
		}
	}
	return false
}

// comparer caches b packed at each horizontal shift and the score of each
// shift already tried.
type comparer struct {
	a      packed
	b      *Template
	bs     [2*MaxShift + 1]packed
	packed [2*MaxShift + 1]bool
	memo   [2*MaxShift + 1][2*MaxShift + 1]float64
}

// local lets each quarter of the grid settle at its own shift within one
// cell of the global best (x, y), and returns the pooled distance. A palm
// is not rigid: cupping or stretching it moves one part of the ROI against
// another by a millimetre or two, which one global shift cannot follow.
func (c *comparer) local(x, y int) float64 {
	const half = Grid / 2
	var diff, cells int
	for by := 0; by < 2; by++ {
		for bx := 0; bx < 2; bx++ {
			cols := uint64(0xffff) << (16 * uint(bx))
			cols |= cols << 32
			bestD, bestC := 0, 0
			bestS := 2.0
			for dy := y - 1; dy <= y+1; dy++ {
				for dx := x - 1; dx <= x+1; dx++ {
					if dx < -MaxShift || dx > MaxShift || dy < -MaxShift || dy > MaxShift {
						continue
					}
					ix := dx + MaxShift
					if !c.packed[ix] {
						c.b.pack(&c.bs[ix], dx)
						c.packed[ix] = true
					}
					d, n := hammingBlock(&c.a, &c.bs[ix], dy, by*half, (by+1)*half, cols)
					if n < half*half/4 {
						continue
					}
					if s := float64(d) / float64(n); s < bestS {
						bestS, bestD, bestC = s, d, n
					}
				}
			}
			diff, cells = diff+bestD, cells+bestC
		}
	}
	if cells < int(MinOverlap*Grid*Grid)*2 {
		return 2
	}
	return float64(diff) / float64(cells*Orientations)
}

// hammingBlock is hamming restricted to rows [y0, y1) of a and the columns
// in cols.
func hammingBlock(a, b *packed, dy, y0, y1 int, cols uint64) (diff, cells int) {
	y0, y1 = max(y0, dy), min(y1, Grid+dy)
	for y := y0; y < y1; y++ {
		ar, br := &a.planes[y], &b.planes[y-dy]
		m := a.mask[y] & b.mask[y-dy] & cols
		if m == 0 {
			continue
		}
		cells += bits.OnesCount64(m)
		diff += bits.OnesCount64((ar[0]^br[0])&m) + bits.OnesCount64((ar[1]^br[1])&m) +
			bits.OnesCount64((ar[2]^br[2])&m) + bits.OnesCount64((ar[3]^br[3])&m) +
			bits.OnesCount64((ar[4]^br[4])&m) + bits.OnesCount64((ar[5]^br[5])&m)
	}
	return diff, cells
}

// score returns the distance at shift (dx, dy), or 2 when too few cells
// overlap.
func (c *comparer) score(dx, dy int) float64 {
	ix, iy := dx+MaxShift, dy+MaxShift
	if s := c.memo[iy][ix]; s >= 0 {
		return s
	}
	if !c.packed[ix] {
		c.b.pack(&c.bs[ix], dx)
		c.packed[ix] = true
	}
	s := 2.0
	diff, vein, line := hamming(&c.a, &c.bs[ix], dy)
	if minCells := int(MinOverlap * Grid * Grid); vein >= minCells && line >= minCells {
		s = float64(diff) / float64((vein+line)*Orientations)
	}
	c.memo[iy][ix] = s
	return s
}

// hamming counts differing bits between a and b shifted down by dy rows,
// over cells reliable in both, and the number of such cells per modality.
// Shifting b by (dx, dy) compares the same cell pairs as shifting a by
// (−dx, −dy), which keeps Compare symmetric.
func hamming(a, b *packed, dy int) (diff, vein, line int) {
	y0, y1 := max(0, dy), min(Grid, Grid+dy)
	for y := y0; y < y1; y++ {
		ar, br := &a.planes[y], &b.planes[y-dy]
		m := a.mask[y] & b.mask[y-dy]
		if m == 0 {
			continue
		}
		vein += bits.OnesCount32(uint32(m))
		line += bits.OnesCount32(uint32(m >> 32))
		diff += bits.OnesCount64((ar[0]^br[0])&m) + bits.OnesCount64((ar[1]^br[1])&m) +
			bits.OnesCount64((ar[2]^br[2])&m) + bits.OnesCount64((ar[3]^br[3])&m) +
			bits.OnesCount64((ar[4]^br[4])&m) + bits.OnesCount64((ar[5]^br[5])&m)
	}
	return diff, vein, line
}
