package eval

import (
	"context"
	"fmt"
	"testing"

	"github.com/palmd/palmd/template"
	"github.com/palmd/palmd/template/templatetest"
)

// palmImages makes extracted images without rendering: samples[p][s] is
// how many samples person p has in session s, each the person's palm with
// a share flip of its bits changed.
func palmImages(samples [][2]int, flip float64) []*Image {
	var ok []*Image
	n := uint64(0)
	for p, per := range samples {
		for s, k := range per {
			for i := 0; i < k; i++ {
				n++
				ok = append(ok, &Image{
					File: fmt.Sprintf("%04d_%d%d.png", p, s, i), Label: fmt.Sprintf("%04d", p), Session: s, Gate: "ok",
					tpl: templatetest.Palm(uint64(p)+1, flip, n),
				})
			}
		}
	}
	return ok
}

func TestCompareEntries(t *testing.T) {
	tests := []struct {
		name    string
		samples [][2]int
		// want: entries, genuine within and across, impostor comparisons
		entries, same, cross, imp int
	}{
		{"two sessions of three", [][2]int{{3, 3}, {3, 3}, {3, 3}, {3, 3}}, 8, 24, 24, 24 * 6},
		// Person 1's second session has one sample: no entry there, no
		// within-session probe of it, and its first session's probes
		// have no entry to cross to (its lone sample still crosses to
		// the first session's entry).
		{"a session too small for an entry", [][2]int{{3, 3}, {3, 1}, {3, 3}}, 5, 15, 13, 6*3 + 4*4 + 6*3},
		// Two per session: a probe's own session leaves one sample, too
		// few to fuse.
		{"two per session", [][2]int{{2, 2}, {2, 2}, {2, 2}}, 6, 0, 12, 12 * 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok := palmImages(tc.samples, 0.1)
			rep, err := compareEntries(context.Background(), Options{Workers: 2}, ok, len(ok), 0)
			if err != nil {
				t.Fatal(err)
			}
			if rep == nil {
				t.Fatal("no report")
			}
			same := 0
			if rep.Same != nil {
				same = rep.Same.Genuine
			}
			if rep.Entries != tc.entries || same != tc.same || rep.All.Genuine != tc.same+tc.cross || rep.Impostor != tc.imp {
				t.Errorf("entries %d, genuine %d (same %d), impostor %d; want %d, %d (%d), %d",
					rep.Entries, rep.All.Genuine, same, rep.Impostor, tc.entries, tc.same+tc.cross, tc.same, tc.imp)
			}
			if rep.All.GenMean >= rep.ImpMean {
				t.Errorf("genuine %.3f not below impostor %.3f", rep.All.GenMean, rep.ImpMean)
			}
		})
	}
	t.Run("one identity", func(t *testing.T) {
		rep, err := compareEntries(context.Background(), Options{}, palmImages([][2]int{{3, 3}}, 0.1), 6, 0)
		if err != nil || rep != nil {
			t.Errorf("one identity gave %+v, %v; want nothing", rep, err)
		}
	})
}

// TestEntriesOutvoteNoise checks what the protocol is for: a fused entry
// outvotes bits that flip between captures, so a probe lies closer to its
// entry than to a single other capture.
func TestEntriesOutvoteNoise(t *testing.T) {
	ok := palmImages([][2]int{{3, 3}, {3, 3}, {3, 3}, {3, 3}, {3, 3}}, 0.15)
	rep, err := compareEntries(context.Background(), Options{Workers: 2}, ok, len(ok), 0)
	if err != nil || rep == nil {
		t.Fatal(rep, err)
	}
	var pair float64
	n := 0
	for i := range ok {
		for j := i + 1; j < len(ok); j++ {
			if ok[i].Label == ok[j].Label && ok[i].Session != ok[j].Session {
				d, err := template.Compare(ok[i].tpl, ok[j].tpl)
				if err != nil {
					t.Fatal(err)
				}
				pair += d
				n++
			}
		}
	}
	pair /= float64(n)
	if rep.Cross.GenMean >= pair-0.02 {
		t.Errorf("genuine distance to an entry %.3f, to one capture %.3f: fusion did not help", rep.Cross.GenMean, pair)
	}
}
