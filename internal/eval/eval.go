// Package eval measures the recognition pipeline on a folder of labelled
// palm images — synthetic sets from palmctl synth or real captures — exactly
// as the daemon runs it: every image goes through presence, quality gates,
// ROI and features from the full frame, then every genuine and impostor
// pair is compared.
//
// It reports failures to extract (with the gate and reason for each image),
// genuine and impostor pair counts, EER, FRR at fixed FARs, d′, and the
// extraction and comparison times; genuine pairs within one session and
// across sessions separately when the set has a manifest; and, when the
// manifest carries ground truth, how far each ROI landed from where it
// should be — the main cause of genuine-pair failures on real palms.
//
// It also fits the impostor model (template.ImpostorModel) and gives the
// threshold for each false-accept rate, measured or extrapolated; writes
// every pair's score (WriteScores) and a DET plot (WritePlot); runs the
// feature and comparison stages alone on pre-cut ROIs (Options.ROILevel);
// and compares a synthetic set's figures with those of real palms
// (Calibrate), which is how the simulator is kept as hard as reality.
package eval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/geom"
	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/internal/dataset"
	"github.com/palmd/palmd/internal/parallel"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/template"
)

// Options configures a run.
type Options struct {
	Dir string
	// LabelRegex extracts the identity from a file's base name (capture
	// group 1). Empty means DefaultLabelRegex.
	LabelRegex string
	// ROIOut, when set, receives every extracted ROI as a PNG.
	ROIOut string
	// Workers extract in parallel; zero means one per CPU.
	Workers int
	// Gates are the quality gates; the zero value means
	// imaging.DefaultConfig.
	Gates *imaging.Config
	// Progress, when set, is called with (done, total) after each image
	// and during pair comparison.
	Progress func(stage string, done, total int)
	// KeepPairs keeps every compared pair for Report.Pairs (scores-out).
	KeepPairs bool
	// ROILevel takes the images as pre-cut palm ROIs (as public
	// palm-vein databases distribute them) and runs the feature and
	// comparison stages alone: no presence, gates or ROI placement.
	ROILevel bool
	// SessionRegex, when set, takes the session from a file's base name
	// (capture group 1), so that genuine pairs within and across sessions
	// are reported apart without a manifest.
	SessionRegex string
	// PairsOnly skips the comparisons against fused entries
	// (Report.Entries): sample pairs only.
	PairsOnly bool
}

// DefaultLabelRegex takes the identity from the name's first field.
const DefaultLabelRegex = `^([^_]+)_`

// Image is one image's outcome.
type Image struct {
	File    string `json:"file"`
	Label   string `json:"label"`
	Session int    `json:"session"`
	// Gate is "ok" or the gate the image failed; Reason explains.
	Gate   string  `json:"gate"`
	Reason string  `json:"reason,omitempty"`
	Millis float64 `json:"extract_ms"`
	// Quality of a successful extraction.
	Quality int  `json:"quality,omitempty"`
	Left    bool `json:"left,omitempty"`
	// ROI placement against the ground truth, when known: centre offset
	// in mm along the palm's axes, rotation in degrees, scale ratio − 1.
	Placement *Placement `json:"placement,omitempty"`

	tpl *template.Template
}

// Placement is how a detected ROI differs from the true one.
type Placement struct {
	DX        float64 `json:"dx_mm"` // along the true ROI's x (thumb) axis
	DY        float64 `json:"dy_mm"` // along its y (wrist) axis
	Rotation  float64 `json:"rotation_deg"`
	Scale     float64 `json:"scale"`
	Mirrored  bool    `json:"mirrored,omitempty"`
	OffsetMM  float64 `json:"offset_mm"`
	truthSide float64
}

// Rates are the error rates of one set of genuine pairs against all
// impostor pairs.
type Rates struct {
	Genuine   int                `json:"genuine_pairs"`
	EER       float64            `json:"eer"`
	Threshold float64            `json:"eer_threshold"`
	FRRAtFAR  map[string]float64 `json:"frr_at_far"`
	DPrime    float64            `json:"d_prime"`
	GenMean   float64            `json:"genuine_mean"`
	GenStd    float64            `json:"genuine_std"`
}

// Pair is one genuine comparison, kept for the worst-pairs list.
type Pair struct {
	A     string  `json:"a"`
	B     string  `json:"b"`
	Score float64 `json:"score"`
	Cross bool    `json:"cross_session"`
}

// Report is the result of a run.
type Report struct {
	Dir string `json:"dir"`
	// Summary holds the error rates and distributions: failure to
	// extract, genuine pairs (all, and within and across sessions when
	// the set names sessions), impostor mean, spread, lowest score and
	// quantiles.
	Summary
	Identities int            `json:"identities"`
	Extracted  int            `json:"extracted"`
	Failures   map[string]int `json:"failures_by_gate"`
	// MedianExtractMS and MedianCompareUS are per image and per pair.
	MedianExtractMS float64 `json:"median_extract_ms"`
	MedianCompareUS float64 `json:"median_compare_us"`
	// Placement summarises ROI placement error (manifest with truth only).
	Placement *PlacementSummary `json:"placement,omitempty"`
	Worst     []Pair            `json:"worst_genuine"`
	Files     []Image           `json:"files"`
	// Thresholds gives, for each target FAR, the threshold to use.
	Thresholds []Threshold `json:"thresholds"`
	// Model is the impostor model fitted to this set's impostor pairs
	// (nil when there are too few); palm-matcher derives its threshold
	// from such a model.
	Model *template.ImpostorModel `json:"impostor_model,omitempty"`
	// Entries are the figures against fused entries, as the matcher
	// compares (nil with Options.PairsOnly, or when fewer than two
	// identities have MinEntrySamples samples in one session).
	Entries *EntryReport `json:"against_entries,omitempty"`

	pairs []Score
}

// Threshold is the distance threshold for a target false-accept rate.
type Threshold struct {
	FAR       float64 `json:"far"`
	Threshold float64 `json:"threshold"`
	// Source is "measured" (an impostor quantile of this set), or
	// "model" (extrapolated from the fitted impostor model, when the set
	// has too few impostor pairs to measure this FAR: fewer than 10 below
	// the threshold).
	Source string `json:"source"`
	// FRR is the share of this set's genuine pairs rejected there.
	FRR float64 `json:"frr"`
}

// Pairs returns every compared pair (for palmctl eval --scores-out).
func (r *Report) Pairs() []Score { return r.pairs }

// thresholds derives a threshold per FAR target: measured where at least
// ten impostor pairs lie below it, from the fitted model otherwise.
func thresholds(gen, imp []float64) ([]Threshold, *template.ImpostorModel) {
	sorted := slices.Clone(imp)
	slices.Sort(sorted)
	g := slices.Clone(gen)
	slices.Sort(g)
	var model *template.ImpostorModel
	if m, err := template.FitImpostorModel(imp, "this set"); err == nil {
		model = &m
	}
	var out []Threshold
	for _, far := range farTargets {
		th := Threshold{FAR: far}
		if k := int(far * float64(len(sorted))); k >= 10 {
			th.Threshold, th.Source = math.Nextafter(sorted[k], math.Inf(-1)), "measured"
		} else if model != nil {
			th.Threshold, _ = model.Threshold(far)
			th.Source = "model"
		} else {
			continue
		}
		if len(g) > 0 {
			th.FRR = 1 - float64(sort.SearchFloat64s(g, math.Nextafter(th.Threshold, math.Inf(1))))/float64(len(g))
		}
		out = append(out, th)
	}
	return out, model
}

// PlacementSummary aggregates ROI placement over all extracted images.
type PlacementSummary struct {
	MedianOffsetMM float64 `json:"median_offset_mm"`
	P95OffsetMM    float64 `json:"p95_offset_mm"`
	MedianRotation float64 `json:"median_abs_rotation_deg"`
	P95Rotation    float64 `json:"p95_abs_rotation_deg"`
	MedianScale    float64 `json:"median_abs_scale"`
	Mirrored       int     `json:"mirrored"`
	// Within-identity scatter (what makes genuine pairs fail): the RMS
	// distance of each ROI centre from its identity's mean, mm.
	ConsistencyMM  float64 `json:"consistency_rms_mm"`
	ConsistencyDeg float64 `json:"consistency_rms_deg"`
}

var imageExt = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".bmp": true, ".tif": true, ".tiff": true}

// Run evaluates the images in o.Dir.
func Run(ctx context.Context, o Options) (*Report, error) {
	imgs, sessions, err := load(ctx, o)
	if err != nil {
		return nil, err
	}
	defer wipeAll(imgs)
	return score(ctx, o, imgs, sessions)
}

// wipeAll zeroes every extracted template.
func wipeAll(imgs []Image) {
	for i := range imgs {
		if imgs[i].tpl != nil {
			imgs[i].tpl.Zero()
		}
	}
}

// load lists the images in o.Dir and extracts each; sessions reports
// whether the set names sessions (manifest or SessionRegex).
func load(ctx context.Context, o Options) (imgs []Image, sessions bool, err error) {
	reStr := o.LabelRegex
	if reStr == "" {
		reStr = DefaultLabelRegex
	}
	re, err := regexp.Compile(reStr)
	if err != nil {
		return nil, false, fmt.Errorf("eval: label regex: %w", err)
	}
	if re.NumSubexp() < 1 {
		return nil, false, fmt.Errorf("eval: label regex %q has no capture group", reStr)
	}
	entries, err := os.ReadDir(o.Dir)
	if err != nil {
		return nil, false, fmt.Errorf("eval: %w", err)
	}
	var sessRe *regexp.Regexp
	if o.SessionRegex != "" {
		if sessRe, err = regexp.Compile(o.SessionRegex); err != nil {
			return nil, false, fmt.Errorf("eval: session regex: %w", err)
		}
		if sessRe.NumSubexp() < 1 {
			return nil, false, fmt.Errorf("eval: session regex %q has no capture group", o.SessionRegex)
		}
	}
	sessionIDs := map[string]int{}
	manifest := readManifest(o.Dir)
	for _, e := range entries {
		if e.IsDir() || !imageExt[strings.ToLower(filepath.Ext(e.Name()))] {
			continue
		}
		m := re.FindStringSubmatch(e.Name())
		if m == nil || m[1] == "" {
			return nil, false, fmt.Errorf("eval: %s: no identity label (regex %q)", e.Name(), reStr)
		}
		img := Image{File: e.Name(), Label: m[1]}
		if me, ok := manifest[e.Name()]; ok {
			img.Session = me.Session
		}
		if sessRe != nil {
			m := sessRe.FindStringSubmatch(e.Name())
			if m == nil {
				return nil, false, fmt.Errorf("eval: %s: no session (regex %q)", e.Name(), o.SessionRegex)
			}
			if _, ok := sessionIDs[m[1]]; !ok {
				sessionIDs[m[1]] = len(sessionIDs)
			}
			img.Session = sessionIDs[m[1]]
		}
		imgs = append(imgs, img)
	}
	if len(imgs) < 2 {
		return nil, false, fmt.Errorf("eval: %s has %d images; need at least 2", o.Dir, len(imgs))
	}
	if o.ROIOut != "" {
		if err := os.MkdirAll(o.ROIOut, 0o755); err != nil {
			return nil, false, fmt.Errorf("eval: %w", err)
		}
	}
	gates := imaging.DefaultConfig()
	if o.Gates != nil {
		gates = *o.Gates
	}
	if err := extractAll(ctx, o, gates, imgs, manifest); err != nil {
		wipeAll(imgs)
		return nil, false, err
	}
	return imgs, manifest != nil || sessRe != nil, nil
}

// readManifest indexes a synthetic set's manifest by file (nil when the
// folder has none).
func readManifest(dir string) map[string]dataset.Entry {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil
	}
	out := map[string]dataset.Entry{}
	for _, e := range m.Images {
		out[e.File] = e
	}
	return out
}

func loadFrame(path string) (sensor.Frame, error) {
	m := gocv.IMRead(path, gocv.IMReadGrayScale)
	defer m.Close()
	if m.Empty() {
		return sensor.Frame{}, errors.New("not a readable PNG, JPEG or BMP image")
	}
	if m.Cols() > sensor.MaxFrameSide || m.Rows() > sensor.MaxFrameSide {
		return sensor.Frame{}, fmt.Errorf("image %dx%d too large", m.Cols(), m.Rows())
	}
	f := sensor.Frame{Width: m.Cols(), Height: m.Rows(), Pix: m.ToBytes()}
	return f, f.Validate()
}

func extractAll(ctx context.Context, o Options, gates imaging.Config, imgs []Image, manifest map[string]dataset.Entry) error {
	type worker struct {
		ex  *imaging.Extractor
		roi *gocv.Mat
	}
	setup := func() (worker, func(), error) {
		ex := imaging.NewExtractor(gates)
		roi := gocv.NewMat()
		return worker{ex: ex, roi: &roi}, func() { ex.Close(); roi.Close() }, nil
	}
	var mu sync.Mutex
	done := 0
	return parallel.Do(ctx, len(imgs), o.Workers, setup, func(w worker, i int) error {
		err := extractOne(o, w.ex, w.roi, &imgs[i], manifest)
		mu.Lock()
		done++
		if o.Progress != nil {
			o.Progress("extract", done, len(imgs))
		}
		mu.Unlock()
		return err
	})
}

// extractOne reads one image and runs the pipeline on it, recording the
// gate it failed or its quality, placement and template; only a failure
// to write its ROI is an error (a bad image is a result).
func extractOne(o Options, ex *imaging.Extractor, roi *gocv.Mat, img *Image, manifest map[string]dataset.Entry) error {
	f, err := loadFrame(filepath.Join(o.Dir, img.File))
	if err != nil {
		img.Gate, img.Reason = "unreadable", err.Error()
		return nil
	}
	var out *gocv.Mat
	if o.ROIOut != "" {
		out = roi
	}
	start := time.Now()
	var res *imaging.Result
	if o.ROILevel {
		res = &imaging.Result{}
		res.Template, err = ex.FromROI(f.Pix, f.Width, f.Height)
	} else {
		res, err = ex.Extract(&f, out)
	}
	img.Millis = float64(time.Since(start).Microseconds()) / 1000
	f.Zero()
	if err != nil {
		img.Gate, img.Reason = imaging.GateOf(err).String(), err.Error()
		return nil
	}
	img.Gate = imaging.GateOK.String()
	img.Quality, img.Left = res.Quality.Score, res.Landmarks.Left
	t := res.Template
	res.Template.Zero()
	// As the matcher does with every template it receives.
	_ = template.Centre(&t)
	img.tpl = &t
	if me, ok := manifest[img.File]; ok && me.Truth.Hand {
		img.Placement = placement(res.ROI, me.Truth.ROI, me.Truth.PxPerMM)
	}
	if out != nil && !o.ROILevel {
		name := strings.TrimSuffix(img.File, filepath.Ext(img.File)) + "_roi.png"
		if !gocv.IMWrite(filepath.Join(o.ROIOut, name), *roi) {
			return fmt.Errorf("eval: writing %s", name)
		}
	}
	return nil
}

// placement compares a detected ROI with the true one (corners TL, TR, BR,
// BL in frame pixels).
func placement(g imaging.ROIGeometry, truth [4][2]float64, pxPerMM float64) *Placement {
	tl := geom.V(truth[0][0], truth[0][1])
	tr := geom.V(truth[1][0], truth[1][1])
	bl := geom.V(truth[3][0], truth[3][1])
	tu, tn := tr.Sub(tl), bl.Sub(tl)
	side := tu.Len()
	if side == 0 || pxPerMM == 0 {
		return nil
	}
	tu, tn = tu.Mul(1/side), tn.Mul(1/tn.Len())
	tc := tl.Add(tu.Mul(side / 2)).Add(tn.Mul(side / 2))
	d := geom.V(g.Centre.X, g.Centre.Y).Sub(tc)
	du, dn := geom.V(g.U.X, g.U.Y), geom.V(g.N.X, g.N.Y)
	rot := math.Atan2(tu.Cross(du), tu.Dot(du)) * 180 / math.Pi
	p := &Placement{
		DX: d.Dot(tu) / pxPerMM, DY: d.Dot(tn) / pxPerMM,
		Rotation: rot, Scale: g.Side/side - 1,
		Mirrored:  (tu.Cross(tn) > 0) != (du.Cross(dn) > 0),
		truthSide: side / pxPerMM,
	}
	p.OffsetMM = math.Hypot(p.DX, p.DY)
	return p
}

func score(ctx context.Context, o Options, imgs []Image, haveManifest bool) (*Report, error) {
	rep := &Report{Dir: o.Dir, Failures: map[string]int{}, Files: imgs}
	labels := map[string]bool{}
	var ok []*Image
	var times []float64
	for i := range imgs {
		labels[imgs[i].Label] = true
		if imgs[i].tpl == nil {
			rep.Failures[imgs[i].Gate]++
			continue
		}
		ok = append(ok, &imgs[i])
		times = append(times, imgs[i].Millis)
	}
	rep.Identities = len(labels)
	rep.Extracted = len(ok)
	rep.MedianExtractMS = median(times)

	total := len(ok) * (len(ok) - 1) / 2
	rows, err := compareAll(ctx, o, ok)
	if err != nil {
		return nil, err
	}
	var gen, genSame, genCross, imp []float64
	var worst []Pair
	for _, r := range rows {
		gen = append(append(gen, r.same...), r.cross...)
		genSame, genCross = append(genSame, r.same...), append(genCross, r.cross...)
		imp = append(imp, r.imp...)
		worst = append(worst, r.worst...)
		rep.pairs = append(rep.pairs, r.pairs...)
	}
	if total > 0 {
		rep.MedianCompareUS = medianCompareMicros(ok)
	}
	if !haveManifest {
		genSame, genCross = nil, nil
	}
	rep.Summary = summarise(len(imgs), len(imgs)-len(ok), gen, genSame, genCross, imp)
	rep.Thresholds, rep.Model = thresholds(gen, imp)
	sort.Slice(worst, func(a, b int) bool { return worst[a].Score > worst[b].Score })
	rep.Worst = worst[:min(10, len(worst))]
	rep.Placement = summarisePlacement(ok)
	if !o.PairsOnly {
		if rep.Entries, err = compareEntries(ctx, o, ok, len(imgs), len(imgs)-len(ok)); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// compared holds one row of the comparison triangle: image i against
// every later image.
type compared struct {
	same, cross, imp []float64
	worst            []Pair
	pairs            []Score
}

// compareAll compares every pair of extracted images on every core, row
// by row of the triangle; rows come back in order, so the result does not
// depend on scheduling. Pairs are kept only when o.KeepPairs asks (a large
// ROI-level run has millions).
func compareAll(ctx context.Context, o Options, ok []*Image) ([]compared, error) {
	rows := make([]compared, len(ok))
	total := len(ok) * (len(ok) - 1) / 2
	var mu sync.Mutex
	done := 0
	none := func() (struct{}, func(), error) { return struct{}{}, nil, nil }
	err := parallel.Do(ctx, len(ok), o.Workers, none, func(_ struct{}, i int) error {
		r := &rows[i]
		for j := i + 1; j < len(ok); j++ {
			s, err := template.Compare(ok[i].tpl, ok[j].tpl)
			if err != nil {
				s = 0.5 // no overlap: no evidence of a match
			}
			genuine := ok[i].Label == ok[j].Label
			cross := genuine && ok[i].Session != ok[j].Session
			if o.KeepPairs {
				r.pairs = append(r.pairs, Score{A: ok[i].File, B: ok[j].File, Genuine: genuine, Cross: cross, Score: s})
			}
			switch {
			case !genuine:
				r.imp = append(r.imp, s)
			case cross:
				r.cross = append(r.cross, s)
			default:
				r.same = append(r.same, s)
			}
			if genuine {
				r.worst = append(r.worst, Pair{A: ok[i].File, B: ok[j].File, Score: s, Cross: cross})
			}
		}
		mu.Lock()
		done += len(ok) - 1 - i
		if o.Progress != nil {
			o.Progress("compare", done, total)
		}
		mu.Unlock()
		return nil
	})
	return rows, err
}

// medianCompareMicros times comparisons in batches (a single comparison is
// too short for the clock) and returns the median batch's per-pair time.
func medianCompareMicros(ok []*Image) float64 {
	if len(ok) < 2 {
		return 0
	}
	const batch = 200
	var per []float64
	for rep := 0; rep < 15; rep++ {
		start := time.Now()
		for k := 0; k < batch; k++ {
			a, b := ok[(rep*batch+k)%len(ok)], ok[(rep*batch+k*7+1)%len(ok)]
			_, _ = template.Compare(a.tpl, b.tpl)
		}
		per = append(per, float64(time.Since(start).Nanoseconds())/batch/1000)
	}
	return median(per)
}

// farTargets are the false-accept rates at which FRR and thresholds are
// reported.
var farTargets = []float64{1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7}

// rates computes EER, FRR at fixed FARs and d′. imp must be sorted.
// Scores are distances: a pair is accepted when its score ≤ threshold.
func rates(gen, imp []float64) Rates {
	r := Rates{Genuine: len(gen), FRRAtFAR: map[string]float64{}}
	if len(gen) == 0 || len(imp) == 0 {
		return r
	}
	g := slices.Clone(gen)
	slices.Sort(g)
	r.GenMean, r.GenStd = sim.MeanStd(g)
	im, is := sim.MeanStd(imp)
	if d := math.Sqrt((r.GenStd*r.GenStd + is*is) / 2); d > 0 {
		r.DPrime = math.Abs(im-r.GenMean) / d
	}
	far := func(t float64) float64 { // share of impostors ≤ t
		return float64(sort.SearchFloat64s(imp, math.Nextafter(t, math.Inf(1)))) / float64(len(imp))
	}
	frr := func(t float64) float64 { // share of genuines > t
		return 1 - float64(sort.SearchFloat64s(g, math.Nextafter(t, math.Inf(1))))/float64(len(g))
	}
	// EER: scan candidate thresholds at every score.
	best := math.Inf(1)
	cands := append(slices.Clone(g), imp...)
	slices.Sort(cands)
	for _, t := range cands {
		fa, fr := far(t), frr(t)
		if d := math.Abs(fa - fr); d < best {
			best, r.EER, r.Threshold = d, (fa+fr)/2, t
		}
	}
	for _, target := range farTargets {
		key := fmt.Sprintf("%g", target)
		if float64(len(imp))*target < 1 {
			continue // too few impostor pairs to measure this FAR
		}
		// Largest threshold whose FAR ≤ target.
		k := int(math.Floor(target * float64(len(imp))))
		t := math.Nextafter(imp[k], math.Inf(-1))
		if k == 0 {
			t = math.Nextafter(imp[0], math.Inf(-1))
		}
		r.FRRAtFAR[key] = frr(t)
	}
	return r
}

func summarisePlacement(ok []*Image) *PlacementSummary {
	var offs, rots, scales []float64
	byLabel := map[string][]*Placement{}
	s := &PlacementSummary{}
	for _, img := range ok {
		p := img.Placement
		if p == nil {
			continue
		}
		if p.Mirrored {
			s.Mirrored++
		}
		offs = append(offs, p.OffsetMM)
		rots = append(rots, math.Abs(p.Rotation))
		scales = append(scales, math.Abs(p.Scale))
		byLabel[img.Label] = append(byLabel[img.Label], p)
	}
	if len(offs) == 0 {
		return nil
	}
	s.MedianOffsetMM, s.P95OffsetMM = median(offs), quantile(offs, 0.95)
	s.MedianRotation, s.P95Rotation = median(rots), quantile(rots, 0.95)
	s.MedianScale = median(scales)
	var ss, rs float64
	var n int
	for _, ps := range byLabel {
		var mx, my, mr float64
		for _, p := range ps {
			mx, my, mr = mx+p.DX, my+p.DY, mr+p.Rotation
		}
		k := float64(len(ps))
		mx, my, mr = mx/k, my/k, mr/k
		for _, p := range ps {
			ss += (p.DX-mx)*(p.DX-mx) + (p.DY-my)*(p.DY-my)
			rs += (p.Rotation - mr) * (p.Rotation - mr)
			n++
		}
	}
	s.ConsistencyMM, s.ConsistencyDeg = math.Sqrt(ss/float64(n)), math.Sqrt(rs/float64(n))
	return s
}

func median(v []float64) float64 { return quantile(v, 0.5) }

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[int(math.Round(q*float64(len(s)-1)))]
}
