package eval

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/palmd/palmd/internal/parallel"
	"github.com/palmd/palmd/matcher"
	"github.com/palmd/palmd/matcher/index"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/template"
	"github.com/palmd/palmd/template/templatetest"
)

// IdentifyOptions configures an identification (1:N) run, measured as
// ISO/IEC 19795-1 and NIST's FRVT/IREX do: every identity in the gallery
// is enrolled from its first EnrolSamples samples, its later samples are
// mated searches, and the identities kept out of the gallery (strangers)
// give the non-mated searches.
type IdentifyOptions struct {
	Options
	// EnrolSamples per gallery entry; zero means matcher.DefaultEnrolSamples.
	EnrolSamples int
	// Strangers is the share of identities kept out of the gallery; zero
	// means DefaultStrangers.
	Strangers float64
	// Pad adds this many stand-in entries to the gallery
	// (templatetest.Mosaic of the templates of half the strangers, who are
	// then not searched), to measure pre-selection on a gallery larger
	// than the set.
	Pad int
	// Exhaustive also searches the padded gallery in full, to compare
	// pre-selection with it on the same searches (a search of N entries
	// costs N full comparisons).
	Exhaustive bool
	// Threshold is the decision threshold; zero means the matcher's
	// default (template.DefaultImpostorModel at matcher.DefaultFAR).
	Threshold float64
}

// DefaultStrangers is the share of identities kept out of the gallery.
const DefaultStrangers = 0.5

// Decision rules for a gallery entry made of several samples.
const (
	RuleMin    = "min"    // the nearest of the samples
	RuleBest2  = "best2"  // the mean of the two nearest samples
	RuleMedoid = "medoid" // the sample nearest to the others alone
	RuleFused  = "fused"  // template.Fuse of the samples (the matcher's rule)
)

// Rules are the decision rules compared, in report order.
var Rules = []string{RuleMin, RuleBest2, RuleMedoid, RuleFused}

// IdentifyReport is the result of an identification run.
type IdentifyReport struct {
	Dir        string `json:"dir"`
	Images     int    `json:"images"`
	Extracted  int    `json:"extracted"`
	Enrolled   int    `json:"enrolled"`
	Strangers  int    `json:"strangers"`
	PadSources int    `json:"pad_sources,omitempty"`
	Mated      int    `json:"mated_searches"`
	// NonMated counts the non-mated searches: the strangers' samples, and
	// every mated probe searched again with its own entry left out.
	NonMated  int          `json:"non_mated_searches"`
	Threshold float64      `json:"threshold"`
	Rules     []RuleResult `json:"rules"`
	// Preselection compares the index's search with the exhaustive one
	// on the gallery padded to Pad extra entries.
	Preselection *PreselectionResult `json:"preselection,omitempty"`
}

// RuleResult is one decision rule's identification figures on the
// unpadded gallery (searched exhaustively).
type RuleResult struct {
	Rule string `json:"rule"`
	// Rank1 is the share of mated searches whose nearest entry is the
	// mate, whatever the distance.
	Rank1 float64 `json:"rank1"`
	// FNIRAtFPIR is the rank-1 false-negative identification rate at the
	// threshold where the false-positive identification rate is at most
	// the key, measured on the non-mated searches.
	FNIRAtFPIR map[string]OperatingPoint `json:"fnir_at_fpir"`
	// At the decision threshold: FNIR, FPIR, and mated searches answered
	// with somebody else (a wrong person found).
	FNIR      float64 `json:"fnir"`
	FPIR      float64 `json:"fpir"`
	WrongMate int     `json:"wrong_person"`
	// EntryFAR is the modelled chance that one entry takes a stranger's
	// probe at the decision threshold (an impostor model fitted to every
	// stranger–entry distance), and MaxGallery the largest gallery at
	// which FPIR stays within 1e-3 by it: 1 − (1 − EntryFAR)^N ≤ 1e-3.
	// Both are extrapolated, not measured.
	// Zero (left out of the JSON) when the set has too few stranger–entry
	// distances to fit a model.
	EntryFAR   float64 `json:"entry_far_model,omitempty"`
	MaxGallery float64 `json:"max_gallery_fpir_1e-3_model,omitempty"`
}

// OperatingPoint is a threshold and the FNIR there.
type OperatingPoint struct {
	Threshold float64 `json:"threshold"`
	FNIR      float64 `json:"fnir"`
}

// PreselectionResult compares pre-selection with exhaustive search on the
// same searches of a padded gallery. The stages are sized by their shares
// alone (index.SearchOptions.SharesOnly), so that a gallery of thousands
// is narrowed in the proportions a million-entry gallery is.
type PreselectionResult struct {
	Gallery   int `json:"gallery"`
	Coarse    int `json:"coarse_shortlist"`
	Shortlist int `json:"shortlist"`
	Full      int `json:"full_compares"`
	// NotPreselected counts mated searches whose mate was outside the
	// shortlist, LostCoarse those lost in the coarse stage, and
	// LostFound those of them that exhaustive search answered right (the
	// mate nearest, within the threshold): what pre-selection costs.
	NotPreselected int `json:"mates_not_preselected"`
	LostCoarse     int `json:"lost_in_coarse_stage"`
	LostFound      int `json:"lost_that_exhaustive_found"`
	// Lost describes each mate not pre-selected.
	Lost []LostMate `json:"lost"`
	// FNIR and FPIR at the decision threshold, with pre-selection and
	// (when measured) exhaustively.
	FNIR           float64  `json:"fnir"`
	FPIR           float64  `json:"fpir"`
	ExhaustiveFNIR *float64 `json:"exhaustive_fnir,omitempty"`
	ExhaustiveFPIR *float64 `json:"exhaustive_fpir,omitempty"`
	// Distances of the strangers to real entries and to stand-ins: the
	// stand-ins are fit for the job when the two agree.
	Impostor Spread `json:"impostor_vs_entries"`
	Stand    Spread `json:"impostor_vs_standins"`
	// Sketch (fine-stage) distances likewise, and the mates'.
	SketchMate     Spread `json:"sketch_mates"`
	SketchImpostor Spread `json:"sketch_impostor_vs_entries"`
	SketchStand    Spread `json:"sketch_impostor_vs_standins"`
}

// LostMate is a mated search whose mate pre-selection missed: the mate's
// rank in the coarse, fine and near stages (−1: lost before it), its
// distance to the probe, and whether exhaustive search found it.
type LostMate struct {
	CoarseRank int     `json:"coarse_rank"`
	FineRank   int     `json:"fine_rank"`
	NearRank   int     `json:"near_rank"`
	Distance   float64 `json:"distance"`
	Found      bool    `json:"found_exhaustively"`
}

// Spread summarises distances: mean, standard deviation, the 1e-3
// quantile and the lowest.
type Spread struct {
	N      int     `json:"n"`
	Mean   float64 `json:"mean"`
	Std    float64 `json:"std"`
	Q001   float64 `json:"q0.001"`
	Lowest float64 `json:"lowest"`
}

func spread(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	mean, std := sim.MeanStd(s)
	return Spread{N: len(s), Mean: mean, Std: std, Q001: s[int(1e-3*float64(len(s)-1))], Lowest: s[0]}
}

// identity is one label's extracted templates, in file order.
type identity struct {
	label string
	tpls  []*template.Template
}

// search is one probe's outcome under one rule.
type search struct {
	best     float64
	bestSubj int // index into the gallery, −1 for none
	mate     int // the mate's gallery index, −1 for a non-mated search
	second   float64
	secondOK bool // second is the best distance with the mate left out
}

// Identify runs the identification measurement on the images in o.Dir.
func Identify(ctx context.Context, o IdentifyOptions) (*IdentifyReport, error) {
	k := o.EnrolSamples
	if k == 0 {
		k = matcher.DefaultEnrolSamples
	}
	share := o.Strangers
	if share == 0 {
		share = DefaultStrangers
	}
	if k < 1 || share <= 0 || share >= 1 || o.Pad < 0 {
		return nil, fmt.Errorf("eval: enrol samples %d, strangers %v or pad %d out of range", k, share, o.Pad)
	}
	threshold := o.Threshold
	if threshold == 0 {
		t, err := matcher.ThresholdFor(matcher.DefaultFAR)
		if err != nil {
			return nil, fmt.Errorf("eval: %w", err)
		}
		threshold = t
	}
	imgs, _, err := load(ctx, o.Options)
	if err != nil {
		return nil, err
	}
	defer wipeAll(imgs)

	byLabel := map[string]*identity{}
	var labels []string
	extracted := 0
	for i := range imgs {
		if imgs[i].tpl == nil {
			continue
		}
		extracted++
		id := byLabel[imgs[i].Label]
		if id == nil {
			id = &identity{label: imgs[i].Label}
			byLabel[id.label] = id
			labels = append(labels, id.label)
		}
		id.tpls = append(id.tpls, imgs[i].tpl)
	}
	sort.Strings(labels)
	// Interleave the roles over the sorted labels, so that no role gets
	// all of one end of the set.
	var enrolled, strangers, sources []*identity
	for i, l := range labels {
		id := byLabel[l]
		if math.Floor(float64(i+1)*share) > math.Floor(float64(i)*share) || len(id.tpls) <= k {
			strangers = append(strangers, id)
		} else {
			enrolled = append(enrolled, id)
		}
	}
	if o.Pad > 0 {
		var keep []*identity
		for i, s := range strangers {
			if i%2 == 1 {
				sources = append(sources, s)
			} else {
				keep = append(keep, s)
			}
		}
		strangers = keep
	}
	if len(enrolled) < 2 || len(strangers) < 1 || (o.Pad > 0 && len(sources) < 2) {
		return nil, fmt.Errorf("eval: %d identities with more than %d samples and %d strangers: too few for identification", len(enrolled), k, len(strangers))
	}
	rep := &IdentifyReport{Dir: o.Dir, Images: len(imgs), Extracted: extracted, Enrolled: len(enrolled),
		Strangers: len(strangers), PadSources: len(sources), Threshold: threshold}

	// Gallery entries under each rule.
	gal := make([]galleryEntry, len(enrolled))
	for i, id := range enrolled {
		gal[i] = newGalleryEntry(id.tpls[:k])
	}
	defer func() {
		for i := range gal {
			gal[i].fused.Zero()
		}
	}()
	type probe struct {
		t    *template.Template
		mate int
	}
	var probes []probe
	for i, id := range enrolled {
		for _, t := range id.tpls[k:] {
			probes = append(probes, probe{t, i})
		}
	}
	rep.Mated = len(probes)
	for _, id := range strangers {
		for _, t := range id.tpls {
			probes = append(probes, probe{t, -1})
		}
	}
	rep.NonMated = len(probes) // mated probes with their entry left out, and the strangers'
	results := make([][]search, len(Rules))
	for r := range results {
		results[r] = make([]search, len(probes))
	}
	entryImp := make([][]float64, len(probes)) // per stranger probe: every entry's distance, per rule
	none := func() (struct{}, func(), error) { return struct{}{}, nil, nil }
	var mu sync.Mutex
	done := 0
	err = parallel.Do(ctx, len(probes), o.Workers, none, func(_ struct{}, p int) error {
		pr := probes[p]
		per := make([]search, len(Rules))
		for r := range per {
			per[r] = search{best: 1, bestSubj: -1, mate: pr.mate, second: 1, secondOK: pr.mate >= 0}
		}
		var imp []float64
		for e := range gal {
			d := gal[e].distances(pr.t)
			for r := range Rules {
				s := &per[r]
				if d[r] < s.best || (d[r] == s.best && e < s.bestSubj) {
					s.best, s.bestSubj = d[r], e
				}
				if e != pr.mate && d[r] < s.second {
					s.second = d[r]
				}
			}
			if pr.mate < 0 {
				imp = append(imp, d[:]...)
			}
		}
		for r := range Rules {
			results[r][p] = per[r]
		}
		entryImp[p] = imp
		mu.Lock()
		done++
		if o.Progress != nil {
			o.Progress("identify", done, len(probes))
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	for r, rule := range Rules {
		var imp []float64
		for _, v := range entryImp {
			for i := r; i < len(v); i += len(Rules) {
				imp = append(imp, v[i])
			}
		}
		rep.Rules = append(rep.Rules, ruleResult(rule, results[r], threshold, imp))
	}
	if o.Pad > 0 {
		var src []*template.Template
		for _, id := range sources {
			src = append(src, id.tpls...)
		}
		var mated, nonMated []*template.Template
		var mates []int
		for _, pr := range probes {
			if pr.mate >= 0 {
				mated, mates = append(mated, pr.t), append(mates, pr.mate)
			} else {
				nonMated = append(nonMated, pr.t)
			}
		}
		pre, err := preselection(ctx, o, gal, src, mated, mates, nonMated, threshold)
		if err != nil {
			return nil, err
		}
		rep.Preselection = pre
	}
	return rep, nil
}

// galleryEntry is one enrolled identity: its samples, medoid and fused
// template.
type galleryEntry struct {
	samples []*template.Template
	medoid  int
	fused   template.Template
}

func newGalleryEntry(samples []*template.Template) galleryEntry {
	e := galleryEntry{samples: samples}
	best := math.Inf(1)
	for i := range samples {
		var sum float64
		for j := range samples {
			if i != j {
				d, err := template.Compare(samples[i], samples[j])
				if err != nil {
					d = 1
				}
				sum += d
			}
		}
		if sum < best {
			best, e.medoid = sum, i
		}
	}
	e.fused, _ = template.Fuse(samples) // samples extracted by this version: Fuse cannot fail
	return e
}

// distances returns the probe's distance to the entry under each rule, in
// Rules order.
func (e *galleryEntry) distances(p *template.Template) (out [4]float64) {
	ds := make([]float64, len(e.samples))
	for i, s := range e.samples {
		d, err := template.Compare(p, s)
		if err != nil {
			d = 1
		}
		ds[i] = d
	}
	medoid := ds[e.medoid]
	slices.Sort(ds)
	out[0] = ds[0]
	out[1] = ds[0]
	if len(ds) > 1 {
		out[1] = (ds[0] + ds[1]) / 2
	}
	out[2] = medoid
	f, err := template.Compare(p, &e.fused)
	if err != nil {
		f = 1
	}
	out[3] = f
	return out
}

// fpirTargets are the FPIRs at which FNIR is reported.
var fpirTargets = []float64{1e-2, 1e-3}

func ruleResult(rule string, res []search, threshold float64, entryImp []float64) RuleResult {
	rr := RuleResult{Rule: rule, FNIRAtFPIR: map[string]OperatingPoint{}}
	var nonMated []float64 // best distance of every non-mated search
	var mated []search
	for _, s := range res {
		if s.mate < 0 {
			nonMated = append(nonMated, s.best)
			continue
		}
		mated = append(mated, s)
		nonMated = append(nonMated, s.second) // the same probe, its own entry left out
	}
	slices.Sort(nonMated)
	fnir := func(t float64) float64 {
		miss := 0
		for _, s := range mated {
			if s.bestSubj != s.mate || s.best > t {
				miss++
			}
		}
		return float64(miss) / float64(len(mated))
	}
	rank1 := 0
	for _, s := range mated {
		if s.bestSubj == s.mate {
			rank1++
		}
		if s.bestSubj != s.mate && s.best <= threshold {
			rr.WrongMate++
		}
	}
	rr.Rank1 = float64(rank1) / float64(len(mated))
	for _, target := range fpirTargets {
		k := int(math.Floor(target * float64(len(nonMated))))
		if k >= len(nonMated) {
			continue
		}
		t := math.Nextafter(nonMated[k], math.Inf(-1))
		rr.FNIRAtFPIR[fmt.Sprintf("%g", target)] = OperatingPoint{Threshold: t, FNIR: fnir(t)}
	}
	rr.FNIR = fnir(threshold)
	rr.FPIR = float64(sort.SearchFloat64s(nonMated, math.Nextafter(threshold, math.Inf(1)))) / float64(len(nonMated))
	if m, err := template.FitImpostorModel(entryImp, "stranger–entry distances"); err == nil {
		rr.EntryFAR = m.FAR(threshold)
		if rr.EntryFAR > 0 {
			rr.MaxGallery = math.Log1p(-1e-3) / math.Log1p(-rr.EntryFAR)
		}
	}
	return rr
}

// preselection builds the matcher's index from the fused entries and pad
// stand-ins and searches it with every probe, with pre-selection and
// (o.Exhaustive) in full.
func preselection(ctx context.Context, o IdentifyOptions, gal []galleryEntry, src, mated []*template.Template, mates []int, nonMated []*template.Template, threshold float64) (*PreselectionResult, error) {
	var x index.Index
	x.Workers = o.Workers
	subject := func(e int) string { return fmt.Sprintf("entry-%d", e) }
	for e := range gal {
		x.Put(subject(e), &gal[e].fused)
	}
	var stand []template.Template
	for i := 0; i < o.Pad; i++ {
		t := templatetest.Mosaic(src, uint64(i))
		if i < 200 {
			stand = append(stand, *t)
		}
		x.Put(fmt.Sprintf("pad-%d", i), t)
		t.Zero()
	}
	n := x.Len()
	shares := index.SearchOptions{SharesOnly: true}
	res := &PreselectionResult{Gallery: n, Coarse: int(math.Ceil(float64(n) * index.CoarseShare)),
		Shortlist: int(math.Ceil(float64(n) * index.ShortlistShare)), Full: int(math.Ceil(float64(n) * index.FullCompares / 1e6))}
	var fnir, fnirEx, fpir, fpirEx int
	var sketchMate []float64
	total := len(mated) + len(nonMated)
	for i, p := range mated {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mate := subject(mates[i])
		kept, coarseRank, fineRank, nearRank, _ := x.Trace(p, mate, shares)
		sketchMate = append(sketchMate, float64(index.SketchDistance(p, &gal[mates[i]].fused)))
		if m := x.SearchWith(p, shares); m.Subject != mate || m.Distance > threshold {
			fnir++
		}
		var found bool
		if o.Exhaustive {
			m := x.SearchWith(p, index.SearchOptions{Exhaustive: true})
			found = m.Subject == mate && m.Distance <= threshold
			if !found {
				fnirEx++
			}
		}
		if !kept {
			d, _ := template.Compare(p, &gal[mates[i]].fused)
			res.Lost = append(res.Lost, LostMate{CoarseRank: coarseRank, FineRank: fineRank, NearRank: nearRank, Distance: d, Found: found})
			res.NotPreselected++
			if fineRank < 0 {
				res.LostCoarse++
			}
			if found {
				res.LostFound++
			}
		}
		if o.Progress != nil {
			o.Progress("pre-select", i+1, total)
		}
	}
	var imp, impStand, skImp, skStand []float64
	for i, p := range nonMated {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if m := x.SearchWith(p, shares); m.Distance <= threshold {
			fpir++
		}
		if o.Exhaustive {
			if m := x.SearchWith(p, index.SearchOptions{Exhaustive: true}); m.Distance <= threshold {
				fpirEx++
			}
		}
		for e := range gal {
			d, _ := template.Compare(p, &gal[e].fused)
			imp = append(imp, d)
			skImp = append(skImp, float64(index.SketchDistance(p, &gal[e].fused)))
		}
		for s := range stand {
			d, _ := template.Compare(p, &stand[s])
			impStand = append(impStand, d)
			skStand = append(skStand, float64(index.SketchDistance(p, &stand[s])))
		}
		if o.Progress != nil {
			o.Progress("pre-select", len(mated)+i+1, total)
		}
	}
	for i := range stand {
		stand[i].Zero()
	}
	res.FNIR = float64(fnir) / float64(max(1, len(mated)))
	res.FPIR = float64(fpir) / float64(max(1, len(nonMated)))
	if o.Exhaustive {
		fe, pe := float64(fnirEx)/float64(max(1, len(mated))), float64(fpirEx)/float64(max(1, len(nonMated)))
		res.ExhaustiveFNIR, res.ExhaustiveFPIR = &fe, &pe
	}
	res.Impostor, res.Stand = spread(imp), spread(impStand)
	res.SketchMate, res.SketchImpostor, res.SketchStand = spread(sketchMate), spread(skImp), spread(skStand)
	return res, nil
}

// WriteText prints the identification report for a person.
func (r *IdentifyReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "images read            %d, extracted %d\n", r.Images, r.Extracted)
	fmt.Fprintf(&b, "gallery                %d identities enrolled; %d strangers kept out", r.Enrolled, r.Strangers)
	if r.PadSources > 0 {
		fmt.Fprintf(&b, "; %d more are the stand-ins' sources", r.PadSources)
	}
	fmt.Fprintf(&b, "\nsearches               %d mated, %d non-mated (strangers, and mated probes with their own entry left out)\n", r.Mated, r.NonMated)
	fmt.Fprintf(&b, "decision threshold     %.4f\n\n", r.Threshold)
	fmt.Fprintf(&b, "%-8s %7s %22s %22s %8s %8s %6s %11s %13s\n", "rule", "rank-1", "FNIR @ FPIR 1e-2 (t)", "FNIR @ FPIR 1e-3 (t)", "FNIR@t", "FPIR@t", "wrong", "entry FAR*", "max gallery*")
	for _, rr := range r.Rules {
		op := func(k string) string {
			p, ok := rr.FNIRAtFPIR[k]
			if !ok {
				return "—"
			}
			return fmt.Sprintf("%.2f%% (%.4f)", 100*p.FNIR, p.Threshold)
		}
		far, gallery := "—", "—"
		if rr.MaxGallery > 0 {
			far, gallery = fmt.Sprintf("%.2g", rr.EntryFAR), fmt.Sprintf("%.3g", rr.MaxGallery)
		}
		fmt.Fprintf(&b, "%-8s %6.2f%% %22s %22s %7.2f%% %7.3f%% %6d %11s %13s\n", rr.Rule, 100*rr.Rank1, op("0.01"), op("0.001"),
			100*rr.FNIR, 100*rr.FPIR, rr.WrongMate, far, gallery)
	}
	b.WriteString("* extrapolated from an impostor model fitted to every stranger–entry distance, not measured (— : too few distances to fit one)\n")
	if p := r.Preselection; p != nil {
		fmt.Fprintf(&b, "\npre-selection on a gallery of %d (%d stand-ins): coarse stage keeps %d, fine %d, near %d (the shares of a million-entry gallery)\n",
			p.Gallery, p.Gallery-r.Enrolled, p.Coarse, p.Shortlist, p.Full)
		fmt.Fprintf(&b, "  mates not pre-selected            %d of %d (%.2f%%; %d in the coarse stage); of them found by exhaustive search: %d (%.2f%%)\n",
			p.NotPreselected, r.Mated, 100*float64(p.NotPreselected)/float64(r.Mated), p.LostCoarse, p.LostFound, 100*float64(p.LostFound)/float64(r.Mated))
		for _, l := range p.Lost {
			fmt.Fprintf(&b, "    lost: coarse rank %d, fine rank %d, near rank %d, distance %.4f, found exhaustively %v\n", l.CoarseRank, l.FineRank, l.NearRank, l.Distance, l.Found)
		}
		fmt.Fprintf(&b, "  FNIR / FPIR at the threshold      pre-selected %.2f%% / %.3f%%", 100*p.FNIR, 100*p.FPIR)
		if p.ExhaustiveFNIR != nil {
			fmt.Fprintf(&b, "   exhaustive %.2f%% / %.3f%%", 100**p.ExhaustiveFNIR, 100**p.ExhaustiveFPIR)
		}
		b.WriteString("\n")
		sp := func(name string, s Spread) {
			fmt.Fprintf(&b, "  %-33s %.4f ± %.4f   q0.001 %.4f   lowest %.4f   (%d)\n", name, s.Mean, s.Std, s.Q001, s.Lowest, s.N)
		}
		sp("distance, stranger–entry", p.Impostor)
		sp("distance, stranger–stand-in", p.Stand)
		sp("sketch distance, mate", p.SketchMate)
		sp("sketch distance, stranger–entry", p.SketchImpostor)
		sp("sketch distance, stranger–stand-in", p.SketchStand)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
