package sim

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"

	"github.com/palmd/palmd/geom"
	"gocv.io/x/gocv"
)

// texCache keeps the textures of the few identities drawn most recently:
// building one costs tens of milliseconds, and a scenario or data set
// renders the same identity many times in a row.
type texCache struct {
	max   int
	order []*Identity
	byID  map[*Identity]*texture
}

func (c *texCache) get(id *Identity) (*texture, error) {
	if t, ok := c.byID[id]; ok {
		return t, nil
	}
	t, err := newTexture(id, texPxPerMM)
	if err != nil {
		return nil, err
	}
	if c.byID == nil {
		c.byID = map[*Identity]*texture{}
	}
	if len(c.order) >= c.max {
		old := c.order[0]
		c.order = c.order[1:]
		c.byID[old].Close()
		delete(c.byID, old)
	}
	c.order = append(c.order, id)
	c.byID[id] = t
	return t, nil
}

func (c *texCache) close() {
	for _, t := range c.byID {
		t.Close()
	}
	c.byID, c.order = nil, nil
}

// affine2x3 returns a CV_64F 2×3 matrix.
func affine2x3(m [6]float64) gocv.Mat {
	a := gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F)
	for i, v := range m {
		a.SetDoubleAt(i/3, i%3, v)
	}
	return a
}

// pose builds, for presentation p, the hand in hand-texture space with its
// fingers spread as p says, shaded where the skin curves away at the
// outline: channel 0 is radiance factor (reflectance × shading × coverage),
// channel 1 coverage (0–1). The result is cached until the presentation's
// shape changes; pose and lighting do not invalidate it.
func (r *Renderer) pose(p *Presentation) error {
	key := posedKey{p.Identity, p.Spread, p.Deform, p.DeformSeed, p.Attack, p.VeinGain, p.Cup, p.Moisture, p.Glints, p.SkinSeed, true}
	if r.posedKey == key {
		return nil
	}
	tex, err := r.textures.get(p.Identity)
	if err != nil {
		return err
	}
	w, h := tex.size.X, tex.size.Y
	n := w * h
	rad := make([]float32, n)
	cov := make([]float32, n)
	alb, err := r.skin(p, tex)
	if err != nil {
		return err
	}
	palm, _ := tex.parts[0].DataPtrUint8()
	for i := range n {
		m := float32(palm[i]) / 255
		rad[i], cov[i] = alb[i]*m, m
	}
	r.spreadFingers(p, tex, rad, cov)
	bin := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8U)
	defer bin.Close()
	bd, _ := bin.DataPtrUint8()
	for i, m := range cov {
		if m > 0.5 {
			bd[i] = 255
		} else {
			bd[i] = 0
		}
	}
	addWebbing(tex, &bin, alb, rad, cov)
	// Distance to the outline drives the edge shading of a real hand.
	dist, labels := gocv.NewMat(), gocv.NewMat()
	defer dist.Close()
	defer labels.Close()
	gocv.DistanceTransform(bin, &dist, &labels, gocv.DistL2, gocv.DistanceMask5, gocv.DistanceLabelCComp)
	dd, _ := dist.DataPtrFloat32()
	switch p.Attack.Species {
	case AttackPrint, AttackVeinPrint:
		if err := r.printPhoto(p, tex, rad, cov, dd); err != nil {
			return err
		}
	case AttackScreen:
		phoneScreen(p, tex, rad, cov)
	default: // skin, or a cast of it: the surface curves away at the outline
		k := float32(-1 / (edgeShadeMM * tex.pxPerMM))
		for i := range rad {
			if cov[i] > 0 {
				rad[i] *= 1 - edgeShade*float32(math.Exp(float64(dd[i]*k)))
			}
		}
		if p.Attack.Species == AttackReplica {
			castReplica(p, tex, rad, cov)
		}
		addGlints(p, tex, rad, cov)
	}
	r.posed.Close()
	r.posed = gocv.NewMatWithSize(h, w, gocv.MatTypeCV32FC2)
	pd, _ := r.posed.DataPtrFloat32()
	for i := range rad {
		pd[2*i], pd[2*i+1] = rad[i], cov[i]
	}
	r.posedKey, r.posedTex = key, tex
	return nil
}

// spreadFingers draws each finger (and the thumb) turned about its base by
// its fan angle × spread over the palm, into the radiance and coverage
// maps.
func (r *Renderer) spreadFingers(p *Presentation, tex *texture, rad, cov []float32) {
	w, h := tex.size.X, tex.size.Y
	fingers := append(p.Identity.Fingers[:], p.Identity.Thumb)
	tmpR, tmpM := gocv.NewMat(), gocv.NewMat()
	defer tmpR.Close()
	defer tmpM.Close()
	for fi, f := range fingers {
		phi := -f.Fan * p.Spread
		cx, cy := tex.toTex(f.Base)
		c, s := math.Cos(phi), math.Sin(phi)
		poly := fingerPolygon(f)
		bb := image.Rectangle{Min: image.Pt(w, h)}
		for _, q := range poly {
			qx, qy := tex.toTex(q)
			dx, dy := qx-cx, qy-cy
			x, y := cx+c*dx+s*dy, cy-s*dx+c*dy
			bb.Min.X, bb.Min.Y = min(bb.Min.X, int(x)-3), min(bb.Min.Y, int(y)-3)
			bb.Max.X, bb.Max.Y = max(bb.Max.X, int(x)+4), max(bb.Max.Y, int(y)+4)
		}
		bb = bb.Intersect(image.Rect(0, 0, w, h))
		if bb.Empty() {
			continue
		}
		m := affine2x3([6]float64{
			c, s, cx - c*cx - s*cy - float64(bb.Min.X),
			-s, c, cy + s*cx - c*cy - float64(bb.Min.Y),
		})
		gocv.WarpAffineWithParams(r.albedo, &tmpR, m, bb.Size(), gocv.InterpolationLinear, gocv.BorderReplicate, colorBlack)
		gocv.WarpAffineWithParams(tex.parts[fi+1], &tmpM, m, bb.Size(), gocv.InterpolationLinear, gocv.BorderConstant, colorBlack)
		m.Close()
		fr, _ := tmpR.DataPtrFloat32()
		fm, _ := tmpM.DataPtrUint8()
		bw := bb.Dx()
		for y := bb.Min.Y; y < bb.Max.Y; y++ {
			for x := bb.Min.X; x < bb.Max.X; x++ {
				j := (y-bb.Min.Y)*bw + (x - bb.Min.X)
				a := float32(fm[j]) / 255
				if a == 0 {
					continue
				}
				i := y*w + x
				rad[i] = rad[i]*(1-a) + fr[j]*a
				cov[i] = cov[i]*(1-a) + a
			}
		}
	}
}

// addWebbing joins neighbouring fingers with skin near their bases,
// further up the closer together they are: a morphological closing of the
// hand's mask (bin, closed in place) fills exactly the gaps narrower than
// the web, which is how spread changes the valleys' depth and shape.
// Webbing only grows near the palm, never between whole fingers.
func addWebbing(tex *texture, bin *gocv.Mat, alb, rad, cov []float32) {
	web := gocv.GetStructuringElement(gocv.MorphEllipse, image.Pt(int(webMM*tex.pxPerMM), int(webMM*tex.pxPerMM)))
	gocv.MorphologyEx(*bin, bin, gocv.MorphClose, web)
	web.Close()
	soft := gocv.NewMat()
	defer soft.Close()
	bin.ConvertTo(&soft, gocv.MatTypeCV32F)
	gocv.GaussianBlur(soft, &soft, image.Point{}, 0.7, 0.7, gocv.BorderConstant)
	sd, _ := soft.DataPtrFloat32()
	zone := gocv.NewMat()
	defer zone.Close()
	reach := gocv.GetStructuringElement(gocv.MorphEllipse, image.Pt(int(2*webReachMM*tex.pxPerMM), int(2*webReachMM*tex.pxPerMM)))
	gocv.Dilate(tex.parts[0], &zone, reach)
	reach.Close()
	zd, _ := zone.DataPtrUint8()
	for i := range cov {
		if zd[i] == 0 {
			continue
		}
		if c := sd[i] / 255; c > cov[i] {
			rad[i] += alb[i] * (c - cov[i])
			cov[i] = c
		}
	}
}

var colorBlack = colorRGBA(0)

// skin combines the identity's skin, veins and creases for presentation p
// into r.albedo and returns its pixels: veins darken with blood volume
// (VeinGain) and creases deepen as the palm cups.
func (r *Renderer) skin(p *Presentation, tex *texture) ([]float32, error) {
	if r.albedo.Rows() != tex.size.Y || r.albedo.Cols() != tex.size.X {
		r.albedo.Close()
		r.albedo = gocv.NewMatWithSize(tex.size.Y, tex.size.X, gocv.MatTypeCV32F)
	}
	alb, err := r.albedo.DataPtrFloat32()
	if err != nil {
		return nil, fmt.Errorf("sim: albedo: %w", err)
	}
	base, _ := tex.albedo.DataPtrFloat32()
	veins, _ := tex.veins.DataPtrFloat32()
	lines, _ := tex.lines.DataPtrFloat32()
	vg := tex.veinGain
	if p.VeinGain > 0 {
		vg *= float32(p.VeinGain)
	}
	lg := tex.lineGain * float32(creaseDepth(p.Cup))
	switch p.Attack.Species {
	case AttackVeinPrint: // enhanced for veins: creases fade with the rest of the image
		vg *= float32(p.Attack.VeinBoost)
		lg *= 0.4
	case AttackReplica: // a mould takes the skin's relief and creases, not the blood under it
		vg = 0
	}
	for i := range alb {
		alb[i] = base[i] * (1 - vg*veins[i]) * (1 - lg*lines[i])
	}
	if p.Moisture > 0 && p.Attack.Live() {
		wet := noiseField(rand.New(rand.NewPCG(p.SkinSeed, 0x3e7)), tex.size.X, tex.size.Y, 1.5*tex.pxPerMM, p.Moisture)
		defer wet.Close()
		wd, err := wet.DataPtrFloat32()
		if err != nil {
			return nil, fmt.Errorf("sim: moisture: %w", err)
		}
		for i := range alb {
			alb[i] *= 1 + wd[i]
		}
	}
	return alb, nil
}

// creaseDepth is how much darker the creases of a palm cupped by cup mm
// look than those of a palm at the typical 3 mm: cupping folds the skin
// along its flexion creases.
func creaseDepth(cup float64) float64 { return clampf((1+0.07*cup)/(1+0.07*3), 0.7, 1.6) }

// addGlints adds p's specular highlights: small bright spots where sweat or
// skin oil on the palm faces the LED ring, added to the diffuse radiance
// (a mirror reflection ignores the skin's albedo).
func addGlints(p *Presentation, tex *texture, rad, cov []float32) {
	if p.Glints == 0 {
		return
	}
	g := rand.New(rand.NewPCG(p.SkinSeed, 0x611e7))
	w, h := tex.size.X, tex.size.Y
	for k := 0; k < p.Glints; k++ {
		c := geom.V((g.Float64()-0.5)*0.8*p.Identity.PalmWidth, (g.Float64()*0.75-0.35)*p.Identity.PalmLength)
		sigma := (0.8 + 1.7*g.Float64()) * tex.pxPerMM
		amp := float32(0.06 + 0.16*g.Float64())
		cx, cy := tex.toTex(c)
		for y := max(0, int(cy-3*sigma)); y < min(h, int(cy+3*sigma)+1); y++ {
			for x := max(0, int(cx-3*sigma)); x < min(w, int(cx+3*sigma)+1); x++ {
				d2 := (float64(x)-cx)*(float64(x)-cx) + (float64(y)-cy)*(float64(y)-cy)
				i := y*w + x
				rad[i] += amp * cov[i] * float32(math.Exp(-d2/(2*sigma*sigma)))
			}
		}
	}
}

// webMM is the width of the gap between fingers that skin webbing closes.
const webMM = 9.0

// webReachMM is how far above the palm's edge the webbing may reach.
const webReachMM = 9.0

// displacement is a smooth random field (mm) standing for the non-rigid
// change of a palm between presentations: a cupped or stretched hand.
type displacement struct {
	amp   float64
	waves [6]struct{ kx, ky, ph, a float64 }
	// weighted scales each wave by its own a (otherwise 1).
	weighted bool
}

func newDisplacement(amp float64, seed uint64) displacement {
	d := displacement{amp: amp}
	r := rand.New(rand.NewPCG(seed, 0xd15b))
	for i := range d.waves {
		lam := 60 + r.Float64()*80 // wavelengths of 60–140 mm: palm-sized bends
		a := r.Float64() * 2 * math.Pi
		d.waves[i].kx = 2 * math.Pi / lam * math.Cos(a)
		d.waves[i].ky = 2 * math.Pi / lam * math.Sin(a)
		d.waves[i].ph = r.Float64() * 2 * math.Pi
	}
	return d
}

func (d displacement) at(p geom.Vec) geom.Vec {
	if d.amp == 0 {
		return geom.Vec{}
	}
	var out geom.Vec
	for i, w := range d.waves {
		v := math.Sin(w.kx*p.X + w.ky*p.Y + w.ph)
		if d.weighted {
			v *= w.a
		}
		if i < 3 {
			out.X += v
		} else {
			out.Y += v
		}
	}
	return out.Mul(d.amp / math.Sqrt(3))
}
