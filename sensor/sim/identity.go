package sim

import (
	"math"
	"math/rand/v2"

	"github.com/palmd/palmd/geom"
)

// Points and directions in hand space are geom.Vecs in millimetres. Hand
// space has its origin at the palm centre, +y toward the fingers and +x
// toward the thumb of a right hand seen from the palm side (the camera's
// view).

func clampf(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// finger is one digit: a capsule from Base along direction Angle (radians
// from +y, positive toward +x) at zero spread, of Length and Width (mm).
type finger struct {
	Base   geom.Vec
	Angle  float64
	Length float64
	Width  float64
	// Fan is the extra angle (radians) the finger turns at full spread.
	Fan float64
	// Taper is the width at the base relative to Width (the thumb is
	// broad where it joins the palm).
	Taper float64
}

// Identity is one synthetic hand. Everything about it follows from its seed:
// same seed, same person. It is immutable once built and safe to share.
type Identity struct {
	Seed uint64
	// Left reports a left hand (rendered mirrored).
	Left bool

	PalmWidth  float64 // across the finger bases, mm (real adults: 75–95)
	PalmLength float64 // finger bases to wrist crease, mm (real adults: 90–110)
	WristWidth float64
	Fingers    [4]finger // index, middle, ring, little
	Thumb      finger

	veins []veinSegment
	lines []crease
	// SkinSeed drives the fine skin texture; Reflectance is the mean NIR
	// reflectance of the skin (0–1).
	SkinSeed    uint64
	Reflectance float64
	// VeinContrast scales how dark veins render (tissue thickness, vein
	// depth and fat vary between people).
	VeinContrast float64
	// Relief is the height (mm) of the thenar eminence above the palm's
	// plane; the hypothenar eminence, the finger pads and the hollow
	// scale with it. Under a camera 150 mm away, relief shows as
	// parallax that changes with where the hand is held.
	Relief float64
	// Laxity is how much this person's skin gives between captures
	// (folding, stretch and thumb pull scale with it): elastic, young or
	// well-hydrated skin moves more than thick, dry skin. Around 1.
	Laxity float64
}

// veinSegment is one piece of the subcutaneous vein tree, in hand space.
type veinSegment struct {
	A, B  geom.Vec
	Width float64 // diameter, mm
	Depth float64 // 0 (superficial, dark) … 1 (deep, faint)
}

// crease is a palm line: a quadratic Bézier curve.
type crease struct {
	P0, P1, P2 geom.Vec
	Width      float64 // mm
	Darkness   float64 // fractional reflectance loss at its centre
}

// NewIdentity builds the hand for seed. Geometry follows adult
// anthropometric ranges; the vein tree is grown by space colonisation over
// the palm, so no two seeds share a network.
func NewIdentity(seed uint64) *Identity {
	r := rand.New(rand.NewPCG(seed, 0x9a1f_c0de_5eed_0001))
	id := &Identity{Seed: seed, Left: r.IntN(2) == 1}
	n := func(mean, sd float64) float64 { return mean + sd*r.NormFloat64() }
	size := clampf(n(1, 0.06), 0.86, 1.14) // overall hand size
	id.PalmWidth = clampf(n(86, 3.5), 78, 96) * size
	id.PalmLength = clampf(n(100, 4), 90, 112) * size
	id.WristWidth = id.PalmWidth * clampf(n(0.68, 0.03), 0.6, 0.76)

	// Fingers: index, middle, ring, little. Lengths are relative to palm
	// length with individual ratios (the 2D:4D ratio varies between people).
	lengths := [4]float64{0.72, 0.80, 0.75, 0.59}
	widths := [4]float64{19.5, 19, 18, 16}
	fans := [4]float64{0.27, 0.07, -0.12, -0.36}
	neutral := [4]float64{0.05, 0.0, -0.04, -0.10}
	w := id.PalmWidth
	top := id.PalmLength / 2
	for i := range id.Fingers {
		x := w/2 - w/8 - float64(i)*w/4 + n(0, 1)
		// The finger bases lie on an arc: the middle finger's is highest,
		// the little finger's lowest.
		y := top - []float64{3, 0, 2, 9}[i] + n(0, 1.2)
		id.Fingers[i] = finger{
			Base:   geom.V(x, y),
			Angle:  neutral[i] + n(0, 0.03),
			Length: id.PalmLength * clampf(n(lengths[i], 0.03), lengths[i]-0.08, lengths[i]+0.08),
			Width:  clampf(n(widths[i], 1), widths[i]-2.5, widths[i]+2.5) * size,
			Fan:    fans[i] * clampf(n(1, 0.15), 0.6, 1.4),
			Taper:  1.08,
		}
	}
	id.Thumb = finger{
		Base:   geom.V(w/2-4, -id.PalmLength*0.18+n(0, 3)),
		Angle:  0.75 + n(0, 0.08),
		Length: id.PalmLength * clampf(n(0.62, 0.03), 0.54, 0.7),
		Width:  clampf(n(22, 1.2), 19, 25) * size,
		Fan:    0.35 * clampf(n(1, 0.15), 0.6, 1.4),
		Taper:  1.3,
	}
	id.Reflectance = clampf(n(0.9, 0.05), 0.78, 1.0)
	id.VeinContrast = clampf(n(1, 0.28), 0.5, 1.6)
	id.SkinSeed = r.Uint64()
	id.veins = growVeins(r, id)
	id.lines = palmLines(r, id)
	id.Relief = clampf(n(10.5, 2.5), 5, 17)
	id.Laxity = clampf(math.Exp(n(0, 0.45)), 0.5, 2)
	return id
}

// palmPolygon returns the outline of palm, wrist and forearm (no fingers,
// no thumb) as a closed polygon in hand space.
func (id *Identity) palmPolygon() []geom.Vec {
	w, l := id.PalmWidth, id.PalmLength
	ww := id.WristWidth
	top := l / 2
	return []geom.Vec{
		geom.V(-ww/2, -top-160),    // forearm, far below the wrist
		geom.V(-ww/2-3, -top+2),    // wrist, little-finger side
		geom.V(-w/2+2, -top+l*0.3), // hypothenar edge
		geom.V(-w/2, top-22),       // below the little finger
		geom.V(-w/2+3, top-8),      // little finger corner, under the finger
		geom.V(0, top-2),           // between the middle finger bases
		geom.V(w/2-4, top-6),       // index corner, under the finger
		geom.V(w/2, top-18),        // index side
		geom.V(w/2+2, -l*0.05),     // thenar, upper
		geom.V(w/2+3, -l*0.28),     // thenar
		geom.V(ww/2+4, -top+4),     // wrist, thumb side
		geom.V(ww/2+3, -top-160),   // forearm
	}
}

// PalmROI returns the true palm region of interest in hand space: the centre
// and side (mm) of the axis-aligned square a recogniser should find. It sits
// just below the finger bases, centred between the palm edges.
func (id *Identity) PalmROI() (centre geom.Vec, side float64) {
	side = id.PalmWidth * 0.62
	return geom.V(0, id.PalmLength/2-10-side/2), side
}

// growVeins grows a vein tree by space colonisation: attraction points are
// scattered over the palm (and the proximal finger segments), the tree
// starts from two or three roots at the wrist and extends toward them in
// small steps, and each branch's width follows Murray's law from its leaves
// down, so vessels taper from wrist to fingers as real ones do.
func growVeins(r *rand.Rand, id *Identity) []veinSegment {
	w, l := id.PalmWidth, id.PalmLength
	var attractors []geom.Vec
	for len(attractors) < 380 {
		p := geom.V((r.Float64()-0.5)*w*0.95, (r.Float64()-0.5)*l*0.95)
		attractors = append(attractors, p)
	}
	// The wrist carries the trunks the palm veins drain into.
	for k := 0; k < 24; k++ {
		attractors = append(attractors, geom.V((r.Float64()-0.5)*id.WristWidth*0.8, -l/2-28+r.Float64()*30))
	}
	for _, f := range id.Fingers {
		dir := geom.V(0, 1).Rot(-f.Angle)
		for k := 0; k < 6; k++ {
			attractors = append(attractors, f.Base.Add(dir.Mul(f.Length*(0.1+0.35*r.Float64()))).Add(geom.V((r.Float64()-0.5)*f.Width*0.5, 0)))
		}
	}
	type node struct {
		P      geom.Vec
		Parent int
		Width  float64
		Kids   int
	}
	var nodes []node
	roots := 2 + r.IntN(2)
	for i := 0; i < roots; i++ {
		x := (float64(i)/float64(roots-1) - 0.5) * id.WristWidth * 0.7
		nodes = append(nodes, node{P: geom.V(x+(r.Float64()-0.5)*6, -l/2-40), Parent: -1})
	}
	const step, influence, kill = 2.5, 60.0, 5.0
	alive := make([]bool, len(attractors))
	for i := range alive {
		alive[i] = true
	}
	for iter := 0; iter < 200; iter++ {
		growth := map[int]geom.Vec{}
		count := map[int]int{}
		any := false
		for ai, a := range attractors {
			if !alive[ai] {
				continue
			}
			best, bestD := -1, influence*influence
			for ni := range nodes {
				dx, dy := nodes[ni].P.X-a.X, nodes[ni].P.Y-a.Y
				if d := dx*dx + dy*dy; d < bestD {
					best, bestD = ni, d
				}
			}
			if best < 0 {
				continue
			}
			any = true
			growth[best] = growth[best].Add(a.Sub(nodes[best].P).Unit())
			count[best]++
		}
		if !any {
			break
		}
		// Deterministic order: iterate node indices ascending.
		grown := len(nodes)
		for ni := 0; ni < grown; ni++ {
			g, ok := growth[ni]
			if !ok || g.Len() < 1e-6 {
				continue
			}
			jitter := geom.V(r.NormFloat64()*0.25, r.NormFloat64()*0.25)
			dir := g.Unit().Add(jitter).Unit()
			nodes = append(nodes, node{P: nodes[ni].P.Add(dir.Mul(step)), Parent: ni})
			nodes[ni].Kids++
		}
		for ai, a := range attractors {
			if !alive[ai] {
				continue
			}
			// Only nodes added this round can newly reach an attractor.
			for ni := grown; ni < len(nodes); ni++ {
				dx, dy := nodes[ni].P.X-a.X, nodes[ni].P.Y-a.Y
				if dx*dx+dy*dy < kill*kill {
					alive[ai] = false
					break
				}
			}
		}
	}
	// Murray's law: parent^3 = sum(child^3), leaves 2 mm.
	const leaf = 2.0
	cube := make([]float64, len(nodes))
	for i := len(nodes) - 1; i >= 0; i-- {
		if nodes[i].Kids == 0 {
			cube[i] += leaf * leaf * leaf
		}
		if p := nodes[i].Parent; p >= 0 {
			cube[p] += cube[i]
		}
	}
	depthField := func(p geom.Vec) float64 { // smooth per-person depth variation
		return clampf(0.5+0.35*math.Sin(p.X/17+float64(id.Seed%7))*math.Cos(p.Y/23+float64(id.Seed%5)), 0, 1)
	}
	segs := make([]veinSegment, 0, len(nodes))
	for i, nd := range nodes {
		if nd.Parent < 0 {
			continue
		}
		wid := math.Min(math.Cbrt(cube[i]), 6)
		segs = append(segs, veinSegment{A: nodes[nd.Parent].P, B: nd.P, Width: wid, Depth: depthField(nd.P)})
	}
	return segs
}

// palmLines draws the three principal flexion creases (heart, head and life
// lines) with personal shapes, and a set of minor creases.
func palmLines(r *rand.Rand, id *Identity) []crease {
	w, l := id.PalmWidth, id.PalmLength
	n := func(mean, sd float64) float64 { return mean + sd*r.NormFloat64() }
	top := l / 2
	lines := []crease{
		{ // heart line: little-finger edge → between index and middle
			P0: geom.V(-w/2, top-n(22, 3)), P1: geom.V(n(-5, 6), top-n(28, 4)), P2: geom.V(n(w*0.2, 5), top-n(12, 3)),
			Width: n(1.3, 0.15), Darkness: n(0.07, 0.012),
		},
		{ // head line: thumb-index web → across the palm
			P0: geom.V(w/2+2, top-n(30, 3)), P1: geom.V(n(0, 6), top-n(42, 5)), P2: geom.V(-w/2+n(8, 4), -n(8, 8)),
			Width: n(1.2, 0.15), Darkness: n(0.065, 0.012),
		},
		{ // life line: around the thenar eminence
			P0: geom.V(w/2+1, top-n(33, 3)), P1: geom.V(n(w*0.05, 5), -n(5, 6)), P2: geom.V(w*0.22+n(0, 4), -top+4),
			Width: n(1.3, 0.15), Darkness: n(0.07, 0.012),
		},
	}
	minor := 10 + r.IntN(12)
	for i := 0; i < minor; i++ {
		c := geom.V((r.Float64()-0.5)*w*0.85, (r.Float64()-0.5)*l*0.85)
		d := geom.V(0, 1).Rot(r.Float64() * math.Pi).Mul(n(12, 4))
		bend := geom.V(-d.Y, d.X).Mul(n(0, 0.2))
		lines = append(lines, crease{
			P0: c.Sub(d), P1: c.Add(bend), P2: c.Add(d),
			Width: clampf(n(0.7, 0.15), 0.4, 1.1), Darkness: clampf(n(0.03, 0.01), 0.01, 0.06),
		})
	}
	for i := range lines {
		lines[i].Width = clampf(lines[i].Width, 0.4, 2)
		lines[i].Darkness = clampf(lines[i].Darkness, 0.01, 0.12)
	}
	return lines
}

func (c crease) at(t float64) geom.Vec {
	u := 1 - t
	return c.P0.Mul(u * u).Add(c.P1.Mul(2 * u * t)).Add(c.P2.Mul(t * t))
}

// pulse is the relative loss of NIR reflectance from the blood volume in
// the palm's skin at time sec of a visit in session: a photoplethysmographic
// wave (a steep systolic rise, a slower fall with a dicrotic notch) at a
// heart rate of 55–95 beats a minute. Its amplitude at 940 nm in
// reflection is about 0.3–1.2 % of the palm's brightness, smaller in cold
// hands (a session factor of 0.5–1.2).
func (id *Identity) pulse(session int, sec float64) float64 {
	r := rand.New(rand.NewPCG(id.Seed^0x9b1e, uint64(session)))
	bpm := 55 + 40*r.Float64()
	amp := (0.003 + 0.009*r.Float64()) * (0.5 + 0.7*r.Float64())
	ph := 2 * math.Pi * bpm / 60 * sec
	return amp * (0.5 + 0.42*math.Sin(ph) + 0.2*math.Sin(2*ph-0.8) + 0.06*math.Sin(3*ph-1.6))
}
