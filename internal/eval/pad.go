package eval

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/internal/dataset"
	"github.com/palmd/palmd/internal/parallel"
	"github.com/palmd/palmd/matcher"
	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/orchestrator/orchestratortest"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/template"
)

// PADOptions configures a presentation-attack evaluation on the simulator.
type PADOptions struct {
	// BonaFide is the number of bona fide presentations (one per person);
	// Attacks the number of attempts per attack species.
	BonaFide, Attacks int
	// FirstSeed is the identity seed of the first person; the attacks copy
	// the palms of the same people.
	FirstSeed uint64
	// Liveness is the detector's configuration (zero: the defaults).
	Liveness liveness.Config
	Workers  int
	Progress func(done, total int)
}

// PADAttempt is one presentation of a PAD evaluation: what was presented
// and what the daemon's state machine made of it.
type PADAttempt struct {
	Species  sim.Species
	Identity uint64
	// Outcome is the presentation's outcome; "" when nothing triggered a
	// presentation at all (the instrument was never taken for a hand).
	Outcome orchestrator.Outcome
	// Decided reports that the liveness detector scored the presentation
	// (it passed the quality gates); Decision is its verdict.
	Decided  bool
	Decision liveness.Decision
	// InViewToResult and StillToResult as the daemon measures them.
	InViewToResult, StillToResult time.Duration
	// Template is what the matcher opened from the sealed capture (nil
	// when nothing was sealed): the evaluation compares an accepted
	// attack's with its victim's (IAPMR). Kept in memory only.
	Template *template.Template `json:"-"`
	// MatchesVictim, when not nil, is that comparison's result recorded
	// earlier (ReadPADCues), used where there is no Template.
	MatchesVictim *bool
	// Variant is the instrument's kind within its species
	// (sim.Instrument.Variant; "" for living hands and screens), and
	// ExtraBlur the optical blur its frames had on top of the material's
	// own as it was held still (sim.Presentation.ExtraBlur, px; negative
	// when not known): the simulator's truth, for reporting by them.
	Variant   string
	ExtraBlur float64
	// Noise is the camera noise model the detector measured the cues
	// against (its print_texture's scale); zero when not recorded.
	Noise liveness.NoiseModel
}

// PADBlurSplit is the extra blur (px) at which the report splits each
// attack species: below it the detector's fine-detail cues see a print's
// surface; above it defocus has taken most of it away.
const PADBlurSplit = 0.4

// PADCalibrationSeed is the identity seed of the first person a liveness
// calibration measures (palmctl eval --pad --calibrate): far from the
// seeds evaluations start at, so none of its people is evaluated.
const PADCalibrationSeed = 100001

// padStep is the scenario step of one attempt: a hand (or an instrument)
// comes in over 10 frames, is held for 30 and leaves, as people do.
func padStep(kind sim.StepKind, id uint64, sample int) sim.Step {
	return sim.Step{Kind: kind, Identity: id, Session: 1, Sample: sample, Approach: 10, Hold: 30, Withdraw: 8}
}

// RunPAD presents BonaFide living hands and Attacks instruments of every
// species to the daemon's own state machine (orchestrator) on the
// simulated sensor, with an in-process matcher that answers at once, and
// returns every attempt.
func RunPAD(ctx context.Context, o PADOptions) ([]PADAttempt, error) {
	if o.BonaFide < 1 || o.Attacks < 0 {
		return nil, errors.New("eval: PAD needs at least one bona fide presentation")
	}
	type job struct {
		kind   sim.StepKind
		id     uint64
		sample int
	}
	var jobs []job
	for i := 0; i < o.BonaFide; i++ {
		jobs = append(jobs, job{sim.StepPresent, o.FirstSeed + uint64(i), 4})
	}
	for _, k := range []sim.StepKind{sim.StepPhoto, sim.StepVeinPrint, sim.StepScreen, sim.StepReplica} {
		for i := 0; i < o.Attacks; i++ {
			jobs = append(jobs, job{k, o.FirstSeed + uint64(i%max(1, o.BonaFide)), 5 + i})
		}
	}
	out := make([]PADAttempt, len(jobs))
	var mu sync.Mutex
	done := 0
	err := parallel.Do(ctx, len(jobs), o.Workers, func() (struct{}, func(), error) { return struct{}{}, func() {}, nil }, func(_ struct{}, i int) error {
		a, err := presentOnce(ctx, jobs[i].kind, jobs[i].id, jobs[i].sample, o.Liveness)
		if err != nil {
			return err
		}
		out[i] = a
		if o.Progress != nil {
			mu.Lock()
			done++
			o.Progress(done, len(jobs))
			mu.Unlock()
		}
		return nil
	})
	return out, err
}

// padScenario is the scenario of one attempt: an empty box, the
// attempt, the box empty again.
func padScenario(kind sim.StepKind, id uint64, sample int) *sim.Scenario {
	return &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 24}, padStep(kind, id, sample), {Kind: sim.StepEmpty, Hold: 40}}}
}

// heldTruth is what the attempt of scen holds as its still phase begins
// (the sensor's default variation and format, as sim.New uses): the
// instrument's variant and the extra blur of its frames; −1 when nothing
// is held.
func heldTruth(scen *sim.Scenario) (variant string, blur float64, err error) {
	tl, err := sim.NewTimeline(scen, sim.DefaultVariation(), sim.DefaultWidth, sim.DefaultHeight)
	if err != nil {
		return "", -1, err
	}
	held := tl.At(scen.Steps[0].Frames() + scen.Steps[1].Approach).Presentation
	if held == nil {
		return "", -1, nil
	}
	return held.Attack.Variant(), held.ExtraBlur(), nil
}

// presentOnce plays one attempt through a fresh simulated terminal.
func presentOnce(ctx context.Context, kind sim.StepKind, id uint64, sample int, cfg liveness.Config) (PADAttempt, error) {
	a := PADAttempt{Species: kind.Species(), Identity: id, ExtraBlur: -1, Noise: cfg.Noise.OrDefault()}
	scen := padScenario(kind, id, sample)
	s, err := sim.New(sim.Config{Scenario: scen, Seed: id})
	if err != nil {
		return a, err
	}
	if a.Variant, a.ExtraBlur, err = heldTruth(scen); err != nil {
		return a, err
	}
	dev := s.Device()
	defer dev.Close()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return a, err
	}
	mk, err := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	if err != nil {
		return a, err
	}
	var mu sync.Mutex
	sealer := &protocol.Sealer{DeviceID: "term-eval", DeviceKey: priv, Matcher: mk.Public()}
	opener := &protocol.Opener{Keys: map[protocol.KeyID]*protocol.MatcherPrivateKey{mk.ID: mk},
		Devices: func(string) (ed25519.PublicKey, bool) { return pub, true }}
	var sealed *template.Template
	up := &orchestratortest.Uplink{Decide: func(env []byte) (protocol.Result, error) {
		t, _, err := opener.Open(env)
		if err != nil {
			return protocol.Result{}, fmt.Errorf("eval: the matcher cannot open the capture: %w", err)
		}
		mu.Lock()
		sealed = t
		mu.Unlock()
		return protocol.Result{Decision: protocol.DecisionNoMatch}, nil
	}}
	orch, err := orchestrator.New(dev, sealer, up, orchestrator.Config{Feedback: time.Millisecond, Liveness: cfg})
	if err != nil {
		return a, err
	}
	var got []orchestrator.Presentation
	orch.OnOutcome(func(p orchestrator.Presentation) { mu.Lock(); got = append(got, p); mu.Unlock() })
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- orch.Run(rctx) }()
	for !s.Camera.Ended() {
		select {
		case err := <-errc:
			return a, fmt.Errorf("eval: orchestrator stopped: %w", err)
		case <-ctx.Done():
			cancel()
			<-errc
			return a, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-errc; err != nil {
		return a, err
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 {
		return a, nil
	}
	p := got[0]
	a.Outcome = p.Outcome
	a.Decision = p.Liveness
	a.Decided = len(p.Liveness.Z) > 0 || p.Outcome == orchestrator.OutcomeAttack
	a.InViewToResult, a.StillToResult = p.InViewToResult, p.StillToResult
	if sealed != nil {
		// What the matcher would compare: centred on arrival.
		_ = template.Centre(sealed)
	}
	a.Template = sealed
	return a, nil
}

// PADReport is the ISO/IEC 30107-3 summary of a PAD evaluation.
type PADReport struct {
	// Threshold is the operating point the rates are given at; BPCER the
	// share of bona fide presentations (that reached the detector)
	// refused as attacks.
	Threshold float64
	BonaFide  int
	BPCER     float64
	// NoCapture counts bona fide presentations that never passed the
	// quality gates (not a PAD error; a failure to acquire).
	NoCapture int
	Species   []SpeciesRate
	// InView and Still are the bona fide presentations' median times
	// from the hand's arrival, and from its first good frame, to the
	// result.
	InView, Still time.Duration
}

// SpeciesRate is one attack species' APCER and how its attempts ended.
type SpeciesRate struct {
	Species sim.Species
	// Attempts; Accepted were classified bona fide (sealed and sent);
	// APCER = Accepted / Attempts. RefusedByCue counts the attacks
	// refused by each cue; NotAcquired those that never passed the
	// quality gates or were never taken for a hand (refused too, but not
	// by PAD).
	Attempts, Accepted int
	APCER              float64
	RefusedByCue       map[liveness.Cue]int
	NotAcquired        int
	// Matched counts the accepted attacks whose sealed template the
	// matcher would also take for the victim's (the victim's bona fide
	// presentation in the same evaluation, at the matcher's default
	// threshold); IAPMR = Matched / Attempts, ISO/IEC 30107-3's impostor
	// attack presentation match rate: the attacks that would have paid.
	// Unknown counts accepted attacks with no sealed template or no
	// victim template to compare (at a threshold other than the
	// daemon's, an attack accepted there was never sealed); IAPMR is then
	// a lower bound.
	Matched, Unknown int
	IAPMR            float64
	// Subsets are the APCER of parts of the attempts: each variant of
	// the species (sim.Variants), then those held with an extra blur up
	// to PADBlurSplit and beyond it (where that was recorded).
	Subsets []SubsetRate
}

// SubsetRate is the APCER of part of one species' attempts.
type SubsetRate struct {
	// Name is a variant (sim.VariantCut, …) or a side of PADBlurSplit.
	Name               string
	Attempts, Accepted int
	APCER              float64
}

// Names of the blur subsets.
var (
	subsetSharp   = fmt.Sprintf("extra blur ≤ %.1f px", PADBlurSplit)
	subsetBlurred = fmt.Sprintf("extra blur > %.1f px", PADBlurSplit)
)

// Summarise computes the report at threshold (with calibration cal
// re-scoring every attempt's raw cues); threshold 0 picks the operating
// point for a BPCER of at most bpcer.
func Summarise(att []PADAttempt, cal liveness.Calibration, threshold, bpcer float64) PADReport {
	rescore := func(a PADAttempt, t float64) liveness.Decision {
		if a.Decision.Cue == liveness.CueOccluder {
			return a.Decision
		}
		return cal.Fuse(a.Decision.Raw, t)
	}
	var bona []float64
	var in, still []float64
	r := PADReport{}
	for _, a := range att {
		if a.Species != sim.BonaFide {
			continue
		}
		r.BonaFide++
		if !a.Decided {
			r.NoCapture++
			continue
		}
		bona = append(bona, rescore(a, math.Inf(1)).Score)
		if a.InViewToResult > 0 {
			in = append(in, float64(a.InViewToResult))
			still = append(still, float64(a.StillToResult))
		}
	}
	if threshold == 0 {
		threshold = PADThreshold(bona, bpcer)
	}
	r.Threshold = threshold
	refused := 0
	for _, s := range bona {
		if s > threshold {
			refused++
		}
	}
	if len(bona) > 0 {
		r.BPCER = float64(refused) / float64(len(bona))
	}
	r.InView, r.Still = time.Duration(median(in)), time.Duration(median(still))
	victims := map[uint64]*template.Template{}
	for _, a := range att {
		if a.Species == sim.BonaFide && a.Template != nil {
			victims[a.Identity] = a.Template
		}
	}
	matchAt := matchThreshold()
	for _, sp := range sim.AttackSpecies {
		sr := SpeciesRate{Species: sp, RefusedByCue: map[liveness.Cue]int{}}
		subsets := map[string]*SubsetRate{}
		var names []string
		for _, n := range append(sim.Variants(sp), subsetSharp, subsetBlurred) {
			subsets[n] = &SubsetRate{Name: n}
			names = append(names, n)
		}
		for _, a := range att {
			if a.Species != sp {
				continue
			}
			sr.Attempts++
			var in []*SubsetRate
			if v := subsets[a.Variant]; v != nil {
				in = append(in, v)
			}
			switch {
			case a.ExtraBlur > PADBlurSplit:
				in = append(in, subsets[subsetBlurred])
			case a.ExtraBlur >= 0:
				in = append(in, subsets[subsetSharp])
			}
			for _, v := range in {
				v.Attempts++
			}
			if !a.Decided {
				sr.NotAcquired++
				continue
			}
			d := rescore(a, threshold)
			if d.Attack {
				sr.RefusedByCue[d.Cue]++
				continue
			}
			sr.Accepted++
			for _, v := range in {
				v.Accepted++
			}
			if a.MatchesVictim != nil {
				if *a.MatchesVictim {
					sr.Matched++
				}
				continue
			}
			victim := victims[a.Identity]
			if a.Template == nil || victim == nil || matchAt == 0 {
				sr.Unknown++
				continue
			}
			if dist, err := template.Compare(a.Template, victim); err == nil && dist <= matchAt {
				sr.Matched++
			}
		}
		if sr.Attempts > 0 {
			sr.APCER = float64(sr.Accepted) / float64(sr.Attempts)
			sr.IAPMR = float64(sr.Matched) / float64(sr.Attempts)
		}
		for _, n := range names {
			if v := subsets[n]; v.Attempts > 0 {
				v.APCER = float64(v.Accepted) / float64(v.Attempts)
				sr.Subsets = append(sr.Subsets, *v)
			}
		}
		r.Species = append(r.Species, sr)
	}
	return r
}

// matchThreshold is the matcher's default threshold (its distance for
// matcher.DefaultFAR from the built-in impostor model), 0 when the model
// cannot be read.
func matchThreshold() float64 {
	t, err := matcher.ThresholdFor(matcher.DefaultFAR)
	if err != nil {
		return 0
	}
	return t
}

// PADThreshold is the lowest threshold at which at most a share bpcer of
// the bona fide scores lies above it.
func PADThreshold(bona []float64, bpcer float64) float64 {
	if len(bona) == 0 {
		return liveness.DefaultThreshold
	}
	s := slices.Clone(bona)
	slices.Sort(s)
	allowed := int(math.Floor(bpcer * float64(len(s))))
	return s[len(s)-1-allowed]
}

// PADConfidentMinimum is the fewest bona fide presentations that can show
// a BPCER ≤ 1 % with 95 % confidence (none of them refused): below it
// PADThresholdConfident has no threshold to give.
const PADConfidentMinimum = 299

// PADThresholdConfident is the lowest threshold at which the bona fide
// scores show a BPCER of at most bpcer with the given confidence: the
// one-sided Clopper–Pearson upper bound of the share refused stays within
// bpcer. A threshold read off a sample's 1 % point refuses more than 1 %
// of other people about half of the time; this one leaves room for the
// sample's size (on 1,500 presentations at 95 %: about its 99.5 % point).
// It returns +Inf when no threshold can show it (too few presentations).
func PADThresholdConfident(bona []float64, bpcer, confidence float64) float64 {
	s := slices.Clone(bona)
	slices.Sort(s)
	n := len(s)
	// k presentations above the threshold: the most that keeps the
	// bound within bpcer.
	k := -1
	for k+1 < n && binomialUpper(k+1, n, 1-confidence) <= bpcer {
		k++
	}
	if k < 0 {
		return math.Inf(1)
	}
	return s[n-1-k]
}

// binomialUpper is the one-sided Clopper–Pearson upper bound on a rate of
// which k of n were seen: the p at which k or fewer would be seen with
// probability alpha.
func binomialUpper(k, n int, alpha float64) float64 {
	if k >= n {
		return 1
	}
	lo, hi := float64(k)/float64(n), 1.0
	for range 60 {
		mid := (lo + hi) / 2
		if binomialCDF(k, n, mid) > alpha {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// binomialCDF is P(X ≤ k) for X ~ Binomial(n, p), summed in logarithms.
func binomialCDF(k, n int, p float64) float64 {
	if p <= 0 {
		return 1
	}
	if p >= 1 {
		if k >= n {
			return 1
		}
		return 0
	}
	lgN, _ := math.Lgamma(float64(n + 1))
	sum := 0.0
	for i := 0; i <= k; i++ {
		a, _ := math.Lgamma(float64(i + 1))
		b, _ := math.Lgamma(float64(n - i + 1))
		sum += math.Exp(lgN - a - b + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
	}
	return min(sum, 1)
}

// WriteText prints the report.
func (r PADReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "operating point: fused score > %.2f is an attack\n", r.Threshold)
	fmt.Fprintf(w, "bona fide: %d presentations, %d not acquired (quality gates), BPCER %.2f %%\n", r.BonaFide, r.NoCapture, 100*r.BPCER)
	fmt.Fprintf(w, "bona fide timing (median): hand in view → result %d ms, still → result %d ms\n\n", r.InView.Milliseconds(), r.Still.Milliseconds())
	fmt.Fprintf(w, "%-11s %8s %8s %8s %8s %12s  %s\n", "species", "attempts", "accepted", "APCER", "IAPMR", "not acquired", "refused by cue")
	for _, s := range r.Species {
		var cues []string
		for _, c := range liveness.AllCues() {
			if n := s.RefusedByCue[c]; n > 0 {
				cues = append(cues, fmt.Sprintf("%s %d", c, n))
			}
		}
		iapmr := fmt.Sprintf("%7.1f%%", 100*s.IAPMR)
		if s.Unknown > 0 {
			iapmr = fmt.Sprintf("≥%6.1f%%", 100*s.IAPMR)
		}
		fmt.Fprintf(w, "%-11s %8d %8d %7.1f%% %8s %12d  %v\n", s.Species, s.Attempts, s.Accepted, 100*s.APCER, iapmr, s.NotAcquired, cues)
		for _, v := range s.Subsets {
			fmt.Fprintf(w, "  %-21s %d of %d accepted (%.1f %%)\n", v.Name, v.Accepted, v.Attempts, 100*v.APCER)
		}
	}
	fmt.Fprintln(w, "IAPMR: attacks accepted and matched as their victim at the matcher's default threshold (≥: some accepted were never sealed)")
	return nil
}

// PADFolderOptions configures the single-frame part of PAD evaluation on a
// folder of still images.
type PADFolderOptions struct {
	// Dir holds bona fide images (real captures or a synthetic set) and,
	// optionally, attack images in Dir/attacks/<species>/ (palmctl synth
	// --attacks).
	Dir      string
	Liveness liveness.Config
	Workers  int
	Progress func(done, total int)
}

// PADFolderReport is the single-frame part's figures on a folder.
type PADFolderReport struct {
	// Threshold is the daemon's; BPCER the bona fide images refused at
	// it. Threshold1 is the threshold that would give a BPCER of 1 % on
	// this folder, and Species the attack rates at both.
	Threshold, BPCER float64
	Threshold1       float64
	BonaFide         int
	// NotAcquired counts images that failed the quality gates (PAD never
	// ran on them).
	NotAcquired int
	Species     []FolderSpeciesRate
}

// FolderSpeciesRate is one species' single-frame APCER.
type FolderSpeciesRate struct {
	Species               sim.Species
	Images, Acquired      int
	APCER, APCERAt1       float64
	AcceptedAt1, Accepted int
}

// RunPADFolder runs the single-frame cues on every image of a folder (the
// quality gates first, as the daemon does: PAD scores only frames that
// pass them).
func RunPADFolder(ctx context.Context, o PADFolderOptions) (*PADFolderReport, error) {
	type item struct {
		path    string
		species sim.Species
		ok      bool
		score   float64
	}
	var items []item
	list := func(dir string, sp sim.Species) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.IsDir() && imageExt[strings.ToLower(filepath.Ext(e.Name()))] {
				items = append(items, item{path: filepath.Join(dir, e.Name()), species: sp})
			}
		}
		return nil
	}
	if err := list(o.Dir, sim.BonaFide); err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	bonaCount := len(items)
	if bonaCount == 0 {
		return nil, fmt.Errorf("eval: %s has no bona fide images", o.Dir)
	}
	for _, sp := range sim.AttackSpecies {
		dir := filepath.Join(o.Dir, dataset.AttacksDir, string(sp))
		if _, err := os.Stat(dir); err == nil {
			if err := list(dir, sp); err != nil {
				return nil, fmt.Errorf("eval: %w", err)
			}
		}
	}
	type worker struct {
		ex  *imaging.Extractor
		pad *liveness.Detector
	}
	setup := func() (worker, func(), error) {
		w := worker{imaging.NewExtractor(imaging.DefaultConfig()), liveness.NewDetector(o.Liveness)}
		return w, func() { w.ex.Close(); w.pad.Close() }, nil
	}
	var mu sync.Mutex
	done := 0
	err := parallel.Do(ctx, len(items), o.Workers, setup, func(w worker, i int) error {
		f, err := loadFrame(items[i].path)
		if err != nil {
			return fmt.Errorf("eval: %s: %w", items[i].path, err)
		}
		defer f.Zero()
		if res, err := w.ex.Assess(&f); err == nil {
			if c, err := w.pad.FrameCues(&f, res.ROI); err == nil {
				items[i].ok, items[i].score = true, w.pad.DecideFrame(c).Score
			}
		}
		if o.Progress != nil {
			mu.Lock()
			done++
			o.Progress(done, len(items))
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cfg := o.Liveness
	if cfg.Threshold == 0 {
		cfg.Threshold = liveness.DefaultThreshold
	}
	r := &PADFolderReport{Threshold: cfg.Threshold, BonaFide: bonaCount}
	var bona []float64
	for _, it := range items[:bonaCount] {
		if !it.ok {
			r.NotAcquired++
			continue
		}
		bona = append(bona, it.score)
	}
	r.Threshold1 = PADThreshold(bona, 0.01)
	above := 0
	for _, s := range bona {
		if s > r.Threshold {
			above++
		}
	}
	if len(bona) > 0 {
		r.BPCER = float64(above) / float64(len(bona))
	}
	for _, sp := range sim.AttackSpecies {
		fr := FolderSpeciesRate{Species: sp}
		for _, it := range items[bonaCount:] {
			if it.species != sp {
				continue
			}
			fr.Images++
			if !it.ok {
				continue
			}
			fr.Acquired++
			if it.score <= r.Threshold {
				fr.Accepted++
			}
			if it.score <= r.Threshold1 {
				fr.AcceptedAt1++
			}
		}
		if fr.Images == 0 {
			continue
		}
		fr.APCER = float64(fr.Accepted) / float64(fr.Images)
		fr.APCERAt1 = float64(fr.AcceptedAt1) / float64(fr.Images)
		r.Species = append(r.Species, fr)
	}
	return r, nil
}

// WriteText prints the folder report.
func (r *PADFolderReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "single-frame liveness cues (%v) on %d bona fide images, %d failed the quality gates\n",
		singleFrameCues(), r.BonaFide, r.NotAcquired)
	fmt.Fprintf(w, "at the daemon's threshold %.2f: BPCER %.2f %%\n", r.Threshold, 100*r.BPCER)
	fmt.Fprintf(w, "threshold for BPCER 1 %% on this folder: %.2f\n", r.Threshold1)
	if len(r.Species) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\n%-11s %7s %9s %16s %16s\n", "species", "images", "acquired", "APCER (daemon)", "APCER (BPCER 1%)")
	for _, s := range r.Species {
		fmt.Fprintf(w, "%-11s %7d %9d %15.1f%% %15.1f%%\n", s.Species, s.Images, s.Acquired, 100*s.APCER, 100*s.APCERAt1)
	}
	return nil
}

func singleFrameCues() []liveness.Cue {
	var out []liveness.Cue
	for _, c := range liveness.Cues {
		if c.SingleFrame() {
			out = append(out, c)
		}
	}
	return out
}

// WritePADCalibration prints, from bona fide attempts, the liveness
// calibration (each cue's median and spread) as Go source for
// liveness.DefaultCalibration, and the threshold for a BPCER of 1 %; it
// returns them as the file palmd's liveness.calibration_file reads, with
// the camera noise model the cues were measured against (refusing cues
// measured against more than one).
func WritePADCalibration(w io.Writer, att []PADAttempt) (liveness.CalibrationFile, error) {
	var raws []map[liveness.Cue]float64
	noises := map[liveness.NoiseModel]int{}
	for _, a := range att {
		if a.Species == sim.BonaFide && a.Decided {
			raws = append(raws, a.Decision.Raw)
			noises[a.Noise]++
		}
	}
	// The norms are only good for a detector measuring against the noise
	// model the cues were measured against.
	if len(noises) > 1 {
		return liveness.CalibrationFile{}, fmt.Errorf("eval: the bona fide cues were measured against %d camera noise models (%v): calibrate from one terminal model's pilot, measured against one", len(noises), slices.Collect(maps.Keys(noises)))
	}
	var noise liveness.NoiseModel
	for n := range noises {
		noise = n
	}
	if len(raws) < liveness.MinCalibrationPresentations {
		return liveness.CalibrationFile{}, fmt.Errorf("eval: %d bona fide presentations reached the detector; need at least %d", len(raws), liveness.MinCalibrationPresentations)
	}
	cal := liveness.Calibrate(raws, liveness.DefaultCalibration())
	var scores []float64
	var decs []liveness.Decision
	for _, r := range raws {
		d := cal.Fuse(r, math.Inf(1))
		scores = append(scores, d.Score)
		decs = append(decs, d)
	}
	fmt.Fprintf(w, "// %d bona fide presentations (palmctl eval --pad --calibrate)\n", len(raws))
	for _, c := range append(slices.Clone(liveness.Cues), liveness.DerivedCues...) {
		n, ok := cal[c]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "%s: {Median: %.4g, Spread: %.4g, High: %v, Log: %v, Tail: %v, MinSpread: %.4g},\n", c, n.Median, n.Spread, n.High, n.Log, n.Tail, n.MinSpread)
	}
	// Rounded up: a threshold rounded down would refuse one more.
	thr := math.Ceil(100*PADThresholdConfident(scores, 0.01, 0.95)) / 100
	fmt.Fprintf(w, "threshold for BPCER ≤ 1 %% with 95 %% confidence: %.2f (the set's 1 %% point %.2f, 99.5 %% point %.2f, max %.2f)\n",
		thr, PADThreshold(scores, 0.01), PADThreshold(scores, 0.005), slices.Max(scores))
	// Which cues the living tail owes its scores to: where a threshold
	// is spent.
	slices.SortFunc(decs, func(a, b liveness.Decision) int { return cmp.Compare(b.Score, a.Score) })
	fmt.Fprint(w, "highest bona fide scores:")
	for _, d := range decs[:min(5, len(decs))] {
		fmt.Fprintf(w, " %.2f (%s)", d.Score, d.Cue)
	}
	fmt.Fprintln(w)
	if noise == (liveness.NoiseModel{}) {
		fmt.Fprintln(w, "camera noise model: not recorded in these cues (the file will not carry one)")
	} else {
		fmt.Fprintf(w, "camera noise model the cues were measured against: read %g, shot %g, corr %g\n", noise.Read, noise.Shot, noise.Corr)
	}
	return liveness.CalibrationFile{Calibration: cal, Threshold: thr, Presentations: len(raws), Noise: noise}, nil
}

// WritePADCues writes every attempt as one CSV row: species ("bona_fide"
// for living hands), the person's seed, the outcome, whether the detector
// scored it, whether an attack's sealed template matches its victim's at
// the matcher's default threshold (empty when either was never sealed),
// both timings, whether the Occluder refused it between presentations,
// the instrument's variant and extra blur (the simulator's truth; empty
// when not known), every cue's raw value (empty when not measured), and
// the camera noise model the cues were measured against (empty when not
// known). Numbers and names only: no image or template leaves memory. An evaluation written so can
// be re-scored at any calibration and threshold without presenting
// anything again (ReadPADCues).
func WritePADCues(w io.Writer, att []PADAttempt) error {
	victims := map[uint64]*template.Template{}
	for _, a := range att {
		if a.Species == sim.BonaFide && a.Template != nil {
			victims[a.Identity] = a.Template
		}
	}
	matchAt := matchThreshold()
	cw := csv.NewWriter(w)
	head := append(slices.Clone(padCuesColumns), padCuesTruthColumns...)
	for _, c := range liveness.Cues {
		head = append(head, string(c))
	}
	head = append(head, padCuesNoiseColumns...)
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, a := range att {
		sp := string(a.Species)
		if a.Species == sim.BonaFide {
			sp = bonaFideLabel
		}
		matched := ""
		if a.MatchesVictim != nil {
			matched = strconv.FormatBool(*a.MatchesVictim)
		} else if v := victims[a.Identity]; a.Species != sim.BonaFide && a.Template != nil && v != nil && matchAt > 0 {
			dist, err := template.Compare(a.Template, v)
			matched = strconv.FormatBool(err == nil && dist <= matchAt)
		}
		row := []string{sp, strconv.FormatUint(a.Identity, 10), string(a.Outcome), strconv.FormatBool(a.Decided), matched,
			strconv.FormatInt(a.InViewToResult.Milliseconds(), 10), strconv.FormatInt(a.StillToResult.Milliseconds(), 10),
			strconv.FormatBool(a.Decision.Cue == liveness.CueOccluder), a.Variant, ""}
		if a.ExtraBlur >= 0 {
			row[len(row)-1] = strconv.FormatFloat(a.ExtraBlur, 'g', -1, 64)
		}
		for _, c := range liveness.Cues {
			if v, ok := a.Decision.Raw[c]; ok {
				row = append(row, strconv.FormatFloat(v, 'g', -1, 64))
			} else {
				row = append(row, "")
			}
		}
		if a.Noise != (liveness.NoiseModel{}) {
			for _, v := range []float64{a.Noise.Read, a.Noise.Shot, a.Noise.Corr} {
				row = append(row, strconv.FormatFloat(v, 'g', -1, 64))
			}
		} else {
			row = append(row, "", "", "")
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// padCuesColumns are a cues file's columns before the cues', and
// padCuesTruthColumns the simulator's truth about the instrument after
// them (PADAttempt.Variant, ExtraBlur); padCuesNoiseColumns, last, the
// noise model the cues were measured against (PADAttempt.Noise). The
// last two sets are optional when read, since files written before they
// were recorded lack them.
var (
	padCuesColumns      = []string{"species", "identity", "outcome", "decided", "matched", "in_view_ms", "still_ms", "occluder"}
	padCuesTruthColumns = []string{"variant", "extra_blur_px"}
	padCuesNoiseColumns = []string{"noise_read", "noise_shot", "noise_corr"}
)

// maxExtraBlur bounds a cues file's extra blur, px: a frame blurred more
// than this shows no hand at all.
const maxExtraBlur = 100

// maxPADMillis bounds a cues file's times: no presentation takes an
// hour, and a larger number would overflow a Duration.
const maxPADMillis = int64(time.Hour / time.Millisecond)

// bonaFideLabel names living hands in a cues CSV (sim.BonaFide is "").
const bonaFideLabel = "bona_fide"

// readNoise reads a row's noise model: all three columns or none.
func readNoise(row []string, col map[string]int) (liveness.NoiseModel, error) {
	var v [3]float64
	given := 0
	for k, h := range padCuesNoiseColumns {
		i, ok := col[h]
		if !ok || row[i] == "" {
			continue
		}
		x, err := strconv.ParseFloat(row[i], 64)
		if err != nil {
			return liveness.NoiseModel{}, fmt.Errorf("%s %q", h, row[i])
		}
		v[k] = x
		given++
	}
	switch given {
	case 0:
		return liveness.NoiseModel{}, nil
	case len(v):
		n := liveness.NoiseModel{Read: v[0], Shot: v[1], Corr: v[2]}
		if err := n.Check(); err != nil {
			return liveness.NoiseModel{}, fmt.Errorf("noise model: %w", err)
		}
		return n, nil
	}
	return liveness.NoiseModel{}, errors.New("noise model: give noise_read, noise_shot and noise_corr together")
}

// ReadPADCues reads attempts written by WritePADCues, for Summarise and
// WritePADCalibration. The attempts carry no template; an attack's match
// with its victim is the one the file records (MatchesVictim).
func ReadPADCues(r io.Reader) ([]PADAttempt, error) {
	cr := csv.NewReader(r)
	rows, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("eval: PAD cues: %w", err)
	}
	if len(rows) < 1 {
		return nil, errors.New("eval: PAD cues: empty file")
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, h := range padCuesColumns {
		if _, ok := col[h]; !ok {
			return nil, fmt.Errorf("eval: PAD cues: no %q column", h)
		}
	}
	var out []PADAttempt
	for n, row := range rows[1:] {
		line := n + 2
		field := func(h string) string { return row[col[h]] }
		var a PADAttempt
		if sp := field("species"); sp != bonaFideLabel {
			a.Species = sim.Species(sp)
			if !a.Species.Valid() || a.Species == sim.BonaFide {
				return nil, fmt.Errorf("eval: PAD cues line %d: unknown species %q", line, sp)
			}
		}
		if a.Identity, err = strconv.ParseUint(field("identity"), 10, 64); err != nil {
			return nil, fmt.Errorf("eval: PAD cues line %d: identity: %w", line, err)
		}
		a.Outcome = orchestrator.Outcome(field("outcome"))
		if a.Decided, err = strconv.ParseBool(field("decided")); err != nil {
			return nil, fmt.Errorf("eval: PAD cues line %d: decided: %w", line, err)
		}
		if m := field("matched"); m != "" {
			b, err := strconv.ParseBool(m)
			if err != nil {
				return nil, fmt.Errorf("eval: PAD cues line %d: matched: %w", line, err)
			}
			a.MatchesVictim = &b
		}
		for h, d := range map[string]*time.Duration{"in_view_ms": &a.InViewToResult, "still_ms": &a.StillToResult} {
			ms, err := strconv.ParseInt(field(h), 10, 64)
			if err != nil || ms < 0 || ms > maxPADMillis {
				return nil, fmt.Errorf("eval: PAD cues line %d: %s %q", line, h, field(h))
			}
			*d = time.Duration(ms) * time.Millisecond
		}
		a.ExtraBlur = -1
		if i, ok := col["variant"]; ok && row[i] != "" {
			if !slices.Contains(sim.Variants(a.Species), row[i]) {
				return nil, fmt.Errorf("eval: PAD cues line %d: %q is not a variant of %s", line, row[i], field("species"))
			}
			a.Variant = row[i]
		}
		if i, ok := col["extra_blur_px"]; ok && row[i] != "" {
			v, err := strconv.ParseFloat(row[i], 64)
			if err != nil || !(v >= 0 && v <= maxExtraBlur) {
				return nil, fmt.Errorf("eval: PAD cues line %d: extra_blur_px %q", line, row[i])
			}
			a.ExtraBlur = v
		}
		if a.Noise, err = readNoise(row, col); err != nil {
			return nil, fmt.Errorf("eval: PAD cues line %d: %w", line, err)
		}
		occ, err := strconv.ParseBool(field("occluder"))
		if err != nil {
			return nil, fmt.Errorf("eval: PAD cues line %d: occluder: %w", line, err)
		}
		if occ {
			a.Decision = liveness.Decision{Attack: true, Cue: liveness.CueOccluder}
		} else {
			a.Decision.Raw = map[liveness.Cue]float64{}
			for _, c := range liveness.Cues {
				i, ok := col[string(c)]
				if !ok || row[i] == "" {
					continue
				}
				v, err := strconv.ParseFloat(row[i], 64)
				if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
					return nil, fmt.Errorf("eval: PAD cues line %d: %s %q", line, c, row[i])
				}
				a.Decision.Raw[c] = v
			}
		}
		out = append(out, a)
	}
	return out, nil
}
