package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/palmd/palmd/internal/dataset"
	"github.com/palmd/palmd/sensor/sim"
)

func synthSet(t *testing.T, ids, samples int) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := dataset.Synthesize(context.Background(), dir, dataset.SynthOptions{
		Identities: ids, Samples: samples, FirstSeed: 300, Variation: sim.DefaultVariation(),
	}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRunOnSyntheticSet(t *testing.T) {
	dir := synthSet(t, 6, 4)
	// A file that is not an image, and one that is not decodable.
	_ = os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "0099_00.png"), []byte("not a png"), 0o644)
	roiDir := filepath.Join(t.TempDir(), "rois")
	rep, err := Run(context.Background(), Options{Dir: dir, ROIOut: roiDir, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Images != 25 || rep.Identities != 7 {
		t.Fatalf("read %d images of %d identities, want 25 of 7", rep.Images, rep.Identities)
	}
	if rep.Failures["unreadable"] != 1 {
		t.Errorf("unreadable file not reported: %v", rep.Failures)
	}
	if rep.All.Genuine == 0 || rep.Impostor == 0 {
		t.Fatalf("pairs: %d genuine, %d impostor", rep.All.Genuine, rep.Impostor)
	}
	if rep.Same == nil || rep.Cross == nil || rep.Same.Genuine+rep.Cross.Genuine != rep.All.Genuine {
		t.Errorf("session split missing or inconsistent: %+v %+v", rep.Same, rep.Cross)
	}
	if rep.All.DPrime < 3 || rep.All.GenMean >= rep.ImpMean {
		t.Errorf("genuine %.3f vs impostor %.3f (d' %.2f): no separation", rep.All.GenMean, rep.ImpMean, rep.All.DPrime)
	}
	if rep.Placement == nil || rep.Placement.Mirrored != 0 || rep.Placement.ConsistencyMM > 3 {
		t.Errorf("ROI placement against truth: %+v", rep.Placement)
	}
	// Two samples a session: each probe meets the other session's entry.
	if e := rep.Entries; e == nil || e.Entries == 0 || e.All.Genuine == 0 || e.Impostor == 0 || e.All.GenMean >= e.ImpMean {
		t.Errorf("against fused entries: %+v", e)
	}
	rois, _ := filepath.Glob(filepath.Join(roiDir, "*_roi.png"))
	if len(rois) != rep.Extracted {
		t.Errorf("%d ROI files for %d extractions", len(rois), rep.Extracted)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"EER", "FRR@FAR0.01", "across sessions", "against fused entries", "median extraction", "0099_00.png"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	raw, err := json.Marshal(rep)
	if err != nil || !bytes.Contains(raw, []byte(`"eer"`)) {
		t.Errorf("JSON report: %v", err)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := Run(context.Background(), Options{Dir: dir}); err == nil {
		t.Error("empty folder accepted")
	}
	if _, err := Run(context.Background(), Options{Dir: filepath.Join(dir, "missing")}); err == nil {
		t.Error("missing folder accepted")
	}
	set := synthSet(t, 2, 2)
	if _, err := Run(context.Background(), Options{Dir: set, LabelRegex: "(["}); err == nil {
		t.Error("invalid regex accepted")
	}
	if _, err := Run(context.Background(), Options{Dir: set, LabelRegex: "^x"}); err == nil {
		t.Error("regex without capture group accepted")
	}
	if _, err := Run(context.Background(), Options{Dir: set, LabelRegex: "^(nomatch)"}); err == nil {
		t.Error("files without labels accepted")
	}
}

func TestRates(t *testing.T) {
	// Perfectly separated scores: EER 0, FRR 0 at every FAR.
	gen := []float64{0.1, 0.15, 0.2}
	imp := make([]float64, 1000)
	for i := range imp {
		imp[i] = 0.4 + float64(i)/10000
	}
	r := rates(gen, imp)
	if r.EER != 0 || r.FRRAtFAR["0.01"] != 0 || r.FRRAtFAR["0.001"] != 0 {
		t.Errorf("separated: %+v", r)
	}
	if _, ok := r.FRRAtFAR["0.0001"]; ok {
		t.Error("FRR at FAR 1e-4 reported from only 1,000 impostor pairs")
	}
	// Identical distributions: EER about 50 %.
	same := slices.Clone(imp)
	r = rates(same, imp)
	if math.Abs(r.EER-0.5) > 0.01 {
		t.Errorf("identical distributions: EER %.3f", r.EER)
	}
	// One genuine pair among the impostors: FRR 1/3 at low FAR.
	r = rates([]float64{0.1, 0.15, 0.45}, imp)
	if got := r.FRRAtFAR["0.01"]; math.Abs(got-1.0/3) > 1e-9 {
		t.Errorf("FRR@1e-2 = %v, want 1/3", got)
	}
}

// TestROILevel cuts ROIs from a synthetic set (as public databases ship
// them) and evaluates them with the feature and comparison stages alone:
// the figures must equal the full pipeline's on the same ROIs, the session
// comes from the file name, and pairs are kept only when asked.
func TestROILevel(t *testing.T) {
	dir := synthSet(t, 5, 4)
	roiDir := filepath.Join(t.TempDir(), "rois")
	full, err := Run(context.Background(), Options{Dir: dir, ROIOut: roiDir, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Samples 0–1 are session 0, 2–3 session 1 (dataset.Synthesize); name
	// the ROIs as a database would: identity, session, sample.
	rois, _ := filepath.Glob(filepath.Join(roiDir, "*_roi.png"))
	for _, r := range rois {
		var id, sample int
		if _, err := fmt.Sscanf(filepath.Base(r), "%d_%d_roi.png", &id, &sample); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(r, filepath.Join(roiDir, fmt.Sprintf("%04d_s%d_%d.png", id, sample/2, sample))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		opts      Options
		wantPairs bool
	}{
		{"without pairs", Options{Dir: roiDir, ROILevel: true, SessionRegex: `_s(\d)_`}, false},
		{"with pairs", Options{Dir: roiDir, ROILevel: true, KeepPairs: true, Workers: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Run(context.Background(), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Extracted != full.Extracted || rep.All.Genuine != full.All.Genuine || rep.Impostor != full.Impostor {
				t.Fatalf("ROI level: %d extracted, %d/%d pairs; full frames: %d, %d/%d",
					rep.Extracted, rep.All.Genuine, rep.Impostor, full.Extracted, full.All.Genuine, full.Impostor)
			}
			if math.Abs(rep.All.GenMean-full.All.GenMean) > 0.02 || math.Abs(rep.ImpMean-full.ImpMean) > 0.02 {
				t.Errorf("ROI level genuine %.3f impostor %.3f; full frames %.3f %.3f", rep.All.GenMean, rep.ImpMean, full.All.GenMean, full.ImpMean)
			}
			if got := len(rep.Pairs()) > 0; got != tc.wantPairs {
				t.Errorf("pairs kept: %v, want %v", got, tc.wantPairs)
			}
			if tc.opts.SessionRegex != "" && (rep.Same == nil || rep.Cross == nil) {
				t.Error("sessions from the file name: no split")
			}
		})
	}
	t.Run("bad session regex", func(t *testing.T) {
		for _, re := range []string{"([", "^x", "^(nomatch)"} {
			if _, err := Run(context.Background(), Options{Dir: roiDir, ROILevel: true, SessionRegex: re}); err == nil {
				t.Errorf("session regex %q accepted", re)
			}
		}
	})
}

// TestScoresAndThresholds checks the pair list and the per-FAR thresholds.
func TestScoresAndThresholds(t *testing.T) {
	dir := synthSet(t, 6, 4)
	rep, err := Run(context.Background(), Options{Dir: dir, KeepPairs: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rep.Pairs()); n != rep.All.Genuine+rep.Impostor {
		t.Fatalf("%d pairs kept, %d compared", n, rep.All.Genuine+rep.Impostor)
	}
	var buf bytes.Buffer
	if err := WriteScores(&buf, rep.Pairs(), nil); err != nil {
		t.Fatal(err)
	}
	set, err := ReadScores(&buf)
	if err != nil {
		t.Fatal(err)
	}
	sum := set.Summarise(rep.Images)
	if sum.All.Genuine != rep.All.Genuine || math.Abs(sum.ImpMean-rep.ImpMean) > 1e-6 {
		t.Errorf("scores file summarises to %d genuine, impostor %.4f; report %d, %.4f", sum.All.Genuine, sum.ImpMean, rep.All.Genuine, rep.ImpMean)
	}
	// 276 impostor pairs: FAR 1e-2 is not measurable with ten pairs, and
	// too few to fit a model, so no threshold is claimed at all.
	if len(rep.Thresholds) != 0 || rep.Model != nil {
		t.Errorf("thresholds %+v, model %+v from %d impostor pairs", rep.Thresholds, rep.Model, rep.Impostor)
	}
	gen := []float64{0.2, 0.25, 0.3, 0.42}
	imp := make([]float64, 50000)
	for i := range imp {
		imp[i] = 0.38 + 0.15*float64(i)/float64(len(imp))
	}
	th, model := thresholds(gen, imp)
	if model == nil || len(th) != len(farTargets) {
		t.Fatalf("thresholds %+v model %v", th, model)
	}
	for _, x := range th {
		measured := x.FAR*float64(len(imp)) >= 10
		if (x.Source == "measured") != measured || x.Threshold > 0.4 && x.FAR < 1e-2 {
			t.Errorf("FAR %g: threshold %.4f from %s", x.FAR, x.Threshold, x.Source)
		}
	}
	if th[0].FRR != 0.25 {
		t.Errorf("FRR at FAR 1e-2 = %v, want 0.25 (one of four genuine pairs above 0.3815)", th[0].FRR)
	}
}
