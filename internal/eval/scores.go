package eval

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/palmd/palmd/sensor/sim"
)

// Score is one compared pair: the file names, whether both images are of
// one person, whether they come from different sessions, and the distance.
// It carries no biometric content.
type Score struct {
	A, B    string
	Genuine bool
	Cross   bool
	Score   float64
}

// scoresHeader is the first line of a scores CSV file; a row of kind "fte"
// names an image that failed to extract (its reason in the score column).
var scoresHeader = []string{"a", "b", "kind", "cross", "score"}

// WriteScores writes pairs as CSV (a, b, kind, cross, score) followed by
// one "fte" row per image that failed to extract.
func WriteScores(w io.Writer, pairs []Score, failed []Image) error {
	c := csv.NewWriter(w)
	_ = c.Write(scoresHeader)
	for _, p := range pairs {
		kind := "impostor"
		if p.Genuine {
			kind = "genuine"
		}
		_ = c.Write([]string{p.A, p.B, kind, strconv.FormatBool(p.Cross), strconv.FormatFloat(p.Score, 'f', 6, 64)})
	}
	for _, f := range failed {
		_ = c.Write([]string{f.File, "", "fte", "", f.Gate})
	}
	c.Flush()
	return c.Error()
}

// ScoreSet is what a scores CSV file holds.
type ScoreSet struct {
	Pairs []Score
	// Failed names the images that failed to extract.
	Failed []string
}

// ReadScores reads a scores CSV file as WriteScores (or the calibration
// scorer) writes it.
func ReadScores(r io.Reader) (*ScoreSet, error) {
	c := csv.NewReader(r)
	c.FieldsPerRecord = len(scoresHeader)
	head, err := c.Read()
	if err != nil {
		return nil, fmt.Errorf("eval: scores: %w", err)
	}
	if !slices.Equal(head, scoresHeader) {
		return nil, fmt.Errorf("eval: scores: header %q, want %q", head, scoresHeader)
	}
	set := &ScoreSet{}
	for line := 2; ; line++ {
		rec, err := c.Read()
		if errors.Is(err, io.EOF) {
			return set, nil
		}
		if err != nil {
			return nil, fmt.Errorf("eval: scores: %w", err)
		}
		switch rec[2] {
		case "fte":
			set.Failed = append(set.Failed, rec[0])
			continue
		case "genuine", "impostor":
		default:
			return nil, fmt.Errorf("eval: scores line %d: kind %q is not genuine, impostor or fte", line, rec[2])
		}
		s, err := strconv.ParseFloat(rec[4], 64)
		if err != nil || math.IsNaN(s) || s < 0 || s > 1 {
			return nil, fmt.Errorf("eval: scores line %d: score %q is not a distance in [0, 1]", line, rec[4])
		}
		set.Pairs = append(set.Pairs, Score{A: rec[0], B: rec[1], Genuine: rec[2] == "genuine", Cross: rec[3] == "true", Score: s})
	}
}

// Summary condenses a set of scores into the figures recognition is judged
// by. Same and Cross split the genuine pairs by session, when the set says
// which session each image is from.
type Summary struct {
	Images   int     `json:"images"`
	FTE      float64 `json:"failure_to_extract"`
	All      Rates   `json:"all"`
	Same     *Rates  `json:"same_session,omitempty"`
	Cross    *Rates  `json:"cross_session,omitempty"`
	Impostor int     `json:"impostor_pairs"`
	ImpMean  float64 `json:"impostor_mean"`
	ImpStd   float64 `json:"impostor_std"`
	// ImpMin is the lowest impostor distance, ImpMinSigma how many
	// impostor standard deviations it lies below their mean, and
	// BeyondSixSigma how many impostor pairs lie more than 6σ below it.
	ImpMin         float64 `json:"impostor_min"`
	ImpMinSigma    float64 `json:"impostor_min_sigma"`
	BeyondSixSigma int     `json:"impostor_beyond_6_sigma"`
	// Quantiles of the impostor distances (share of pairs → distance).
	ImpQuantiles map[string]float64 `json:"impostor_quantiles"`
}

// Summarise computes the figures of a score set from images images.
func (s *ScoreSet) Summarise(images int) Summary {
	var gen, same, cross, imp []float64
	for _, p := range s.Pairs {
		switch {
		case !p.Genuine:
			imp = append(imp, p.Score)
		case p.Cross:
			gen, cross = append(gen, p.Score), append(cross, p.Score)
		default:
			gen, same = append(gen, p.Score), append(same, p.Score)
		}
	}
	return summarise(images, len(s.Failed), gen, same, cross, imp)
}

func summarise(images, failed int, gen, same, cross, imp []float64) Summary {
	sum := Summary{Images: images, Impostor: len(imp), ImpQuantiles: map[string]float64{}}
	if images > 0 {
		sum.FTE = float64(failed) / float64(images)
	}
	imp = slices.Clone(imp)
	slices.Sort(imp)
	sum.ImpMean, sum.ImpStd = sim.MeanStd(imp)
	sum.All = rates(gen, imp)
	if len(same) > 0 && len(cross) > 0 {
		s, c := rates(same, imp), rates(cross, imp)
		sum.Same, sum.Cross = &s, &c
	}
	if len(imp) > 0 {
		sum.ImpMin = imp[0]
		if sum.ImpStd > 0 {
			sum.ImpMinSigma = (sum.ImpMean - imp[0]) / sum.ImpStd
		}
		cut := sum.ImpMean - 6*sum.ImpStd
		for _, v := range imp {
			if v >= cut {
				break
			}
			sum.BeyondSixSigma++
		}
		for _, q := range farTargets {
			if k := int(q * float64(len(imp))); k >= 1 {
				sum.ImpQuantiles[fmt.Sprintf("%g", q)] = imp[k]
			}
		}
		sum.ImpQuantiles["0.5"] = imp[len(imp)/2]
	}
	return sum
}
