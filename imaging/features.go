package imaging

import (
	"fmt"
	"image"
	"math"
	"slices"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/template"
)

// gaborBank is one modality's filters: even (cosine) Gabor kernels at
// Orientations evenly spaced angles, with the DC removed so flat skin gives
// no response whatever its brightness.
type gaborBank struct {
	kernels [template.Orientations]gocv.Mat
	// scale is the ROI downscaling before filtering (1 = full 128×128).
	scale int
}

// gaborKernel builds the even Gabor kernel of OpenCV's getGaborKernel
// (which gocv does not wrap): exp(−(x'² + γ²y'²)/2σ²)·cos(2πx'/λ), x' across
// a line of orientation θ.
func gaborKernel(size int, sigma, theta, lambda, gamma float64) gocv.Mat {
	k := gocv.NewMatWithSize(size, size, gocv.MatTypeCV32F)
	d, _ := k.DataPtrFloat32()
	h := size / 2
	st, ct := math.Sincos(theta)
	var sum float64
	var n int
	for y := -h; y <= h; y++ {
		for x := -h; x <= h; x++ {
			xr := float64(x)*ct + float64(y)*st
			yr := -float64(x)*st + float64(y)*ct
			v := math.Exp(-(xr*xr+gamma*gamma*yr*yr)/(2*sigma*sigma)) * math.Cos(2*math.Pi*xr/lambda)
			d[(y+h)*size+x+h] = float32(v)
			sum += v
			n++
		}
	}
	// Remove the DC, then scale to unit L1 norm so banks are comparable.
	mean := sum / float64(n)
	var l1 float64
	for i := range d {
		d[i] -= float32(mean)
		l1 += math.Abs(float64(d[i]))
	}
	for i := range d {
		d[i] /= float32(l1)
	}
	return k
}

func newGaborBank(size int, sigma, lambda, gamma float64, scale int) gaborBank {
	var b gaborBank
	b.scale = scale
	for o := range b.kernels {
		b.kernels[o] = gaborKernel(size, sigma, math.Pi*float64(o)/template.Orientations, lambda, gamma)
	}
	return b
}

func (b *gaborBank) Close() {
	for i := range b.kernels {
		b.kernels[i].Close()
	}
}

// Feature parameters, chosen by measurement on cross-session synthetic sets
// whose statistics match real 940 nm captures (see sensor/sim).
var (
	// Veins are 2–8 mm wide; the ROI is ≈52 mm, so ≈2.5 px/mm at 128 px.
	// Filter at 64 px, wavelength 10 px there (≈8 mm).
	veinBank = func() gaborBank { return newGaborBank(25, 4, 10, 0.6, 2) }
	// Palm lines are 1–2 mm wide: full resolution, wavelength 7 px.
	lineBank = func() gaborBank { return newGaborBank(9, 1.4, 3.5, 0.5, 2) }
)

const (
	normSigma     = 10   // local contrast normalisation scale, ROI px
	minCellCover  = 0.95 // share of a cell that must be hand
	maxCellSat    = 0.05 // share of a cell that may be saturated
	minCellEnergy = 0.25 // cells weaker than this × median energy are fragile
)

// features computes the template's bit planes and masks from a 128×128
// 8-bit ROI and its hand coverage (255 = hand).
func (e *Extractor) features(roi, cover gocv.Mat, t *template.Template) error {
	norm := e.scratch(0)
	roi.ConvertTo(norm, gocv.MatTypeCV32F)
	mean, sq := e.scratch(1), e.scratch(2)
	gocv.GaussianBlur(*norm, mean, image.Point{}, normSigma, normSigma, gocv.BorderReflect101)
	gocv.Subtract(*norm, *mean, norm)
	gocv.Multiply(*norm, *norm, sq)
	gocv.GaussianBlur(*sq, sq, image.Point{}, normSigma, normSigma, gocv.BorderReflect101)
	nd, err := norm.DataPtrFloat32()
	if err != nil {
		return fmt.Errorf("imaging: %w", err)
	}
	sd, _ := sq.DataPtrFloat32()
	for i := range nd {
		nd[i] /= float32(math.Sqrt(float64(sd[i]))) + 0.5
	}

	// Cells that are hand and not saturated.
	valid := make([]bool, template.Grid*template.Grid)
	cd, _ := cover.DataPtrUint8()
	rd, _ := roi.DataPtrUint8()
	cell := ROISize / template.Grid
	for gy := 0; gy < template.Grid; gy++ {
		for gx := 0; gx < template.Grid; gx++ {
			var hand, sat int
			for y := gy * cell; y < (gy+1)*cell; y++ {
				for x := gx * cell; x < (gx+1)*cell; x++ {
					if cd[y*ROISize+x] != 0 {
						hand++
					}
					if rd[y*ROISize+x] >= 250 {
						sat++
					}
				}
			}
			n := float64(cell * cell)
			valid[gy*template.Grid+gx] = float64(hand) >= minCellCover*n && float64(sat) <= maxCellSat*n
		}
	}

	for m, bank := range []*gaborBank{&e.vein, &e.line} {
		src := norm
		if bank.scale > 1 {
			src = e.scratch(3)
			gocv.Resize(*norm, src, image.Pt(ROISize/bank.scale, ROISize/bank.scale), 0, 0, gocv.InterpolationArea)
		}
		energy := make([]float32, template.Grid*template.Grid)
		resp, pooled := e.scratch(4), e.scratch(5)
		for o := range bank.kernels {
			gocv.Filter2D(*src, resp, -1, bank.kernels[o], image.Pt(-1, -1), 0, gocv.BorderReflect101)
			gocv.Resize(*resp, pooled, image.Pt(template.Grid, template.Grid), 0, 0, gocv.InterpolationArea)
			pd, err := pooled.DataPtrFloat32()
			if err != nil {
				return fmt.Errorf("imaging: %w", err)
			}
			for y := 0; y < template.Grid; y++ {
				var row uint32
				for x := 0; x < template.Grid; x++ {
					v := pd[y*template.Grid+x]
					if v < 0 {
						row |= 1 << uint(x)
					}
					energy[y*template.Grid+x] += float32(math.Abs(float64(v)))
				}
				t.Planes[m][o][y] = row
			}
		}
		// Fragile cells: weak oriented energy flips sign with noise.
		var es []float32
		for i, v := range valid {
			if v {
				es = append(es, energy[i])
			}
		}
		thr := float32(0)
		if len(es) > 0 {
			slices.Sort(es)
			thr = minCellEnergy * es[len(es)/2]
		}
		for y := 0; y < template.Grid; y++ {
			var row uint32
			for x := 0; x < template.Grid; x++ {
				i := y*template.Grid + x
				if valid[i] && energy[i] >= thr {
					row |= 1 << uint(x)
				}
			}
			t.Mask[m][y] = row
		}
		clear(energy)
	}
	return nil
}
