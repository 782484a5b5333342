package liveness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// CalibrationFile is a calibration measured on a terminal model's own bona
// fide presentations, with the threshold chosen on them: what palmctl eval
// --pad --calibrate --calibration-out writes and palmd's
// liveness.calibration_file reads. The cues' medians and spreads are
// measured; each cue's direction, scale and floor (Norm's High, Log, Tail,
// MinSpread) are the detector's definition of the cue, taken from
// DefaultCalibration, never from the file. A threshold belongs to the
// calibration it was chosen on, so the file carries both.
type CalibrationFile struct {
	// Calibration holds a Norm for every cue of Cues and DerivedCues.
	Calibration Calibration
	// Threshold on the fused score for these norms.
	Threshold float64
	// Presentations is how many bona fide presentations it was measured
	// on (at least MinCalibrationPresentations).
	Presentations int
	// Noise is the camera noise model the presentations' print_texture
	// was measured against (the terminal's liveness.noise, or
	// DefaultNoise): a detector measuring against another model would
	// read print_texture on another scale than these norms. Zero when the
	// cues did not record it (files saved before they did).
	Noise NoiseModel
}

// Bounds of a calibration file.
const (
	// MinCalibrationPresentations is the fewest bona fide presentations a
	// calibration may rest on; a threshold for BPCER ≤ 1 % with 95 %
	// confidence needs 299 (none of them refused), and palmctl writes no
	// file from fewer.
	MinCalibrationPresentations = 20
	// MaxCalibrationFileBytes bounds what ParseCalibrationFile reads.
	MaxCalibrationFileBytes = 64 << 10
	// MaxThreshold bounds a threshold (config's liveness.threshold too).
	MaxThreshold       = 100
	calibrationVersion = 1
	// maxNormMagnitude bounds a median or spread: the raw cues are ratios,
	// logarithms and shares of order 1.
	maxNormMagnitude = 1e6
)

// calibrationJSON is the file's form.
type calibrationJSON struct {
	Version       int              `json:"version"`
	Presentations int              `json:"presentations"`
	Threshold     float64          `json:"threshold"`
	Noise         *noiseJSON       `json:"noise,omitempty"`
	Cues          map[Cue]normJSON `json:"cues"`
}

type noiseJSON struct {
	Read float64 `json:"read"`
	Shot float64 `json:"shot"`
	Corr float64 `json:"corr"`
}

type normJSON struct {
	Median float64 `json:"median"`
	Spread float64 `json:"spread"`
}

// Marshal encodes f as the file palmd reads (indented JSON, cues by
// name).
func (f CalibrationFile) Marshal() ([]byte, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	j := calibrationJSON{Version: calibrationVersion, Presentations: f.Presentations, Threshold: f.Threshold, Cues: map[Cue]normJSON{}}
	if f.Noise != (NoiseModel{}) {
		j.Noise = &noiseJSON{Read: f.Noise.Read, Shot: f.Noise.Shot, Corr: f.Noise.Corr}
	}
	for _, c := range normed() {
		n := f.Calibration[c]
		j.Cues[c] = normJSON{Median: n.Median, Spread: n.Spread}
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("liveness: calibration file: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseCalibrationFile decodes and checks a calibration file: version 1,
// every cue of Cues and DerivedCues and no other, finite medians,
// positive finite spreads (zero allowed only for a cue with a MinSpread),
// a threshold in (0, MaxThreshold], at least MinCalibrationPresentations
// presentations, and a noise model, when the file records one, within
// NoiseModel.Check's bounds.
// A file that fails any check is refused whole: norms measured on
// one camera and a threshold chosen on another do not mix.
func ParseCalibrationFile(data []byte) (CalibrationFile, error) {
	if len(data) > MaxCalibrationFileBytes {
		return CalibrationFile{}, fmt.Errorf("liveness: calibration file: %d bytes, more than %d", len(data), MaxCalibrationFileBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j calibrationJSON
	if err := dec.Decode(&j); err != nil {
		return CalibrationFile{}, fmt.Errorf("liveness: calibration file: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return CalibrationFile{}, errors.New("liveness: calibration file: data after the JSON object")
	}
	if j.Version != calibrationVersion {
		return CalibrationFile{}, fmt.Errorf("liveness: calibration file: version %d, want %d", j.Version, calibrationVersion)
	}
	def := DefaultCalibration()
	f := CalibrationFile{Calibration: Calibration{}, Threshold: j.Threshold, Presentations: j.Presentations}
	if j.Noise != nil {
		f.Noise = NoiseModel{Read: j.Noise.Read, Shot: j.Noise.Shot, Corr: j.Noise.Corr}
		if f.Noise == (NoiseModel{}) {
			return CalibrationFile{}, errors.New("liveness: calibration file: noise given but all zero")
		}
	}
	for c, n := range j.Cues {
		d, ok := def[c]
		if !ok {
			return CalibrationFile{}, fmt.Errorf("liveness: calibration file: unknown cue %q", c)
		}
		d.Median, d.Spread = n.Median, n.Spread
		f.Calibration[c] = d
	}
	if err := f.validate(); err != nil {
		return CalibrationFile{}, err
	}
	return f, nil
}

// validate checks f as ParseCalibrationFile documents.
func (f CalibrationFile) validate() error {
	if f.Presentations < MinCalibrationPresentations {
		return fmt.Errorf("liveness: calibration file: %d presentations, fewer than %d", f.Presentations, MinCalibrationPresentations)
	}
	if !(f.Threshold > 0 && f.Threshold <= MaxThreshold) { // also refuses NaN
		return fmt.Errorf("liveness: calibration file: threshold %v outside (0, %d]", f.Threshold, MaxThreshold)
	}
	if f.Noise != (NoiseModel{}) {
		if err := f.Noise.Check(); err != nil {
			return fmt.Errorf("liveness: calibration file: noise: %w", err)
		}
	}
	for c := range f.Calibration {
		if !slices.Contains(normed(), c) {
			return fmt.Errorf("liveness: calibration file: unknown cue %q", c)
		}
	}
	for _, c := range normed() {
		n, ok := f.Calibration[c]
		switch {
		case !ok:
			return fmt.Errorf("liveness: calibration file: cue %s missing", c)
		case !finite(n.Median) || math.Abs(n.Median) > maxNormMagnitude:
			return fmt.Errorf("liveness: calibration file: cue %s: median %v not a finite value within ±%g", c, n.Median, maxNormMagnitude)
		case !finite(n.Spread) || n.Spread < 0 || n.Spread > maxNormMagnitude:
			return fmt.Errorf("liveness: calibration file: cue %s: spread %v outside [0, %g]", c, n.Spread, maxNormMagnitude)
		case n.Spread == 0 && n.MinSpread <= 0:
			return fmt.Errorf("liveness: calibration file: cue %s: spread 0 (its living values do not vary: too few or identical presentations)", c)
		}
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// normed lists the cues a calibration holds a Norm for: the measured ones
// and the derived ones.
func normed() []Cue { return append(slices.Clone(Cues), DerivedCues...) }
