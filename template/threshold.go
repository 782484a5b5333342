package template

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ImpostorModel describes how the distances between templates of different
// people are distributed, so that a match threshold can be chosen for a
// false-accept rate (FAR) far below what any test set can measure.
//
// The body of the distribution is that of a binomial: a distance is the
// share of disagreeing bits among DegreesOfFreedom independent ones, each
// disagreeing with probability Mean (Daugman's model for iris codes); its
// spread gives the degrees of freedom, DoF = p(1 − p)/σ². The lower tail is
// heavier than the binomial predicts — people share the coarse layout of
// their principal palm lines and the relief of their palms, and Compare
// keeps the best of many alignments — so below TailStart the model follows
// the measured tail instead: an exponential (a generalised Pareto tail of
// shape 0, fitted by peaks over threshold) falling from TailFAR at TailStart
// with scale TailScale. FAR(t) is the larger of the two, so the model is
// never more optimistic than either.
type ImpostorModel struct {
	// Algorithm is the AlgorithmVersion the model was fitted for.
	Algorithm int `json:"algorithm"`
	// Source says what the model was fitted to.
	Source string `json:"source"`
	// Pairs is the number of impostor pairs fitted.
	Pairs            int     `json:"pairs"`
	Mean             float64 `json:"mean"`
	Std              float64 `json:"std"`
	DegreesOfFreedom float64 `json:"degrees_of_freedom"`
	TailStart        float64 `json:"tail_start"`
	TailFAR          float64 `json:"tail_far"`
	TailScale        float64 `json:"tail_scale"`
	// Min is the lowest impostor distance seen.
	Min float64 `json:"min"`
}

// TailQuantile is where the fitted tail starts: the impostor distance below
// which this share of pairs lies.
const TailQuantile = 1e-3

// minTailPairs is the least number of pairs below TailStart that a tail can
// be fitted to.
const minTailPairs = 20

// FitImpostorModel fits the model to impostor distances (any order; the
// slice is not modified).
func FitImpostorModel(scores []float64, source string) (ImpostorModel, error) {
	n := len(scores)
	if n < minTailPairs/TailQuantile {
		return ImpostorModel{}, fmt.Errorf("template: %d impostor pairs are too few to fit a tail (need %d)", n, int(minTailPairs/TailQuantile))
	}
	s := slices.Clone(scores)
	slices.Sort(s)
	var sum, sq float64
	for _, v := range s {
		sum += v
	}
	mean := sum / float64(n)
	for _, v := range s {
		sq += (v - mean) * (v - mean)
	}
	std := math.Sqrt(sq / float64(n))
	if std == 0 || mean <= 0 || mean >= 1 {
		return ImpostorModel{}, errors.New("template: impostor distances have no spread")
	}
	k := int(TailQuantile * float64(n))
	u := s[k]
	// Maximum-likelihood scale of an exponential tail: the mean excess
	// below the threshold.
	var excess float64
	for _, v := range s[:k] {
		excess += u - v
	}
	scale := excess / float64(k)
	return ImpostorModel{
		Algorithm: AlgorithmVersion, Source: source, Pairs: n,
		Mean: mean, Std: std, DegreesOfFreedom: mean * (1 - mean) / (std * std),
		TailStart: u, TailFAR: float64(k) / float64(n), TailScale: scale, Min: s[0],
	}, nil
}

// Validate reports whether the model can be used.
func (m ImpostorModel) Validate() error {
	switch {
	case m.Mean <= 0 || m.Mean >= 1 || m.Std <= 0 || m.DegreesOfFreedom <= 0:
		return fmt.Errorf("template: impostor model body (mean %v, std %v) unusable", m.Mean, m.Std)
	case m.TailScale <= 0 || m.TailFAR <= 0 || m.TailFAR >= 1 || m.TailStart <= 0 || m.TailStart >= m.Mean:
		return fmt.Errorf("template: impostor model tail (start %v, FAR %v, scale %v) unusable", m.TailStart, m.TailFAR, m.TailScale)
	}
	return nil
}

// FAR is the modelled share of impostor pairs at distance ≤ t.
func (m ImpostorModel) FAR(t float64) float64 {
	body := normalCDF((t - m.Mean) / m.Std)
	if t >= m.TailStart {
		return max(body, m.TailFAR)
	}
	return max(body, m.TailFAR*math.Exp(-(m.TailStart-t)/m.TailScale))
}

// Threshold returns the largest distance whose modelled FAR is at most
// far, and whether it lies below TailStart (extrapolated by the tail
// rather than measured).
func (m ImpostorModel) Threshold(far float64) (t float64, extrapolated bool) {
	if far >= m.TailFAR {
		// Inside the measured body: invert the normal, but never past
		// the fitted tail continued upward (a heavy tail adds mass there
		// that the normal does not have).
		return min(m.Mean+m.Std*normalQuantile(far), m.TailStart+m.TailScale*math.Log(far/m.TailFAR)), false
	}
	tail := m.TailStart - m.TailScale*math.Log(m.TailFAR/far)
	return min(tail, m.Mean+m.Std*normalQuantile(far)), true
}

func normalCDF(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }

// normalQuantile inverts normalCDF.
func normalQuantile(p float64) float64 { return -math.Sqrt2 * math.Erfcinv(2*p) }

//go:embed impostor_model.json
var defaultModelJSON []byte

// DefaultImpostorModel returns the impostor model fitted, for this
// AlgorithmVersion, to the reference set named in its Source (see the
// README, "Choosing the threshold").
func DefaultImpostorModel() (ImpostorModel, error) {
	var m ImpostorModel
	if err := json.Unmarshal(defaultModelJSON, &m); err != nil {
		return m, fmt.Errorf("template: built-in impostor model: %w", err)
	}
	if m.Algorithm != AlgorithmVersion {
		return m, fmt.Errorf("template: built-in impostor model is for algorithm %d, not %d", m.Algorithm, AlgorithmVersion)
	}
	return m, m.Validate()
}
