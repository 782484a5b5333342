package eval

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/palmd/palmd/internal/dataset"
)

// PoseDependence is how genuine distances depend on the pose difference
// between the two captures: on real palms they grow with it, because a
// hand moved further changes its skin further; a simulator whose pose
// changes are rigid in-plane moves that the ROI undoes shows none.
type PoseDependence struct {
	// Pairs is the number of genuine pairs with a known pose for both.
	Pairs int `json:"pairs"`
	// Rotation, Scale, Shift are the correlations of the genuine distance
	// with the rotation difference (degrees), the scale difference (|log|
	// of the ROI sides' ratio) and the shift (ROI centres apart, share of
	// the frame's width).
	Rotation float64 `json:"corr_rotation"`
	Scale    float64 `json:"corr_scale"`
	Shift    float64 `json:"corr_shift"`
	// Failing and Passing are the median differences (degrees, per cent,
	// per cent of the frame's width) of pairs above and within Threshold.
	Threshold float64    `json:"threshold"`
	Failing   [3]float64 `json:"failing_median"`
	Passing   [3]float64 `json:"passing_median"`
}

// RealPoseDependence is the same measurement on the real captures of
// RealPalms (at recognition-v1's shipped threshold, 0.34).
var RealPoseDependence = PoseDependence{
	Pairs: 1495, Rotation: 0.28, Scale: 0.30, Shift: 0.30, Threshold: 0.34,
	Failing: [3]float64{7, 5.3, 7.6}, Passing: [3]float64{4, 3.2, 5.2},
}

// MeasurePoseDependence relates the genuine pairs' scores to the true ROI
// poses in the manifest of the synthetic set they came from (pairs above
// threshold count as failing). It errors when fewer than 10 genuine pairs
// have both poses.
func MeasurePoseDependence(set *ScoreSet, m *dataset.Manifest, threshold float64) (PoseDependence, error) {
	if m.Width <= 0 {
		return PoseDependence{}, fmt.Errorf("eval: manifest without a frame width")
	}
	type pose struct{ angle, side, x, y float64 }
	poses := map[string]pose{}
	for _, e := range m.Images {
		c := e.Truth.ROI
		ux, uy := c[1][0]-c[0][0], c[1][1]-c[0][1]
		side := math.Hypot(ux, uy)
		if !e.Truth.Hand || side == 0 {
			continue
		}
		poses[e.File] = pose{math.Atan2(uy, ux), side, (c[0][0] + c[2][0]) / 2, (c[0][1] + c[2][1]) / 2}
	}
	var score, rot, scale, shift []float64
	for _, p := range set.Pairs {
		a, okA := poses[p.A]
		b, okB := poses[p.B]
		if !p.Genuine || !okA || !okB {
			continue
		}
		score = append(score, p.Score)
		rot = append(rot, math.Abs(math.Remainder(a.angle-b.angle, 2*math.Pi))*180/math.Pi)
		scale = append(scale, 100*math.Abs(math.Log(a.side/b.side)))
		shift = append(shift, 100*math.Hypot(a.x-b.x, a.y-b.y)/float64(m.Width))
	}
	d := PoseDependence{Pairs: len(score), Threshold: threshold}
	if len(score) < 10 {
		return d, fmt.Errorf("eval: %d genuine pairs with known poses; need 10", len(score))
	}
	d.Rotation, d.Scale, d.Shift = correlation(score, rot), correlation(score, scale), correlation(score, shift)
	for k, diff := range [][]float64{rot, scale, shift} {
		var fail, pass []float64
		for i, s := range score {
			if s > threshold {
				fail = append(fail, diff[i])
			} else {
				pass = append(pass, diff[i])
			}
		}
		d.Failing[k], d.Passing[k] = median(fail), median(pass)
	}
	return d, nil
}

// ReadManifest reads the manifest.json of a synthetic set in dir.
func ReadManifest(dir string) (*dataset.Manifest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	var m dataset.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("eval: %s: %w", filepath.Join(dir, "manifest.json"), err)
	}
	return &m, nil
}

// correlation is Pearson's r of x and y (NaN when either is constant).
func correlation(x, y []float64) float64 {
	n := float64(len(x))
	var mx, my float64
	for i := range x {
		mx, my = mx+x[i], my+y[i]
	}
	mx, my = mx/n, my/n
	var sxy, sxx, syy float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		sxy, sxx, syy = sxy+dx*dy, sxx+dx*dx, syy+dy*dy
	}
	return sxy / math.Sqrt(sxx*syy)
}

// WritePoseDependence prints the measurement beside the real one.
func WritePoseDependence(w io.Writer, d PoseDependence) error {
	r := RealPoseDependence
	_, err := fmt.Fprintf(w, `pose dependence of genuine distances (%d pairs; real palms in brackets)
  correlation with the rotation / scale / shift difference   %+.2f / %+.2f / %+.2f   (%+.2f / %+.2f / %+.2f)
  median differences of pairs above %.2f                      %.1f° / %.1f %% / %.1f %%   (%.0f° / %.1f %% / %.1f %%)
  median differences of pairs within it                       %.1f° / %.1f %% / %.1f %%   (%.0f° / %.1f %% / %.1f %%)
`, d.Pairs, d.Rotation, d.Scale, d.Shift, r.Rotation, r.Scale, r.Shift,
		d.Threshold, d.Failing[0], d.Failing[1], d.Failing[2], r.Failing[0], r.Failing[1], r.Failing[2],
		d.Passing[0], d.Passing[1], d.Passing[2], r.Passing[0], r.Passing[1], r.Passing[2])
	return err
}
