package liveness

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/sensor/sim/simtest"
)

// flatField renders one frame of a grey card at grey, lit a little
// unevenly (±2 grey levels across it), with a camera
// whose noise is model's exactly as noiseSpectrum describes it (white
// noise filtered in the frequency domain by the crosstalk's Gaussian,
// rescaled to the model's variance), quantised to 8 bits.
func flatField(t *testing.T, r *rand.Rand, side int, grey float64, model NoiseModel, gain float64) sensor.Frame {
	t.Helper()
	field := gocv.NewMatWithSize(side, side, gocv.MatTypeCV32F)
	spec := gocv.NewMat()
	defer field.Close()
	defer spec.Close()
	fd, _ := field.DataPtrFloat32()
	for i := range fd {
		fd[i] = float32(r.NormFloat64())
	}
	gocv.DFT(field, &spec, gocv.DftComplexOutput)
	sd, _ := spec.DataPtrFloat32()
	for y := 0; y < side; y++ {
		fy := float64(min(y, side-y)) / float64(side)
		for x := 0; x < side; x++ {
			fx := float64(min(x, side-x)) / float64(side)
			k := float32(math.Exp(-2 * math.Pi * math.Pi * model.Corr * model.Corr * (fx*fx + fy*fy)))
			sd[2*(y*side+x)] *= k
			sd[2*(y*side+x)+1] *= k
		}
	}
	gocv.DFT(spec, &field, gocv.DftInverse|gocv.DftRealOutput|gocv.DftScale)
	fd, _ = field.DataPtrFloat32()
	_, sdev := meanStd(fd)
	f := sensor.Frame{Width: side, Height: side, Pix: make([]byte, side*side), Gain: gain, Exposure: 10 * time.Millisecond}
	for i, v := range fd {
		g := grey + 2*(float64(i%side)/float64(side)-0.5) + 2*(float64(i/side)/float64(side)-0.5)
		f.Pix[i] = uint8(max(0, min(255, math.Round(g+float64(v)/sdev*math.Sqrt(model.Variance(g, gain))))))
	}
	return f
}

// TestNoiseMeterRecoversTheModel: pairs of flat-field frames over a range
// of grey levels, rendered with a known noise model, give it back; and a
// scene too narrow in grey, too dark or moving between the frames of a
// pair is refused with the reason.
func TestNoiseMeterRecoversTheModel(t *testing.T) {
	greys := []float64{15, 40, 80, 130, 190, 235}
	for _, tc := range []struct {
		name  string
		model NoiseModel
		gain  float64
	}{
		{"no crosstalk", NoiseModel{Read: 0.8, Shot: 0.004, Corr: 0}, 1},
		{"the simulator's parameters", DefaultNoise, 1},
		{"a noisier camera at gain 3", NoiseModel{Read: 1.5, Shot: 0.01, Corr: 0.3}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var m NoiseMeter
			for _, g := range greys {
				for range 4 {
					a, b := flatField(t, r, 256, g, tc.model, tc.gain), flatField(t, r, 256, g, tc.model, tc.gain)
					if err := m.AddPair(&a, &b); err != nil {
						t.Fatal(err)
					}
				}
			}
			fit := fitted(t, &m)
			readAndShotWithin5(t, fit.Model, tc.model)
			// What the texture cue uses of Corr is the share of the
			// noise's power in its band.
			if got, want := bandShare(fit.Model.Corr), bandShare(tc.model.Corr); math.Abs(got-want) > 0.03*want {
				t.Errorf("corr: measured %.3f (band share %.3f), rendered %.3f (%.3f)", fit.Model.Corr, got, tc.model.Corr, want)
			}
			if fit.Gain != tc.gain || fit.Pairs != 4*len(greys) {
				t.Errorf("gain %g and %d pairs, want %g and %d", fit.Gain, fit.Pairs, tc.gain, 4*len(greys))
			}
		})
	}
	refused := func(t *testing.T, m *NoiseMeter, want string) {
		t.Helper()
		fit, err := m.Fit()
		if err == nil {
			t.Fatalf("fitted %+v", fit)
		}
		t.Log(err)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Run("one grey level does not tell read from shot noise", func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		var m NoiseMeter
		for range 8 {
			a, b := flatField(t, r, 256, 100, DefaultNoise, 1), flatField(t, r, 256, 100, DefaultNoise, 1)
			if err := m.AddPair(&a, &b); err != nil {
				t.Fatal(err)
			}
		}
		refused(t, &m, "grey levels")
	})
	t.Run("a black scene leaves no usable tile", func(t *testing.T) {
		var m NoiseMeter
		a := sensor.Frame{Width: 64, Height: 64, Pix: make([]byte, 64*64)}
		b := a
		b.Pix = make([]byte, 64*64)
		if err := m.AddPair(&a, &b); err != nil {
			t.Fatal(err)
		}
		refused(t, &m, "usable tiles")
	})
	moving := func(t *testing.T, share int) (NoiseFit, error) {
		r := rand.New(rand.NewPCG(5, 6))
		var m NoiseMeter
		for i, g := range []float64{20, 60, 120, 200, 20, 60, 120, 200} {
			a, b := flatField(t, r, 256, g, DefaultNoise, 1), flatField(t, r, 256, g, DefaultNoise, 1)
			// Part of the second frame shows something else, with its
			// own detail: a hand came in.
			for j := range b.Pix[:len(b.Pix)*share/100] {
				b.Pix[j] = uint8(20 + (j*7+i*13)%200)
			}
			if err := m.AddPair(&a, &b); err != nil {
				t.Fatal(err)
			}
		}
		return m.Fit()
	}
	t.Run("what moved in a third of the frame is left out", func(t *testing.T) {
		fit, err := moving(t, 33)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", fit)
		if fit.Outliers < fit.Tiles/3 {
			t.Errorf("%d tiles left out, %d kept: want the moved third left out", fit.Outliers, fit.Tiles)
		}
		readAndShotWithin5(t, fit.Model, DefaultNoise)
	})
	t.Run("a scene that moved in most of the frame", func(t *testing.T) {
		fit, err := moving(t, 75)
		if err == nil || !strings.Contains(err.Error(), "must not move") {
			t.Fatalf("fit %+v, error %v: want the scene refused as moving", fit, err)
		}
		t.Log(err)
	})
}

// fitted returns m's fit, failing the test without one.
func fitted(t *testing.T, m *NoiseMeter) NoiseFit {
	t.Helper()
	fit, err := m.Fit()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", fit)
	return fit
}

// readAndShotWithin5 checks a measured model's read and shot noise against
// the rendered one's, to 5 %.
func readAndShotWithin5(t *testing.T, got, want NoiseModel) {
	t.Helper()
	if math.Abs(got.Read-want.Read) > 0.05*want.Read || math.Abs(got.Shot-want.Shot) > 0.05*want.Shot {
		t.Errorf("measured read %.4g and shot %.4g, rendered %.4g and %.4g", got.Read, got.Shot, want.Read, want.Shot)
	}
}

// TestNoiseMeterRefusesWhatIsNotAPair: frames of different sizes,
// exposures or gains, or a gain other than the meter's pairs', are not a
// pair.
func TestNoiseMeterRefusesWhatIsNotAPair(t *testing.T) {
	frame := func(w, h int, exp time.Duration, gain float64) *sensor.Frame {
		return &sensor.Frame{Width: w, Height: h, Pix: make([]byte, w*h), Exposure: exp, Gain: gain}
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		a, b *sensor.Frame
	}{
		{"sizes differ", frame(64, 64, ms, 1), frame(64, 48, ms, 1)},
		{"exposures differ", frame(64, 64, ms, 1), frame(64, 64, 2*ms, 1)},
		{"gains differ", frame(64, 64, ms, 1), frame(64, 64, ms, 2)},
		{"smaller than a tile", frame(8, 8, ms, 1), frame(8, 8, ms, 1)},
		{"short of pixels", &sensor.Frame{Width: 64, Height: 64, Pix: make([]byte, 10)}, frame(64, 64, 0, 0)},
		{"another gain than the meter's", frame(64, 64, ms, 4), frame(64, 64, ms, 4)},
		{"an infinite gain", frame(64, 64, ms, math.Inf(1)), frame(64, 64, ms, math.Inf(1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m NoiseMeter
			if err := m.AddPair(frame(64, 64, ms, 1), frame(64, 64, ms, 1)); err != nil {
				t.Fatal(err)
			}
			err := m.AddPair(tc.a, tc.b)
			if !errors.Is(err, ErrNoisePair) {
				t.Fatalf("AddPair: %v, want ErrNoisePair", err)
			}
			t.Log(err)
		})
	}
}

// TestNoiseMeterMeasuresTheSimulatedCamera: pairs of frames of the
// simulator's empty box, lit, over a range of exposures give back the
// noise it renders. Its read and shot noise are DefaultNoise's; its
// crosstalk is a 5-tap sampled Gaussian of σ 0.55 px, which passes less
// power at the texture band than noiseSpectrum's continuous Gaussian of
// that width: the same share as a continuous one of 0.43 px.
func TestNoiseMeterMeasuresTheSimulatedCamera(t *testing.T) {
	for _, gain := range []float64{1, 2} {
		t.Run(fmt.Sprintf("gain %g", gain), func(t *testing.T) {
			s := simtest.Start(t, sim.Config{Scenario: &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 1000}}}, Seed: 3})
			if err := s.Illuminator.On(100); err != nil {
				t.Fatal(err)
			}
			if err := s.Camera.SetGain(gain); err != nil {
				t.Fatal(err)
			}
			var m NoiseMeter
			for _, k := range []time.Duration{1, 2, 4, 8} {
				if err := s.Camera.SetExposure(k * sim.NominalExposure); err != nil {
					t.Fatal(err)
				}
				for range 3 {
					a, err := s.Camera.NextFrame(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					b, err := s.Camera.NextFrame(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					if err := m.AddPair(&a, &b); err != nil {
						t.Fatal(err)
					}
				}
			}
			fit := fitted(t, &m)
			readAndShotWithin5(t, fit.Model, DefaultNoise)
			if fit.Model.Corr < 0.38 || fit.Model.Corr > 0.48 {
				t.Errorf("corr %.3f, want 0.43 ± 0.05", fit.Model.Corr)
			}
		})
	}
}

// FuzzNoiseMeter: whatever a camera delivers — any size, any bytes, any
// exposure and gain — the meter takes it or refuses it with an error, and
// a model it fits is one the detector can use, with finite figures.
func FuzzNoiseMeter(f *testing.F) {
	f.Add(uint8(64), uint8(64), []byte{10, 200, 30}, int64(1000), 1.0, 1.0)
	f.Add(uint8(16), uint8(17), []byte{0, 255}, int64(0), 0.0, 2.0)
	f.Fuzz(func(t *testing.T, w, h uint8, pix []byte, exposure int64, gainA, gainB float64) {
		frame := func(salt int, gain float64) *sensor.Frame {
			fr := &sensor.Frame{Width: int(w), Height: int(h), Exposure: time.Duration(exposure), Gain: gain}
			if len(pix) > 0 {
				fr.Pix = make([]byte, int(w)*int(h))
				for i := range fr.Pix {
					fr.Pix[i] = pix[(i*(salt+1))%len(pix)] + byte(i*salt)
				}
			}
			return fr
		}
		var m NoiseMeter
		for k := range 3 {
			_ = m.AddPair(frame(2*k, gainA), frame(2*k+1, gainB))
		}
		fit, err := m.Fit()
		if err != nil {
			return
		}
		if err := fit.Model.Check(); err != nil {
			t.Errorf("fitted %+v: %v", fit, err)
		}
		for _, v := range []float64{fit.MinGrey, fit.MaxGrey, fit.ReadRelError, fit.ShotRelError, fit.Gain} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("fitted %+v: not finite", fit)
			}
		}
	})
}

// TestNoiseMeterForgets: Forget wipes the tiles' grey levels (a coarse
// picture of the scene) and leaves an empty meter.
func TestNoiseMeterForgets(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var m NoiseMeter
	a, b := flatField(t, r, 128, 90, DefaultNoise, 1), flatField(t, r, 128, 90, DefaultNoise, 1)
	if err := m.AddPair(&a, &b); err != nil {
		t.Fatal(err)
	}
	tiles := m.tiles[:cap(m.tiles)]
	m.Forget()
	for i, tile := range tiles {
		if tile != (noiseTile{}) {
			t.Fatalf("tile %d kept %+v", i, tile)
		}
	}
	if len(m.tiles) != 0 || len(m.blocks) != 0 || m.pairs != 0 {
		t.Errorf("meter not empty: %d tiles, %d blocks, %d pairs", len(m.tiles), len(m.blocks), m.pairs)
	}
	if _, err := m.Fit(); err == nil {
		t.Error("an emptied meter fitted a model")
	}
}
