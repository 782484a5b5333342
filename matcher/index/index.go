// Package index is the matcher's 1:N search: it holds one template per
// enrolled subject and finds the closest to a probe without comparing
// every one in full.
//
// Every entry carries a Sketch of its template: its 32 × 32 cells pooled
// into 8 × 8 blocks, one bit per block, orientation and modality. A search
// narrows the gallery in four stages, each on what the one before kept:
//
//  1. coarse: every entry's sketch (half the orientations, one cache line)
//     against the probe's at CoarseShifts, with popcounts, on every core;
//     the nearest CoarseShare are kept, with the shift that fitted best;
//  2. fine: the full sketch, sure bits only, at the shifts around that one;
//     the nearest Shortlist(n) are kept, with their best shift;
//  3. near: template.CompareNear, the full templates' distance at the
//     translations around that shift; the nearest FullCompares are kept;
//  4. full: template.Compare, the matcher's distance; the nearest wins.
//
// A million entries are searched in about 145 ms on two cores
// (BenchmarkSearch; the full stage turns each of its FullCompares
// candidates twice: template.Compare). The price
// is that a mate lost by a stage is missed; `palmctl eval
// --identify` measures how often (README, "Identification").
//
// Entries live in fixed-size blocks of plain arrays (no pointers for the
// garbage collector to trace but the subjects, no slice doubling as the
// gallery grows): an entry costs about 2.1 KiB, mostly its template (1.8
// KiB), its sketch (208 bytes) and coarse sketch (64 bytes).
//
// An Index is safe for concurrent use; its zero value is an empty index
// that searches on every CPU.
package index

import (
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/palmd/palmd/template"
)

// blockEntries is the number of entries per storage block (about 8.5 MB).
const blockEntries = 4096

type block struct {
	coarse    [blockEntries]coarseSketch
	sketches  [blockEntries]Sketch
	templates [blockEntries]template.Template
	subjects  [blockEntries]string
}

// Index is a searchable set of (subject, template) entries, one per
// subject.
type Index struct {
	// Workers scan and compare in parallel; zero means GOMAXPROCS.
	Workers int

	mu     sync.RWMutex
	blocks []*block
	n      int
	pos    map[string]int
}

// Len returns the number of entries.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}

// Put adds subject's template, replacing any it had. The index keeps a
// copy.
func (x *Index) Put(subject string, t *template.Template) {
	s := SketchOf(t)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.pos == nil {
		x.pos = map[string]int{}
	}
	i, ok := x.pos[subject]
	if !ok {
		i = x.n
		if i == len(x.blocks)*blockEntries {
			x.blocks = append(x.blocks, new(block))
		}
		x.n++
		x.pos[subject] = i
	}
	b, k := x.blocks[i/blockEntries], i%blockEntries
	b.coarse[k], b.sketches[k], b.templates[k], b.subjects[k] = s.coarse(), s, *t, subject
}

// Delete removes subject's entry and wipes its template; it reports
// whether there was one.
func (x *Index) Delete(subject string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	i, ok := x.pos[subject]
	if !ok {
		return false
	}
	delete(x.pos, subject)
	last := x.n - 1
	b, k := x.blocks[i/blockEntries], i%blockEntries
	lb, lk := x.blocks[last/blockEntries], last%blockEntries
	if i != last {
		b.coarse[k], b.sketches[k], b.templates[k], b.subjects[k] = lb.coarse[lk], lb.sketches[lk], lb.templates[lk], lb.subjects[lk]
		x.pos[b.subjects[k]] = i
	}
	lb.coarse[lk], lb.sketches[lk], lb.subjects[lk] = coarseSketch{}, Sketch{}, ""
	lb.templates[lk].Zero()
	x.n--
	if x.n%blockEntries == 0 && len(x.blocks) > x.n/blockEntries {
		x.blocks = x.blocks[:x.n/blockEntries]
	}
	return true
}

// Wipe zeroes every template and empties the index, once the searches
// under way are done.
func (x *Index) Wipe() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, b := range x.blocks {
		for k := range b.templates {
			b.templates[k].Zero()
		}
	}
	x.blocks, x.n, x.pos = nil, 0, nil
}

// Has reports whether subject has an entry.
func (x *Index) Has(subject string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.pos[subject]
	return ok
}

// Subjects returns every subject, in no particular order.
func (x *Index) Subjects() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]string, 0, x.n)
	for i := 0; i < x.n; i++ {
		out = append(out, x.blocks[i/blockEntries].subjects[i%blockEntries])
	}
	return out
}

// Template copies subject's template into t; false when there is none.
func (x *Index) Template(subject string, t *template.Template) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.pos[subject]
	if ok {
		*t = x.blocks[i/blockEntries].templates[i%blockEntries]
	}
	return ok
}

// Stage sizes. CoarseShare of the gallery survives the coarse stage (at
// least four times the shortlist; 6 % rather than 3 % halves the mates the
// coarse stage loses, 7 to 3 of 599 on the calibrated set, for about 12 %
// more time per search of a million); Shortlist(n) entries (ShortlistShare of
// the gallery, at least MinShortlist, at most MaxShortlist) survive the
// fine stage, and FullCompares the near stage. A gallery no larger than
// FullCompares is compared in full.
//
// FullCompares was 64. The near stage's distance is the templates' own
// (at the translations around the fine stage's shift), where a mate lies
// about 9 σ of the strangers' spread nearer than they do: on the
// calibrated set (make identify, algorithm 6, stages sized as for a
// million) every one of the 592 mates that reached the near stage was
// its nearest of 51. Comparing 64 in full cost about 30 ms of one core
// a search (algorithm 6's Compare: 0.47 ms), more than everything else
// in a search of 100,000; 16 cost a quarter of that. Small galleries
// now take the near stage too (up to the shortlist they were compared in
// full: 100 entries, 47 ms).
const (
	CoarseShare    = 0.06
	ShortlistShare = 0.005
	MinShortlist   = 256
	MaxShortlist   = 16384
	FullCompares   = 16
)

// nearReach is how far, in cells, the near stage searches around the fine
// stage's shift: a sketch's shift is right within a cell or two.
const nearReach = 2

// Shortlist returns how many entries of n survive the fine stage.
func Shortlist(n int) int {
	return min(n, max(MinShortlist, min(MaxShortlist, int(math.Ceil(float64(n)*ShortlistShare)))))
}

// CoarseShortlist returns how many entries of n the coarse stage keeps.
func CoarseShortlist(n int) int {
	return min(n, max(4*Shortlist(n), int(math.Ceil(float64(n)*CoarseShare))))
}

// Match is one search result.
type Match struct {
	Subject  string
	Distance float64 // template.Compare's distance; 1 when there is none
}

// SearchOptions adjust a search; the zero value is the matcher's.
type SearchOptions struct {
	// Exhaustive compares every entry in full (measurement only).
	Exhaustive bool
	// SharesOnly sizes every stage by its share of the gallery alone (no
	// floors): a small gallery is then narrowed in the proportions a
	// million-entry gallery is (measurement only).
	SharesOnly bool
}

// stageSizes are the numbers of entries each stage keeps.
type stageSizes struct{ coarse, fine, near int }

func (o SearchOptions) sizes(n int) stageSizes {
	if o.SharesOnly {
		share := func(f float64) int { return max(1, int(math.Ceil(float64(n)*f))) }
		return stageSizes{share(CoarseShare), share(ShortlistShare), share(FullCompares / 1e6)}
	}
	return stageSizes{CoarseShortlist(n), Shortlist(n), FullCompares}
}

// Search returns the entry nearest to the probe ({"", 1} when the index
// is empty or nothing overlaps the probe enough to compare).
func (x *Index) Search(probe *template.Template) Match {
	return x.SearchWith(probe, SearchOptions{})
}

// SearchWith is Search with options.
func (x *Index) SearchWith(probe *template.Template, o SearchOptions) Match {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.n == 0 {
		return Match{Distance: 1}
	}
	var cands []int32 // nil: every entry
	if !o.Exhaustive {
		cands, _ = x.stages(probe, o.sizes(x.n), -1)
	}
	return x.compare(probe, cands)
}

func (x *Index) workers() int {
	if x.Workers > 0 {
		return x.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// stageRanks says where a watched entry was lost: its rank (entries
// strictly nearer) in each stage it reached, −1 for those it did not.
type stageRanks struct{ coarse, fine, near int }

// stages runs the coarse, fine and near stages and returns the entries
// for full comparison (nil: all of them). When watch is an entry's index,
// its rank in every stage it reaches is reported.
func (x *Index) stages(probe *template.Template, sz stageSizes, watch int) ([]int32, stageRanks) {
	ranks := stageRanks{-1, -1, -1}
	if sz.near >= x.n {
		return nil, ranks // tiny gallery: everything in full
	}
	workers := x.workers()
	var cands []int32
	var shift []uint8 // each candidate's best shift in the stage that kept it
	if sz.coarse < x.n {
		ps := coarseProbe(probe)
		cands, shift, ranks.coarse = x.nearest(nil, sz.coarse, workers, watch, func(_ int, b *block, i int) (float32, uint8) {
			return coarseDistance(ps, &b.coarse[i])
		})
	}
	if watch >= 0 && cands != nil && !slices.Contains(cands, int32(watch)) {
		return nil, ranks
	}
	fps := probeSketches(probe, FineShifts)
	coarseShift := shift
	cands, shift, ranks.fine = x.nearest(cands, sz.fine, workers, watch, func(j int, b *block, i int) (float32, uint8) {
		if coarseShift == nil {
			return fineDistance(fps, &b.sketches[i], 255)
		}
		return fineDistance(fps, &b.sketches[i], coarseShift[j])
	})
	if watch >= 0 && !slices.Contains(cands, int32(watch)) {
		return nil, ranks
	}
	if sz.near >= len(cands) {
		return cands, ranks
	}
	fineShift := shift
	cands, _, ranks.near = x.nearest(cands, sz.near, workers, watch, func(j int, b *block, i int) (float32, uint8) {
		// The fine stage's shift moved the probe onto the entry; the
		// entry moves back by as much onto the probe.
		s := FineShifts[fineShift[j]]
		d, err := template.CompareNear(probe, &b.templates[i], -s[0], -s[1], nearReach)
		if err != nil {
			return 1, 0
		}
		return float32(d), 0
	})
	return cands, ranks
}

// distBuckets quantises distances (in [0, 1]) for selection.
const distBuckets = 4096

// nearest returns the k entries (of among, or of all when among is nil)
// with the smallest dist (called with the entry's position in among, or
// its index), the tag dist gave each, and the rank of entry watch (−1 when
// it is not among them): every distance is computed in parallel, a
// histogram finds the k-th, and the entries up to it are kept (ties at
// the cut in entry order). Linear in the entries, unlike a heap.
func (x *Index) nearest(among []int32, k, workers, watch int, dist func(j int, b *block, i int) (float32, uint8)) ([]int32, []uint8, int) {
	total := x.n
	if among != nil {
		total = len(among)
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	q, tags := sc.take(total)
	hists := make([][distBuckets + 1]int32, workers)
	var wg sync.WaitGroup
	chunk := (total + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min(total, (w+1)*chunk)
		wg.Add(1)
		go func(h *[distBuckets + 1]int32, lo, hi int) {
			defer wg.Done()
			for j := lo; j < hi; j++ {
				i := int(x.entryAt(among, j))
				d, tag := dist(j, x.blocks[i/blockEntries], i%blockEntries)
				b := uint16(d * distBuckets)
				q[j], tags[j] = b, tag
				h[b]++
			}
		}(&hists[w], lo, hi)
	}
	wg.Wait()
	rank := -1
	if watch >= 0 {
		for j, b := range q {
			if int(x.entryAt(among, j)) == watch {
				rank = 0
				for _, c := range q {
					if c < b {
						rank++
					}
				}
				break
			}
		}
	}
	// The cut: the smallest bucket at which k entries are reached.
	var cum int32
	cut := uint16(distBuckets)
	for b := 0; b <= distBuckets; b++ {
		for w := range hists {
			cum += hists[w][b]
		}
		if int(cum) >= k {
			cut = uint16(b)
			break
		}
	}
	out := make([]int32, 0, k)
	outTags := make([]uint8, 0, k)
	var atCut []int
	for j, b := range q {
		switch {
		case b < cut:
			out = append(out, x.entryAt(among, j))
			outTags = append(outTags, tags[j])
		case b == cut:
			atCut = append(atCut, j)
		}
	}
	for _, j := range atCut[:min(len(atCut), k-len(out))] {
		out = append(out, x.entryAt(among, j))
		outTags = append(outTags, tags[j])
	}
	return out, outTags, rank
}

// scratch holds a stage's per-entry distances and tags between searches:
// a million-entry search would otherwise allocate 3 MB each time, and the
// garbage collector run for it would walk the gallery's subjects.
type scratch struct {
	q    []uint16
	tags []uint8
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (s *scratch) take(n int) ([]uint16, []uint8) {
	if cap(s.q) < n {
		s.q, s.tags = make([]uint16, n), make([]uint8, n)
	}
	return s.q[:n], s.tags[:n]
}

func (x *Index) entryAt(among []int32, j int) int32 {
	if among != nil {
		return among[j]
	}
	return int32(j)
}

// Trace reports whether subject's entry would reach the full comparison
// of a search for the probe under o, and its rank (entries strictly
// nearer) in the coarse, fine and near stages (−1 for a stage it did not
// reach, or that did not run). It is how mates lost by pre-selection are
// counted; ok is false when subject has no entry.
func (x *Index) Trace(probe *template.Template, subject string, o SearchOptions) (kept bool, coarse, fine, near int, ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.pos[subject]
	if !ok {
		return false, -1, -1, -1, false
	}
	cands, r := x.stages(probe, o.sizes(x.n), i)
	kept = cands == nil && o.sizes(x.n).fine >= x.n || slices.Contains(cands, int32(i))
	return kept, r.coarse, r.fine, r.near, true
}

// compare runs template.Compare on the candidates (every entry when nil)
// in parallel and returns the nearest.
func (x *Index) compare(probe *template.Template, cands []int32) Match {
	n := len(cands)
	if cands == nil {
		n = x.n
	}
	workers := max(1, min(x.workers(), n))
	type best struct {
		i int
		d float64
	}
	out := make([]best, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			b := best{-1, 1}
			for c := w; c < n; c += workers {
				i := int(x.entryAt(cands, c))
				d, err := template.Compare(probe, &x.blocks[i/blockEntries].templates[i%blockEntries])
				if err == nil && (d < b.d || d == b.d && b.i >= 0 && i < b.i) {
					b = best{i, d}
				}
			}
			out[w] = b
		}(w)
	}
	wg.Wait()
	b := best{-1, 1}
	for _, o := range out {
		if o.i >= 0 && (o.d < b.d || o.d == b.d && o.i < b.i) {
			b = o
		}
	}
	if b.i < 0 {
		return Match{Distance: 1}
	}
	return Match{Subject: x.blocks[b.i/blockEntries].subjects[b.i%blockEntries], Distance: b.d}
}
