package liveness

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/sensor"
)

// NoiseMeter measures a camera's temporal noise — its photon-transfer
// curve, as EMVA 1288 does — from pairs of frames of a scene that does not
// move, taken one after the other with the same exposure and gain: the
// difference of two such frames is their noise alone, whatever the scene.
// print_texture divides a palm's fine detail by what NoiseModel says the
// camera's noise puts there, so a terminal model whose camera is not the
// simulated one measures its own (Fit) before its liveness calibration.
//
// It keeps numbers only, never a frame: per 16 px tile the mean grey and
// the difference's variance, per 64 px block the difference's power in
// two bands. The tiles' means are a picture of the scene 16 times
// coarser than the frame, and the scene may be anything, even a hand:
// Forget wipes them once the fit is done. The zero value is ready to use.
type NoiseMeter struct {
	tiles  []noiseTile
	blocks []noiseBlock
	gain   float64
	pairs  int
	window []float32 // Hann window of a block, made on first use
}

// noiseTile is one tile of one pair: its mean grey and its noise variance
// (half the difference's, quantisation taken out).
type noiseTile struct {
	mean, variance float64
}

// noiseBlock is one patchSide block of one pair: its mean grey and the
// difference's mean power (windowed periodogram over the window's power,
// halved: one frame's noise) over the texture band's bins and over all
// bins but the mean.
type noiseBlock struct {
	mean, band, all float64
}

// Bounds of a noise measurement.
const (
	// NoiseTile is the side of the square tiles (px) whose statistics the
	// fit uses: small enough that a flat card's shading is flat within
	// one, large enough for a variance to within 9 %.
	NoiseTile = 16
	// MinNoiseTiles is how many usable tiles Fit wants.
	MinNoiseTiles = 200
	// NoiseSaturation: tiles with a pixel at 0 or at or above this grey
	// level in either frame are left out (clipped noise is smaller).
	NoiseSaturation = 250
	// MaxNoiseRelError is the largest relative standard error of Read or
	// Shot that Fit accepts: beyond it the grey levels measured do not
	// tell read noise from shot noise.
	MaxNoiseRelError = 0.1
)

// quantisation is the variance 8-bit rounding adds to a pixel whose noise
// is wider than a grey level (Sheppard's correction): NoiseModel is the
// camera's analogue noise, the part that depends on the grey level.
const quantisation = 1.0 / 12

var errOneGrey = errors.New("liveness: noise: the tiles' grey levels are all about the same: measure over a range of them (a grey card, several exposures)")

// ErrNoisePair is wrapped by AddPair's errors for frames that cannot be a
// pair.
var ErrNoisePair = errors.New("liveness: not a pair of frames")

// AddPair adds two consecutive frames of a still scene, taken with the same
// exposure and gain (every pair a meter is given must share that gain).
func (m *NoiseMeter) AddPair(a, b *sensor.Frame) error {
	switch {
	case a.Width != b.Width || a.Height != b.Height:
		return fmt.Errorf("%w: %d×%d and %d×%d", ErrNoisePair, a.Width, a.Height, b.Width, b.Height)
	case a.Width < NoiseTile || a.Height < NoiseTile || len(a.Pix) != a.Width*a.Height || len(b.Pix) != b.Width*b.Height:
		return fmt.Errorf("%w: frames of %d×%d with %d and %d bytes", ErrNoisePair, a.Width, a.Height, len(a.Pix), len(b.Pix))
	case math.IsInf(a.Gain, 0) || math.IsNaN(a.Gain) || math.IsNaN(b.Gain):
		return fmt.Errorf("%w: gain %g and %g", ErrNoisePair, a.Gain, b.Gain)
	case a.Exposure != b.Exposure || a.Gain != b.Gain:
		return fmt.Errorf("%w: exposure %v and %v, gain %g and %g", ErrNoisePair, a.Exposure, b.Exposure, a.Gain, b.Gain)
	case m.pairs > 0 && gainOf(a) != m.gain:
		return fmt.Errorf("%w: gain %g, where the meter's pairs have %g", ErrNoisePair, gainOf(a), m.gain)
	}
	m.gain = gainOf(a)
	m.pairs++
	// Room for this pair's tiles and blocks, the old arrays wiped (append
	// would leave copies of the tiles' grey levels behind).
	m.tiles = growWiped(m.tiles, (a.Width/NoiseTile)*(a.Height/NoiseTile))
	m.blocks = growWiped(m.blocks, (a.Width/patchSide)*(a.Height/patchSide))
	w := a.Width
	const n = NoiseTile
	for ty := 0; ty+n <= a.Height; ty += n {
	tile:
		for tx := 0; tx+n <= w; tx += n {
			var sum, sumD, sumD2 float64
			for y := ty; y < ty+n; y++ {
				for x := tx; x < tx+n; x++ {
					pa, pb := a.Pix[y*w+x], b.Pix[y*w+x]
					if pa == 0 || pb == 0 || pa >= NoiseSaturation || pb >= NoiseSaturation {
						continue tile
					}
					d := float64(pa) - float64(pb)
					sum += float64(pa) + float64(pb)
					sumD += d
					sumD2 += d * d
				}
			}
			const px = n * n
			meanD := sumD / px
			varD := (sumD2 - px*meanD*meanD) / (px - 1)
			m.tiles = append(m.tiles, noiseTile{mean: sum / (2 * px), variance: varD/2 - quantisation})
		}
	}
	return m.addBlocks(a, b)
}

// addBlocks adds the spectrum of the pair's difference over every
// patchSide block without a clipped pixel: what the texture cue compares a
// palm's detail with is the noise's power in its band, so that is what
// Corr is fitted to.
func (m *NoiseMeter) addBlocks(a, b *sensor.Frame) error {
	const n = patchSide
	if m.window == nil {
		m.window = make([]float32, n*n)
		for y := 0; y < n; y++ {
			wy := 0.5 - 0.5*math.Cos(2*math.Pi*float64(y)/float64(n-1))
			for x := 0; x < n; x++ {
				m.window[y*n+x] = float32(wy * (0.5 - 0.5*math.Cos(2*math.Pi*float64(x)/float64(n-1))))
			}
		}
	}
	var power float64 // Σ w²
	for _, v := range m.window {
		power += float64(v) * float64(v)
	}
	d := gocv.NewMatWithSize(n, n, gocv.MatTypeCV32F)
	spec := gocv.NewMat()
	// A difference where something moved between the frames shows it.
	defer func() { wipe(&d, &spec); d.Close(); spec.Close() }()
	dd, err := d.DataPtrFloat32()
	if err != nil {
		return fmt.Errorf("liveness: noise: %w", err)
	}
	w := a.Width
	for by := 0; by+n <= a.Height; by += n {
	block:
		for bx := 0; bx+n <= w; bx += n {
			var sum, sumD float64
			for y := by; y < by+n; y++ {
				for x := bx; x < bx+n; x++ {
					pa, pb := a.Pix[y*w+x], b.Pix[y*w+x]
					if pa == 0 || pb == 0 || pa >= NoiseSaturation || pb >= NoiseSaturation {
						continue block
					}
					sum += float64(pa) + float64(pb)
					sumD += float64(pa) - float64(pb)
				}
			}
			meanD := sumD / (n * n)
			for y := 0; y < n; y++ {
				for x := 0; x < n; x++ {
					i := (by+y)*w + bx + x
					dd[y*n+x] = (float32(a.Pix[i]) - float32(b.Pix[i]) - float32(meanD)) * m.window[y*n+x]
				}
			}
			gocv.DFT(d, &spec, gocv.DftComplexOutput)
			sd, err := spec.DataPtrFloat32()
			if err != nil {
				return fmt.Errorf("liveness: noise: %w", err)
			}
			var all, band float64
			var inBand int
			for i := 1; i < n*n; i++ {
				all += float64(sd[2*i])*float64(sd[2*i]) + float64(sd[2*i+1])*float64(sd[2*i+1])
			}
			forBand(func(i, _, _, _ int) {
				band += float64(sd[2*i])*float64(sd[2*i]) + float64(sd[2*i+1])*float64(sd[2*i+1])
				inBand++
			})
			// Halved: the difference of two frames has twice one's noise.
			m.blocks = append(m.blocks, noiseBlock{mean: sum / (2 * n * n),
				band: band / float64(inBand) / power / 2, all: all / float64(n*n-1) / power / 2})
		}
	}
	return nil
}

// growWiped returns s with room for n more elements; when that takes a
// new array, the old one is zeroed.
func growWiped[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	g := make([]T, len(s), 2*cap(s)+n)
	copy(g, s)
	clear(s)
	return g
}

// Forget wipes what the meter measured and empties it.
func (m *NoiseMeter) Forget() {
	clear(m.tiles)
	clear(m.blocks)
	*m = NoiseMeter{window: m.window}
}

func gainOf(f *sensor.Frame) float64 {
	if f.Gain <= 0 {
		return 1
	}
	return f.Gain
}

// NoiseFit is a measured noise model and what it was measured on.
type NoiseFit struct {
	Model NoiseModel
	// Gain is the analogue gain the pairs were taken at.
	Gain float64
	// Pairs and Tiles are how many pairs of frames and usable tiles of
	// them the fit used; Outliers how many tiles it left out as a scene
	// that changed between the frames of a pair.
	Pairs, Tiles, Outliers int
	// MinGrey and MaxGrey span the tiles' mean grey levels.
	MinGrey, MaxGrey float64
	// ReadRelError and ShotRelError are the fit's relative standard
	// errors of Read and Shot.
	ReadRelError, ShotRelError float64
}

// Fit fits the noise model to the pairs added: variance = (Read × gain)² +
// Shot × gain × grey over the tiles (weighted by each tile's expected
// variance, tiles far above the line left out: something moved there),
// and Corr from the share of the noise's power in the texture band.
// It fails when there are too few usable tiles or when their grey levels
// do not separate read noise from shot noise (MaxNoiseRelError): measure
// over a wider range of grey levels then (a grey card, several
// exposures).
func (m *NoiseMeter) Fit() (NoiseFit, error) {
	fit := NoiseFit{Gain: m.gain, Pairs: m.pairs}
	if len(m.tiles) < MinNoiseTiles {
		return fit, fmt.Errorf("liveness: noise: %d usable tiles of %d px, want %d (a scene this dark or this bright leaves few)", len(m.tiles), NoiseTile, MinNoiseTiles)
	}
	use := make([]bool, len(m.tiles))
	for i := range use {
		use[i] = true
	}
	// Start from the line through each grey level's median variance: a
	// tile where the scene changed between the frames of its pair lies
	// far above its level's median as long as most did not.
	a, b, ok := medianLine(m.tiles)
	if !ok {
		return fit, errOneGrey
	}
	// Each tile's variance is within √(2/(n−1)) of its expectation.
	spread := math.Sqrt(2.0 / (NoiseTile*NoiseTile - 1))
	var cov [2][2]float64
	var s2 float64
	for iter := 0; iter < 5; iter++ {
		changed := false
		for i, t := range m.tiles {
			pred := max(a+b*t.mean, 0) + quantisation
			in := t.variance+quantisation <= pred*(1+5*spread)
			changed = changed || in != use[i]
			use[i] = in
		}
		if !changed && iter > 0 {
			break
		}
		if a, b, cov, s2, ok = weightedLine(m.tiles, use, a, b); !ok {
			return fit, errOneGrey
		}
	}
	for i, t := range m.tiles {
		if !use[i] {
			fit.Outliers++
			continue
		}
		if fit.Tiles == 0 {
			fit.MinGrey, fit.MaxGrey = t.mean, t.mean
		}
		fit.Tiles++
		fit.MinGrey, fit.MaxGrey = min(fit.MinGrey, t.mean), max(fit.MaxGrey, t.mean)
	}
	// Tiles whose noise is not one line's: a scene that moved or light that
	// flickered between the frames of a pair.
	if fit.Outliers*2 > len(m.tiles) || s2 > 4*spread*spread {
		return fit, fmt.Errorf("liveness: noise: %d of %d tiles changed between the frames of a pair, the rest scatter %.1f times as much as noise does about the fit: the scene must not move and the light must be steady",
			fit.Outliers, len(m.tiles), math.Sqrt(s2)/spread)
	}
	// Read is √a: its relative error is half a's. A parameter fitted at
	// zero is known to no relative precision (reported as 1e6).
	fit.ReadRelError = relError(math.Sqrt(cov[0][0])/2, a)
	fit.ShotRelError = relError(math.Sqrt(cov[1][1]), b)
	if e := max(fit.ReadRelError, fit.ShotRelError); e > MaxNoiseRelError {
		return fit, fmt.Errorf("liveness: noise: grey levels %.0f–%.0f leave read noise (±%.0f %%) and shot noise (±%.0f %%) apart by less than %.0f %%: measure over a wider range (a grey card, several exposures)",
			fit.MinGrey, fit.MaxGrey, 100*fit.ReadRelError, 100*fit.ShotRelError, 100*MaxNoiseRelError)
	}
	if a <= 0 || b <= 0 {
		return fit, fmt.Errorf("liveness: noise: fitted read variance %.3g and shot slope %.3g: one is not positive (grey levels %.0f–%.0f)", a, b, fit.MinGrey, fit.MaxGrey)
	}
	g := m.gain
	// The noise's share of its power in the texture band, over the blocks
	// whose noise is what the tiles' fit expects (quantisation, white,
	// taken out of both).
	var band, all float64
	for _, bl := range m.blocks {
		if pred := a + b*bl.mean + quantisation; bl.all <= pred*(1+5*spread) {
			band += bl.band - quantisation
			all += bl.all - quantisation
		}
	}
	if all <= 0 {
		return fit, errors.New("liveness: noise: no block of the frames was free of clipped pixels and movement")
	}
	corr, ok := corrForBand(band / all)
	fit.Model = NoiseModel{Read: math.Sqrt(a) / g, Shot: b / g, Corr: corr}
	if !ok {
		return fit, fmt.Errorf("liveness: noise: %.2f of the noise's mean power per bin lies in the texture band, which no crosstalk width gives (%.2f–%.2f): is the camera's output sharpened or denoised?", band/all, bandShare(0), bandShare(peakCorr()))
	}
	if err := fit.Model.Check(); err != nil {
		return fit, fmt.Errorf("liveness: noise: the fitted model is not a camera's: %w", err)
	}
	return fit, nil
}

func relError(se, v float64) float64 {
	if v == 0 || math.IsNaN(se) {
		return 1e6
	}
	return min(se/math.Abs(v), 1e6)
}

// weightedLine fits variance = a + b × mean over the tiles in use, each
// weighted by the inverse square of its expected variance at the last
// (a, b) (a sample variance's spread is proportional to it). It returns
// the parameters' covariance and the residuals' variance per unit weight
// (the squared relative scatter about the line).
func weightedLine(tiles []noiseTile, use []bool, a, b float64) (float64, float64, [2][2]float64, float64, bool) {
	weight := func(t noiseTile) float64 {
		p := max(a+b*t.mean, 0) + quantisation
		return 1 / (p * p)
	}
	var sw, sx, sy, sxx, sxy float64
	var n int
	for i, t := range tiles {
		if !use[i] {
			continue
		}
		w := weight(t)
		sw += w
		sx += w * t.mean
		sy += w * t.variance
		sxx += w * t.mean * t.mean
		sxy += w * t.mean * t.variance
		n++
	}
	det := sw*sxx - sx*sx
	if n < 3 || det <= 1e-6*sw*sxx {
		return 0, 0, [2][2]float64{}, 0, false
	}
	nb := (sw*sxy - sx*sy) / det
	na := (sy - nb*sx) / sw
	var rss float64
	for i, t := range tiles {
		if use[i] {
			r := t.variance - na - nb*t.mean
			rss += weight(t) * r * r
		}
	}
	s2 := rss / float64(n-2)
	return na, nb, [2][2]float64{{s2 * sxx / det, -s2 * sx / det}, {-s2 * sx / det, s2 * sw / det}}, s2, true
}

// medianLine fits variance = a + b × mean through the median variance of
// the tiles at each grey level (bins of 8), weighted by their number and
// the median's inverse square.
func medianLine(tiles []noiseTile) (a, b float64, ok bool) {
	bins := map[int][]noiseTile{}
	for _, t := range tiles {
		k := int(t.mean / 8)
		bins[k] = append(bins[k], t)
	}
	var sw, sx, sy, sxx, sxy float64
	levels := 0
	for _, bin := range bins {
		if len(bin) < 5 {
			continue
		}
		slices.SortFunc(bin, func(p, q noiseTile) int { return cmp.Compare(p.variance, q.variance) })
		med := bin[len(bin)/2]
		var mean float64
		for _, t := range bin {
			mean += t.mean
		}
		mean /= float64(len(bin))
		p := max(med.variance, 0) + quantisation
		w := float64(len(bin)) / (p * p)
		sw += w
		sx += w * mean
		sy += w * med.variance
		sxx += w * mean * mean
		sxy += w * mean * med.variance
		levels++
	}
	det := sw*sxx - sx*sx
	if levels < 2 || det <= 1e-6*sw*sxx {
		return 0, 0, false
	}
	b = (sw*sxy - sx*sy) / det
	return (sy - b*sx) / sw, b, true
}

// corrForBand returns the crosstalk width (NoiseModel.Corr) whose noise,
// as noiseSpectrum models it, puts share of its mean power per bin into
// the texture band's bins: what the texture cue divides by. Crosstalk
// takes power from the frequencies above the band first, so the band's
// share rises with the width up to about 0.6 px and falls beyond; the
// width is sought below that peak (a wider crosstalk with the same share
// gives the cue the same noise), and ok is false for a share no width
// gives (at most white noise's 1, or above the peak's).
func corrForBand(share float64) (corr float64, ok bool) {
	lo, hi := 0.0, peakCorr()
	switch {
	case share <= bandShare(lo):
		return lo, share > 0.95*bandShare(lo)
	case share >= bandShare(hi):
		return hi, share < 1.05*bandShare(hi)
	}
	for range 40 {
		mid := (lo + hi) / 2
		if bandShare(mid) < share {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2, true
}

// peakCorr is the crosstalk width at which bandShare peaks (ternary
// search: it rises, then falls).
func peakCorr() float64 {
	lo, hi := 0.0, maxNoiseCorr
	for range 50 {
		a, b := lo+(hi-lo)/3, hi-(hi-lo)/3
		if bandShare(a) < bandShare(b) {
			lo = a
		} else {
			hi = b
		}
	}
	return (lo + hi) / 2
}

// maxNoiseCorr bounds a noise model's crosstalk width, px.
const maxNoiseCorr = 3.0

// bandShare is the mean of noiseSpectrum(corr) over the texture band's
// bins: the band's power per bin over the mean over all bins.
func bandShare(corr float64) float64 {
	shape := noiseSpectrum(corr)
	var sum float64
	var n int
	forBand(func(_, _, _, ring int) { sum += shape[ring]; n++ })
	return sum / float64(n)
}

// Check reports what is wrong with a noise model given in configuration
// or measured: each field's bounds.
func (n NoiseModel) Check() error {
	var errs []error
	if !(n.Read > 0 && n.Read <= MaxNoiseRead) {
		errs = append(errs, fmt.Errorf("read %v outside (0, %v] grey levels", n.Read, MaxNoiseRead))
	}
	if !(n.Shot > 0 && n.Shot <= MaxNoiseShot) {
		errs = append(errs, fmt.Errorf("shot %v outside (0, %v]", n.Shot, MaxNoiseShot))
	}
	if !(n.Corr >= 0 && n.Corr <= maxNoiseCorr) {
		errs = append(errs, fmt.Errorf("corr %v outside [0, %v] px", n.Corr, maxNoiseCorr))
	}
	return errors.Join(errs...)
}

// Bounds of a NoiseModel (Check): an 8-bit camera whose read noise is
// above 20 grey levels at unity gain, or whose shot noise's variance is
// more than the grey level itself, is not a camera the cues can use.
const (
	MaxNoiseRead = 20.0
	MaxNoiseShot = 1.0
)
