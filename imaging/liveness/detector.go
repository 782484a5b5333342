package liveness

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/sensor"
)

// NoiseModel is the camera's temporal noise (its photon-transfer curve):
// variance = (Read × gain)² + Shot × gain × grey. The texture cue measures
// fine detail against it. The defaults are the simulated camera's; a
// terminal model measures its own once (NoiseMeter: pairs of frames of a
// still scene over a range of grey levels) and configures it.
type NoiseModel struct {
	Read, Shot float64
	// Corr is the width (Gaussian σ, px) of the crosstalk between
	// neighbouring pixels, which softens the noise.
	Corr float64
}

// DefaultNoise is the simulated camera's noise, as it renders it: its
// crosstalk is a 5-tap Gaussian of 0.55 px, sampled so finely that it
// passes as much power at the texture band as the continuous Gaussian of
// 0.43 px that NoiseMeter measures. The built-in calibration was measured
// with 0.55, which puts about 10 % more noise in the band than the
// simulator does; its norms absorb that.
var DefaultNoise = NoiseModel{Read: 0.40, Shot: 0.0022, Corr: 0.55}

// OrDefault is n, or DefaultNoise for the zero model (none configured):
// the model a Detector given n measures against.
func (n NoiseModel) OrDefault() NoiseModel {
	if n == (NoiseModel{}) {
		return DefaultNoise
	}
	return n
}

// Variance is the noise variance at grey level mean and gain.
func (n NoiseModel) Variance(mean, gain float64) float64 {
	if gain <= 0 {
		gain = 1
	}
	return n.Read*n.Read*gain*gain + n.Shot*gain*math.Max(mean, 0)
}

// Config tunes a Detector. The zero value means the defaults.
type Config struct {
	// Calibration standardises the cues; nil means DefaultCalibration.
	Calibration Calibration
	// Threshold on the fused score; 0 means DefaultThreshold.
	Threshold float64
	// Noise is the camera's noise model; zero means DefaultNoise.
	Noise NoiseModel
	// MinStillFrames is how many consecutive frames that pass the
	// quality gates the detector wants before deciding (Ready): the pulse
	// cue is scored on them, and only when that many were seen;
	// DefaultMinStillFrames.
	MinStillFrames int
	// FPS is the camera's frame rate (the pulse's time base); 30.
	FPS float64
}

// Defaults of Config.
const (
	DefaultMinStillFrames = 12
)

func (c *Config) defaults() {
	if c.Calibration == nil {
		c.Calibration = DefaultCalibration()
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	c.Noise = c.Noise.OrDefault()
	if c.MinStillFrames == 0 {
		c.MinStillFrames = DefaultMinStillFrames
	}
	if c.FPS == 0 {
		c.FPS = 30
	}
}

// Sizes of what the cues look at.
const (
	patchSide = 64 // frequency-domain texture patch, px
	veinSide  = 96 // vein-band patch, px
)

// Detector scores one presentation at a time: Observe every lit frame from
// the hand's arrival to the end of the capture, then Decide; Reset before
// the next. It reuses its buffers and is not safe for concurrent use.
type Detector struct {
	cfg Config

	// Single-frame cues of the frames that passed the gates.
	texture, edge, veins []float64
	// Hand brightness of consecutive gated frames, for the pulse.
	palm   []float64
	frames int

	// The last gated frame's palm patch (high-passed) and its spectrum,
	// and the current one's: static detail is what two frames share.
	prevHP, curHP                gocv.Mat
	prevRe, prevIm, curRe, curIm []float32
	havePrevPatch                bool
	surface                      []float64
	// The approach's measurements of what surrounds the hand
	// (OccluderCheck.Sheet).
	sheet []float64

	han        gocv.Mat // Hann window for the spectrum
	hannPower  float64  // Σ w², the window's effect on noise power
	noiseShape []float64
}

// NewDetector returns a Detector; Close it when done.
func NewDetector(cfg Config) *Detector {
	cfg.defaults()
	d := &Detector{cfg: cfg, prevHP: gocv.NewMat(), curHP: gocv.NewMat(),
		han: gocv.NewMatWithSize(patchSide, patchSide, gocv.MatTypeCV32F)}
	hd, _ := d.han.DataPtrFloat32()
	for y := 0; y < patchSide; y++ {
		wy := 0.5 - 0.5*math.Cos(2*math.Pi*float64(y)/float64(patchSide-1))
		for x := 0; x < patchSide; x++ {
			wx := 0.5 - 0.5*math.Cos(2*math.Pi*float64(x)/float64(patchSide-1))
			hd[y*patchSide+x] = float32(wx * wy)
			d.hannPower += wx * wx * wy * wy
		}
	}
	d.noiseShape = noiseSpectrum(cfg.Noise.Corr)
	return d
}

// Close releases the Detector's buffers.
func (d *Detector) Close() {
	d.forgetPatch()
	d.prevHP.Close()
	d.curHP.Close()
	d.han.Close()
}

// forgetPatch wipes the kept palm patches and spectra.
func (d *Detector) forgetPatch() {
	wipe(&d.prevHP, &d.curHP)
	clear(d.prevRe)
	clear(d.prevIm)
	clear(d.curRe)
	clear(d.curIm)
	d.havePrevPatch = false
}

// Reset forgets the presentation observed so far.
func (d *Detector) Reset() {
	d.texture, d.edge, d.veins, d.palm = d.texture[:0], d.edge[:0], d.veins[:0], d.palm[:0]
	d.surface = d.surface[:0]
	d.sheet = d.sheet[:0]
	d.forgetPatch()
	d.frames = 0
}

// ObserveSurroundings adds one measurement, taken between presentations
// as the hand came in, of what surrounds it (OccluderCheck.Sheet); call
// it after Reset. Measurements below zero (none taken) are ignored.
func (d *Detector) ObserveSurroundings(sheet float64) {
	if sheet >= 0 {
		d.sheet = append(d.sheet, sheet)
	}
}

// Frames reports how many frames were observed since Reset.
func (d *Detector) Frames() int { return d.frames }

// Ready reports that the detector has seen the still frames it wants
// (MinStillFrames in a row that passed the quality gates).
func (d *Detector) Ready() bool { return len(d.palm) >= d.cfg.MinStillFrames }

// Observe adds one lit frame of the presentation. roi is the palm region
// the quality gates found in it, or nil when the frame failed them (the
// approach, a moving hand): such a frame ends the still series the pulse
// and the surface cue are measured on.
func (d *Detector) Observe(f *sensor.Frame, roi *imaging.ROIGeometry) error {
	src, err := imaging.FrameMat(f)
	if err != nil {
		return fmt.Errorf("liveness: %w", err)
	}
	defer func() { wipe(&src); src.Close() }()
	d.frames++
	if roi == nil {
		// A gap in the gated frames breaks the pulse series and the
		// frame-to-frame coherence.
		if len(d.palm) < d.cfg.MinStillFrames {
			d.palm = d.palm[:0]
		}
		d.forgetPatch()
		return nil
	}
	// The outline is the costly cue (whole-frame gradients) and changes
	// little while the hand is still: every edgeEvery-th gated frame.
	c, err := d.frameCuesOpt(src, *roi, f.Gain, len(d.texture)%edgeEvery == 0)
	if err != nil {
		d.forgetPatch()
		return err
	}
	if d.havePrevPatch {
		d.surface = append(d.surface, d.coherence())
	}
	d.prevHP, d.curHP = d.curHP, d.prevHP
	d.prevRe, d.curRe = d.curRe, d.prevRe
	d.prevIm, d.curIm = d.curIm, d.prevIm
	d.havePrevPatch = true
	d.texture = append(d.texture, c.Texture)
	if c.Edge > 0 {
		d.edge = append(d.edge, c.Edge)
	}
	d.veins = append(d.veins, c.Veins)
	if c.handMean > 0 {
		d.palm = append(d.palm, c.handMean)
	} else {
		d.palm = d.palm[:0]
	}
	return nil
}

// Decide fuses the cues of the presentation observed so far.
func (d *Detector) Decide() Decision {
	raw := map[Cue]float64{}
	med := func(v []float64) float64 { m, _ := robust(v); return m }
	if len(d.texture) > 0 {
		raw[CueTexture] = med(d.texture)
		raw[CueVeins] = med(d.veins)
		raw[CueVeinExcess] = raw[CueVeins]
	}
	if len(d.edge) > 0 {
		raw[CueEdge] = med(d.edge)
		raw[CueSoftEdge] = raw[CueEdge]
	}
	if len(d.surface) > 0 {
		raw[CueSurface] = med(d.surface)
	}
	if len(d.sheet) > 0 {
		raw[CueSheet] = med(d.sheet)
	}
	if len(d.palm) >= d.cfg.MinStillFrames {
		raw[CuePulse] = pulse(d.palm, d.cfg.FPS)
	}
	return d.cfg.Calibration.Fuse(raw, d.cfg.Threshold)
}

// SetThreshold changes the decision threshold (0: DefaultThreshold) for
// the decisions after it: the daemon's reload. Like the rest of the
// Detector, not safe for concurrent use.
func (d *Detector) SetThreshold(t float64) {
	if t == 0 {
		t = DefaultThreshold
	}
	d.cfg.Threshold = t
}

// FrameCues are the single-frame cues of one frame.
type FrameCues struct {
	// Texture is the palm patch's detail at 0.2–0.3 cycles per pixel
	// over the camera's noise there.
	Texture float64
	// Edge is the outline's sharpness (0 when no outline was found).
	Edge float64
	// Veins is the vein band's contrast.
	Veins float64
	// handMean is the mean grey of the whole hand (the pulse's series:
	// unlike a patch, it does not move over the palm's shading as the
	// hand trembles).
	handMean float64
}

// Raw returns the cues as a map, for Decide-like fusion of one frame.
func (c FrameCues) Raw() map[Cue]float64 {
	m := map[Cue]float64{CueTexture: c.Texture, CueVeins: c.Veins, CueVeinExcess: c.Veins}
	if c.Edge > 0 {
		m[CueEdge], m[CueSoftEdge] = c.Edge, c.Edge
	}
	return m
}

// FrameCues measures the single-frame cues of f, whose palm region the
// quality gates found at roi: the part of the detector that runs on a
// folder of still images.
func (d *Detector) FrameCues(f *sensor.Frame, roi imaging.ROIGeometry) (FrameCues, error) {
	src, err := imaging.FrameMat(f)
	if err != nil {
		return FrameCues{}, fmt.Errorf("liveness: %w", err)
	}
	defer func() { wipe(&src); src.Close() }()
	return d.frameCues(src, roi, f.Gain)
}

// DecideFrame fuses the single-frame cues of one frame.
func (d *Detector) DecideFrame(c FrameCues) Decision {
	return d.cfg.Calibration.Fuse(c.Raw(), d.cfg.Threshold)
}

func (d *Detector) frameCues(src gocv.Mat, roi imaging.ROIGeometry, gain float64) (FrameCues, error) {
	return d.frameCuesOpt(src, roi, gain, true)
}

// edgeEvery: the outline cue is measured on every edgeEvery-th gated frame.
const edgeEvery = 4

// edgeMargin is how far beyond the object's bounding box the outline's
// gradients are computed, px: more than the coarse Gaussian's kernel
// radius (OpenCV takes 4σ = 10 px at σ 2.5), the Sobel's and the
// dilation's 1 px each.
const edgeMargin = 16

func (d *Detector) frameCuesOpt(src gocv.Mat, roi imaging.ROIGeometry, gain float64, edge bool) (FrameCues, error) {
	var c FrameCues
	w, h := src.Cols(), src.Rows()
	cx, cy := int(math.Round(roi.Centre.X)), int(math.Round(roi.Centre.Y))
	side := min(veinSide, int(0.7*roi.Side))
	if side < patchSide {
		return c, errors.New("liveness: palm region too small")
	}
	r := image.Rect(cx-side/2, cy-side/2, cx-side/2+side, cy-side/2+side)
	if !r.In(image.Rect(0, 0, w, h)) {
		return c, errors.New("liveness: palm region leaves the frame")
	}
	region := src.Region(r)
	defer region.Close()
	patch := gocv.NewMat()
	defer func() { wipe(&patch); patch.Close() }()
	region.ConvertTo(&patch, gocv.MatTypeCV32F)
	palmMean := patch.Mean().Val1
	if palmMean < 1 {
		return c, errors.New("liveness: palm region is black")
	}
	c.Veins = veinContrast(patch, palmMean)
	o := (side - patchSide) / 2
	inner := patch.Region(image.Rect(o, o, o+patchSide, o+patchSide))
	c.Texture = d.spectrum(inner, d.cfg.Noise.Variance(palmMean, gain))
	inner.Close()
	c.handMean = handMean(src)
	if edge {
		c.Edge = edgeSharpness(src)
	}
	return c, nil
}

// veinContrast measures dark structures of the veins' width (2–6 mm, 5–14
// px) over the patch's mean: the black top-hat with a 17 px disc keeps
// everything dark and narrower than it (veins and creases), the one with a
// 7 px disc only what is narrower than that (creases, pores); their
// difference is the veins', and neither sees the palm's broad shading.
func veinContrast(patch gocv.Mat, mean float64) float64 {
	wide, narrow := gocv.NewMat(), gocv.NewMat()
	defer func() { wipe(&wide, &narrow); wide.Close(); narrow.Close() }()
	kw := gocv.GetStructuringElement(gocv.MorphEllipse, image.Pt(17, 17))
	kn := gocv.GetStructuringElement(gocv.MorphEllipse, image.Pt(7, 7))
	defer kw.Close()
	defer kn.Close()
	// Smooth first: top-hats of noise are biased upward (they keep its
	// troughs), which would give a cast without veins a vein contrast.
	sm := gocv.NewMat()
	defer func() { wipe(&sm); sm.Close() }()
	gocv.GaussianBlur(patch, &sm, image.Point{}, 1.5, 1.5, gocv.BorderReflect101)
	gocv.MorphologyEx(sm, &wide, gocv.MorphBlackhat, kw)
	gocv.MorphologyEx(sm, &narrow, gocv.MorphBlackhat, kn)
	gocv.Subtract(wide, narrow, &wide)
	m := 9 // the structuring element's reach at the border
	in := wide.Region(image.Rect(m, m, wide.Cols()-m, wide.Rows()-m))
	defer in.Close()
	return in.Mean().Val1 / mean
}

// spectrum returns the palm patch's detail at 0.2–0.3 cycles per pixel
// (periods of 3.3–5 px, 1.4–2.1 mm at the nominal distance) over the power
// the camera's noise puts there. Skin scatters light: its own detail is
// gone at these frequencies and only noise is left (about 1). Paper
// reflects at its surface: toner grain, halftone dots and paint strokes
// survive the lens (above 1).
//
// For the sequence it keeps the patch (high-passed) and its spectrum in
// d.cur, for coherence with the next gated frame's.
func (d *Detector) spectrum(patch gocv.Mat, noiseVar float64) (texture float64) {
	hp, low, cplx := gocv.NewMat(), gocv.NewMat(), gocv.NewMat()
	defer func() { wipe(&hp, &low, &cplx); hp.Close(); low.Close(); cplx.Close() }()
	// Remove the palm's shading so the window's edges add nothing.
	gocv.GaussianBlur(patch, &low, image.Point{}, 6, 6, gocv.BorderReflect101)
	gocv.Subtract(patch, low, &hp)
	wipe(&d.curHP)
	hp.CopyTo(&d.curHP)
	gocv.Multiply(hp, d.han, &hp)
	gocv.DFT(hp, &cplx, gocv.DftComplexOutput)
	parts := gocv.Split(cplx)
	defer func() {
		for i := range parts {
			wipe(&parts[i])
			parts[i].Close()
		}
	}()
	re, _ := parts[0].DataPtrFloat32()
	im, _ := parts[1].DataPtrFloat32()
	d.curRe, d.curIm = append(d.curRe[:0], re...), append(d.curIm[:0], im...)
	var sig, noise float64
	forBand(func(i, _, _, ring int) {
		sig += float64(re[i])*float64(re[i]) + float64(im[i])*float64(im[i])
		noise += noiseVar * d.hannPower * d.noiseShape[ring]
	})
	if noise > 0 {
		texture = sig / noise
	}
	return texture
}

// coherence is the share of the palm patch's power at 0.2–0.3 cycles per
// pixel that the last two gated frames have in common, once the hand's
// movement between them (phase correlation) is undone: the static detail
// at the surface. The camera's noise is new in every frame and drops out,
// so no noise model enters; skin's detail there is scattered away (about
// 0), paper's grain, halftone and paint strokes stay (up to 1).
func (d *Detector) coherence() float64 {
	shift, _ := gocv.PhaseCorrelate(d.prevHP, d.curHP, d.han)
	n := patchSide
	var cross, p1, p2 float64
	forBand(func(i, fx, fy, _ int) {
		// cur ≈ prev moved by shift: cur·conj(prev) turns by −2π f·shift;
		// turn it back.
		ph := 2 * math.Pi * (float64(fx)*float64(shift.X) + float64(fy)*float64(shift.Y)) / float64(n)
		cr := float64(d.curRe[i])*float64(d.prevRe[i]) + float64(d.curIm[i])*float64(d.prevIm[i])
		ci := float64(d.curIm[i])*float64(d.prevRe[i]) - float64(d.curRe[i])*float64(d.prevIm[i])
		sn, cs := math.Sincos(ph)
		cross += cr*cs - ci*sn
		p1 += float64(d.prevRe[i])*float64(d.prevRe[i]) + float64(d.prevIm[i])*float64(d.prevIm[i])
		p2 += float64(d.curRe[i])*float64(d.curRe[i]) + float64(d.curIm[i])*float64(d.curIm[i])
	})
	if p1 <= 0 || p2 <= 0 {
		return 0
	}
	return cross / math.Sqrt(p1*p2)
}

// forBand calls f for every bin of a patchSide spectrum (DFT layout) whose
// ring lies in the texture band, with its index, its signed frequencies
// (cycles per patch) and its ring.
func forBand(f func(i, fx, fy, ring int)) {
	n := patchSide
	for y := 0; y < n; y++ {
		fy := y
		if y > n/2 {
			fy -= n
		}
		for x := 0; x < n; x++ {
			fx := x
			if x > n/2 {
				fx -= n
			}
			ring := int(math.Round(math.Hypot(float64(fx), float64(fy))))
			if ring >= textureRingLo && ring <= textureRingHi {
				f(y*n+x, fx, fy, ring)
			}
		}
	}
}

// Rings of the patch's spectrum (cycles per patch) the cues look at.
const (
	textureRingLo, textureRingHi = 13, 19 // 0.2–0.3 cycles per pixel
	peakRingLo                   = 4      // 0.06
)

// noiseSpectrum returns, per ring of a patchSide spectrum, the relative
// power of the camera's noise (1 on average over all frequencies): white
// noise softened by pixel crosstalk of Gaussian width corr px.
func noiseSpectrum(corr float64) []float64 {
	n := patchSide
	shape := make([]float64, n/2+1)
	count := make([]float64, n/2+1)
	var total float64
	for y := 0; y < n; y++ {
		fy := float64(min(y, n-y)) / float64(n)
		for x := 0; x < n; x++ {
			fx := float64(min(x, n-x)) / float64(n)
			f2 := fx*fx + fy*fy
			v := math.Exp(-4 * math.Pi * math.Pi * corr * corr * f2)
			total += v
			if r := int(math.Round(math.Sqrt(f2) * float64(n))); r <= n/2 {
				shape[r] += v
				count[r]++
			}
		}
	}
	mean := total / float64(n*n)
	for r := range shape {
		if count[r] > 0 {
			shape[r] /= count[r] * mean
		}
	}
	return shape
}

// edgeSharpness measures how abruptly the largest bright object ends:
// along its outline, the gradient at a fine scale (σ 0.7 px) over the
// gradient at a coarse one (σ 2.5 px), median over the outline. A step
// blurred by the lens alone (a paper edge: σ ≈ 0.75 px) scores about 2.4;
// skin, which scatters and curves away from the light, about 1.6 or less.
// The ratio is independent of the edge's contrast.
func edgeSharpness(src gocv.Mat) float64 {
	lo, hi := imaging.OtsuClasses(src)
	if hi-lo < 10 {
		return 0
	}
	bin, labels, stats, cents := gocv.NewMat(), gocv.NewMat(), gocv.NewMat(), gocv.NewMat()
	f, fine, coarse, object, noHierarchy := gocv.NewMat(), gocv.NewMat(), gocv.NewMat(), gocv.NewMat(), gocv.NewMat()
	defer func() {
		wipe(&bin, &labels, &f, &fine, &coarse, &object)
		for _, m := range []*gocv.Mat{&bin, &labels, &stats, &cents, &f, &fine, &coarse, &object, &noHierarchy} {
			m.Close()
		}
	}()
	gocv.Threshold(src, &bin, float32(lo+0.5*(hi-lo)), 255, gocv.ThresholdBinary)
	n := gocv.ConnectedComponentsWithStatsWithParams(bin, &labels, &stats, &cents, 8, gocv.MatTypeCV32S, gocv.CCL_DEFAULT)
	best, bestArea := 0, 0
	for i := 1; i < n; i++ {
		if a := int(stats.GetIntAt(i, int(gocv.CC_STAT_AREA))); a > bestArea {
			best, bestArea = i, a
		}
	}
	if best == 0 || bestArea < src.Rows()*src.Cols()/50 {
		return 0
	}
	// Everything below works on the object's bounding box and a margin
	// wider than the coarse blur's reach (the whole frame took half of
	// the detector's time): every outline point sees the same
	// neighbourhood as on the whole frame.
	w, h := src.Cols(), src.Rows()
	at := func(c gocv.ConnectedComponentsTypes) int { return int(stats.GetIntAt(best, int(c))) }
	x0, y0 := at(gocv.CC_STAT_LEFT), at(gocv.CC_STAT_TOP)
	box := image.Rect(x0, y0, x0+at(gocv.CC_STAT_WIDTH), y0+at(gocv.CC_STAT_HEIGHT))
	box = box.Inset(-edgeMargin).Intersect(image.Rect(0, 0, w, h))
	inBox := labels.Region(box)
	v := gocv.NewScalar(float64(best), 0, 0, 0)
	gocv.InRangeWithScalar(inBox, v, v, &object)
	inBox.Close()
	region := src.Region(box)
	region.ConvertTo(&f, gocv.MatTypeCV32F)
	region.Close()
	gradient(f, &fine, 0.7)
	gradient(f, &coarse, 2.5)
	// The outline's pixels, drawn in one call instead of read back point
	// by point (three cgo calls each). The outer contour only: a hole's
	// rim is not the object's edge.
	cs := gocv.FindContours(object, gocv.RetrievalExternal, gocv.ChainApproxNone)
	defer cs.Close()
	object.SetTo(gocv.NewScalar(0, 0, 0, 0))
	gocv.DrawContoursWithParams(&object, cs, -1, color.RGBA{R: 255, G: 255, B: 255}, 1, gocv.Line8, noHierarchy, 0, image.Point{})
	od, _ := object.DataPtrUint8()
	fd, _ := fine.DataPtrFloat32()
	cd, _ := coarse.DataPtrFloat32()
	bw := box.Dx()
	var vals []float64
	for k, on := range od {
		if on == 0 {
			continue
		}
		// The frame's border is not the object's edge.
		x, y := box.Min.X+k%bw, box.Min.Y+k/bw
		if x < 4 || y < 4 || x >= w-4 || y >= h-4 {
			continue
		}
		if c := cd[k]; c > 1 {
			vals = append(vals, float64(fd[k]/c))
		}
	}
	if len(vals) < 50 {
		return 0
	}
	m, _ := robust(vals)
	return m
}

// handMean is the mean grey of the hand (what is brighter than halfway
// between the background's and the hand's level), on the frame downscaled
// by 4: the pulse's series.
func handMean(src gocv.Mat) float64 {
	small, bin := gocv.NewMat(), gocv.NewMat()
	defer func() { wipe(&small, &bin); small.Close(); bin.Close() }()
	gocv.Resize(src, &small, image.Pt(src.Cols()/4, src.Rows()/4), 0, 0, gocv.InterpolationArea)
	lo, hi := imaging.OtsuClasses(small)
	if hi-lo < 10 {
		return 0
	}
	gocv.Threshold(small, &bin, float32(lo+0.5*(hi-lo)), 255, gocv.ThresholdBinary)
	return small.MeanWithMask(bin).Val1
}

// gradient writes the gradient magnitude of src smoothed by a Gaussian of
// sigma px, dilated by 3×3 so that an outline a pixel off its steepest
// point still reads it.
func gradient(src gocv.Mat, dst *gocv.Mat, sigma float64) {
	s, gx, gy := gocv.NewMat(), gocv.NewMat(), gocv.NewMat()
	defer func() { wipe(&s, &gx, &gy); s.Close(); gx.Close(); gy.Close() }()
	gocv.GaussianBlur(src, &s, image.Point{}, sigma, sigma, gocv.BorderReflect101)
	gocv.Sobel(s, &gx, gocv.MatTypeCV32F, 1, 0, 3, 0.125, 0, gocv.BorderReflect101)
	gocv.Sobel(s, &gy, gocv.MatTypeCV32F, 0, 1, 3, 0.125, 0, gocv.BorderReflect101)
	gocv.Magnitude(gx, gy, dst)
	k := gocv.GetStructuringElement(gocv.MorphRect, image.Pt(3, 3))
	defer k.Close()
	gocv.Dilate(*dst, dst, k)
}

// pulse is the amplitude of the heartbeat in the hand's brightness over
// consecutive gated frames (at fps frames a second), relative to its
// mean: the best least-squares fit of a line (the hand drifting closer or
// farther) plus a sinusoid at 50–110 beats a minute. Tremor (8–12 Hz)
// averages out of such a fit; a line absorbs the slow sway.
func pulse(v []float64, fps float64) float64 {
	n := len(v)
	if n < 8 || fps <= 0 {
		return 0
	}
	var mean float64
	for _, y := range v {
		mean += y
	}
	mean /= float64(n)
	if mean <= 0 {
		return 0
	}
	best := 0.0
	for bpm := 50.0; bpm <= 110; bpm += 2.5 {
		w := 2 * math.Pi * bpm / 60 / fps
		// Normal equations for [1, t, sin, cos].
		var ata [4][4]float64
		var aty [4]float64
		for i, y := range v {
			t := float64(i) - float64(n-1)/2
			row := [4]float64{1, t / float64(n), math.Sin(w * t), math.Cos(w * t)}
			for r := 0; r < 4; r++ {
				aty[r] += row[r] * y
				for c := 0; c < 4; c++ {
					ata[r][c] += row[r] * row[c]
				}
			}
		}
		x, ok := solve4(ata, aty)
		if !ok {
			continue
		}
		if a := math.Hypot(x[2], x[3]); a > best {
			best = a
		}
	}
	return best / mean
}

// solve4 solves a 4×4 linear system by Gaussian elimination with partial
// pivoting.
func solve4(a [4][4]float64, b [4]float64) ([4]float64, bool) {
	for c := 0; c < 4; c++ {
		p := c
		for r := c + 1; r < 4; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[p][c]) {
				p = r
			}
		}
		if math.Abs(a[p][c]) < 1e-12 {
			return [4]float64{}, false
		}
		a[c], a[p] = a[p], a[c]
		b[c], b[p] = b[p], b[c]
		for r := c + 1; r < 4; r++ {
			f := a[r][c] / a[c][c]
			for k := c; k < 4; k++ {
				a[r][k] -= f * a[c][k]
			}
			b[r] -= f * b[c]
		}
	}
	var x [4]float64
	for r := 3; r >= 0; r-- {
		s := b[r]
		for k := r + 1; k < 4; k++ {
			s -= a[r][k] * x[k]
		}
		x[r] = s / a[r][r]
	}
	return x, true
}

// wipe zeroes Mats in place (empty ones are skipped).
func wipe(ms ...*gocv.Mat) {
	for _, m := range ms {
		if !m.Empty() {
			m.SetTo(gocv.NewScalar(0, 0, 0, 0))
		}
	}
}
