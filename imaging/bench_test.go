package imaging

import (
	"image"
	"testing"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/geom"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/template"
)

// benchFrames renders n cross-session presentations of different people.
func benchFrames(b *testing.B, n int) []sensor.Frame {
	b.Helper()
	r := renderer(b)
	v := sim.DefaultVariation()
	frames := make([]sensor.Frame, n)
	for i := range frames {
		p := v.Sample(sim.NewIdentity(uint64(900+i)), i%2, i, W, H)
		p.Spread = max(p.Spread, 0.5)
		frames[i], _ = render(b, r, &p, 100)
	}
	return frames
}

// BenchmarkExtract measures a full 640×480 frame → template (target ≤ 20 ms
// on one core: run with -cpu 1 and taskset to pin it).
func BenchmarkExtract(b *testing.B) {
	frames := benchFrames(b, 8)
	e := extractor(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frames[i%len(frames)]
		if _, err := e.Extract(&f, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPresence measures one lit/unlit presence check (target ≤ 1 ms).
func BenchmarkPresence(b *testing.B) {
	frames := benchFrames(b, 2)
	r := renderer(b)
	unlit, _ := render(b, r, nil, 0)
	d := NewPresenceDetector(DefaultPresenceConfig())
	defer d.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Check(&frames[i%2], &unlit); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompareReal compares templates extracted from simulated palms
// (target ≤ 20 µs).
func BenchmarkCompareReal(b *testing.B) {
	frames := benchFrames(b, 8)
	e := extractor(b)
	tpls := make([]template.Template, len(frames))
	for i := range frames {
		res, err := e.Extract(&frames[i], nil)
		if err != nil {
			b.Fatal(err)
		}
		tpls[i] = res.Template
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := template.Compare(&tpls[i%8], &tpls[(i+3)%8]); err != nil {
			b.Fatal(err)
		}
	}
}

// The stages of Extract, one benchmark each, on the same frames as
// BenchmarkExtract (run with -cpu 1 and taskset to pin one core).

// BenchmarkStageMask: segmentation (Otsu on the smoothed frame) and the
// palm centre (distance transform).
func BenchmarkStageMask(b *testing.B) {
	frames := benchFrames(b, 8)
	srcs := make([]gocv.Mat, len(frames))
	for i := range frames {
		srcs[i], _ = frameMat(&frames[i])
		defer srcs[i].Close()
	}
	mask := gocv.NewMat()
	defer mask.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := handMask(srcs[i%len(srcs)], &mask, DefaultConfig().MinLevel, maskLevels[0]); err != nil {
			b.Fatal(err)
		}
		_, _ = palmCentre(mask)
	}
}

// BenchmarkStageLandmarks: the outline, its concavities, the finger valleys
// and the thumb, from a ready mask.
func BenchmarkStageLandmarks(b *testing.B) {
	frames := benchFrames(b, 8)
	type prepared struct {
		pts    []geom.Vec
		c      geom.Vec
		radius float64
		smooth []float32
	}
	var preps []prepared
	for i := range frames {
		src, _ := frameMat(&frames[i])
		mask, smooth := gocv.NewMat(), gocv.NewMat()
		src.ConvertTo(&smooth, gocv.MatTypeCV32F)
		gocv.GaussianBlur(smooth, &smooth, image0, 1.5, 1.5, gocv.BorderReflect101)
		sd, _ := smooth.DataPtrFloat32()
		// The mask level Extract would settle on.
		for _, level := range maskLevels {
			_, _ = handMask(src, &mask, DefaultConfig().MinLevel, level)
			c, radius := palmCentre(mask)
			cont, _ := outline(mask)
			p := prepared{c: ptOf(c), radius: radius, smooth: append([]float32(nil), sd...)}
			for _, q := range cont {
				p.pts = append(p.pts, ptOf(q))
			}
			if _, err := findLandmarks(p.pts, p.c, p.radius, W, H, p.smooth); err == nil {
				preps = append(preps, p)
				break
			}
		}
		src.Close()
		mask.Close()
		smooth.Close()
	}
	if len(preps) == 0 {
		b.Fatal("no frame has landmarks")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := preps[i%len(preps)]
		if _, err := findLandmarks(p.pts, p.c, p.radius, W, H, p.smooth); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStageFeatures: contrast normalisation, both Gabor banks, pooling
// and the reliability mask, from a 128×128 ROI.
func BenchmarkStageFeatures(b *testing.B) {
	frames := benchFrames(b, 8)
	e := extractor(b)
	var rois [][]byte
	roi := gocv.NewMat()
	defer roi.Close()
	for i := range frames {
		if _, err := e.Extract(&frames[i], &roi); err != nil {
			b.Fatal(err)
		}
		rois = append(rois, roi.ToBytes())
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := e.FromROI(rois[i%len(rois)], ROISize, ROISize); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlainOpenCV is the reference for BenchmarkExtract: what a plain
// OpenCV palm pipeline costs on the same frames (the usual Python/OpenCV
// recipe, here through gocv: blur, Otsu, largest contour, convex hull and
// convexity defects, distance transform, an affine warp to 128×128, and
// twelve Gabor filters), with none of palmd's gates, valley refinement,
// width measurement or reliability mask.
func BenchmarkPlainOpenCV(b *testing.B) {
	frames := benchFrames(b, 8)
	srcs := make([]gocv.Mat, len(frames))
	for i := range frames {
		srcs[i], _ = frameMat(&frames[i])
		defer srcs[i].Close()
	}
	e := extractor(b)
	blur, bin, dist, labels, roi, f32, resp := gocv.NewMat(), gocv.NewMat(), gocv.NewMat(), gocv.NewMat(), gocv.NewMat(), gocv.NewMat(), gocv.NewMat()
	for _, m := range []*gocv.Mat{&blur, &bin, &dist, &labels, &roi, &f32, &resp} {
		defer m.Close()
	}
	warp := gocv.GetRotationMatrix2D(image.Pt(W/2, H/2), 10, 0.5)
	defer warp.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		src := srcs[i%len(srcs)]
		gocv.GaussianBlur(src, &blur, image.Pt(5, 5), 0, 0, gocv.BorderDefault)
		gocv.Threshold(blur, &bin, 0, 255, gocv.ThresholdBinary|gocv.ThresholdOtsu)
		cs := gocv.FindContours(bin, gocv.RetrievalExternal, gocv.ChainApproxNone)
		best := 0
		for k := 1; k < cs.Size(); k++ {
			if gocv.ContourArea(cs.At(k)) > gocv.ContourArea(cs.At(best)) {
				best = k
			}
		}
		hull := gocv.NewMat()
		defects := gocv.NewMat()
		gocv.ConvexHull(cs.At(best), &hull, false, false)
		gocv.ConvexityDefects(cs.At(best), hull, &defects)
		hull.Close()
		defects.Close()
		cs.Close()
		gocv.DistanceTransform(bin, &dist, &labels, gocv.DistL2, gocv.DistanceMask5, gocv.DistanceLabelCComp)
		gocv.WarpAffine(src, &roi, warp, image.Pt(ROISize, ROISize))
		roi.ConvertTo(&f32, gocv.MatTypeCV32F)
		for _, bank := range []*gaborBank{&e.vein, &e.line} {
			for _, k := range bank.kernels {
				gocv.Filter2D(f32, &resp, -1, k, image.Pt(-1, -1), 0, gocv.BorderReflect101)
			}
		}
	}
}

// BenchmarkAssess measures the quality gates and ROI placement alone, what
// the daemon runs on every frame of a capture (the template is extracted
// once, from the best frame, after liveness).
func BenchmarkAssess(b *testing.B) {
	frames := benchFrames(b, 8)
	e := extractor(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frames[i%len(frames)]
		if _, err := e.Assess(&f); err != nil {
			b.Fatal(err)
		}
	}
}
