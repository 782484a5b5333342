package eval

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/template/templatetest"
)

// madeUpAttempts is a PAD evaluation's attempts scored on one cue.
func madeUpAttempts() (liveness.Calibration, []PADAttempt) {
	cal := liveness.Calibration{liveness.CueTexture: {Median: 1, Spread: 0.1, High: true}}
	live := func(texture float64) liveness.Decision {
		return liveness.Decision{Raw: map[liveness.Cue]float64{liveness.CueTexture: texture}}
	}
	alice, bob := templatetest.Palm(1, 0, 0), templatetest.Palm(2, 0, 0)
	aliceAgain := templatetest.Palm(1, 0.05, 9) // another capture of alice's palm
	return cal, []PADAttempt{
		{Species: sim.BonaFide, Identity: 1, Decided: true, Decision: live(1.0), Template: alice},
		{Species: sim.BonaFide, Identity: 2, Decided: true, Decision: live(1.1), Template: bob},
		{Species: sim.BonaFide, Identity: 3, Decided: true, Decision: live(1.5)}, // refused: BPCER 1/3
		{Species: sim.BonaFide, Identity: 4},                                     // never through the gates
		// Prints of alice: one refused, one accepted that matches her,
		// one accepted that does not (a poor copy: bob's pattern).
		// The refused one is a sharp cut print, the first accepted one a
		// blurred cut print, the other a whole sheet whose blur is not
		// known.
		{Species: sim.AttackPrint, Identity: 1, Decided: true, Decision: live(2.0), Variant: sim.VariantCut, ExtraBlur: 0.2},
		{Species: sim.AttackPrint, Identity: 1, Decided: true, Decision: live(1.0), Template: aliceAgain, Variant: sim.VariantCut, ExtraBlur: 0.8},
		{Species: sim.AttackPrint, Identity: 1, Decided: true, Decision: live(1.1), Template: bob, Variant: sim.VariantSheet, ExtraBlur: -1},
		// A replica accepted but never sealed (unknown), one not acquired.
		{Species: sim.AttackReplica, Identity: 2, Decided: true, Decision: live(1.0), Variant: sim.VariantUnpainted, ExtraBlur: 0.5},
		{Species: sim.AttackReplica, Identity: 2, Variant: sim.VariantPainted, ExtraBlur: 0.5},
	}
}

// TestSummarise checks the ISO/IEC 30107-3 arithmetic on made-up attempts:
// APCER counts attacks the detector accepted, IAPMR those of them the
// matcher would also take for their victim, BPCER bona fide refusals.
func TestSummarise(t *testing.T) {
	cal, att := madeUpAttempts()
	r := Summarise(att, cal, 3, 0.01)
	if r.BonaFide != 4 || r.NoCapture != 1 || r.BPCER != 1.0/3 {
		t.Errorf("bona fide %d, not captured %d, BPCER %.3f; want 4, 1, 0.333", r.BonaFide, r.NoCapture, r.BPCER)
	}
	rates := map[sim.Species]SpeciesRate{}
	for _, s := range r.Species {
		rates[s.Species] = s
	}
	for _, tc := range []struct {
		name                                          string
		species                                       sim.Species
		attempts, accepted, matched, unknown, notAcqd int
	}{
		{"prints: two accepted, one of them matched", sim.AttackPrint, 3, 2, 1, 0, 0},
		{"replicas: one accepted, never sealed", sim.AttackReplica, 2, 1, 0, 1, 1},
		{"screens: none presented", sim.AttackScreen, 0, 0, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := rates[tc.species]
			if s.Attempts != tc.attempts || s.Accepted != tc.accepted || s.Matched != tc.matched || s.Unknown != tc.unknown || s.NotAcquired != tc.notAcqd {
				t.Errorf("got %+v", s)
			}
			if tc.attempts > 0 && s.IAPMR != float64(tc.matched)/float64(tc.attempts) {
				t.Errorf("IAPMR %.3f", s.IAPMR)
			}
		})
	}
	for _, tc := range []struct {
		name    string
		species sim.Species
		want    []SubsetRate
	}{
		{"prints by variant and blur", sim.AttackPrint, []SubsetRate{
			{Name: sim.VariantCut, Attempts: 2, Accepted: 1, APCER: 0.5},
			{Name: sim.VariantSheet, Attempts: 1, Accepted: 1, APCER: 1},
			{Name: subsetSharp, Attempts: 1, Accepted: 0, APCER: 0},
			{Name: subsetBlurred, Attempts: 1, Accepted: 1, APCER: 1},
		}},
		{"replicas: the one not acquired counts as refused", sim.AttackReplica, []SubsetRate{
			{Name: sim.VariantPainted, Attempts: 1, Accepted: 0, APCER: 0},
			{Name: sim.VariantUnpainted, Attempts: 1, Accepted: 1, APCER: 1},
			{Name: subsetBlurred, Attempts: 2, Accepted: 1, APCER: 0.5},
		}},
		{"screens: none", sim.AttackScreen, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rates[tc.species].Subsets; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("subsets\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
	var out bytes.Buffer
	if err := r.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "  cut                   1 of 2 accepted (50.0 %)") {
		t.Errorf("report without the cut prints' line:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "IAPMR") || !strings.Contains(out.String(), "≥") {
		t.Errorf("report without IAPMR or its lower-bound mark:\n%s", out.String())
	}
}

// TestRunPADSealsWhatIsAccepted plays a living hand and a vein print
// through the daemon's state machine: the hand is sealed and the matcher
// opens its template; a refused attack leaves nothing sealed.
func TestRunPADSealsWhatIsAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("renders two presentations")
	}
	ctx := context.Background()
	hand, err := presentOnce(ctx, sim.StepPresent, 7, 4, liveness.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if hand.Outcome != orchestrator.OutcomeNoMatch || hand.Template == nil {
		t.Fatalf("living hand: outcome %q, template sealed %v", hand.Outcome, hand.Template != nil)
	}
	if hand.Variant != "" || hand.ExtraBlur < 0 {
		t.Errorf("living hand: variant %q, extra blur %v; want none and a blur", hand.Variant, hand.ExtraBlur)
	}
	if hand.Noise != liveness.DefaultNoise {
		t.Errorf("living hand measured against noise model %+v, want the detector's default", hand.Noise)
	}
	// A threshold of 0.1 refuses anything that is not the calibration's
	// median hand: what matters is that a refusal seals nothing.
	att, err := presentOnce(ctx, sim.StepVeinPrint, 7, 5, liveness.Config{Threshold: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if att.Outcome != orchestrator.OutcomeAttack || att.Template != nil {
		t.Errorf("refused attack: outcome %q, template sealed %v", att.Outcome, att.Template != nil)
	}
	if !slices.Contains(sim.Variants(sim.AttackVeinPrint), att.Variant) || att.ExtraBlur < 0 {
		t.Errorf("vein print: variant %q, extra blur %v; want a vein print's variant and a blur", att.Variant, att.ExtraBlur)
	}
}

// TestPADCuesRoundTrip writes an evaluation's attempts as CSV and reads
// them back: re-scored at any threshold they give the same report, the
// victims' matches included, without a template in the file.
func TestPADCuesRoundTrip(t *testing.T) {
	cal, att := madeUpAttempts()
	att = append(att, PADAttempt{Species: sim.AttackScreen, Identity: 3, Decided: true, Outcome: orchestrator.OutcomeAttack,
		Decision: liveness.Decision{Attack: true, Cue: liveness.CueOccluder}})
	for i := range att[:4] {
		att[i].Noise = liveness.NoiseModel{Read: 0.61, Shot: 0.0031, Corr: 0.38} // the camera the cues were measured with
	}
	var buf bytes.Buffer
	if err := WritePADCues(&buf, att); err != nil {
		t.Fatal(err)
	}
	back, err := ReadPADCues(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if len(back) != len(att) {
		t.Fatalf("read %d attempts, wrote %d", len(back), len(att))
	}
	for i := range att {
		if back[i].Noise != att[i].Noise {
			t.Errorf("attempt %d: noise model %+v read back, %+v written", i, back[i].Noise, att[i].Noise)
		}
	}
	for _, threshold := range []float64{1, 3, 6} {
		t.Run(fmt.Sprintf("threshold %g", threshold), func(t *testing.T) {
			want, got := Summarise(att, cal, threshold, 0.01), Summarise(back, cal, threshold, 0.01)
			if !reflect.DeepEqual(want, got) {
				t.Errorf("re-scored from CSV:\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	var again bytes.Buffer
	if err := WritePADCues(&again, back); err != nil {
		t.Fatal(err)
	}
	if again.String() != buf.String() {
		t.Errorf("written again differs:\n%s\nwant\n%s", again.String(), buf.String())
	}
}

// TestReadPADCuesRefusesMalformed: a damaged file is an error naming the
// line, never a silently different evaluation.
func TestReadPADCuesRefusesMalformed(t *testing.T) {
	const head = "species,identity,outcome,decided,matched,in_view_ms,still_ms,occluder,print_texture\n"
	const truthHead = "species,identity,outcome,decided,matched,in_view_ms,still_ms,occluder,variant,extra_blur_px,print_texture\n"
	const noiseHead = "species,identity,outcome,decided,matched,in_view_ms,still_ms,occluder,print_texture,noise_read,noise_shot,noise_corr\n"
	for _, tc := range []struct{ name, csv, want string }{
		{"empty", "", "empty"},
		{"missing column", "species,identity\nprint,1\n", `no "outcome" column`},
		{"unknown species", head + "leaf,1,no_match,true,,10,5,false,1.0\n", "unknown species"},
		{"bad identity", head + "print,-1,no_match,true,,10,5,false,1.0\n", "line 2: identity"},
		{"bad decided", head + "print,1,no_match,maybe,,10,5,false,1.0\n", "decided"},
		{"bad matched", head + "print,1,no_match,true,yes please,10,5,false,1.0\n", "matched"},
		{"negative time", head + "print,1,no_match,true,,-10,5,false,1.0\n", "in_view_ms"},
		{"time past a Duration", head + "print,1,no_match,true,,10,9223372036854775807,false,1.0\n", "still_ms"},
		{"bad occluder", head + "print,1,no_match,true,,10,5,perhaps,1.0\n", "occluder"},
		{"not a number", head + "bona_fide,1,no_match,true,,10,5,false,x\n", "print_texture"},
		{"not finite", head + "bona_fide,1,no_match,true,,10,5,false,NaN\n", "print_texture"},
		{"short row", head + "bona_fide,1,no_match\n", "wrong number of fields"},
		{"another species' variant", truthHead + "print,1,no_match,true,,10,5,false,painted,0.3,1.0\n", `"painted" is not a variant of print`},
		{"a living hand's variant", truthHead + "bona_fide,1,no_match,true,,10,5,false,cut,0.3,1.0\n", "not a variant of bona_fide"},
		{"negative blur", truthHead + "print,1,no_match,true,,10,5,false,cut,-0.3,1.0\n", "extra_blur_px"},
		{"blur not a number", truthHead + "print,1,no_match,true,,10,5,false,cut,NaN,1.0\n", "extra_blur_px"},
		{"blur beyond any frame", truthHead + "print,1,no_match,true,,10,5,false,cut,1e9,1.0\n", "extra_blur_px"},
		{"noise model in part", noiseHead + "bona_fide,1,no_match,true,,10,5,false,1.0,0.5,,0.4\n", "together"},
		{"noise not a number", noiseHead + "bona_fide,1,no_match,true,,10,5,false,1.0,0.5,x,0.4\n", `noise_shot "x"`},
		{"noise out of bounds", noiseHead + "bona_fide,1,no_match,true,,10,5,false,1.0,50,0.002,0.4\n", "read 50 outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadPADCues(strings.NewReader(tc.csv))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestReadPADCuesWithoutTruth: a file written before the instruments'
// variants and blur were recorded still reads; its attempts' blur is
// unknown, so the report splits nothing by it.
func TestReadPADCuesWithoutTruth(t *testing.T) {
	const file = "species,identity,outcome,decided,matched,in_view_ms,still_ms,occluder,print_texture\n" +
		"bona_fide,1,no_match,true,,250,190,false,1.0\n" +
		"print,1,no_match,true,,240,180,false,1.05\n"
	att, err := ReadPADCues(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if att[1].Variant != "" || att[1].ExtraBlur >= 0 {
		t.Errorf("variant %q, extra blur %v; want none and unknown", att[1].Variant, att[1].ExtraBlur)
	}
	cal := liveness.Calibration{liveness.CueTexture: {Median: 1, Spread: 0.1, High: true}}
	for _, s := range Summarise(att, cal, 3, 0.01).Species {
		if len(s.Subsets) != 0 {
			t.Errorf("%s: subsets %+v from a file without them", s.Species, s.Subsets)
		}
	}
}

// FuzzReadPADCues: whatever the file holds, reading it never panics, and
// what it accepts reads back the same once written again.
func FuzzReadPADCues(f *testing.F) {
	_, att := madeUpAttempts()
	var buf bytes.Buffer
	if err := WritePADCues(&buf, att); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("species,identity,outcome,decided,matched,in_view_ms,still_ms,occluder\nscreen,7,attack,true,,0,0,true\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ReadPADCues(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WritePADCues(&out, got); err != nil {
			t.Fatalf("cannot write what was read: %v", err)
		}
		again, err := ReadPADCues(&out)
		if err != nil {
			t.Fatalf("cannot read what was written: %v\n%s", err, out.String())
		}
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("round trip differs:\n%+v\n%+v", got, again)
		}
	})
}

// TestPADThresholdConfident: the threshold leaves as many presentations
// above it as a one-sided 95 % Clopper–Pearson bound allows for a BPCER
// of 1 %, and refuses to name one a set is too small to support.
func TestPADThresholdConfident(t *testing.T) {
	scores := func(n int) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = float64(n - i) // unsorted on purpose: highest first
		}
		return s
	}
	for _, tc := range []struct {
		name string
		n    int
		want float64
	}{
		// 1,000: 4 above is within the bound (upper 0.92 %), 5 is not (1.05 %).
		{"a thousand presentations", 1000, 996},
		// 1,500: 8 above (upper 0.96 %); 9 would be 1.05 %.
		{"fifteen hundred", 1500, 1492},
		// 100: even none above bounds the rate at 2.95 % only.
		{"too few to show 1 %", 100, math.Inf(1)},
		{"the minimum: none above the highest", PADConfidentMinimum, PADConfidentMinimum},
		{"one fewer than the minimum", PADConfidentMinimum - 1, math.Inf(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PADThresholdConfident(scores(tc.n), 0.01, 0.95); got != tc.want {
				t.Errorf("threshold %v, want %v", got, tc.want)
			}
		})
	}
	// None seen in n: the bound is 1 − α^(1/n) exactly.
	if got, want := binomialUpper(0, 300, 0.05), 1-math.Pow(0.05, 1.0/300); math.Abs(got-want) > 1e-9 {
		t.Errorf("upper bound with none seen %.6f, want %.6f", got, want)
	}
}

// TestWritePADCalibrationFile: the calibration printed is the file
// palmd reads: its norms measured on the living presentations, its
// threshold the printed one, and it parses back.
func TestWritePADCalibrationFile(t *testing.T) {
	var att []PADAttempt
	for i := range 400 {
		x := float64(i%40) / 40 // spread over [0, 1)
		att = append(att, PADAttempt{Decided: true, Decision: liveness.Decision{Raw: map[liveness.Cue]float64{
			liveness.CueTexture: 1.1 + 0.1*x, liveness.CueSurface: 0.05 + 0.02*x, liveness.CueEdge: 1.5 + 0.05*x,
			liveness.CueSoftEdge: 1.5 + 0.05*x, liveness.CueVeins: 0.005 + 0.004*x, liveness.CueVeinExcess: 0.005 + 0.004*x,
			liveness.CuePulse: 0.01 + 0.01*x, liveness.CueSheet: 0.002 * x}}})
	}
	// An attack's cues never enter a calibration.
	att = append(att, PADAttempt{Species: sim.AttackPrint, Decided: true, Decision: liveness.Decision{Raw: map[liveness.Cue]float64{liveness.CueTexture: 50}}})
	var out bytes.Buffer
	cf, err := WritePADCalibration(&out, att)
	if err != nil {
		t.Fatal(err)
	}
	if cf.Presentations != 400 {
		t.Errorf("%d presentations, want the 400 living ones", cf.Presentations)
	}
	if m := cf.Calibration[liveness.CueTexture].Median; math.Abs(m-1.15) > 0.01 {
		t.Errorf("print_texture median %v, want about 1.15 (the living values')", m)
	}
	if want := fmt.Sprintf("confidence: %.2f ", cf.Threshold); !strings.Contains(out.String(), want) {
		t.Errorf("printout does not give the file's threshold %q:\n%s", want, out.String())
	}
	b, err := cf.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := liveness.ParseCalibrationFile(b)
	if err != nil || back.Threshold != cf.Threshold {
		t.Fatalf("file does not parse back: %v (threshold %v, want %v)", err, back.Threshold, cf.Threshold)
	}
	if _, err := WritePADCalibration(io.Discard, att[:10]); err == nil {
		t.Error("a calibration from 10 presentations, want an error")
	}
	if cf.Noise != (liveness.NoiseModel{}) || !strings.Contains(out.String(), "not recorded") {
		t.Errorf("cues without a noise model gave %+v and said:\n%s", cf.Noise, out.String())
	}

	// Cues that recorded their noise model give it to the file; cues
	// measured against two cannot make one calibration.
	camera := liveness.NoiseModel{Read: 0.61, Shot: 0.0031, Corr: 0.38}
	for i := range att {
		att[i].Noise = camera
	}
	if cf, err := WritePADCalibration(io.Discard, att); err != nil || cf.Noise != camera {
		t.Errorf("noise model %+v (%v), want the cues' %+v", cf.Noise, err, camera)
	}
	att[7].Noise = liveness.DefaultNoise
	if _, err := WritePADCalibration(io.Discard, att); err == nil || !strings.Contains(err.Error(), "2 camera noise models") {
		t.Errorf("cues measured against two noise models: %v", err)
	}
}
