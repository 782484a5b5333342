package sim

import (
	"bytes"
	"context"
	"errors"
	"image"
	"math"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/geom"
	"github.com/palmd/palmd/sensor"
)

func oneHand(hold int) *Scenario {
	return &Scenario{Steps: []Step{{Kind: StepPresent, Identity: 3, Approach: 5, Hold: hold, Withdraw: 5}}}
}

func newSensor(t *testing.T, cfg Config) *Sensor {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Device().Close() })
	if err := s.Camera.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func grab(t *testing.T, s *Sensor) sensor.Frame {
	t.Helper()
	f, err := s.Camera.NextFrame(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDeterminism(t *testing.T) {
	a := newSensor(t, Config{Scenario: oneHand(4), Seed: 9})
	b := newSensor(t, Config{Scenario: oneHand(4), Seed: 9})
	c := newSensor(t, Config{Scenario: oneHand(4), Seed: 10})
	for _, s := range []*Sensor{a, b, c} {
		_ = s.Illuminator.On(100)
	}
	for i := 0; i < 14; i++ {
		fa, fb, fc := grab(t, a), grab(t, b), grab(t, c)
		if !bytes.Equal(fa.Pix, fb.Pix) {
			t.Fatalf("frame %d differs between two runs with the same seed and scenario", i)
		}
		if bytes.Equal(fa.Pix, fc.Pix) {
			t.Fatalf("frame %d identical with a different terminal seed", i)
		}
	}
}

func TestIdentitiesDiffer(t *testing.T) {
	a, a2, b := NewIdentity(1), NewIdentity(1), NewIdentity(2)
	if a.PalmWidth != a2.PalmWidth || len(a.veins) != len(a2.veins) {
		t.Fatal("same seed, different person")
	}
	if a.PalmWidth == b.PalmWidth && len(a.veins) == len(b.veins) {
		t.Fatal("different seeds, same person")
	}
	// The identifying detail (veins, creases, skin: the texture minus its
	// broad relief shading, which every palm shares) of two people is
	// uncorrelated inside the palm.
	ta, _ := newTexture(a, 2)
	defer ta.Close()
	tb, _ := newTexture(b, 2)
	defer tb.Close()
	detail := func(t *texture) []float32 {
		blur := gocv.NewMat()
		defer blur.Close()
		gocv.GaussianBlur(t.albedo, &blur, image.Point{}, 8, 8, gocv.BorderReflect101)
		d, _ := t.albedo.DataPtrFloat32()
		bd, _ := blur.DataPtrFloat32()
		out := make([]float32, len(d))
		for i := range d {
			out[i] = d[i] - bd[i]
		}
		return out
	}
	da, db := detail(ta), detail(tb)
	x0, y0 := ta.toTex(geom.V(-30, 30))
	x1, y1 := ta.toTex(geom.V(30, -30))
	var va, vb []float64
	for y := int(y0); y < int(y1); y++ {
		for x := int(x0); x < int(x1); x++ {
			va = append(va, float64(da[y*ta.size.X+x]))
			vb = append(vb, float64(db[y*ta.size.X+x]))
		}
	}
	if r := correlation(va, vb); math.Abs(r) > 0.3 {
		t.Errorf("palm textures of two people correlate at %.2f", r)
	}
}

func correlation(a, b []float64) float64 {
	ma, sa := MeanStd(a)
	mb, sb := MeanStd(b)
	var c float64
	for i := range a {
		c += (a[i] - ma) * (b[i] - mb)
	}
	return c / float64(len(a)) / (sa * sb)
}

func TestIlluminatorAndExposure(t *testing.T) {
	s := newSensor(t, Config{Scenario: &Scenario{Loop: true, Steps: []Step{{Kind: StepPresent, Identity: 4, Hold: 10}}}})
	unlit := grab(t, s)
	_ = s.Illuminator.On(100)
	lit := grab(t, s)
	truth, _ := s.Camera.Truth()
	if unlit.Illuminated || !lit.Illuminated {
		t.Fatal("Frame.Illuminated does not follow the illuminator")
	}
	mask := make([]byte, len(lit.Pix))
	_ = s.Camera.renderer.HandMask(mask)
	handMean := func(f sensor.Frame) float64 {
		var sum, n float64
		for i, m := range mask {
			if m != 0 {
				sum += float64(f.Pix[i])
				n++
			}
		}
		return sum / n
	}
	if !truth.Hand {
		t.Fatal("no hand in the hold step")
	}
	hl, hu := handMean(lit), handMean(unlit)
	if hu > 15 || hl < 4*hu {
		t.Errorf("hand grey lit %.1f unlit %.1f: the illuminator should dominate ambient light", hl, hu)
	}
	_ = s.Illuminator.On(50)
	half := handMean(grab(t, s))
	if half > 0.7*hl || half < 0.35*hl {
		t.Errorf("half illuminator level gives %.1f, full %.1f", half, hl)
	}
	_ = s.Illuminator.On(100)
	_ = s.Camera.SetExposure(NominalExposure / 2)
	short := handMean(grab(t, s))
	if math.Abs(short/hl-0.5) > 0.08 {
		t.Errorf("half exposure: %.1f vs %.1f, want about half", short, hl)
	}
	// Gain brightens and adds noise: compare fine noise at equal brightness.
	_ = s.Camera.SetGain(2)
	gained := grab(t, s)
	if g := handMean(gained); math.Abs(g/hl-1) > 0.1 {
		t.Errorf("half exposure at gain 2: %.1f, want ≈ %.1f", g, hl)
	}
	st1, _ := Measure(lit.Pix, lit.Width, lit.Height, mask, PalmInterior(truth))
	st2, _ := Measure(gained.Pix, lit.Width, lit.Height, mask, PalmInterior(truth))
	if st2.FineNoise < 1.2*st1.FineNoise {
		t.Errorf("gain 2 fine noise %.2f vs unity %.2f: gain should add noise", st2.FineNoise, st1.FineNoise)
	}
}

func TestTooCloseSaturatesTooFarIsSmallAndDark(t *testing.T) {
	r, err := NewRenderer(640, 480, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	id := NewIdentity(12)
	p := DefaultVariation().Sample(id, 0, 0, 640, 480)
	buf := make([]byte, 640*480)
	mask := make([]byte, 640*480)
	measure := func(d float64) (Stats, Truth) {
		q := p
		q.Pose.Distance = d
		tr, err := r.Render(buf, &q, Lighting{Level: 100}, [2]float64{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		_ = r.HandMask(mask)
		s, _ := Measure(buf, 640, 480, mask, PalmInterior(tr))
		return s, tr
	}
	nominal, _ := measure(NominalDistance)
	close, _ := measure(85)
	far, _ := measure(330)
	if close.Saturated < 0.05 {
		t.Errorf("hand at 85 mm saturates %.3f of the frame; want heavy saturation", close.Saturated)
	}
	if close.LaplacianVar >= nominal.LaplacianVar && close.PalmMean < 250 {
		t.Errorf("hand at 85 mm not blurred: Laplacian %.2f vs %.2f", close.LaplacianVar, nominal.LaplacianVar)
	}
	if far.Coverage > nominal.Coverage/3 || far.HandMean > nominal.HandMean/2 {
		t.Errorf("hand at 330 mm: coverage %.3f mean %.1f vs nominal %.3f %.1f; want small and dark",
			far.Coverage, far.HandMean, nominal.Coverage, nominal.HandMean)
	}
}

func TestScenarioTiming(t *testing.T) {
	scen := &Scenario{Steps: []Step{
		{Kind: StepEmpty, Hold: 3},
		{Kind: StepPresent, Identity: 5, Approach: 4, Hold: 6, Withdraw: 4, Label: "p"},
		{Kind: StepEmpty, Hold: 2},
	}}
	s := newSensor(t, Config{Scenario: scen})
	_ = s.Illuminator.On(100)
	var kinds []string
	var dists []float64
	for i := 0; i < scen.Len(); i++ {
		grab(t, s)
		tr, m := s.Camera.Truth()
		switch {
		case m.Holding:
			kinds = append(kinds, "H")
		case tr.Hand:
			kinds = append(kinds, "m")
		default:
			kinds = append(kinds, ".")
		}
		if tr.Hand {
			dists = append(dists, tr.Distance)
		}
	}
	if got, want := strings.Join(kinds, ""), "...mmmmHHHHHHmmmm.."; got != want {
		t.Fatalf("timeline %q, want %q", got, want)
	}
	for i := 1; i < 4; i++ {
		if dists[i] >= dists[i-1] {
			t.Fatalf("approach does not come closer: %v", dists[:5])
		}
	}
	if dists[0] < 200 || dists[len(dists)-1] < 200 {
		t.Errorf("approach/withdraw should start and end far away: %v", dists)
	}
	if !s.Camera.Ended() {
		t.Error("scenario not ended after its last frame")
	}
	grab(t, s)
	if tr, m := s.Camera.Truth(); tr.Hand || m.Step != -1 {
		t.Error("scene not empty after the end")
	}
}

func TestScenarioKinds(t *testing.T) {
	r, _ := NewRenderer(640, 480, 1)
	defer r.Close()
	for _, kind := range []StepKind{StepPartial, StepMoving, StepPhoto} {
		tl, err := NewTimeline(&Scenario{Steps: []Step{{Kind: kind, Identity: 2, Hold: 10}}}, DefaultVariation(), 640, 480)
		if err != nil {
			t.Fatal(err)
		}
		m := tl.At(5)
		tr := r.Truth(m.Presentation)
		switch kind {
		case StepPartial:
			if tr.PalmX > 80 && tr.PalmX < 560 {
				t.Errorf("partial hand has its palm centre at x=%.0f, inside the frame's usable area", tr.PalmX)
			}
		case StepMoving:
			if math.Hypot(m.Motion[0], m.Motion[1]) < 5 {
				t.Errorf("moving hand moves only %v px per frame", m.Motion)
			}
		case StepPhoto:
			if tr.Attack != AttackPrint {
				t.Error("photo step renders a hand")
			}
		}
	}
}

func TestFrameDeadline(t *testing.T) {
	s := newSensor(t, Config{FPS: 2, Realtime: true})
	grab(t, s) // first slot
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := s.Camera.NextFrame(ctx)
	if !errors.Is(err, sensor.ErrFrameTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NextFrame past its deadline: %v", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := s.Camera.NextFrame(ctx2); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled NextFrame: %v", err)
	}
}

func TestCameraLifecycle(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Camera.NextFrame(context.Background()); !errors.Is(err, sensor.ErrNotStreaming) {
		t.Fatalf("NextFrame before Start: %v", err)
	}
	_ = s.Camera.Start(context.Background())
	f1 := grab(t, &Sensor{Camera: s.Camera})
	f2 := grab(t, &Sensor{Camera: s.Camera})
	if f2.Seq != f1.Seq+1 {
		t.Errorf("sequence %d then %d", f1.Seq, f2.Seq)
	}
	_ = s.Illuminator.On(100)
	if err := s.Device().Close(); err != nil {
		t.Fatal(err)
	}
	if s.Light.Level() != 0 {
		t.Error("illuminator on after Close")
	}
	if _, err := s.Camera.NextFrame(context.Background()); !errors.Is(err, sensor.ErrClosed) {
		t.Fatalf("NextFrame after Close: %v", err)
	}
	if err := s.Presence.WaitForPresence(context.Background()); !errors.Is(err, sensor.ErrClosed) {
		t.Fatalf("WaitForPresence after Close: %v", err)
	}
}

func TestPresenceFollowsScenario(t *testing.T) {
	s := newSensor(t, Config{Scenario: &Scenario{Steps: []Step{{Kind: StepEmpty, Hold: 3}, {Kind: StepPresent, Identity: 1, Approach: 6, Hold: 4}}}})
	if ok, _ := s.Presence.Present(); ok {
		t.Fatal("presence with an empty scene")
	}
	for i := 0; i < 8; i++ {
		grab(t, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Presence.WaitForPresence(ctx); err != nil {
		t.Fatalf("no presence while a hand approaches: %v", err)
	}
}

func TestIndicatorRecords(t *testing.T) {
	var got []sensor.Signal
	ind := &Indicator{OnShow: func(s sensor.Signal) { got = append(got, s) }}
	for _, s := range []sensor.Signal{sensor.SignalScanning, sensor.SignalHoldStill, sensor.SignalSuccess} {
		if err := ind.Show(s); err != nil {
			t.Fatal(err)
		}
	}
	if len(ind.History()) != 3 || ind.Current() != sensor.SignalSuccess || len(got) != 3 {
		t.Fatalf("history %v current %v callback %v", ind.History(), ind.Current(), got)
	}
	_ = ind.Close()
	if err := ind.Show(sensor.SignalIdle); !errors.Is(err, sensor.ErrClosed) {
		t.Fatal("Show after Close")
	}
}

func TestParseScenario(t *testing.T) {
	good := `{"loop":true,"steps":[{"kind":"empty","hold":3},{"kind":"present","identity":4,"approach":2,"hold":5,"withdraw":2,"label":"x"}]}`
	s, err := ParseScenario(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 12 || !s.Loop {
		t.Fatalf("parsed %+v", s)
	}
	bad := []struct{ in, want string }{
		{``, "EOF"},
		{`{"steps":[]}`, "no steps"},
		{`{"steps":[{"kind":"wave","hold":1}]}`, `unknown kind "wave"`},
		{`{"steps":[{"kind":"present","hold":0}]}`, "no frames"},
		{`{"steps":[{"kind":"present","hold":-1}]}`, "hold -1"},
		{`{"steps":[{"kind":"empty","hold":1,"approach":2}]}`, "only hold frames"},
		{`{"steps":[{"kind":"empty","hold":1}],"fps":30}`, `unknown field "fps"`},
		{`{"steps":[{"kind":"empty","hold":1}]} {}`, "trailing data"},
		{`{"steps":[{"kind":"empty","hold":99999999}]}`, "outside"},
		{`[1,2]`, "cannot unmarshal"},
	}
	for _, tc := range bad {
		t.Run(tc.want, func(t *testing.T) {
			_, err := ParseScenario(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseScenario(%q) = %v, want error containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func FuzzParseScenario(f *testing.F) {
	f.Add([]byte(`{"steps":[{"kind":"present","identity":1,"approach":3,"hold":5,"withdraw":3}]}`))
	f.Add([]byte(`{"loop":true,"steps":[{"kind":"empty","hold":1},{"kind":"photo","hold":2}]}`))
	f.Add([]byte(`{"steps":[{"kind":"moving","hold":1e9}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseScenario(bytes.NewReader(data))
		if err != nil {
			return
		}
		tl, err := NewTimeline(s, DefaultVariation(), 64, 64)
		if err != nil {
			t.Fatalf("validated scenario rejected by NewTimeline: %v", err)
		}
		// Every frame of a valid scenario has a well-formed moment.
		for _, i := range []int{0, tl.Len() / 2, tl.Len() - 1, tl.Len()} {
			m := tl.At(i)
			if m.Presentation != nil && (m.Presentation.Pose.Distance <= 0 || math.IsNaN(m.Presentation.Pose.X)) {
				t.Fatalf("frame %d: bad pose %+v", i, m.Presentation.Pose)
			}
		}
	})
}

func BenchmarkRender640x480(b *testing.B) {
	r, err := NewRenderer(640, 480, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	id := NewIdentity(1)
	p := DefaultVariation().Sample(id, 0, 0, 640, 480)
	buf := make([]byte, 640*480)
	if _, err := r.Render(buf, &p, Lighting{Level: 100}, [2]float64{}, 0); err != nil { // warm the caches
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.Pose.X += 0.1 // a moving hand: pose changes every frame
		if _, err := r.Render(buf, &p, Lighting{Level: 100}, [2]float64{}, uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

func BenchmarkNewIdentityAndTexture(b *testing.B) {
	for i := 0; i < b.N; i++ {
		id := NewIdentity(uint64(i))
		t, err := newTexture(id, texPxPerMM)
		if err != nil {
			b.Fatal(err)
		}
		t.Close()
	}
}

// TestGuardOnSceneTime: without real-time pacing, the eye-safety guard
// counts frames, not wall-clock time, so a slow machine does not cut the
// light off mid-scene and a stuck light is still cut off.
func TestGuardOnSceneTime(t *testing.T) {
	s := newSensor(t, Config{FPS: 30, Limits: sensor.GuardLimits{MaxOnTime: time.Second}})
	if err := s.Illuminator.On(100); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond) // wall time past MaxOnTime: no effect
	lit := 0
	for range 40 {
		if !grab(t, s).Illuminated {
			break
		}
		lit++
	}
	if lit != 30 {
		t.Fatalf("light cut off after %d frames, want 30 (1 s at 30 fps)", lit)
	}
	if st := s.Illuminator.State(); st.On || st.Cutoffs != 1 {
		t.Errorf("guard state after the cut-off: %+v", st)
	}
}
