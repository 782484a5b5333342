package imaging

import (
	"errors"
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/geom"
	"github.com/palmd/palmd/sensor"
)

// frameMat copies a frame's pixels into a new 8-bit Mat. The copy matters:
// gocv.NewMatFromBytes wraps the slice without copying, and a V4L2 driver
// reuses its buffers.
func frameMat(f *sensor.Frame) (gocv.Mat, error) {
	if err := f.Validate(); err != nil {
		return gocv.Mat{}, err
	}
	m := gocv.NewMatWithSize(f.Height, f.Width, gocv.MatTypeCV8U)
	d, err := m.DataPtrUint8()
	if err != nil {
		m.Close()
		return gocv.Mat{}, fmt.Errorf("imaging: %w", err)
	}
	copy(d, f.Pix)
	return m, nil
}

// handMask segments the largest bright object of an 8-bit NIR image into
// dst (255 inside). Real captures have a dark box background (≈18) and a lit
// hand (≈90), with stray light and glints near the border. Otsu's threshold
// splits the smoothed image into the two classes; the mask threshold is then
// placed at level (0–1) between the classes' means: low enough to keep the
// dim, curved-away hand edges and a dark palm hollow in an overexposed
// frame, and raised on a retry to open narrow gaps between fingers held
// close together. Small bright blobs are dropped by keeping only the
// largest component. It returns the component's area in pixels.
func handMask(src gocv.Mat, dst *gocv.Mat, minLevel float32, level float64) (area int, err error) {
	blur := gocv.NewMat()
	defer blur.Close()
	gocv.GaussianBlur(src, &blur, image.Pt(5, 5), 0, 0, gocv.BorderReflect101)
	bin := gocv.NewMat()
	defer bin.Close()
	lo, hi := otsuClasses(blur)
	thresh := float32(lo + level*(hi-lo))
	if thresh < minLevel {
		// Otsu always splits something; an image with nothing bright
		// in it splits noise. Use the floor instead.
		thresh = minLevel
	}
	gocv.Threshold(blur, &bin, thresh, 255, gocv.ThresholdBinary)
	// Stray light along the frame's edges makes bright strips a few
	// pixels wide there; one that touches two fingertips closes the gap
	// between them into a hole, and the valley leaves the outline. An
	// opening wider than such a strip removes it; fingers are far wider.
	// The frame is padded with background first: OpenCV's erosion takes
	// the outside for foreground, which would keep a strip on the edge.
	removeEdgeStrips(&bin)
	labels, stats, cents := gocv.NewMat(), gocv.NewMat(), gocv.NewMat()
	defer labels.Close()
	defer stats.Close()
	defer cents.Close()
	n := gocv.ConnectedComponentsWithStatsWithParams(bin, &labels, &stats, &cents, 8, gocv.MatTypeCV32S, gocv.CCL_DEFAULT)
	best, bestArea := 0, 0
	for i := 1; i < n; i++ {
		if a := int(stats.GetIntAt(i, int(gocv.CC_STAT_AREA))); a > bestArea {
			best, bestArea = i, a
		}
	}
	if best == 0 {
		return 0, errNoObject
	}
	v := gocv.NewScalar(float64(best), 0, 0, 0)
	gocv.InRangeWithScalar(labels, v, v, dst)
	return bestArea, nil
}

// otsuClasses splits an 8-bit image's histogram by Otsu's method and
// returns the two classes' mean grey. Values above the 99th percentile are
// clipped first: a saturated glint covers a few hundred pixels, and would
// otherwise become the bright class of a frame whose hand is far and dim.
func otsuClasses(img gocv.Mat) (lo, hi float64) {
	d, err := img.DataPtrUint8()
	if err != nil || len(d) == 0 {
		return 0, 255
	}
	var hist [256]float64
	for _, v := range d {
		hist[v]++
	}
	n := float64(len(d))
	clip, acc := 255, 0.0
	for v := 255; v > 0; v-- {
		acc += hist[v]
		if acc > 0.01*n {
			clip = v
			break
		}
	}
	for v := clip + 1; v < 256; v++ {
		hist[clip] += hist[v]
		hist[v] = 0
	}
	var total float64
	for v, c := range hist {
		total += float64(v) * c
	}
	var wB, sumB, best float64
	t := 0
	for v := 0; v < 256; v++ {
		wB += hist[v]
		if wB == 0 {
			continue
		}
		wF := n - wB
		if wF == 0 {
			break
		}
		sumB += float64(v) * hist[v]
		mB, mF := sumB/wB, (total-sumB)/wF
		if between := wB * wF * (mB - mF) * (mB - mF); between > best {
			best, t = between, v
		}
	}
	var sl, nl, sh, nh float64
	for v, c := range hist {
		if v <= t {
			sl, nl = sl+float64(v)*c, nl+c
		} else {
			sh, nh = sh+float64(v)*c, nh+c
		}
	}
	if nl == 0 || nh == 0 {
		return float64(t), float64(t)
	}
	return sl / nl, sh / nh
}

var errNoObject = errors.New("no bright object")

// removeEdgeStrips opens the binary mask bin with an edgeStripWidth
// square, the frame padded with background.
func removeEdgeStrips(bin *gocv.Mat) {
	const pad = edgeStripWidth / 2
	padded := gocv.NewMat()
	defer padded.Close()
	gocv.CopyMakeBorder(*bin, &padded, pad, pad, pad, pad, gocv.BorderConstant, colorBlack)
	kernel := gocv.GetStructuringElement(gocv.MorphRect, image.Pt(edgeStripWidth, edgeStripWidth))
	defer kernel.Close()
	gocv.MorphologyEx(padded, &padded, gocv.MorphOpen, kernel)
	inner := padded.Region(image.Rect(pad, pad, pad+bin.Cols(), pad+bin.Rows()))
	defer inner.Close()
	inner.CopyTo(bin)
}

// edgeStripWidth is the side, in pixels, of the opening that removes the
// bright strips stray light draws along the frame's edges (up to 6 px
// wide at 640×480); a finger is 25 px wide or more.
const edgeStripWidth = 7

// outline returns the largest external contour of a binary mask.
func outline(mask gocv.Mat) ([]image.Point, error) {
	cs := gocv.FindContours(mask, gocv.RetrievalExternal, gocv.ChainApproxNone)
	defer cs.Close()
	best, bestLen := -1, 0
	for i := 0; i < cs.Size(); i++ {
		if n := cs.At(i).Size(); n > bestLen {
			best, bestLen = i, n
		}
	}
	if best < 0 {
		return nil, errNoObject
	}
	return cs.At(best).ToPoints(), nil
}

// palmCentre finds the centre and radius of the largest circle inscribed in
// the mask: the palm, since fingers and wrist are narrower. It is a stable
// reference point that does not depend on how the fingers are spread. The
// distance transform runs at half resolution: the centre only steers the
// landmark search, and this is the costliest step of segmentation.
func palmCentre(mask gocv.Mat) (c image.Point, radius float64) {
	half, dist, labels := gocv.NewMat(), gocv.NewMat(), gocv.NewMat()
	defer half.Close()
	defer dist.Close()
	defer labels.Close()
	gocv.Resize(mask, &half, image.Pt(max(1, mask.Cols()/2), max(1, mask.Rows()/2)), 0, 0, gocv.InterpolationNearestNeighbor)
	// Outside the frame counts as background: a hand cut off by the frame
	// edge must not look bigger than the part that is in view.
	padded := gocv.NewMat()
	defer padded.Close()
	gocv.CopyMakeBorder(half, &padded, 1, 1, 1, 1, gocv.BorderConstant, colorBlack)
	gocv.DistanceTransform(padded, &dist, &labels, gocv.DistL2, gocv.DistanceMask5, gocv.DistanceLabelCComp)
	_, mx, _, loc := gocv.MinMaxLoc(dist)
	return image.Pt(2*(loc.X-1)+1, 2*(loc.Y-1)+1), 2 * float64(mx)
}

func ptOf(p image.Point) geom.Vec { return geom.V(float64(p.X), float64(p.Y)) }

var (
	colorBlack = color.RGBA{0, 0, 0, 0}
	roiPoint   = image.Pt(ROISize, ROISize)
	image0     = image.Point{}
	innerRect  = image.Rect(ROISize/8, ROISize/8, ROISize-ROISize/8, ROISize-ROISize/8)
)

// FrameMat copies a frame into a new 8-bit Mat (the caller closes it):
// for packages that build on imaging and must not wrap a driver's buffer.
func FrameMat(f *sensor.Frame) (gocv.Mat, error) { return frameMat(f) }

// OtsuClasses returns the mean grey of the dark and the bright class of an
// 8-bit image split by Otsu's threshold (saturated pixels ignored): the
// background's and the hand's level.
func OtsuClasses(img gocv.Mat) (lo, hi float64) { return otsuClasses(img) }
