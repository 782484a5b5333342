package eval

import (
	"context"
	"sort"
	"sync"

	"github.com/palmd/palmd/internal/parallel"
	"github.com/palmd/palmd/template"
)

// EntryReport holds verification figures measured the way the matcher
// decides: a probe against an enrolled entry (template.Fuse of several
// captures of one palm, what palm-matcher stores), not against a single
// other capture.
//
// Each identity's samples of one session are fused into that session's
// entry. A genuine comparison across sessions is a sample against its
// identity's entry of the other session; one within a session is a
// sample against the fusion of its session's other samples, so that a
// probe is never part of the entry it is compared with. An impostor
// comparison is a sample against every session entry of every other
// identity. An entry needs at least MinEntrySamples samples.
//
// The pairwise figures of Report stay the standard single-sample
// measure; these are what a shopper enrolled from several captures meets
// at the till.
type EntryReport struct {
	// Entries is the number of session entries (the impostor side).
	Entries int `json:"entries"`
	Summary
	// Thresholds and Model as Report's, from these impostor comparisons.
	Thresholds []Threshold             `json:"thresholds"`
	Model      *template.ImpostorModel `json:"impostor_model,omitempty"`
}

// MinEntrySamples is the fewest samples fused into an entry. The matcher
// enrols from matcher.DefaultEnrolSamples (3) captures; with two sessions
// of three, a probe's own session leaves two for its within-session entry.
const MinEntrySamples = 2

// compareEntries measures ok (the extracted images) against fused entries
// (see EntryReport). It returns nil when fewer than two identities have an
// entry. images and failed are the set's totals, for failure to extract.
func compareEntries(ctx context.Context, o Options, ok []*Image, images, failed int) (*EntryReport, error) {
	type key struct {
		label   string
		session int
	}
	groups := map[key][]int{} // indexes into ok
	for i, img := range ok {
		k := key{img.Label, img.Session}
		groups[k] = append(groups[k], i)
	}
	keys := make([]key, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if keys[a].label != keys[b].label {
			return keys[a].label < keys[b].label
		}
		return keys[a].session < keys[b].session
	})
	fuse := func(idx []int, except int) (template.Template, bool) {
		var samples []*template.Template
		for _, i := range idx {
			if i != except {
				samples = append(samples, ok[i].tpl)
			}
		}
		if len(samples) < MinEntrySamples {
			return template.Template{}, false
		}
		f, err := template.Fuse(samples)
		return f, err == nil
	}
	// Session entries, and where each identity's lie.
	var entries []template.Template
	var owner []string
	entryOf := map[key]int{}
	labels := map[string]bool{}
	for _, k := range keys {
		if f, good := fuse(groups[k], -1); good {
			entryOf[k] = len(entries)
			entries = append(entries, f)
			owner = append(owner, k.label)
			labels[k.label] = true
		}
	}
	defer func() {
		for i := range entries {
			entries[i].Zero()
		}
	}()
	if len(labels) < 2 {
		return nil, nil
	}

	type row struct{ same, cross, imp []float64 }
	rows := make([]row, len(ok))
	var mu sync.Mutex
	done := 0
	none := func() (struct{}, func(), error) { return struct{}{}, nil, nil }
	err := parallel.Do(ctx, len(ok), o.Workers, none, func(_ struct{}, i int) error {
		p, r := ok[i], &rows[i]
		distance := func(e *template.Template) float64 {
			d, err := template.Compare(p.tpl, e)
			if err != nil {
				return 0.5 // no overlap: no evidence of a match
			}
			return d
		}
		for e := range entries {
			if owner[e] != p.Label {
				r.imp = append(r.imp, distance(&entries[e]))
			}
		}
		for _, k := range keys {
			if k.label != p.Label {
				continue
			}
			if k.session != p.Session {
				if e, has := entryOf[k]; has {
					r.cross = append(r.cross, distance(&entries[e]))
				}
				continue
			}
			if own, good := fuse(groups[k], i); good {
				r.same = append(r.same, distance(&own))
				own.Zero()
			}
		}
		mu.Lock()
		done++
		if o.Progress != nil {
			o.Progress("entries", done, len(ok))
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	var gen, same, cross, imp []float64
	for _, r := range rows {
		gen = append(append(gen, r.same...), r.cross...)
		same, cross = append(same, r.same...), append(cross, r.cross...)
		imp = append(imp, r.imp...)
	}
	rep := &EntryReport{Entries: len(entries), Summary: summarise(images, failed, gen, same, cross, imp)}
	rep.Thresholds, rep.Model = thresholds(gen, imp)
	return rep, nil
}
