package imaging

import (
	"errors"
	"fmt"
	"image"
	"math"
	"slices"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/geom"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/template"
)

// Gate names a quality check a frame can fail.
type Gate int

// The gates, in the order Extract checks them.
const (
	GateOK            Gate = iota
	GateNoHand             // nothing bright enough in view
	GateTooFar             // hand too small: move closer
	GateTooClose           // hand too big: move away
	GateNotAHand           // an object without finger valleys at all
	GateFingersClosed      // a hand, but the valleys cannot be found
	GateOffCentre          // the palm ROI leaves the frame
	GateUnderexposed       // palm too dark
	GateOverexposed        // palm saturated
	GateBlurred            // out of focus or motion-blurred
	GateMoving             // the hand moves between frames (see Tracker)
	numGates
)

var gateNames = [...]string{"ok", "no_hand", "too_far", "too_close", "not_a_hand", "fingers_closed",
	"off_centre", "underexposed", "overexposed", "blurred", "moving"}

// String returns the gate's stable name, used in logs, metrics and eval
// reports.
func (g Gate) String() string {
	if g >= 0 && g < numGates {
		return gateNames[g]
	}
	return fmt.Sprintf("gate(%d)", int(g))
}

// FailureGates returns every gate a frame can fail (all but GateOK), in
// order: the label values of per-gate metrics.
func FailureGates() []Gate {
	gs := make([]Gate, 0, numGates-1)
	for g := GateOK + 1; g < numGates; g++ {
		gs = append(gs, g)
	}
	return gs
}

// Signal maps a failed gate to what the indicator tells the user.
func (g Gate) Signal() sensor.Signal {
	switch g {
	case GateOK:
		return sensor.SignalScanning
	case GateNoHand:
		return sensor.SignalIdle
	case GateTooFar, GateUnderexposed:
		return sensor.SignalMoveCloser
	case GateTooClose, GateOverexposed:
		return sensor.SignalMoveAway
	case GateFingersClosed:
		return sensor.SignalSpreadFingers
	case GateOffCentre:
		return sensor.SignalCenter
	case GateBlurred, GateMoving:
		return sensor.SignalHoldStill
	}
	return sensor.SignalRetry
}

// GateError reports the gate a frame failed and why.
type GateError struct {
	Gate Gate
	Err  error
}

func (e *GateError) Error() string { return fmt.Sprintf("%s: %v", e.Gate, e.Err) }
func (e *GateError) Unwrap() error { return e.Err }

// GateOf returns the gate an Extract error failed (GateOK for nil).
func GateOf(err error) Gate {
	if err == nil {
		return GateOK
	}
	var ge *GateError
	if errors.As(err, &ge) {
		return ge.Gate
	}
	return GateNotAHand
}

func gateErr(g Gate, format string, args ...any) error {
	return &GateError{Gate: g, Err: fmt.Errorf(format, args...)}
}

// Config holds the quality gates. Sizes are fractions of the frame width so
// that the gates mean the same at any resolution. The defaults are
// calibrated on the figures of real 940 nm captures (soft, dim frames):
// real palms average ≈100 grey with a Laplacian variance of only 3.5–6.4.
type Config struct {
	// MinLevel is the least grey a hand pixel can have; Otsu thresholds
	// below it mean there is no hand.
	MinLevel float32
	// MinPalmRadius and MaxPalmRadius bound the radius of the palm's
	// largest inscribed circle, as a fraction of frame width.
	MinPalmRadius, MaxPalmRadius float64
	// MinPalmMean and MaxSaturated are the exposure gates on the ROI.
	MinPalmMean, MaxSaturated float64
	// MinFocus is the least focus figure (see Quality.Focus).
	MinFocus float64
}

// DefaultConfig returns the calibrated gates.
func DefaultConfig() Config {
	return Config{
		MinLevel:      30,
		MinPalmRadius: 0.10,
		MaxPalmRadius: 0.24,
		MinPalmMean:   45,
		MaxSaturated:  0.02,
		MinFocus:      0.05,
	}
}

// Quality is what the gates measured on a frame.
type Quality struct {
	// PalmRadius is the inscribed palm radius as a fraction of frame width.
	PalmRadius float64
	// PalmMean is the mean grey of the ROI, Saturated its share ≥ 250.
	PalmMean, Saturated float64
	// Focus is the band-pass energy of the ROI (variance of a difference
	// of Gaussians, σ 1.2 and 2.5 px) divided by the squared mean grey,
	// ×10⁴. A raw Laplacian would measure sensor noise, which dominates it
	// on real NIR frames; the division ignores exposure. Sharp palms score
	// 0.1–0.3, 3 px of extra blur about 0.05.
	Focus float64
	// Score summarises the frame, 0–100; the best of a burst is the one
	// with the highest score.
	Score int
}

// Result is a successful extraction.
type Result struct {
	// Frame is the size of the frame the result came from.
	Frame     image.Point
	Landmarks Landmarks
	ROI       ROIGeometry
	Quality   Quality
	Template  template.Template
}

// maskLevels are the segmentation levels tried in turn, as a fraction of the
// way from the background's mean grey to the hand's.
var maskLevels = [...]float64{0.35, 0.6}

// Extractor runs the single-frame pipeline: segmentation, landmarks, ROI,
// gates and features. It reuses its buffers, so it is not safe for
// concurrent use; make one per goroutine and Close it.
type Extractor struct {
	cfg        Config
	vein, line gaborBank
	mats       [6]gocv.Mat
}

// NewExtractor returns an Extractor with gates cfg.
func NewExtractor(cfg Config) *Extractor {
	e := &Extractor{cfg: cfg, vein: veinBank(), line: lineBank()}
	for i := range e.mats {
		e.mats[i] = gocv.NewMat()
	}
	return e
}

// Close releases the Extractor's OpenCV buffers.
func (e *Extractor) Close() {
	e.vein.Close()
	e.line.Close()
	for i := range e.mats {
		e.mats[i].Close()
	}
}

func (e *Extractor) scratch(i int) *gocv.Mat { return &e.mats[i] }

// Extract runs the pipeline on one frame. On failure the error is a
// *GateError naming the gate (GateOf). If roiOut is not nil it receives the
// normalised 128×128 ROI (for evaluation tools; the daemon never asks).
func (e *Extractor) Extract(f *sensor.Frame, roiOut *gocv.Mat) (*Result, error) {
	return e.extract(f, roiOut, true)
}

// Assess runs the quality gates and places the ROI, as Extract does, but
// computes no template (Result.Template is empty): the daemon assesses
// every frame of a capture, checks liveness, and only then extracts the
// best frame's template.
func (e *Extractor) Assess(f *sensor.Frame) (*Result, error) {
	return e.extract(f, nil, false)
}

func (e *Extractor) extract(f *sensor.Frame, roiOut *gocv.Mat, features bool) (*Result, error) {
	src, err := frameMat(f)
	if err != nil {
		return nil, gateErr(GateNotAHand, "bad frame: %w", err)
	}
	w, h := f.Width, f.Height
	mask := gocv.NewMat()
	smooth := gocv.NewMat()
	// Every buffer that held the frame, the hand or its features is wiped
	// before OpenCV gets it back: freed memory is not cleared.
	defer func() {
		wipe(&src, &mask, &smooth)
		for i := range e.mats {
			wipe(&e.mats[i])
		}
		src.Close()
		mask.Close()
		smooth.Close()
	}()
	src.ConvertTo(&smooth, gocv.MatTypeCV32F)
	gocv.GaussianBlur(smooth, &smooth, image0, 1.5, 1.5, gocv.BorderReflect101)
	sd, err := smooth.DataPtrFloat32()
	if err != nil {
		return nil, fmt.Errorf("imaging: %w", err)
	}
	res := &Result{Frame: image.Pt(w, h)}
	var lm Landmarks
	// Segment at the normal level; when the valleys cannot be found, the
	// fingers may be held so close that the blurred gaps between them pass
	// the threshold: try again higher, which opens narrow gaps.
	for attempt, level := range maskLevels {
		area, err := handMask(src, &mask, e.cfg.MinLevel, level)
		if err != nil || float64(area) < 0.01*float64(w*h) {
			return nil, gateErr(GateNoHand, "no hand-sized bright object")
		}
		c, radius := palmCentre(mask)
		res.Quality.PalmRadius = radius / float64(w)
		switch {
		case res.Quality.PalmRadius < e.cfg.MinPalmRadius:
			return nil, gateErr(GateTooFar, "palm radius %.3f of frame width < %.3f", res.Quality.PalmRadius, e.cfg.MinPalmRadius)
		case res.Quality.PalmRadius > e.cfg.MaxPalmRadius:
			return nil, gateErr(GateTooClose, "palm radius %.3f of frame width > %.3f", res.Quality.PalmRadius, e.cfg.MaxPalmRadius)
		}
		cont, err := outline(mask)
		if err != nil {
			return nil, gateErr(GateNoHand, "no outline")
		}
		pts := make([]geom.Vec, len(cont))
		for i, p := range cont {
			pts[i] = ptOf(p)
		}
		lm, err = findLandmarks(pts, ptOf(c), radius, w, h, sd)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrFingersClosed) || attempt == len(maskLevels)-1 {
			if errors.Is(err, ErrFingersClosed) {
				return nil, &GateError{Gate: GateFingersClosed, Err: err}
			}
			return nil, &GateError{Gate: GateNotAHand, Err: err}
		}
	}
	res.Landmarks = lm
	if res.ROI, err = roiFrom(lm, mask); err != nil {
		return nil, &GateError{Gate: GateOffCentre, Err: err}
	}
	if err := res.ROI.checkInside(w, h); err != nil {
		return nil, &GateError{Gate: GateOffCentre, Err: err}
	}

	roi, cover := gocv.NewMat(), gocv.NewMat()
	defer func() {
		wipe(&roi, &cover)
		roi.Close()
		cover.Close()
	}()
	e.warpROI(src, &roi, res.ROI, gocv.InterpolationLinear)
	e.warpROI(mask, &cover, res.ROI, gocv.InterpolationNearestNeighbor)

	q := &res.Quality
	q.PalmMean, q.Saturated = exposure(roi, cover)
	switch {
	case q.Saturated > e.cfg.MaxSaturated:
		return nil, gateErr(GateOverexposed, "%.1f%% of the palm saturated", 100*q.Saturated)
	case q.PalmMean < e.cfg.MinPalmMean:
		return nil, gateErr(GateUnderexposed, "palm mean grey %.0f < %.0f", q.PalmMean, e.cfg.MinPalmMean)
	}
	q.Focus = e.focus(roi, q.PalmMean)
	if q.Focus < e.cfg.MinFocus {
		return nil, gateErr(GateBlurred, "focus %.2f < %.2f", q.Focus, e.cfg.MinFocus)
	}
	q.Score = qualityScore(*q, lm)
	if !features {
		return res, nil
	}
	res.Template.Version = template.AlgorithmVersion
	if err := e.features(roi, cover, &res.Template); err != nil {
		res.Template.Zero()
		return nil, err
	}
	res.Template.Quality = uint8(q.Score)
	if roiOut != nil {
		roi.CopyTo(roiOut)
	}
	return res, nil
}

// warpROI samples the ROI square of src into a ROISize×ROISize Mat, with
// the fingers up and the thumb to the right.
func (e *Extractor) warpROI(src gocv.Mat, dst *gocv.Mat, g ROIGeometry, interp gocv.InterpolationFlags) {
	k := g.Side / ROISize
	o := g.Centre.Sub(g.U.Mul(g.Side / 2)).Sub(g.N.Mul(g.Side / 2))
	m := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	defer m.Close()
	for i, v := range []float64{g.U.X * k, g.N.X * k, o.X, g.U.Y * k, g.N.Y * k, o.Y} {
		m.SetDoubleAt(i/3, i%3, v)
	}
	gocv.WarpAffineWithParams(src, dst, m, roiPoint, interp|gocv.WarpInverseMap, gocv.BorderConstant, colorBlack)
}

// exposure returns the mean grey and the saturated share of the hand part
// of the ROI.
func exposure(roi, cover gocv.Mat) (mean, saturated float64) {
	rd, _ := roi.DataPtrUint8()
	cd, _ := cover.DataPtrUint8()
	var sum, n, sat int
	for i, c := range cd {
		if c == 0 {
			continue
		}
		sum += int(rd[i])
		n++
		if rd[i] >= 250 {
			sat++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return float64(sum) / float64(n), float64(sat) / float64(n)
}

func (e *Extractor) focus(roi gocv.Mat, mean float64) float64 {
	f, a, b := e.scratch(0), e.scratch(1), e.scratch(2)
	roi.ConvertTo(f, gocv.MatTypeCV32F)
	// Band-pass (difference of Gaussians): the band that holds creases and
	// vein edges. Sensor noise lies above it, illumination below, so the
	// figure tracks optical sharpness, not noise or lighting.
	gocv.GaussianBlur(*f, a, image0, focusInner, focusInner, gocv.BorderReflect101)
	gocv.GaussianBlur(*f, b, image0, focusOuter, focusOuter, gocv.BorderReflect101)
	gocv.Subtract(*a, *b, a)
	// Only the central part: the ROI border may include background.
	inner := a.Region(innerRect)
	defer inner.Close()
	mu, sd := gocv.NewMat(), gocv.NewMat()
	defer mu.Close()
	defer sd.Close()
	gocv.MeanStdDev(inner, &mu, &sd)
	s := sd.GetDoubleAt(0, 0)
	if mean < 1 {
		return 0
	}
	return s * s / (mean * mean) * 1e4
}

const focusInner, focusOuter = 1.2, 2.5

// qualityScore rates a frame that passed every gate: how far it is from
// each gate's limit, and whether the thumb (and so the hand's side) was
// seen.
func qualityScore(q Quality, lm Landmarks) int {
	s := 40.0
	s += 25 * math.Min(1, math.Max(0, (q.Focus-0.05)/0.2))
	s += 20 * math.Min(1, math.Max(0, (q.PalmMean-40)/60))
	s -= 500 * q.Saturated
	if lm.HasThumb {
		s += 15
	}
	return int(math.Max(1, math.Min(100, math.Round(s))))
}

// wipe zeroes Mats in place (empty ones are skipped).
func wipe(ms ...*gocv.Mat) {
	for _, m := range ms {
		if !m.Empty() {
			m.SetTo(gocv.NewScalar(0, 0, 0, 0))
		}
	}
}

// FrameFocus returns the focus figure (see Quality.Focus) of the frame's
// central square, for the self-test: with a test card or a hand over the
// window it shows whether the lens is in focus. Invalid frames give 0.
func FrameFocus(f *sensor.Frame) float64 {
	if f.Validate() != nil || f.Width < ROISize || f.Height < ROISize {
		return 0
	}
	src, err := frameMat(f)
	if err != nil {
		return 0
	}
	defer src.Close()
	r := image.Rect((f.Width-ROISize)/2, (f.Height-ROISize)/2, (f.Width+ROISize)/2, (f.Height+ROISize)/2)
	crop := src.Region(r)
	defer crop.Close()
	c := crop.Clone()
	defer c.Close()
	e := &Extractor{}
	for i := range e.mats {
		e.mats[i] = gocv.NewMat()
	}
	defer func() {
		for i := range e.mats {
			e.mats[i].Close()
		}
	}()
	m := c.Mean().Val1
	return e.focus(c, m)
}

// MinROISide and MaxROISide bound the pre-cut ROIs FromROI accepts.
const (
	MinROISide = 32
	MaxROISide = 1024
)

// FromROI runs the feature stage alone on a pre-cut palm ROI (8-bit grey,
// width×height, fingers up, the whole square palm): what public palm-vein
// databases distribute (PolyU, Tongji: 128×128). It skips presence, the
// quality gates and ROI placement, so that features and comparison can be
// measured on their own. A ROI of another size is resized to ROISize.
func (e *Extractor) FromROI(pix []byte, width, height int) (template.Template, error) {
	var t template.Template
	switch {
	case width < MinROISide || height < MinROISide || width > MaxROISide || height > MaxROISide:
		return t, fmt.Errorf("imaging: ROI %dx%d outside %d..%d", width, height, MinROISide, MaxROISide)
	case len(pix) != width*height:
		return t, fmt.Errorf("imaging: ROI has %d bytes, want %d", len(pix), width*height)
	}
	src, err := gocv.NewMatFromBytes(height, width, gocv.MatTypeCV8U, slices.Clone(pix))
	if err != nil {
		return t, fmt.Errorf("imaging: %w", err)
	}
	roi, cover := gocv.NewMat(), gocv.NewMatWithSize(ROISize, ROISize, gocv.MatTypeCV8U)
	defer func() {
		wipe(&src, &roi)
		src.Close()
		roi.Close()
		cover.Close()
	}()
	gocv.Resize(src, &roi, roiPoint, 0, 0, gocv.InterpolationArea)
	cover.SetTo(gocv.NewScalar(255, 0, 0, 0))
	t.Version = template.AlgorithmVersion
	if err := e.features(roi, cover, &t); err != nil {
		t.Zero()
		return t, err
	}
	// Quality stays 0: no quality gate ran.
	return t, nil
}
