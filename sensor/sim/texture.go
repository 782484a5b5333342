package sim

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"

	"github.com/palmd/palmd/geom"
	"gocv.io/x/gocv"
)

// Hand-space raster: every identity is drawn once, at zero finger spread,
// into float images covering this rectangle of hand space (mm).
const (
	texMinX, texMaxX = -125.0, 125.0
	texMinY, texMaxY = -235.0, 175.0
)

// texture is an identity drawn in hand space: skin reflectance (veins,
// creases and skin texture included) and one coverage mask per rigid part.
// Part 0 is palm+wrist; 1–4 the fingers index…little; 5 the thumb.
type texture struct {
	pxPerMM float64
	// albedo is the skin's reflectance without veins and creases
	// (CV_32F, 0–1); veins and lines are their absorption (0–1), kept
	// apart because blood volume and cupping change them between captures.
	albedo, veins, lines gocv.Mat
	parts                [6]gocv.Mat
	size                 image.Point
	// veinGain and lineGain turn veins and lines into fractional
	// reflectance loss at a presentation's VeinGain of 1.
	veinGain, lineGain float32
}

func (t *texture) Close() {
	t.albedo.Close()
	t.veins.Close()
	t.lines.Close()
	for i := range t.parts {
		t.parts[i].Close()
	}
}

// toTex converts hand-space millimetres to texture pixel coordinates.
func (t *texture) toTex(p geom.Vec) (float64, float64) {
	return (p.X - texMinX) * t.pxPerMM, (texMaxY - p.Y) * t.pxPerMM
}

func (t *texture) pt(p geom.Vec) image.Point {
	x, y := t.toTex(p)
	return image.Pt(int(math.Round(x)), int(math.Round(y)))
}

// fingerPolygon outlines a finger as a capsule in hand space, starting a
// little inside the palm so that a rotated finger leaves no gap at its base.
func fingerPolygon(f finger) []geom.Vec {
	dir := geom.V(0, 1).Rot(-f.Angle)
	side := geom.V(dir.Y, -dir.X)
	r := f.Width / 2
	base := f.Base.Sub(dir.Mul(10))
	tip := f.Base.Add(dir.Mul(f.Length - r))
	var poly []geom.Vec
	// Fingertips are narrower than the base.
	rb := r * f.Taper
	poly = append(poly, base.Add(side.Mul(rb)), tip.Add(side.Mul(r*0.88)))
	for k := 1; k < 12; k++ {
		a := math.Pi * float64(k) / 12
		poly = append(poly, tip.Add(side.Mul(r*0.88*math.Cos(a))).Add(dir.Mul(r*0.88*math.Sin(a))))
	}
	poly = append(poly, tip.Sub(side.Mul(r*0.88)), base.Sub(side.Mul(rb)))
	return poly
}

func (t *texture) fill(dst *gocv.Mat, poly []geom.Vec) {
	pts := make([]image.Point, len(poly))
	for i, p := range poly {
		pts[i] = t.pt(p)
	}
	pv := gocv.NewPointsVectorFromPoints([][]image.Point{pts})
	defer pv.Close()
	gocv.FillPolyWithParams(dst, pv, color.RGBA{255, 255, 255, 255}, gocv.LineAA, 0, image.Point{})
}

// newTexture draws id at pxPerMM.
func newTexture(id *Identity, pxPerMM float64) (*texture, error) {
	t := &texture{pxPerMM: pxPerMM}
	t.size = image.Pt(int((texMaxX-texMinX)*pxPerMM), int((texMaxY-texMinY)*pxPerMM))
	w, h := t.size.X, t.size.Y

	// Part masks, drawn as 8-bit with anti-aliased edges, then smoothed a
	// little: skin edges are rounded, never pixel-sharp.
	for i := range t.parts {
		t.parts[i] = gocv.NewMatWithSize(h, w, gocv.MatTypeCV8U)
		t.parts[i].SetTo(gocv.NewScalar(0, 0, 0, 0))
	}
	t.fill(&t.parts[0], id.palmPolygon())
	for i, f := range id.Fingers {
		t.fill(&t.parts[i+1], fingerPolygon(f))
	}
	t.fill(&t.parts[5], fingerPolygon(id.Thumb))
	// The thenar eminence is a soft bulge that belongs to the palm.
	thenar := t.pt(geom.V(id.PalmWidth/2-13, -id.PalmLength*0.2))
	gocv.EllipseWithParams(&t.parts[0], thenar,
		image.Pt(int(16*pxPerMM), int(28*pxPerMM)), -12, 0, 360, color.RGBA{255, 255, 255, 255}, -1, gocv.LineAA, 0)

	// Reflectance: base × skin texture × (1 − veins) × (1 − creases).
	r := rand.New(rand.NewPCG(id.SkinSeed, 0x5c1e))
	t.albedo = noiseField(r, w, h, 10*pxPerMM, 0.035)
	fine := noiseField(r, w, h, 1.2*pxPerMM, 0.012)
	gocv.Add(t.albedo, fine, &t.albedo)
	fine.Close()

	veins := gocv.NewMatWithSize(h, w, gocv.MatTypeCV32F)
	t.veins = veins
	veins.SetTo(gocv.NewScalar(0, 0, 0, 0))
	for _, s := range id.veins {
		strength := 1 - 0.65*s.Depth
		thick := max(1, int(math.Round(s.Width*pxPerMM)))
		gocv.Line(&veins, t.pt(s.A), t.pt(s.B), colorRGBA(uint8(255*strength)), thick)
	}
	// Light scatters in tissue above the vein: the absorption profile is
	// broad and soft (≈0.8 mm), which is why veins look faint and wide.
	gocv.GaussianBlur(veins, &veins, image.Point{}, 0.8*pxPerMM, 0.8*pxPerMM, gocv.BorderReflect101)

	lines := gocv.NewMatWithSize(h, w, gocv.MatTypeCV32F)
	t.lines = lines
	lines.SetTo(gocv.NewScalar(0, 0, 0, 0))
	for _, c := range id.lines {
		thick := max(1, int(math.Round(c.Width*pxPerMM)))
		prev := t.pt(c.at(0))
		for k := 1; k <= 24; k++ {
			p := t.pt(c.at(float64(k) / 24))
			// Creases fade toward their ends.
			fade := math.Sin(math.Pi * (float64(k) - 0.5) / 24)
			gocv.Line(&lines, prev, p, colorRGBA(uint8(255*c.Darkness/0.12*(0.4+0.6*fade))), thick)
			prev = p
		}
	}
	// Finger flexion creases at the joints.
	for _, f := range append(id.Fingers[:], id.Thumb) {
		dir := geom.V(0, 1).Rot(-f.Angle)
		side := geom.V(dir.Y, -dir.X)
		for _, at := range []float64{0.02, 0.38, 0.68} {
			c := f.Base.Add(dir.Mul(f.Length * at))
			gocv.Line(&lines, t.pt(c.Add(side.Mul(f.Width*0.42))), t.pt(c.Sub(side.Mul(f.Width*0.42))),
				colorRGBA(128), max(1, int(0.8*pxPerMM)))
		}
	}
	gocv.GaussianBlur(lines, &lines, image.Point{}, 0.35*pxPerMM, 0.35*pxPerMM, gocv.BorderReflect101)

	relief := reliefShading(id, w, h, pxPerMM)

	a, err := t.albedo.DataPtrFloat32()
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("sim: albedo buffer: %w", err)
	}
	for i := range a {
		a[i] = float32(id.Reflectance) * relief[i] * (1 + a[i])
	}
	t.veinGain = float32(0.1 * id.VeinContrast / 255)
	t.lineGain = 0.12 / 255
	return t, nil
}

// noiseField returns band-limited noise: Gaussian noise on a coarse grid with
// cell size cell pixels, resized with bicubic interpolation to w×h and
// scaled to standard deviation sd.
func noiseField(r *rand.Rand, w, h int, cell, sd float64) gocv.Mat {
	gw, gh := max(2, int(float64(w)/cell)+2), max(2, int(float64(h)/cell)+2)
	g := gocv.NewMatWithSize(gh, gw, gocv.MatTypeCV32F)
	d, _ := g.DataPtrFloat32()
	for i := range d {
		d[i] = float32(r.NormFloat64() * sd)
	}
	out := gocv.NewMat()
	gocv.Resize(g, &out, image.Pt(w, h), 0, 0, gocv.InterpolationCubic)
	g.Close()
	return out
}

// reliefShading returns the shading that the palm's relief adds under a
// light near the camera: the thenar and hypothenar eminences bulge toward
// the light and look brighter, the hollow of the palm is darker. Real
// captures owe most of the palm's grey-level spread to this and to the
// illuminator's fall-off, not to veins.
func reliefShading(id *Identity, w, h int, pxPerMM float64) []float32 {
	pw, pl := id.PalmWidth, id.PalmLength
	type bump struct{ x, y, sx, sy, amp float64 }
	bumps := []bump{
		{pw/2 - 12, -pl * 0.22, 16, 24, 0.28},  // thenar eminence
		{-pw/2 + 12, -pl * 0.15, 13, 30, 0.18}, // hypothenar eminence
		{0, pl/2 - 12, 34, 9, 0.14},            // pads under the fingers
		{pw * 0.05, -pl * 0.02, 22, 24, -0.30}, // hollow of the palm
	}
	out := make([]float32, w*h)
	for i := range out {
		out[i] = 1
	}
	// Each bump is a separable Gaussian: one exp per column and per row.
	ex, ey := make([]float32, w), make([]float32, h)
	for _, b := range bumps {
		for x := range ex {
			d := (texMinX + float64(x)/pxPerMM - b.x) / b.sx
			ex[x] = float32(math.Exp(-d * d / 2))
		}
		for y := range ey {
			d := (texMaxY - float64(y)/pxPerMM - b.y) / b.sy
			ey[y] = float32(b.amp * math.Exp(-d*d/2))
		}
		for y := 0; y < h; y++ {
			row, fy := out[y*w:(y+1)*w], ey[y]
			if math.Abs(float64(fy)) < 1e-4 {
				continue
			}
			for x := range row {
				row[x] += fy * ex[x]
			}
		}
	}
	return out
}
