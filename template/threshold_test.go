package template

import (
	"math"
	"math/rand/v2"
	"testing"
)

// impostorScores draws n binomial-like distances around mean with spread sd,
// plus a heavier tail: share tail of them exponentially below the body.
func impostorScores(n int, mean, sd, tail float64) []float64 {
	r := rand.New(rand.NewPCG(1, 2))
	s := make([]float64, n)
	for i := range s {
		s[i] = mean + sd*r.NormFloat64()
		if r.Float64() < tail {
			s[i] = mean - 3*sd - r.ExpFloat64()*0.02
		}
	}
	return s
}

func TestImpostorModel(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail float64
	}{
		{"binomial only", 0},
		{"heavy tail", 0.002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scores := impostorScores(200000, 0.457, 0.015, tc.tail)
			m, err := FitImpostorModel(scores, "test")
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			if math.Abs(m.Mean-0.457) > 0.002 {
				t.Errorf("mean %v", m.Mean)
			}
			// Where the set can measure it, the model agrees with the
			// empirical FAR within a factor of two.
			for _, far := range []float64{1e-2, 1e-3} {
				thr, extrapolated := m.Threshold(far)
				if extrapolated {
					t.Errorf("FAR %g: extrapolated, want measured", far)
				}
				n := 0
				for _, s := range scores {
					if s <= thr {
						n++
					}
				}
				if got := float64(n) / float64(len(scores)); got < far/2 || got > far*2 {
					t.Errorf("FAR %g: threshold %.4f admits %g of impostors", far, thr, got)
				}
			}
			// Thresholds fall with the FAR, and invert FAR().
			prev := 1.0
			for _, far := range []float64{1e-4, 1e-5, 1e-6, 1e-8} {
				thr, extrapolated := m.Threshold(far)
				if !extrapolated || thr >= prev {
					t.Errorf("FAR %g: threshold %.4f (extrapolated %v), previous %.4f", far, thr, extrapolated, prev)
				}
				if got := m.FAR(thr); got > far*1.0001 {
					t.Errorf("FAR(Threshold(%g)) = %g", far, got)
				}
				prev = thr
			}
		})
	}
	t.Run("a heavier tail lowers the threshold", func(t *testing.T) {
		light, _ := FitImpostorModel(impostorScores(200000, 0.457, 0.015, 0), "")
		heavy, _ := FitImpostorModel(impostorScores(200000, 0.457, 0.015, 0.002), "")
		tl, _ := light.Threshold(1e-6)
		th, _ := heavy.Threshold(1e-6)
		if th >= tl {
			t.Errorf("threshold at 1e-6: heavy tail %.4f, light %.4f", th, tl)
		}
	})
	t.Run("too few pairs", func(t *testing.T) {
		if _, err := FitImpostorModel(impostorScores(1000, 0.457, 0.015, 0), ""); err == nil {
			t.Error("fitted a tail to 1000 pairs")
		}
	})
}

func TestDefaultImpostorModel(t *testing.T) {
	m, err := DefaultImpostorModel()
	if err != nil {
		t.Fatal(err)
	}
	thr, extrapolated := m.Threshold(1e-6)
	// The default threshold must sit between the genuine and impostor
	// distributions of the calibrated set, never above the binomial's
	// prediction.
	if !extrapolated || thr < 0.25 || thr > m.TailStart {
		t.Errorf("threshold at FAR 1e-6 = %.4f (extrapolated %v)", thr, extrapolated)
	}
	if binomial := m.Mean + m.Std*normalQuantile(1e-6); thr > binomial {
		t.Errorf("threshold %.4f above the binomial body's %.4f", thr, binomial)
	}
}
