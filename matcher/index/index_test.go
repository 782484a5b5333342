package index

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/palmd/palmd/template"
	"github.com/palmd/palmd/template/templatetest"
)

// standIns returns n templates of distinct stand-in people: mosaics of
// templatetest palms.
func standIns(n int) []*template.Template {
	src := make([]*template.Template, 64)
	for i := range src {
		src[i] = templatetest.Palm(uint64(5000+i), 0, 0)
	}
	out := make([]*template.Template, n)
	for i := range out {
		out[i] = templatetest.Mosaic(src, uint64(i))
	}
	return out
}

// BenchmarkSearch measures one identification against galleries of
// 100,000 and 1,000,000 entries on every core, and the memory an entry
// costs.
func BenchmarkSearch(b *testing.B) {
	pads := standIns(1000)
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("gallery=%d", n), func(b *testing.B) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			var x Index
			for i := 0; i < n; i++ {
				x.Put(fmt.Sprintf("%032x", i), pads[i%len(pads)])
			}
			x.Put("mate", templatetest.Palm(1, 0, 0))
			runtime.GC()
			runtime.ReadMemStats(&after)
			probe := templatetest.Palm(1, 0.15, 9)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if m := x.Search(probe); m.Subject != "mate" {
					b.Fatalf("found %q at %v", m.Subject, m.Distance)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/search")
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n)/1024, "KiB/entry")
			runtime.KeepAlive(&x)
		})
	}
}

// TestSketchOfAgreesWithCounting checks the bit-parallel pooling against
// counting cell by cell.
func TestSketchOfAgreesWithCounting(t *testing.T) {
	for i, tp := range append(standIns(20), templatetest.Palm(3, 0.3, 3)) {
		// Knock out some cells so that blocks of every reliability occur.
		for y := range tp.Mask[0] {
			tp.Mask[0][y] &^= uint32(0x0f0f) << uint(y%16)
			tp.Mask[1][y] &^= uint32(1) << uint(y)
		}
		got, want := SketchOf(tp), sketchByCounting(tp)
		if got != want {
			t.Fatalf("template %d: SketchOf differs from counting cell by cell", i)
		}
	}
}

func sketchByCounting(t *template.Template) Sketch {
	var s Sketch
	for m := range t.Planes {
		for by := 0; by < sketchSide; by++ {
			for bx := 0; bx < sketchSide; bx++ {
				reliable := 0
				var ones [template.Orientations]int
				for y := by * blockCells; y < (by+1)*blockCells; y++ {
					for x := bx * blockCells; x < (bx+1)*blockCells; x++ {
						if t.Mask[m][y]>>uint(x)&1 == 0 {
							continue
						}
						reliable++
						for o := range ones {
							ones[o] += int(t.Planes[m][o][y] >> uint(x) & 1)
						}
					}
				}
				if 2*reliable < blockCells*blockCells {
					continue
				}
				bit := uint64(1) << uint(by*sketchSide+bx)
				s.Mask[m] |= bit
				for o, c := range ones {
					if 2*c > reliable {
						s.Bits[m][o] |= bit
					}
					if d := 2*c - reliable; d >= sureMargin || -d >= sureMargin {
						s.Sure[m][o] |= bit
					}
				}
			}
		}
	}
	return s
}

// TestCoarseDistanceCountsBits checks the carry-save popcount of the
// coarse stage against counting bit by bit.
func TestCoarseDistanceCountsBits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 500; trial++ {
		var p, e coarseSketch
		for m := range p.bits {
			for k := range p.bits[m] {
				p.bits[m][k], e.bits[m][k] = r.Uint64(), r.Uint64()
			}
			p.mask[m], e.mask[m] = r.Uint64()|r.Uint64(), r.Uint64()|r.Uint64()
		}
		got, _ := coarseDistance([]coarseSketch{p}, &e)
		gd, gn, gv := coarseBest([]coarseSketch{p, e, p}, &e)
		if haveCoarseASM {
			if ad, an, av := coarseBestASM(&[]coarseSketch{p, e, p}[0], 3, &e); ad != gd || an != gn || av != gv {
				t.Fatalf("trial %d: assembly (%d, %d, %d), Go (%d, %d, %d)", trial, ad, an, av, gd, gn, gv)
			}
		}
		var d, n int
		for m := range p.bits {
			for b := 0; b < 64; b++ {
				if (p.mask[m]&e.mask[m])>>b&1 == 0 {
					continue
				}
				for k := range p.bits[m] {
					n++
					d += int((p.bits[m][k] ^ e.bits[m][k]) >> b & 1)
				}
			}
		}
		want := float32(1)
		if n >= minSketchBlocks*template.Orientations/2 {
			want = float32(d) / float32(n)
		}
		if got != want {
			t.Fatalf("trial %d: coarse distance %v, counted %v", trial, got, want)
		}
	}
}

// TestIndex: entries are put, replaced and deleted; a search finds the
// mate of a probe with pre-selection as exhaustively, on a gallery large
// enough for both stages to narrow it; Trace agrees with the search.
func TestIndex(t *testing.T) {
	var x Index
	if m := x.Search(templatetest.Palm(1, 0, 0)); m.Subject != "" || m.Distance != 1 {
		t.Fatalf("empty index: %+v", m)
	}
	// Large enough for every stage to narrow the gallery (coarse keeps
	// 1,024, fine 256 of 5,003); -short (the arm64 run under qemu) too.
	n := 20_000
	if testing.Short() {
		n = 5_000
	}
	pads := standIns(n)
	for i, p := range pads {
		x.Put(fmt.Sprintf("pad-%d", i), p)
	}
	mates := map[string]uint64{"alice": 1, "bob": 2, "carol": 3}
	for s, seed := range mates {
		x.Put(s, templatetest.Palm(seed, 0.05, seed))
	}
	if x.Len() != n+3 || !x.Has("bob") {
		t.Fatalf("%d entries", x.Len())
	}
	for _, tc := range []struct {
		name string
		opts SearchOptions
	}{
		{"default", SearchOptions{}},
		{"shares only", SearchOptions{SharesOnly: true}},
		{"exhaustive", SearchOptions{Exhaustive: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for s, seed := range mates {
				probe := templatetest.Palm(seed, 0.15, 100+seed)
				if m := x.SearchWith(probe, tc.opts); m.Subject != s || m.Distance > 0.3 {
					t.Errorf("%s's probe found %q at %.3f", s, m.Subject, m.Distance)
				}
				if kept, _, _, _, ok := x.Trace(probe, s, tc.opts); !ok || !kept {
					t.Errorf("%s not pre-selected by Trace", s)
				}
			}
		})
	}
	// A probe as far off as Compare searches (the ROIs of one palm lie
	// up to 5–6 mm apart) is still pre-selected.
	t.Run("shifted to the search's edge", func(t *testing.T) {
		for s, seed := range mates {
			probe := templatetest.Palm(seed, 0.1, 200+seed).Translated(5, -5)
			if m := x.Search(&probe); m.Subject != s || m.Distance > 0.3 {
				t.Errorf("%s's probe moved (5, -5) cells found %q at %.3f", s, m.Subject, m.Distance)
			}
		}
	})
	// Replacing and deleting.
	x.Put("alice", templatetest.Palm(7, 0, 0))
	if m := x.Search(templatetest.Palm(7, 0.1, 7)); m.Subject != "alice" {
		t.Errorf("replaced entry: found %q", m.Subject)
	}
	for i := range pads {
		if !x.Delete(fmt.Sprintf("pad-%d", i)) {
			t.Fatalf("pad-%d not deleted", i)
		}
	}
	if x.Delete("pad-0") || x.Len() != 3 {
		t.Errorf("after deleting the pads: %d entries", x.Len())
	}
	var tp template.Template
	if !x.Template("carol", &tp) || tp != *templatetest.Palm(3, 0.05, 3) {
		t.Error("carol's template changed by the deletions around it")
	}
	if m := x.Search(templatetest.Palm(2, 0.1, 5)); m.Subject != "bob" {
		t.Errorf("after deletions: found %q", m.Subject)
	}
}

// TestShortlistSizes pins the stage sizes the package documents.
func TestShortlistSizes(t *testing.T) {
	for _, tc := range []struct{ n, coarse, short int }{
		{10, 10, 10},
		{1000, 1000, 256},
		{10_000, 1024, 256},
		{100_000, 6000, 500},
		{1_000_000, 60_000, 5000},
		{10_000_000, 600_000, 16384},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			if c, s := CoarseShortlist(tc.n), Shortlist(tc.n); c != tc.coarse || s != tc.short {
				t.Errorf("n %d: coarse %d, shortlist %d; want %d, %d", tc.n, c, s, tc.coarse, tc.short)
			}
		})
	}
}

// TestSmallGallery: a gallery larger than FullCompares but within the
// shortlist goes through the near stage (not everything in full) and
// still finds every mate.
func TestSmallGallery(t *testing.T) {
	var x Index
	for i, p := range standIns(100) {
		x.Put(fmt.Sprintf("pad-%d", i), p)
	}
	mates := map[string]uint64{"alice": 1, "bob": 2, "carol": 3}
	for s, seed := range mates {
		x.Put(s, templatetest.Palm(seed, 0.05, seed))
	}
	if sz := (SearchOptions{}).sizes(x.Len()); sz.near >= x.Len() || sz.fine < x.Len() {
		t.Fatalf("stage sizes %+v for %d entries: want the fine stage to keep all, the near stage fewer", sz, x.Len())
	}
	for s, seed := range mates {
		probe := templatetest.Palm(seed, 0.15, 100+seed)
		cands, _ := x.stages(probe, (SearchOptions{}).sizes(x.Len()), -1)
		if len(cands) != FullCompares {
			t.Fatalf("%d candidates compared in full, want %d", len(cands), FullCompares)
		}
		if m := x.Search(probe); m.Subject != s || m.Distance > 0.3 {
			t.Errorf("%s's probe found %q at %.3f", s, m.Subject, m.Distance)
		}
	}
}
