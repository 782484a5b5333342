package sim

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"

	"gocv.io/x/gocv"
)

// Stats are the image statistics that characterise a contactless NIR palm
// capture. They are the figures measured on real 940 nm captures that the
// simulator is calibrated against (see the package documentation).
type Stats struct {
	Coverage      float64 // share of the frame covered by the hand
	HandMean      float64 // mean grey of the hand
	BgMean        float64 // mean grey of the background
	BgP99         float64 // 99th percentile of the background
	PalmMean      float64 // mean grey of the palm interior
	PalmStd       float64 // its standard deviation (mostly illumination fall-off)
	VeinContrast  float64 // std of (image − Gaussian σ=8 px) in the palm
	VeinP5        float64 // 5th percentile of that difference
	FineNoise     float64 // std of (image − Gaussian σ=1 px) in the palm
	Saturated     float64 // share of pixels ≥ 250
	LaplacianVar  float64 // variance of the 3×3 Laplacian in the palm
	PalmPixels    int     // how many pixels the palm figures were measured on
	BackgroundPix int
}

func (s Stats) String() string {
	return fmt.Sprintf("coverage %.3f hand %.1f bg %.1f bgP99 %.1f palm %.1f±%.1f vein %.2f p5 %.2f fine %.2f sat %.4f lap %.2f",
		s.Coverage, s.HandMean, s.BgMean, s.BgP99, s.PalmMean, s.PalmStd, s.VeinContrast, s.VeinP5, s.FineNoise, s.Saturated, s.LaplacianVar)
}

// Measure computes Stats for an 8-bit frame, given the hand mask (non-zero
// where the hand is) and the palm region as a quadrilateral in frame pixels
// (for example Truth.ROI).
func Measure(pix []byte, width, height int, handMask []byte, palm [4][2]float64) (Stats, error) {
	n := width * height
	if len(pix) != n || len(handMask) != n {
		return Stats{}, fmt.Errorf("sim: measure: %d pixels and %d mask bytes for %dx%d", len(pix), len(handMask), width, height)
	}
	img, err := gocv.NewMatFromBytes(height, width, gocv.MatTypeCV8U, slices.Clone(pix))
	if err != nil {
		return Stats{}, err
	}
	defer img.Close()
	f := gocv.NewMat()
	defer f.Close()
	img.ConvertTo(&f, gocv.MatTypeCV32F)
	fd, _ := f.DataPtrFloat32()
	highpass := func(sigma float64) []float32 {
		b := gocv.NewMat()
		defer b.Close()
		gocv.GaussianBlur(f, &b, image.Point{}, sigma, sigma, gocv.BorderReflect101)
		bd, _ := b.DataPtrFloat32()
		out := make([]float32, n)
		for i := range out {
			out[i] = fd[i] - bd[i]
		}
		return out
	}
	lap := gocv.NewMat()
	defer lap.Close()
	gocv.Laplacian(f, &lap, gocv.MatTypeCV32F, 1, 1, 0, gocv.BorderReflect101)
	ld, _ := lap.DataPtrFloat32()

	palmMask := gocv.NewMatWithSize(height, width, gocv.MatTypeCV8U)
	defer palmMask.Close()
	palmMask.SetTo(gocv.NewScalar(0, 0, 0, 0))
	pts := make([]image.Point, 4)
	for i, c := range palm {
		pts[i] = image.Pt(int(math.Round(c[0])), int(math.Round(c[1])))
	}
	pv := gocv.NewPointsVectorFromPoints([][]image.Point{pts})
	gocv.FillPoly(&palmMask, pv, color.RGBA{255, 255, 255, 255})
	pv.Close()
	pm, _ := palmMask.DataPtrUint8()

	hp8, hp1 := highpass(8), highpass(1)
	var s Stats
	var hand, bg, palmV, vein, fine, lapV []float64
	sat := 0
	for i := 0; i < n; i++ {
		v := float64(pix[i])
		if pix[i] >= 250 {
			sat++
		}
		if handMask[i] == 0 {
			bg = append(bg, v)
			continue
		}
		hand = append(hand, v)
		if pm[i] != 0 {
			palmV = append(palmV, v)
			vein = append(vein, float64(hp8[i]))
			fine = append(fine, float64(hp1[i]))
			lapV = append(lapV, float64(ld[i]))
		}
	}
	s.Coverage = float64(len(hand)) / float64(n)
	s.Saturated = float64(sat) / float64(n)
	s.HandMean, _ = MeanStd(hand)
	s.BgMean, _ = MeanStd(bg)
	s.BgP99 = percentile(bg, 0.99)
	s.PalmMean, s.PalmStd = MeanStd(palmV)
	_, s.VeinContrast = MeanStd(vein)
	s.VeinP5 = percentile(vein, 0.05)
	_, s.FineNoise = MeanStd(fine)
	_, lsd := MeanStd(lapV)
	s.LaplacianVar = lsd * lsd
	s.PalmPixels, s.BackgroundPix = len(palmV), len(bg)
	return s, nil
}

// MeanStd returns the mean and (population) standard deviation of v, NaN
// for an empty slice.
func MeanStd(v []float64) (mean, std float64) {
	if len(v) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)))
}

func percentile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

// ScaleQuad scales a quadrilateral about its centre, for example to grow
// Truth.ROI (the recognition square) to the whole palm interior.
func ScaleQuad(q [4][2]float64, k float64) [4][2]float64 {
	var cx, cy float64
	for _, c := range q {
		cx, cy = cx+c[0]/4, cy+c[1]/4
	}
	for i, c := range q {
		q[i] = [2]float64{cx + (c[0]-cx)*k, cy + (c[1]-cy)*k}
	}
	return q
}

// PalmInterior is the region the palm statistics are measured over: the
// true recognition ROI grown by 35 %, which covers the palm without its
// outline.
func PalmInterior(t Truth) [4][2]float64 { return ScaleQuad(t.ROI, 1.35) }
