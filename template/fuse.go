package template

import (
	"errors"
	"fmt"
)

// Translated returns t moved by (dx, dy) cells: cell (x, y) of the result
// is cell (x−dx, y−dy) of t, and cells moved in from outside the grid are
// unreliable.
func (t *Template) Translated(dx, dy int) Template {
	out := Template{Version: t.Version, Quality: t.Quality}
	if dx <= -Grid || dx >= Grid || dy <= -Grid || dy >= Grid {
		return out
	}
	shift := func(r uint32) uint32 {
		if dx >= 0 {
			return r << uint(dx)
		}
		return r >> uint(-dx)
	}
	for y := max(0, dy); y < min(Grid, Grid+dy); y++ {
		for m := range t.Planes {
			out.Mask[m][y] = shift(t.Mask[m][y-dy])
			for o := range t.Planes[m] {
				out.Planes[m][o][y] = shift(t.Planes[m][o][y-dy]) & out.Mask[m][y]
			}
		}
	}
	return out
}

// Align returns the translation (dx, dy) that best brings b onto a (the
// one Compare's global search finds: b.Translated(dx, dy) lies over a)
// and the distance there.
func Align(a, b *Template) (dx, dy int, dist float64, err error) {
	if a.Version != AlgorithmVersion || b.Version != AlgorithmVersion {
		return 0, 0, 0, fmt.Errorf("%w (%d vs %d)", ErrVersion, a.Version, b.Version)
	}
	var c comparer
	a.pack(&c.a, 0)
	c.b = b
	dist = 2
	for y := -MaxShift; y <= MaxShift; y++ {
		for x := -MaxShift; x <= MaxShift; x++ {
			if s := c.score(x, y); s < dist {
				dist, dx, dy = s, x, y
			}
		}
	}
	if dist > 1 {
		return 0, 0, 0, ErrOverlap
	}
	return dx, dy, dist, nil
}

// ErrNoSamples is returned by Fuse without samples.
var ErrNoSamples = errors.New("template: nothing to fuse")

// Fuse combines several captures of one palm into one template, the way
// iris systems build an enrolment code from several images: the sample
// closest to all others (the medoid) is the reference; every other sample
// is aligned onto it (Align); each feature bit is the majority vote of the
// samples reliable at that cell (ties go to the reference), and a cell is
// reliable when more than half of the samples are reliable there.
//
// A bit that flips between captures of one palm (noise, a vein that comes
// and goes with temperature) is outvoted, so the fused template is closer
// to any new capture than a single sample is, on average; and the gallery
// keeps one template per person instead of several, which is what lets a
// million-entry gallery fit in memory (see the matcher's index). Samples
// that do not align (too little overlap) are left out.
func Fuse(samples []*Template) (Template, error) {
	n := len(samples)
	if n == 0 {
		return Template{}, ErrNoSamples
	}
	for _, s := range samples {
		if s.Version != AlgorithmVersion {
			return Template{}, fmt.Errorf("%w (%d)", ErrVersion, s.Version)
		}
	}
	if n == 1 {
		return *samples[0], nil
	}
	// The medoid: least total distance to the others.
	sum := make([]float64, n)
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			d, err := Compare(samples[i], samples[j])
			if err != nil {
				d = 1
			}
			sum[i] += d
			sum[j] += d
		}
	}
	ref := 0
	for i := range sum {
		if sum[i] < sum[ref] {
			ref = i
		}
	}
	aligned := make([]Template, 0, n)
	aligned = append(aligned, *samples[ref])
	for i, s := range samples {
		if i == ref {
			continue
		}
		dx, dy, _, err := Align(samples[ref], s)
		if err != nil {
			continue
		}
		aligned = append(aligned, s.Translated(dx, dy))
	}
	defer func() {
		for i := range aligned {
			aligned[i].Zero()
		}
	}()
	out := Template{Version: AlgorithmVersion}
	var quality int
	for _, s := range samples {
		quality += int(s.Quality)
	}
	out.Quality = uint8(quality / n)
	r := &aligned[0]
	for m := range out.Planes {
		for y := 0; y < Grid; y++ {
			for x := 0; x < Grid; x++ {
				bit := uint32(1) << uint(x)
				reliable := 0
				var ones [Orientations]int
				for k := range aligned {
					a := &aligned[k]
					if a.Mask[m][y]&bit == 0 {
						continue
					}
					reliable++
					for o := range ones {
						if a.Planes[m][o][y]&bit != 0 {
							ones[o]++
						}
					}
				}
				if 2*reliable <= n {
					continue
				}
				out.Mask[m][y] |= bit
				for o, c := range ones {
					if 2*c > reliable || (2*c == reliable && r.Planes[m][o][y]&bit != 0) {
						out.Planes[m][o][y] |= bit
					}
				}
			}
		}
	}
	return out, nil
}

// CompareNear is the global stage of Compare restricted to translations
// within reach cells of (cx, cy) (b.Translated(dx, dy) over a), without
// the local alignment: a cheaper distance, never below Compare's global
// one, for ranking candidates whose alignment is roughly known before
// comparing the best of them in full. It is not symmetric.
func CompareNear(a, b *Template, cx, cy, reach int) (float64, error) {
	if a.Version != AlgorithmVersion || b.Version != AlgorithmVersion {
		return 0, fmt.Errorf("%w (%d vs %d)", ErrVersion, a.Version, b.Version)
	}
	var c comparer
	a.pack(&c.a, 0)
	c.b = b
	best := 2.0
	for dy := max(-MaxShift, cy-reach); dy <= min(MaxShift, cy+reach); dy++ {
		for dx := max(-MaxShift, cx-reach); dx <= min(MaxShift, cx+reach); dx++ {
			best = min(best, c.score(dx, dy))
		}
	}
	if best > 1 {
		return 0, ErrOverlap
	}
	return best, nil
}
