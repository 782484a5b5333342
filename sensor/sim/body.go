package sim

import (
	"math"
	"math/rand/v2"

	"github.com/palmd/palmd/geom"
)

// body is the hand of one presentation as a surface: its height above the
// palm's plane (toward the camera, mm), which perspective turns into
// parallax, and how its skin has moved within that surface since the hand
// was drawn (mm, hand space), which no rigid move of the ROI undoes. Real
// captures of one palm differ mostly through these, not through position,
// rotation or scale, which a recogniser normalises away.
type body struct {
	id   *Identity
	tilt geom.Vec // dz/dx, dz/dy of the tilted palm plane
	cup  float64

	deform  displacement // broad cupping or stretching (60–140 mm)
	fold    displacement // skin folding (15–35 mm)
	posture displacement // the folding a posture gives this person's skin

	stretch   float64 // lateral stretch below the finger bases, relative
	thumbPull float64 // mm the thenar skin moves toward the thumb
	bend      float64 // radians the heel turns with the wrist
	flat      bool    // a print or a phone: no relief
	curve     float64 // a curved print's curvature about the hand's long axis, 1/mm
}

func newBody(p *Presentation) body {
	b := body{
		id:        p.Identity,
		tilt:      geom.V(math.Tan(p.TiltY*math.Pi/180), math.Tan(p.TiltX*math.Pi/180)),
		cup:       p.Cup,
		deform:    newDisplacement(p.Deform, p.DeformSeed),
		fold:      newFold(p.Fold, p.SkinSeed),
		posture:   newPostureFold(p.Identity, p.Posture, p.PostureGain),
		stretch:   p.Stretch * (p.Spread - 0.5),
		thumbPull: p.ThumbPull * (p.Spread - 0.5) * 2,
		bend:      p.Bend,
	}
	switch p.Attack.Species {
	case AttackPrint, AttackVeinPrint, AttackScreen: // flat (or a bent sheet) and rigid
		b = body{id: p.Identity, tilt: b.tilt, flat: true, curve: p.Attack.Curve}
	}
	return b
}

// height is the skin's height above the palm's plane at hand point h: the
// tilted plane, the eminences (the thenar highest), the finger pads, and the
// hollow, which cupping deepens.
func (b body) height(h geom.Vec) float64 {
	z := b.tilt.X*h.X + b.tilt.Y*h.Y
	id := b.id
	if b.flat {
		return z - b.curve*h.X*h.X/2 // a bent sheet's sides fall away
	}
	if id.Relief == 0 && b.cup == 0 {
		return z
	}
	pw, pl := id.PalmWidth, id.PalmLength
	g := func(x, y, sx, sy float64) float64 {
		dx, dy := (h.X-x)/sx, (h.Y-y)/sy
		return math.Exp(-(dx*dx + dy*dy) / 2)
	}
	z += id.Relief * (g(pw/2-12, -pl*0.22, 16, 24) + 0.6*g(-pw/2+12, -pl*0.15, 13, 30) + 0.35*g(0, pl/2-12, 34, 9))
	z -= (0.3*id.Relief + b.cup) * g(pw*0.05, -pl*0.02, 24, 26)
	return z
}

// skin is how far the skin at h has moved (mm) from where the hand's
// texture has it: broad deformation, folding, the stretch of the upper palm
// as the fingers spread, the thenar skin following the thumb, and the heel
// bending with the wrist.
func (b body) skin(h geom.Vec) geom.Vec {
	d := b.deform.at(h).Add(b.fold.at(h)).Add(b.posture.at(h))
	id := b.id
	pl := id.PalmLength
	if b.stretch != 0 {
		// Strongest at the finger bases, gone below the palm's middle.
		wy := clampf((h.Y+0.1*pl)/(0.6*pl), 0, 1)
		d = d.Add(geom.V(b.stretch*h.X*wy, 0.25*b.stretch*pl*wy*wy))
	}
	if b.thumbPull != 0 {
		base := id.Thumb.Base
		dx, dy := (h.X-base.X)/20, (h.Y-base.Y)/26
		d = d.Add(geom.V(0.95, -0.3).Mul(b.thumbPull * math.Exp(-(dx*dx+dy*dy)/2)))
	}
	if b.bend != 0 {
		// The heel turns about a pivot a little above the palm's centre,
		// fully so at the wrist crease.
		pivot := geom.V(0, 0.1*pl)
		wgt := clampf((pivot.Y-h.Y)/(pivot.Y+pl/2), 0, 1)
		wgt = wgt * wgt * (3 - 2*wgt)
		r := h.Sub(pivot)
		d = d.Add(r.Rot(b.bend * wgt).Sub(r))
	}
	return d
}

// newPostureFold is the skin folding a posture gives a person: for each
// component of the pose (Presentation.Posture) the skin folds by a shape of
// the person's own (a fold field drawn from the identity's seed), in
// proportion to how far that component lies from the natural pose, and the
// shapes add. Two captures of one palm then differ by the fold of their
// poses' difference: the farther apart the poses, the farther apart the
// skin, as on real palms (a wrist turned further pulls the palm's skin
// further; a hand held closer or off to one side is reached out for, and
// flexed, differently). The shapes share their wave vectors, so the sum is
// one field whose waves have the combined amplitude and phase.
func newPostureFold(id *Identity, posture [PostureComponents]float64, gain float64) displacement {
	if gain == 0 || id == nil || posture == [PostureComponents]float64{} {
		return displacement{}
	}
	d := newFold(gain, id.Seed^0x9057)
	r := rand.New(rand.NewPCG(id.Seed^0x9057, 0xc0de))
	for i := range d.waves {
		var re, im float64
		for _, c := range posture {
			ph := r.Float64() * 2 * math.Pi
			re += c * math.Cos(ph)
			im += c * math.Sin(ph)
		}
		d.waves[i].ph = math.Atan2(im, re)
		d.waves[i].a = math.Hypot(re, im)
	}
	d.weighted = true
	return d
}

// newFold is a displacement field of short wavelengths (15–35 mm): skin
// folding and wrinkling between captures, finer than the local alignment
// of a comparison can follow.
func newFold(amp float64, seed uint64) displacement {
	d := newDisplacement(amp, seed^0xf01d)
	for i := range d.waves {
		l := 2 * math.Pi / math.Hypot(d.waves[i].kx, d.waves[i].ky) // 60–140
		k := 2 * math.Pi / (15 + (l-60)/80*20) / (2 * math.Pi / l)
		d.waves[i].kx *= k
		d.waves[i].ky *= k
	}
	return d
}
