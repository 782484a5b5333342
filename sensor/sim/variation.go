package sim

import (
	"math"
	"math/rand/v2"
)

// Variation describes how presentations of one identity differ: within a
// session (a few seconds apart) and between sessions (days or a month
// apart, when a person holds the hand differently, the skin is drier or the
// terminal's light has aged). Standard deviations apply per sample; the
// Session* fields set each session's own habits around which its samples
// scatter.
type Variation struct {
	// RotationSD is the in-plane rotation scatter per sample, degrees;
	// SessionRotationSD the scatter of each session's mean rotation.
	RotationSD, SessionRotationSD float64
	// AnyDirection makes each session's base direction uniform over the
	// full circle instead of "fingers up".
	AnyDirection bool
	// ScaleSD is the relative distance scatter (0.07 ≈ ±15 % at 2σ).
	ScaleSD, SessionScaleSD float64
	// ShiftSD is the palm-centre scatter, as a fraction of the frame size.
	ShiftSD float64
	// SpreadMean, SpreadSD: finger spread (0 closed … 1 wide).
	SpreadMean, SpreadSD, SessionSpreadSD float64
	// Deform is the non-rigid deformation amplitude, mm.
	Deform float64
	// LightSD is the scatter of the irradiance on the hand;
	// GradientSD of the illumination gradient across the frame.
	LightSD, SessionLightSD, GradientSD float64
	// TiltSD is the scatter of the palm's tilt out of the image plane,
	// degrees.
	TiltSD, SessionTiltSD float64
	// Defocus is the mean extra blur (px, exponential distribution).
	Defocus float64
}

// DefaultVariation reproduces the spread between real captures: between
// sessions a hand rotates ±20° and more, changes distance by ±15 %, spreads
// its fingers differently and is lit a little differently.
func DefaultVariation() Variation {
	return Variation{
		RotationSD: 5, SessionRotationSD: 10,
		ScaleSD: 0.035, SessionScaleSD: 0.05,
		ShiftSD:    0.035,
		SpreadMean: 0.6, SpreadSD: 0.1, SessionSpreadSD: 0.15,
		Deform:  1.0,
		LightSD: 0.03, SessionLightSD: 0.04, GradientSD: 0.08,
		TiltSD: 5, SessionTiltSD: 8,
		Defocus: 0.25,
	}
}

// Harder scales every source of variation by k (k = 1 is the default
// variation; 1.5 or 2 make a harder data set for robustness curves).
func (v Variation) Harder(k float64) Variation {
	v.RotationSD *= k
	v.SessionRotationSD *= k
	v.ScaleSD *= k
	v.SessionScaleSD *= k
	v.ShiftSD *= k
	v.SpreadSD *= k
	v.SessionSpreadSD *= k
	v.Deform *= k
	v.LightSD *= k
	v.SessionLightSD *= k
	v.GradientSD *= k
	v.TiltSD *= k
	v.SessionTiltSD *= k
	v.Defocus *= k
	return v
}

// Sample returns presentation number sample of identity id in session
// session, for frames of width×height. The same arguments always give the
// same presentation.
func (v Variation) Sample(id *Identity, session, sample int, width, height int) Presentation {
	sr := rand.New(rand.NewPCG(id.Seed^0x5e55_1011, uint64(session)))
	r := rand.New(rand.NewPCG(id.Seed^0x5a3b_1e00, uint64(session)<<20|uint64(sample)))
	n := func(r *rand.Rand, sd float64) float64 { return sd * r.NormFloat64() }

	base := n(sr, v.SessionRotationSD)
	if v.AnyDirection {
		base = sr.Float64() * 360
	}
	angle := (base + n(r, v.RotationSD)) * math.Pi / 180
	dist := NominalDistance * (1 + n(sr, v.SessionScaleSD)) * (1 + n(r, v.ScaleSD))
	dist = clampf(dist, 90, 260)
	spread := clampf(v.SpreadMean+n(sr, v.SessionSpreadSD)+n(r, v.SpreadSD), 0.05, 1)
	light := clampf((1+n(sr, v.SessionLightSD))*(1+n(r, v.LightSD)), 0.6, 1.4)

	// Place the palm so the fingers point into the frame and the wrist
	// leaves it: the palm centre sits a little off the frame centre,
	// opposite the finger direction.
	w, h := float64(width), float64(height)
	back := 0.15 * h
	sin, cos := math.Sincos(angle)
	x := w/2 - sin*back + n(r, v.ShiftSD)*w
	y := h/2 + cos*back + n(r, v.ShiftSD)*h

	return Presentation{
		Identity:   id,
		Pose:       Pose{X: x, Y: y, Angle: angle, Distance: dist},
		Spread:     spread,
		Deform:     v.Deform,
		DeformSeed: r.Uint64(),
		Light:      light,
		GradientX:  n(sr, v.GradientSD) + n(r, v.GradientSD/2),
		GradientY:  n(sr, v.GradientSD) + n(r, v.GradientSD/2),
		TiltX:      clampf(n(sr, v.SessionTiltSD)+n(r, v.TiltSD), -35, 35),
		TiltY:      clampf(n(sr, v.SessionTiltSD)+n(r, v.TiltSD), -35, 35),
		Defocus:    r.ExpFloat64() * v.Defocus,
	}
}
