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

	// The fields below are what a real hand does between two captures
	// that a rigid in-plane move cannot undo; the recogniser's ROI
	// normalisation removes position, rotation and scale, but not these.

	// StretchGain is the skin's lateral stretch below the finger bases
	// per unit of finger spread (0.1 = 10 % wider at full spread than
	// at none), and ThumbPull how far (mm) the thenar skin follows the
	// thumb from closed to open.
	StretchGain, ThumbPull float64
	// WristBend is the share of a hand's in-plane rotation (away from
	// "fingers up") taken up by bending the wrist rather than turning the
	// forearm: it bends the heel of the palm against its upper part.
	WristBend float64
	// CupMean, CupSD, SessionCupSD: how deeply the palm is cupped (mm at
	// the hollow); with the palm's relief it changes what perspective
	// shows and how deep the creases look.
	CupMean, CupSD, SessionCupSD float64
	// VeinSD, SessionVeinSD scatter the veins' contrast (blood volume,
	// skin and room temperature): relative, per sample and per session.
	VeinSD, SessionVeinSD float64
	// Glints is the mean number of specular highlights on the palm
	// (sweat or skin oil facing the LED ring).
	Glints float64
	// Moisture is the relative reflectance change, at the 1–2 mm scale of
	// the skin's surface, that sweat and dryness make between captures.
	Moisture float64
	// FoldSD is the scatter (mm) of small-scale skin folding between
	// captures: a displacement field of 15–35 mm wavelength that the
	// recogniser's local alignment cannot follow.
	FoldSD float64
	// PostureGain is how far (mm) the skin folds per unit of pose away
	// from the hand's natural one (postureUnits: about a turn of the
	// wrist by RotationSD degrees, a distance off by ScaleSD, a palm
	// ShiftSD off the frame's middle): the skin of one person takes the
	// same shape for the same posture, so two captures differ by as much
	// as their poses do. Calibrated with FoldSD (make calibrate).
	PostureGain float64
}

// PostureComponents are the pose's parts the skin answers to: the wrist's
// turn, the hand's distance, and its offset across and along the frame.
const PostureComponents = 4

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
		TiltSD: 4, SessionTiltSD: 5,
		Defocus: 0.25,

		StretchGain: 0.12, ThumbPull: 4,
		WristBend: 0.3,
		CupMean:   3, CupSD: 1.5, SessionCupSD: 2,
		VeinSD: 0.25, SessionVeinSD: 0.25,
		Glints:      2,
		FoldSD:      0.03,
		PostureGain: 0.30,
		Moisture:    0.006,
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
	v.StretchGain *= k
	v.ThumbPull *= k
	v.WristBend *= k
	v.CupSD *= k
	v.SessionCupSD *= k
	v.VeinSD *= k
	v.SessionVeinSD *= k
	v.Glints *= k
	v.FoldSD *= k
	v.PostureGain *= k
	v.Moisture *= k
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
	turn := n(r, v.RotationSD)
	// The wrist bends with the hand's turn away from where the forearm
	// naturally points: "fingers up" on this terminal, or the session's own
	// direction when hands come from any side.
	bent := base + turn
	if v.AnyDirection {
		base = sr.Float64() * 360
		bent = turn
	}
	angle := (base + turn) * math.Pi / 180
	visit := n(sr, v.SessionScaleSD)
	reach := n(r, v.ScaleSD)
	dist := NominalDistance * (1 + visit) * (1 + reach)
	dist = clampf(dist, 90, 260)
	spread := clampf(v.SpreadMean+n(sr, v.SessionSpreadSD)+n(r, v.SpreadSD), 0.05, 1)
	light := clampf((1+n(sr, v.SessionLightSD))*(1+n(r, v.LightSD)), 0.6, 1.4)

	// Place the palm so the fingers point into the frame and the wrist
	// leaves it: the palm centre sits a little off the frame centre,
	// opposite the finger direction.
	w, h := float64(width), float64(height)
	back := 0.15 * h
	sin, cos := math.Sincos(angle)
	offX, offY := n(r, v.ShiftSD), n(r, v.ShiftSD)
	x := w/2 - sin*back + offX*w
	y := h/2 + cos*back + offY*h

	// Effects drawn from their own streams, so that adding one does not
	// move every other presentation.
	sr2 := rand.New(rand.NewPCG(id.Seed^0x5e55_2022, uint64(session)))
	r2 := rand.New(rand.NewPCG(id.Seed^0x5a3b_2022, uint64(session)<<20|uint64(sample)))
	// Folding has a habitual amplitude (how this person holds the hand
	// this visit) and a part of its own for every capture that is
	// sometimes large: an exponential draw.
	lax := id.Laxity
	if lax == 0 {
		lax = 1
	}
	foldAmp := lax * v.FoldSD * (math.Abs(sr2.NormFloat64()) + r2.ExpFloat64())
	units := postureUnits()
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

		Stretch:   lax * v.StretchGain,
		ThumbPull: lax * v.ThumbPull,
		Bend:      v.WristBend * bent * math.Pi / 180,
		Cup:       clampf(v.CupMean+n(sr2, v.SessionCupSD)+n(r2, v.CupSD), -2, 12),
		VeinGain:  clampf((1+n(sr2, v.SessionVeinSD))*(1+n(r2, v.VeinSD)), 0.5, 1.6),
		Glints:    poisson(r2, v.Glints),
		Fold:      foldAmp,
		Moisture:  v.Moisture,
		SkinSeed:  r2.Uint64(),

		Posture: [PostureComponents]float64{
			(turn + visitShare*(bent-turn)) / units[0], (reach + visitShare*visit) / units[1],
			offX / units[2], offY / units[3],
		},
		PostureGain: math.Pow(lax, 1.5) * v.PostureGain,
	}
}

// postureUnits are the units of Presentation.Posture: the default
// variation's scatter of each component (so a harder variation gives
// larger postures). The turn and the distance count what changes between
// the captures of one visit in full and the visit's own direction and
// distance (where the arm is that day) by visitShare: the skin answers
// mostly to the hand's departure from its arm, and partly to the arm's own.
func postureUnits() [PostureComponents]float64 {
	d := DefaultVariation()
	return [PostureComponents]float64{
		math.Hypot(d.RotationSD, visitShare*d.SessionRotationSD), // degrees of turn
		math.Hypot(d.ScaleSD, visitShare*d.SessionScaleSD),       // relative distance
		d.ShiftSD, d.ShiftSD, // offset across and along the frame, share of it
	}
}

// visitShare is the weight of a visit's own direction and distance in the
// posture the skin answers to.
const visitShare = 0.5

// poisson draws from a Poisson distribution of mean lambda (small).
func poisson(r *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l || k > 50 {
			return k
		}
		k++
	}
}
