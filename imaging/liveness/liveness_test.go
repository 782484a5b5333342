package liveness

import (
	"context"
	"image"
	"math"
	"math/rand/v2"
	"testing"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/geom"
	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/sensor/sim/simtest"
)

const W, H = 640, 480

// observeStep plays one scenario step on the simulated terminal with the
// illuminator on and feeds its hold frames to d as the daemon's capture
// does (the ROI from the quality gates, nil for frames that fail them),
// returning the decision.
func observeStep(t testing.TB, d *Detector, st sim.Step) Decision {
	t.Helper()
	s, err := sim.New(sim.Config{Scenario: &sim.Scenario{Steps: []sim.Step{st}}, Seed: st.Identity})
	if err != nil {
		t.Fatal(err)
	}
	dev := s.Device()
	defer dev.Close()
	ctx := context.Background()
	if err := dev.Camera.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dev.Illuminator.On(100); err != nil {
		t.Fatal(err)
	}
	ex := imaging.NewExtractor(imaging.DefaultConfig())
	defer ex.Close()
	d.Reset()
	for i := 0; i < st.Frames(); i++ {
		f, err := dev.Camera.NextFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i < st.Approach {
			continue
		}
		var roi *imaging.ROIGeometry
		if res, err := ex.Assess(&f); err == nil {
			roi = &res.ROI
		}
		if err := d.Observe(&f, roi); err != nil {
			t.Logf("frame %d: %v", i, err)
		}
		f.Zero()
	}
	return d.Decide()
}

func step(kind sim.StepKind, id uint64) sim.Step {
	return sim.Step{Kind: kind, Identity: id, Session: 1, Sample: 3, Approach: 6, Hold: 16}
}

// TestCuesOnRenderedPresentations checks each cue where the physics says
// it must differ: on a living hand and on the instrument it was built to
// catch, rendered by the simulator from the same person's palm.
func TestCuesOnRenderedPresentations(t *testing.T) {
	d := NewDetector(Config{})
	defer d.Close()
	const people = 4
	mean := func(kind sim.StepKind, c Cue) (float64, int) {
		var sum float64
		n := 0
		for id := uint64(1); id <= people; id++ {
			dec := observeStep(t, d, step(kind, 40+id))
			if v, ok := dec.Raw[c]; ok {
				sum += v
				n++
			}
		}
		return sum / float64(max(n, 1)), n
	}
	for _, tc := range []struct {
		name   string
		cue    Cue
		attack sim.StepKind
		higher bool // the attack's value is higher than the hand's
	}{
		{"a print's grain and halftone are static surface detail", CueSurface, sim.StepPhoto, true},
		{"paper is sharper than scattering skin", CueTexture, sim.StepPhoto, true},
		{"a vein print is paper too", CueTexture, sim.StepVeinPrint, true},
		{"an enhanced vein print is darker than blood makes a palm", CueVeinExcess, sim.StepVeinPrint, true},
		{"a print has no pulse", CuePulse, sim.StepPhoto, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live, nl := mean(sim.StepPresent, tc.cue)
			att, na := mean(tc.attack, tc.cue)
			if nl < people-1 || na < people-1 {
				t.Fatalf("cue %s measured on %d hands and %d attacks of %d", tc.cue, nl, na, people)
			}
			t.Logf("%s: hands %.4g, %s %.4g", tc.cue, live, tc.attack, att)
			if tc.higher != (att > live) {
				t.Errorf("%s: hands %.4g, %s %.4g: want the attack %s", tc.cue, live, tc.attack, att, map[bool]string{true: "higher", false: "lower"}[tc.higher])
			}
		})
	}
}

// TestPrintsRefusedHandsAccepted: with the default calibration, living
// hands pass and most prints are refused (on the simulator about four in
// five are: README, Liveness).
func TestPrintsRefusedHandsAccepted(t *testing.T) {
	d := NewDetector(Config{})
	defer d.Close()
	n := DefaultCalibration()[CueSurface]
	for id := uint64(1); id <= 4; id++ {
		live := observeStep(t, d, step(sim.StepPresent, 60+id))
		if z := live.Z[CueSurface]; z > DefaultThreshold {
			t.Errorf("hand %d: surface detail %.3f (z %.1f) above the threshold", id, live.Raw[CueSurface], z)
		}
		if live.Attack {
			t.Errorf("hand %d refused: %v", id, live)
		}
	}
	caught := 0
	for id := uint64(1); id <= 6; id++ {
		att := observeStep(t, d, step(sim.StepPhoto, 60+id))
		if att.Attack {
			caught++
		}
		t.Logf("print %d: surface %.3f (median %.3f) → %v", id, att.Raw[CueSurface], n.Median, att)
	}
	if caught < 3 {
		t.Errorf("%d of 6 prints refused, want at least 3", caught)
	}
}

// TestVeinsOnRenderedFrames: a cast hand without painted veins shows less
// vein-scale structure than the living hand it was cast from; painting
// them on brings it back (and the paint's sharpness is what the texture
// cues then see).
func TestVeinsOnRenderedFrames(t *testing.T) {
	cues := frameCuesOf(t)
	var live, cast, painted float64
	people := 0
	for id := uint64(1); id <= 8; id++ {
		p := sim.DefaultVariation().Sample(sim.NewIdentity(70+id), 1, 2, W, H)
		p.Spread = max(p.Spread, 0.5)
		p.Defocus = 0
		cl, ok1 := cues(&p)
		in := sim.NewInstrument(sim.AttackReplica, id)
		in.Painted, in.Scatter = false, 1.2
		p.Attack = in
		cc, ok2 := cues(&p)
		in.Painted, in.Paint = true, 0.2
		p.Attack = in
		cp, ok3 := cues(&p)
		if !ok1 || !ok2 || !ok3 {
			continue
		}
		live, cast, painted = live+cl.Veins, cast+cc.Veins, painted+cp.Veins
		people++
	}
	if people < 4 {
		t.Fatalf("only %d of 8 people passed the gates as hand, cast and painted cast", people)
	}
	n := float64(people)
	t.Logf("vein contrast over %d people: living %.4f, cast %.4f, painted cast %.4f", people, live/n, cast/n, painted/n)
	if cast >= live {
		t.Errorf("a cast without veins (%.4f) shows as much vein structure as the hands (%.4f)", cast/n, live/n)
	}
	if painted <= cast {
		t.Errorf("painted veins (%.4f) add nothing to the cast (%.4f)", painted/n, cast/n)
	}
}

// frameCuesOf returns a function that renders one frame of a
// presentation, lit, and measures its single-frame cues (false when the
// frame fails the quality gates).
func frameCuesOf(t *testing.T) func(p *sim.Presentation) (FrameCues, bool) {
	t.Helper()
	r, err := sim.NewRenderer(W, H, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	ex := imaging.NewExtractor(imaging.DefaultConfig())
	t.Cleanup(ex.Close)
	d := NewDetector(Config{})
	t.Cleanup(d.Close)
	return func(p *sim.Presentation) (FrameCues, bool) {
		f := sensor.Frame{Width: W, Height: H, Pix: make([]byte, W*H), Gain: 1}
		defer f.Zero()
		if _, err := r.Render(f.Pix, p, sim.Lighting{Level: 100}, [2]float64{}, 7); err != nil {
			t.Fatal(err)
		}
		res, err := ex.Assess(&f)
		if err != nil {
			return FrameCues{}, false
		}
		c, err := d.FrameCues(&f, res.ROI)
		return c, err == nil
	}
}

// TestOutlineOnRenderedFrames: held in focus, a print cut out along the
// hand's outline ends in a paper edge sharper than skin's, and a cast
// whose material scatters more than skin has a softer outline than the
// hand it was cast from; cut_edge and soft_outline score them against
// the default calibration's living hands.
func TestOutlineOnRenderedFrames(t *testing.T) {
	cues := frameCuesOf(t)
	cal := DefaultCalibration()
	for _, tc := range []struct {
		name       string
		instrument func(id uint64) sim.Instrument
		cue        Cue
		softer     bool
	}{
		{"a cut print's paper edge is sharper", func(id uint64) sim.Instrument {
			in := sim.NewInstrument(sim.AttackPrint, id)
			in.Cut, in.Curve = true, 0
			return in
		}, CueEdge, false},
		{"a cast scattering more than skin is softer", func(id uint64) sim.Instrument {
			in := sim.NewInstrument(sim.AttackReplica, id)
			in.Painted, in.Scatter = false, 1.8
			return in
		}, CueSoftEdge, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			people := 0
			for id := uint64(1); id <= 6; id++ {
				p := sim.DefaultVariation().Sample(sim.NewIdentity(90+id), 1, 2, W, H)
				p.Spread = max(p.Spread, 0.5)
				p.Defocus = 0
				p.Pose.Distance = sim.NominalDistance
				live, ok1 := cues(&p)
				p.Attack = tc.instrument(id)
				att, ok2 := cues(&p)
				if !ok1 || !ok2 || live.Edge == 0 || att.Edge == 0 {
					continue
				}
				people++
				zLive, zAtt := cal[tc.cue].Z(live.Edge), cal[tc.cue].Z(att.Edge)
				t.Logf("person %d: outline hand %.3f (z %.1f), instrument %.3f (z %.1f)", id, live.Edge, zLive, att.Edge, zAtt)
				if tc.softer != (att.Edge < live.Edge) {
					t.Errorf("person %d: outline hand %.3f, instrument %.3f: want the instrument's %s", id, live.Edge, att.Edge,
						map[bool]string{true: "softer", false: "sharper"}[tc.softer])
				}
				if zAtt < 3 || zLive > 2 {
					t.Errorf("person %d: %s scores the hand %.1f and the instrument %.1f spreads from living, want < 2 and ≥ 3", id, tc.cue, zLive, zAtt)
				}
			}
			if people < 4 {
				t.Fatalf("only %d of 6 people passed the gates as hand and instrument", people)
			}
		})
	}
}

// idleCheck takes a lit and an unlit frame and checks them for a hand and
// with the Occluder, as the daemon's idle loop does.
func idleCheck(t *testing.T, s *sim.Sensor, pres *imaging.PresenceDetector, o *Occluder) (imaging.Presence, OccluderCheck) {
	t.Helper()
	return checkAs(t, s, pres, o, HandArriving)
}

// checkAs is idleCheck with the View a hand in view is checked as.
func checkAs(t *testing.T, s *sim.Sensor, pres *imaging.PresenceDetector, o *Occluder, hand View) (imaging.Presence, OccluderCheck) {
	t.Helper()
	lit, unlit, err := s.LitUnlit(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pres.Check(&lit, &unlit)
	if err != nil {
		t.Fatal(err)
	}
	view := NoHand
	if p.Hand {
		view = hand
	}
	c, err := o.Check(&lit, &unlit, view)
	if err != nil {
		t.Fatal(err)
	}
	return p, c
}

// TestOccluderSeesAScreen: a phone held over the terminal answers the
// illuminator less than the empty box; a hand answers more.
func TestOccluderSeesAScreen(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind sim.StepKind
		want bool
	}{
		{"phone screen", sim.StepScreen, true},
		{"hand", sim.StepPresent, false},
		{"print", sim.StepPhoto, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := simtest.Start(t, sim.Config{Scenario: &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 24},
				{Kind: tc.kind, Identity: 5, Approach: 8, Hold: 24}}}})
			o := NewOccluder(OccluderConfig{})
			defer o.Close()
			pres := imaging.NewPresenceDetector(imaging.DefaultPresenceConfig())
			defer pres.Close()
			triggered := false
			for i := 0; i < 28; i++ {
				_, c := idleCheck(t, s, pres, o)
				triggered = triggered || c.Triggered
			}
			if triggered != tc.want {
				t.Errorf("occluder triggered %v, want %v", triggered, tc.want)
			}
		})
	}
}

func TestFuse(t *testing.T) {
	cal := Calibration{
		CueTexture: {Median: 1, Spread: 0.1, High: true},
		CueVeins:   {Median: 0.01, Spread: 0.002, High: false},
		// ln 0.01 ± 0.5: a factor of e^0.5 is one spread.
		CueVeinExcess: {Median: math.Log(0.01), Spread: 0.5, High: true, Log: true},
		// The same outline, scored on both sides with spreads of its own.
		CueEdge:     {Median: 1.6, Spread: 0.02, High: true},
		CueSoftEdge: {Median: 1.6, Spread: 0.05, High: false, Tail: true},
	}
	fuseCases(t, cal, []fuseCase{
		{"living values", map[Cue]float64{CueTexture: 1.05, CueVeins: 0.011}, false, CueTexture, 0.5},
		{"texture far above", map[Cue]float64{CueTexture: 1.5, CueVeins: 0.01}, true, CueTexture, 5},
		{"veins far below", map[Cue]float64{CueTexture: 0.9, CueVeins: 0.0015}, true, CueVeins, 4.25},
		{"evidence adds up", map[Cue]float64{CueTexture: 1.3, CueVeins: 0.0038}, true, CueVeins, math.Hypot(3, 3.1)},
		{"each alone would not do", map[Cue]float64{CueTexture: 1.3, CueVeins: 0.01}, false, CueTexture, 3},
		{"veins far above, scored by factor", map[Cue]float64{CueTexture: 1, CueVeinExcess: 0.01 * math.Exp(2.5)}, true, CueVeinExcess, 5},
		{"veins twice as dark are living", map[Cue]float64{CueTexture: 1, CueVeinExcess: 0.02}, false, CueVeinExcess, 2 * math.Ln2},
		{"no vein contrast at all is no excess", map[Cue]float64{CueTexture: 1, CueVeinExcess: 0}, false, CueTexture, 0},
		{"an outline softer than the living tail", map[Cue]float64{CueTexture: 1, CueEdge: 1.4, CueSoftEdge: 1.4}, true, CueSoftEdge, 4},
		{"a sharp outline is not soft", map[Cue]float64{CueTexture: 1, CueEdge: 1.7, CueSoftEdge: 1.7}, true, CueEdge, 5},
		{"a cue without calibration is ignored", map[Cue]float64{CuePulse: 100}, false, "", 0},
		{"nothing measured", map[Cue]float64{}, false, "", 0},
	})
}

// fuseCase is one presentation's raw cues and the decision Fuse must take
// at threshold 4.
type fuseCase struct {
	name   string
	raw    map[Cue]float64
	attack bool
	cue    Cue
	score  float64
}

func fuseCases(t *testing.T, cal Calibration, cases []fuseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := cal.Fuse(tc.raw, 4)
			if d.Attack != tc.attack || d.Cue != tc.cue || math.Abs(d.Score-tc.score) > 1e-6 {
				t.Errorf("got attack %v cue %q score %.3f, want %v %q %.3f (z %v)", d.Attack, d.Cue, d.Score, tc.attack, tc.cue, tc.score, d.Z)
			}
			if _, ok := tc.raw[CueBlood]; ok {
				t.Fatal("a derived cue put into the raw values")
			}
		})
	}
}

func TestCalibrate(t *testing.T) {
	var raws []map[Cue]float64
	for i := 0; i < 101; i++ {
		raws = append(raws, map[Cue]float64{CueTexture: 1 + float64(i-50)/100})
	}
	cal := Calibrate(raws, DefaultCalibration())
	n := cal[CueTexture]
	if math.Abs(n.Median-1) > 1e-9 || math.Abs(n.Spread-1.4826*0.25) > 0.01 || !n.High {
		t.Errorf("texture norm %+v", n)
	}
	if cal[CueVeins] != DefaultCalibration()[CueVeins] {
		t.Errorf("a cue without measurements should keep its default, got %+v", cal[CueVeins])
	}
	// A logarithmic cue is calibrated on the logarithm: contrasts spread
	// by factors around 0.01 give a median of ln 0.01.
	raws = raws[:0]
	for i := 0; i < 101; i++ {
		raws = append(raws, map[Cue]float64{CueVeinExcess: 0.01 * math.Exp(float64(i-50)/100)})
	}
	n = Calibrate(raws, DefaultCalibration())[CueVeinExcess]
	if math.Abs(n.Median-math.Log(0.01)) > 1e-9 || math.Abs(n.Spread-1.4826*0.25) > 0.01 || !n.High || !n.Log {
		t.Errorf("vein excess norm %+v", n)
	}
	// A tail cue's spread is read off its living tail on the attack
	// side: 990 hands in focus within ±0.02 of 1.6 and 10 out of focus
	// down to 1.3 put the 0.5 % point (the 5th lowest of 1,000) at 1.34.
	raws = raws[:0]
	for i := 0; i < 990; i++ {
		raws = append(raws, map[Cue]float64{CueSoftEdge: 1.6 + 0.04*(float64(i)/989-0.5)})
	}
	for i := 0; i < 10; i++ {
		raws = append(raws, map[Cue]float64{CueSoftEdge: 1.3 + 0.01*float64(i)})
	}
	n = Calibrate(raws, DefaultCalibration())[CueSoftEdge]
	if want := (n.Median - 1.35) / tailZ; !n.Tail || n.High || math.Abs(n.Median-1.6) > 0.001 || math.Abs(n.Spread-want) > 1e-9 {
		t.Errorf("soft outline norm %+v: want a tail spread of %.4f", n, want)
	}
	if z := n.Z(1.35); math.Abs(z-tailZ) > 1e-9 {
		t.Errorf("a hand at the living 0.5 %% point scores z %.3f, want %.3f", z, tailZ)
	}
	if mad := 1.4826 * 0.01; n.Spread < 5*mad {
		t.Errorf("tail spread %.4f: no wider than the middle's %.4f", n.Spread, mad)
	}
	// Living hands with nothing around them all measure 0: the robust
	// spread is 0 and the cue's floor keeps it from calling every
	// fingertip in the ring an attack.
	raws = raws[:0]
	for i := 0; i < 101; i++ {
		raws = append(raws, map[Cue]float64{CueSheet: 0})
	}
	n = Calibrate(raws, DefaultCalibration())[CueSheet]
	if n.Spread != 0 || n.MinSpread != sheetMinSpread {
		t.Fatalf("sheet norm %+v: want spread 0 and the floor %.2f kept", n, sheetMinSpread)
	}
	if z := n.Z(0.02); math.Abs(z-0.02/sheetMinSpread) > 1e-9 {
		t.Errorf("a 2 %% ring scores z %.2f, want %.2f", z, 0.02/sheetMinSpread)
	}
}

// TestBloodIsDerived: no_blood is the sum of no_veins' and no_pulse's
// standardised values, standardised again against living hands' sums
// (its spread off their tail): a cast whose veins and pulse are each only
// faint scores on it beyond either alone, and it is calibrated on the
// measured cues' new norms.
func TestBloodIsDerived(t *testing.T) {
	cal := Calibration{
		CueVeins: {Median: 0.01, Spread: 0.002, High: false},
		CuePulse: {Median: 0.01, Spread: 0.004, High: false},
		CueBlood: {Median: 0, Spread: 1, High: true, Tail: true},
	}
	fuseCases(t, cal, []fuseCase{
		// Veins 2.5 spreads faint, pulse 2.5: neither crosses 4, their
		// sum (5) does, and the fused length is √(2.5² + 2.5² + 5²).
		{"faint veins and a faint pulse", map[Cue]float64{CueVeins: 0.005, CuePulse: 0}, true, CueBlood, math.Sqrt(2.5*2.5*2 + 25)},
		{"faint veins, a strong pulse", map[Cue]float64{CueVeins: 0.005, CuePulse: 0.02}, false, CueVeins, 2.5},
		{"no pulse measured: no blood cue", map[Cue]float64{CueVeins: 0.005}, false, CueVeins, 2.5},
		{"living", map[Cue]float64{CueVeins: 0.011, CuePulse: 0.012}, false, CueVeins, 0},
	})
	// Calibrated on the measured cues' norms: 1,000 living hands whose
	// veins and pulse vary independently; their sums' median is about 0
	// and the tail spread puts the 0.5 % point at 2.58.
	var raws []map[Cue]float64
	for i := 0; i < 1000; i++ {
		raws = append(raws, map[Cue]float64{CueVeins: 0.01 * math.Exp(0.3*float64(i%40-20)/20), CuePulse: 0.01 + 0.008*float64(i%25-12)/12})
	}
	got := Calibrate(raws, DefaultCalibration())
	n := got[CueBlood]
	if !n.High || !n.Tail || n.Spread <= 0 || math.Abs(n.Median) > 0.3 {
		t.Fatalf("no_blood norm %+v", n)
	}
	var sums []float64
	for _, r := range raws {
		sums = append(sums, got[CueVeins].Z(r[CueVeins])+got[CuePulse].Z(r[CuePulse]))
	}
	if want := tailSpread(sums, n.Median, true); math.Abs(n.Spread-want) > 1e-9 {
		t.Errorf("no_blood spread %.4f, want the living sums' tail %.4f", n.Spread, want)
	}
}

func TestObserveRejectsBadFrames(t *testing.T) {
	d := NewDetector(Config{})
	defer d.Close()
	for _, tc := range []struct {
		name string
		f    sensor.Frame
	}{
		{"empty", sensor.Frame{}},
		{"short", sensor.Frame{Width: 64, Height: 64, Pix: make([]byte, 100)}},
		{"too large", sensor.Frame{Width: sensor.MaxFrameSide + 1, Height: 1, Pix: make([]byte, sensor.MaxFrameSide+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := d.Observe(&tc.f, nil); err == nil {
				t.Error("bad frame accepted")
			}
		})
	}
	o := NewOccluder(OccluderConfig{})
	defer o.Close()
	big := sensor.Frame{Width: W, Height: H, Pix: make([]byte, W*H)}
	small := sensor.Frame{Width: 8, Height: 8, Pix: make([]byte, 64)}
	if _, err := o.Check(&big, &small, NoHand); err == nil {
		t.Error("lit and unlit frames of different sizes accepted")
	}
	if _, err := o.Check(&sensor.Frame{}, &sensor.Frame{}, NoHand); err == nil {
		t.Error("empty frames accepted")
	}
	// A black frame with a region the gates never found is no panic.
	f := sensor.Frame{Width: W, Height: H, Pix: make([]byte, W*H)}
	roi := imaging.ROIGeometry{Side: 400}
	roi.Centre.X, roi.Centre.Y = 10, 10
	if err := d.Observe(&f, &roi); err == nil {
		t.Error("a region leaving the frame accepted")
	}
	if dec := d.Decide(); dec.Attack {
		t.Errorf("no evidence, yet %v", dec)
	}
}

// TestTextureReadsNoiseAsNoise: on a flat field that carries only the
// camera's noise (the NoiseModel's variance and crosstalk), the texture
// cue reads about 1 for a palm held far or near, and a field with fine
// detail on top reads more: the noise normalisation is right.
func TestTextureReadsNoiseAsNoise(t *testing.T) {
	d := NewDetector(Config{})
	defer d.Close()
	noise := DefaultNoise
	const grey = 120.0
	frame := func(seed uint64, detail float64) *sensor.Frame {
		r := rand.New(rand.NewPCG(seed, 1))
		field := gocv.NewMatWithSize(H, W, gocv.MatTypeCV32F)
		defer field.Close()
		fd, _ := field.DataPtrFloat32()
		for i := range fd {
			fd[i] = float32(r.NormFloat64())
		}
		// Crosstalk softens the noise; rescale it back to the model's
		// variance so that only its spectrum's shape changes.
		gocv.GaussianBlur(field, &field, image.Point{}, noise.Corr, noise.Corr, gocv.BorderReflect101)
		_, sd := meanStd(fd)
		sigma := math.Sqrt(noise.Variance(grey, 1))
		pix := make([]byte, W*H)
		for i, v := range fd {
			x, y := i%W, i/W
			// Fine detail at 0.25 cycles per pixel, as a print's screen.
			fine := detail * math.Sin(2*math.Pi*(0.25*float64(x)+0.02*float64(y)))
			pix[i] = uint8(max(0, min(255, math.Round(grey+fine+float64(v)/sd*sigma))))
		}
		return &sensor.Frame{Width: W, Height: H, Pix: pix, Gain: 1}
	}
	for _, tc := range []struct {
		name    string
		roiSide float64 // the palm's ROI, px
		detail  float64 // grey levels of fine detail
		lo, hi  float64
	}{
		{"palm held far, noise only", 95, 0, 0.85, 1.15},
		{"palm held near, noise only", 160, 0, 0.85, 1.15},
		{"palm held far, fine detail", 95, 1, 2, math.Inf(1)},
		{"palm held near, fine detail", 160, 1, 2, math.Inf(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sum float64
			const frames = 6
			for k := uint64(0); k < frames; k++ {
				c, err := d.FrameCues(frame(k, tc.detail), imaging.ROIGeometry{Centre: geom.V(W/2, H/2), Side: tc.roiSide, U: geom.V(1, 0), N: geom.V(0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				sum += c.Texture
			}
			got := sum / frames
			t.Logf("texture %.3f", got)
			if got < tc.lo || got > tc.hi {
				t.Errorf("texture %.3f, want %.2f…%.2f", got, tc.lo, tc.hi)
			}
		})
	}
}

func meanStd(v []float32) (mean, sd float64) {
	for _, x := range v {
		mean += float64(x)
	}
	mean /= float64(len(v))
	for _, x := range v {
		sd += (float64(x) - mean) * (float64(x) - mean)
	}
	return mean, math.Sqrt(sd / float64(len(v)))
}

// TestOccluderDoesNotLearnAMissedHand: a hand the presence detector did
// not take for one (hand=false throughout, as for a hand too ragged or too
// far) is not learnt as the empty box, so the box does not look dark —
// a screen — once the hand has gone.
func TestOccluderDoesNotLearnAMissedHand(t *testing.T) {
	s := simtest.Start(t, sim.Config{Scenario: &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 24},
		{Kind: sim.StepPresent, Identity: 5, Approach: 8, Hold: 60, Withdraw: 8}, {Kind: sim.StepEmpty, Hold: 40}}}})
	ctx := t.Context()
	o := NewOccluder(OccluderConfig{})
	defer o.Close()
	for i := 0; !s.Camera.Ended(); i++ {
		lit, unlit, err := s.LitUnlit(ctx, 100)
		if err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
		c, err := o.Check(&lit, &unlit, NoHand)
		if err != nil {
			t.Fatal(err)
		}
		if c.Triggered {
			t.Fatalf("check %d: the box looks dark (share %.3f) after a hand it should not have learnt", i, c.Share)
		}
	}
}

// TestOccluderSeesTheSheetAroundAPrint: a print held whole brings the
// sheet it is printed on into view around the hand; around a living hand,
// and around a print cut out along the hand's outline, is the empty box.
func TestOccluderSeesTheSheetAroundAPrint(t *testing.T) {
	norm := DefaultCalibration()[CueSheet]
	for _, tc := range []struct {
		name   string
		kind   sim.StepKind
		sample int // picks the instrument: person 5's print 2 is held whole, 1 is cut out
		sheet  bool
	}{
		{"hand", sim.StepPresent, 2, false},
		{"whole print", sim.StepPhoto, 2, true},
		{"cut-out print", sim.StepPhoto, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := sim.Step{Kind: tc.kind, Identity: 5, Sample: tc.sample, Approach: 8, Hold: 24}
			if in := sim.NewInstrument(tc.kind.Species(), 5^uint64(tc.sample)<<20^0x5eed); tc.kind == sim.StepPhoto && in.Cut == tc.sheet {
				t.Fatalf("instrument cut %v: the test's premise changed", in.Cut)
			}
			s := simtest.Start(t, sim.Config{Scenario: &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 24}, st}}})
			o := NewOccluder(OccluderConfig{})
			defer o.Close()
			pres := imaging.NewPresenceDetector(imaging.DefaultPresenceConfig())
			defer pres.Close()
			d := NewDetector(Config{})
			defer d.Close()
			for i := 0; i < 24+8+12; i++ {
				p, c := idleCheck(t, s, pres, o)
				if c.Sheet >= 0 && !p.Hand {
					t.Errorf("check %d: sheet %.3f measured with no hand in view", i, c.Sheet)
				}
				d.ObserveSurroundings(c.Sheet)
			}
			raw, ok := d.Decide().Raw[CueSheet]
			if !ok {
				t.Fatal("never measured")
			}
			z := norm.Z(raw)
			t.Logf("sheet %.3f (z %.1f)", raw, z)
			if tc.sheet && z <= DefaultThreshold {
				t.Errorf("sheet %.3f (z %.1f): want beyond the threshold %.2f", raw, z, DefaultThreshold)
			}
			if !tc.sheet && z > 2 {
				t.Errorf("sheet %.3f (z %.1f): want the empty box (z ≤ 2)", raw, z)
			}
		})
	}
}

// TestOccluderLeavesALeavingHandAlone: once a presentation is over, the
// hand still in view is waited out; the Occluder neither measures what
// surrounds it (no presentation is left to judge) nor learns it as the
// empty box, so the next arrival is measured against the box itself.
func TestOccluderLeavesALeavingHandAlone(t *testing.T) {
	st := sim.Step{Kind: sim.StepPhoto, Identity: 5, Sample: 2, Approach: 8, Hold: 40}
	s := simtest.Start(t, sim.Config{Scenario: &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 24}, st}}})
	o := NewOccluder(OccluderConfig{})
	defer o.Close()
	pres := imaging.NewPresenceDetector(imaging.DefaultPresenceConfig())
	defer pres.Close()
	var arriving, leaving []float64
	for i := 0; i < 24+8+40; i++ {
		// Alternate: as if the hand left and came back at every check.
		view := HandArriving
		if i%2 == 1 {
			view = HandLeaving
		}
		p, c := checkAs(t, s, pres, o, view)
		switch {
		case p.Hand && view == HandArriving:
			arriving = append(arriving, c.Sheet)
		case p.Hand:
			leaving = append(leaving, c.Sheet)
		}
	}
	if len(arriving) < 5 || len(leaving) < 5 {
		t.Fatalf("%d arriving and %d leaving checks: the scenario no longer shows the print", len(arriving), len(leaving))
	}
	for i, v := range leaving {
		if v != -1 {
			t.Errorf("leaving check %d: sheet %.3f, want −1 (not measured)", i, v)
		}
	}
	// The whole sheet stays in view throughout: were it learnt as the
	// box while leaving, the last arrivals would no longer see it.
	norm := DefaultCalibration()[CueSheet]
	if last := arriving[len(arriving)-1]; norm.Z(last) <= DefaultThreshold {
		t.Errorf("last arriving check: sheet %.3f (z %.1f), want the sheet still seen (z > %.2f)", last, norm.Z(last), DefaultThreshold)
	}
}
