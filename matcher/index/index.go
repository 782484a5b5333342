// Package index is the matcher's 1:N search: it holds one template per
// enrolled subject and finds the closest to a probe without comparing
// every one in full.
//
// Every entry carries a Sketch of its template (112 bytes). A search
// sketches the probe at a few translations (ProbeShifts), scans every
// entry's sketch with popcounts on every core, keeps the Shortlist(n)
// entries whose sketches are nearest, and compares only those in full
// (template.Compare). Scanning a sketch costs about 1/200 of a full
// comparison, so a million entries are searched in tens of milliseconds.
// The price is that a mate whose sketch is not among the shortlist is
// missed; `palmctl eval --identify` measures how often (README,
// "Identification").
//
// Entries live in fixed-size blocks of plain arrays (no pointers for the
// garbage collector to trace, no slice doubling as the gallery grows): an
// entry costs about 2 KiB, mostly its template.
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

// blockEntries is the number of entries per storage block (about 7.6 MiB).
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

// Shortlist bounds. A search narrows the gallery in two sketch stages: the
// coarse stage keeps the nearest CoarseShare of the entries, the fine
// stage keeps the nearest ShortlistShare of the gallery out of those (at
// least MinShortlist and at most MaxShortlist), and only these are
// compared in full. A thousandth keeps a million-entry search within
// 100 ms on two cores while missing few mates (palmctl eval --identify
// measures how few); the floor keeps small galleries effectively
// exhaustive.
const (
	CoarseShare    = 0.03
	ShortlistShare = 1e-3
	MinShortlist   = 256
	MaxShortlist   = 4096
)

// Shortlist returns how many entries a search of n compares in full.
func Shortlist(n int) int {
	return min(n, max(MinShortlist, min(MaxShortlist, int(math.Ceil(float64(n)*ShortlistShare)))))
}

// CoarseShortlist returns how many entries of n the coarse stage keeps:
// CoarseShare of them, and never fewer than four times the shortlist.
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
	// SharesOnly sizes the stages by CoarseShare and ShortlistShare
	// alone, without MinShortlist: a small gallery is then narrowed in
	// the proportions a large one is (measurement only).
	SharesOnly bool
}

func (o SearchOptions) sizes(n int) (coarse, short int) {
	if o.SharesOnly {
		return max(1, int(math.Ceil(float64(n)*CoarseShare))), max(1, int(math.Ceil(float64(n)*ShortlistShare)))
	}
	return CoarseShortlist(n), Shortlist(n)
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
	n := x.n
	if n == 0 {
		return Match{Distance: 1}
	}
	workers := x.workers()
	var cands []int32
	if o.Exhaustive {
		cands = make([]int32, n)
		for i := range cands {
			cands[i] = int32(i)
		}
	} else {
		kc, k := o.sizes(n)
		cands = x.preselect(probe, kc, k, workers)
	}
	return x.compare(probe, cands, workers)
}

func (x *Index) workers() int {
	if x.Workers > 0 {
		return x.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// preselect runs the two sketch stages and returns the k entries nearest
// to the probe out of the kc nearest by the coarse stage.
func (x *Index) preselect(probe *template.Template, kc, k, workers int) []int32 {
	var cands []int32
	var shift []uint8 // each candidate's best coarse shift
	if kc < x.n {
		ps := coarseProbe(probe)
		cands, shift = x.nearest(nil, kc, workers, func(_ int, b *block, i int) (float32, uint8) { return coarseDistance(ps, &b.coarse[i]) })
	}
	if k >= x.n {
		return cands // nil: the caller compares everything
	}
	ps := probeSketches(probe, FineShifts)
	out, _ := x.nearest(cands, k, workers, func(j int, b *block, i int) (float32, uint8) {
		if shift == nil {
			return fineDistance(ps, &b.sketches[i], 255), 0
		}
		return fineDistance(ps, &b.sketches[i], shift[j]), 0
	})
	return out
}

// distBuckets quantises sketch distances (in [0, 1]) for selection.
const distBuckets = 4096

// nearest returns the k entries (of among, or of all when among is nil)
// with the smallest dist (called with the entry's position in among, or
// its index), and the tag dist gave each: every distance is computed in
// parallel, a histogram finds the k-th, and the entries up to it are kept
// (ties at the cut kept in entry order). Linear in the entries, unlike a
// heap.
func (x *Index) nearest(among []int32, k, workers int, dist func(j int, b *block, i int) (float32, uint8)) ([]int32, []uint8) {
	total := x.n
	if among != nil {
		total = len(among)
	}
	q := make([]uint16, total)
	tags := make([]uint8, total)
	hists := make([][distBuckets + 1]int32, workers)
	var wg sync.WaitGroup
	chunk := (total + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min(total, (w+1)*chunk)
		wg.Add(1)
		go func(h *[distBuckets + 1]int32, lo, hi int) {
			defer wg.Done()
			for j := lo; j < hi; j++ {
				i := j
				if among != nil {
					i = int(among[j])
				}
				d, tag := dist(j, x.blocks[i/blockEntries], i%blockEntries)
				b := uint16(d * distBuckets)
				q[j], tags[j] = b, tag
				h[b]++
			}
		}(&hists[w], lo, hi)
	}
	wg.Wait()
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
	return out, outTags
}

func (x *Index) entryAt(among []int32, j int) int32 {
	if among != nil {
		return among[j]
	}
	return int32(j)
}

// Trace reports whether subject's entry would survive pre-selection of
// the probe under o, and where it is lost: its rank (entries strictly
// nearer) in the coarse stage, and in the fine stage among the coarse
// stage's survivors (−1 when it did not get there). It is how mates
// missed by pre-selection are counted; ok is false when subject has no
// entry.
func (x *Index) Trace(probe *template.Template, subject string, o SearchOptions) (preselected bool, coarseRank, fineRank int, ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, ok := x.pos[subject]
	if !ok {
		return false, 0, 0, false
	}
	kc, k := o.sizes(x.n)
	workers := x.workers()
	var among []int32
	var shift []uint8
	if kc < x.n {
		ps := coarseProbe(probe)
		coarse := func(_ int, b *block, i int) (float32, uint8) { return coarseDistance(ps, &b.coarse[i]) }
		d, _ := coarse(0, x.blocks[i/blockEntries], i%blockEntries)
		for j := 0; j < x.n; j++ {
			if dj, _ := coarse(j, x.blocks[j/blockEntries], j%blockEntries); dj < d {
				coarseRank++
			}
		}
		among, shift = x.nearest(nil, kc, workers, coarse)
		if !slices.Contains(among, int32(i)) {
			return false, coarseRank, -1, true
		}
	}
	ps := probeSketches(probe, FineShifts)
	fineAt := func(j int, b *block, i int) (float32, uint8) {
		if shift == nil {
			return fineDistance(ps, &b.sketches[i], 255), 0
		}
		return fineDistance(ps, &b.sketches[i], shift[j]), 0
	}
	var d float32
	n := x.n
	if among != nil {
		n = len(among)
	}
	dists := make([]float32, n)
	for j := range dists {
		e := x.entryAt(among, j)
		dists[j], _ = fineAt(j, x.blocks[e/blockEntries], int(e%blockEntries))
		if int(e) == i {
			d = dists[j]
		}
	}
	for _, dj := range dists {
		if dj < d {
			fineRank++
		}
	}
	if k >= x.n {
		return true, coarseRank, fineRank, true
	}
	short, _ := x.nearest(among, k, workers, fineAt)
	return slices.Contains(short, int32(i)), coarseRank, fineRank, true
}

// compare runs template.Compare on the candidates in parallel and returns
// the nearest.
func (x *Index) compare(probe *template.Template, cands []int32, workers int) Match {
	if cands == nil {
		cands = make([]int32, x.n)
		for i := range cands {
			cands[i] = int32(i)
		}
	}
	workers = max(1, min(workers, len(cands)))
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
			for c := w; c < len(cands); c += workers {
				i := int(cands[c])
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
