package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/palmd/palmd/dataset"
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
	rois, _ := filepath.Glob(filepath.Join(roiDir, "*_roi.png"))
	if len(rois) != rep.Extracted {
		t.Errorf("%d ROI files for %d extractions", len(rois), rep.Extracted)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"EER", "FRR@FAR0.01", "across sessions", "median extraction", "0099_00.png"} {
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
