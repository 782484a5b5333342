package imaging

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/palmd/palmd/geom"
	"gocv.io/x/gocv"
)

// ROISize is the side of the normalised palm ROI, pixels.
const ROISize = 128

// ROI placement. The two outer finger valleys (index–middle and
// ring–little) give the palm's orientation and its top edge; the palm's
// width just below them gives the scale and the lateral position. These are
// the landmarks least disturbed by finger spread, wrist, sleeves or thumb
// pose, which is what makes the ROI land on the same skin every time.
const (
	widthLevel    = 0.6   // where the palm width is measured: below the valley line, × valley distance
	palmPerValley = 2.0   // typical palm width ÷ valley distance, when the width cannot be measured
	roiOffset     = 0.425 // valley line → ROI centre, toward the wrist, × palm width
	roiSide       = 0.6   // side of the ROI square, × palm width
)

// Reasons extraction can fail. Each maps to a quality gate (GateOf) and its
// guidance on the indicator (Gate.Signal).
var (
	ErrNoHand        = errors.New("imaging: no hand in view")
	ErrFingersClosed = errors.New("imaging: finger valleys not found (fingers closed?)")
	ErrPartialHand   = errors.New("imaging: palm partly outside the view")
	ErrNotAHand      = errors.New("imaging: object is not hand-shaped")
)

// defect is a convexity defect of the hand contour: the stretch between two
// consecutive hull vertices, and its deepest point.
type defect struct {
	start, end, far int // contour indices
	depth           float64
}

// hullIndices returns the indices of the convex hull vertices of pts, in
// increasing index order (Andrew's monotone chain). Written here rather than
// taken from OpenCV because cv::convexityDefects throws (and gocv then
// aborts the process) on some self-touching contours: malformed input must
// never crash the daemon.
func hullIndices(pts []geom.Vec) []int {
	n := len(pts)
	if n < 3 {
		return nil
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if pts[a].X != pts[b].X {
			if pts[a].X < pts[b].X {
				return -1
			}
			return 1
		}
		switch {
		case pts[a].Y < pts[b].Y:
			return -1
		case pts[a].Y > pts[b].Y:
			return 1
		}
		return 0
	})
	cross := func(o, a, b int) float64 { return pts[a].Sub(pts[o]).Cross(pts[b].Sub(pts[o])) }
	h := make([]int, 0, 2*n)
	for _, i := range idx {
		for len(h) >= 2 && cross(h[len(h)-2], h[len(h)-1], i) <= 0 {
			h = h[:len(h)-1]
		}
		h = append(h, i)
	}
	lower := len(h) + 1
	for k := n - 2; k >= 0; k-- {
		i := idx[k]
		for len(h) >= lower && cross(h[len(h)-2], h[len(h)-1], i) <= 0 {
			h = h[:len(h)-1]
		}
		h = append(h, i)
	}
	h = h[:len(h)-1]
	slices.Sort(h)
	return slices.Compact(h)
}

// defects lists the finger-valley-like concavities of the closed contour
// pts deeper than minDepth, in contour order. It starts from the convex
// hull, as cv::convexityDefects does, but finds every valley under a hull
// edge, not only the deepest: a fingertip that falls just inside the line
// between its neighbours' tips (a short ring finger, a bent one) leaves two
// valleys under one hull edge. Valleys under the same edge count as
// separate when the fingertip between them rises at least minDepth above
// the shallower one. A stretch of contour on the frame border splits the
// profile too: fingers cut off by the frame edge all lie under one hull
// edge along the border.
func defects(pts []geom.Vec, minDepth float64, onBorder func(geom.Vec) bool) []defect {
	hull := hullIndices(pts)
	if len(hull) < 3 {
		return nil
	}
	var out []defect
	n := len(pts)
	var idx []int
	var depth []float64
	for k := range hull {
		a, b := hull[k], hull[(k+1)%len(hull)]
		span := (b - a + n) % n
		if span < 2 {
			continue
		}
		pa, pb := pts[a], pts[b]
		edge := pb.Sub(pa)
		el := edge.Len()
		if el == 0 {
			continue
		}
		idx, depth = idx[:0], depth[:0]
		for s := 0; s <= span; s++ {
			i := (a + s) % n
			d := edge.Cross(pts[i].Sub(pa)) / el
			if d < 0 {
				d = -d
			}
			if s > 0 && s < span && onBorder(pts[i]) {
				d = -1 // a hard split: no valley spans the frame border
			}
			idx, depth = append(idx, i), append(depth, d)
		}
		out = append(out, valleysIn(idx, depth, minDepth)...)
	}
	return out
}

// valleysIn finds the prominent maxima of a depth profile: each one at
// least minDepth deep, separated from the next by a dip of at least
// minDepth below the shallower of the two.
func valleysIn(idx []int, depth []float64, minDepth float64) []defect {
	var out []defect
	lo := 0 // start of the current valley's stretch
	best, bestD := -1, 0.0
	minSince := math.Inf(1) // shallowest point since best
	for s, d := range depth {
		if best >= 0 && d < minSince {
			minSince = d
		}
		if best >= 0 && minSince <= bestD-minDepth && d >= minSince+minDepth && d >= minDepth {
			// A new prominent valley starts: close the previous one at
			// the dip between them.
			cut := s
			for k := s; k > best; k-- {
				if depth[k] == minSince {
					cut = k
					break
				}
			}
			out = append(out, defect{start: idx[lo], end: idx[cut], far: idx[best], depth: bestD})
			lo, best, bestD, minSince = cut, s, d, math.Inf(1)
			continue
		}
		if d > bestD {
			if best >= 0 && minSince <= bestD-minDepth && d < minDepth {
				continue
			}
			best, bestD, minSince = s, d, math.Inf(1)
		}
	}
	if best >= 0 && bestD >= minDepth {
		out = append(out, defect{start: idx[lo], end: idx[len(idx)-1], far: idx[best], depth: bestD})
	}
	return out
}

// Landmarks are the palm's reference points in frame pixels.
type Landmarks struct {
	// Centre and Radius of the largest circle inscribed in the hand.
	Centre geom.Vec
	Radius float64
	// Valleys between index–middle, middle–ring and ring–little fingers
	// (deepest contour points), and the thumb–index valley when found.
	Valleys  [3]geom.Vec
	Thumb    geom.Vec
	HasThumb bool
	// Tangent points: where the common tangent of the index–middle and
	// ring–little valleys touches them. They define the palm's frame.
	IndexSide, LittleSide geom.Vec
	// Left reports a left hand (seen palm-on, thumb on the image's left
	// when the fingers point up).
	Left bool
}

// ROIGeometry is where the square ROI lies in the frame: its centre, side
// (pixels), and unit axes: U points toward the thumb, N toward the wrist.
type ROIGeometry struct {
	Centre geom.Vec
	Side   float64
	U, N   geom.Vec
}

// Corners returns the ROI corners in frame pixels: top-left, top-right,
// bottom-right, bottom-left as seen in the normalised ROI (fingers up,
// thumb right).
func (g ROIGeometry) Corners() [4][2]float64 {
	h := g.Side / 2
	c := func(su, sn float64) [2]float64 {
		p := g.Centre.Add(g.U.Mul(su * h)).Add(g.N.Mul(sn * h))
		return [2]float64{p.X, p.Y}
	}
	return [4][2]float64{c(-1, -1), c(1, -1), c(1, 1), c(-1, 1)}
}

// valley is a candidate finger valley: a concavity of the contour, its
// point (the deepest contour point, or further down the dark gap when the
// fingers touch above the webbing) and its depth below the hull.
type valley struct {
	d     defect
	p     geom.Vec
	depth float64
}

// findLandmarks locates the finger valleys on the contour and derives the
// palm frame. width and height bound the frame, to reject valleys on the
// frame border. smooth, when not nil, is the frame smoothed to float
// (width×height): it lets valleys between fingers held close together be
// followed down their dark gaps to the webbing.
func findLandmarks(contour []geom.Vec, centre geom.Vec, radius float64, width, height int, smooth []float32) (Landmarks, error) {
	lm := Landmarks{Centre: centre, Radius: radius}
	if radius < 8 {
		return lm, ErrNoHand
	}
	fb := frameBounds{width, height}
	vs, best := fingerValleys(contour, centre, radius, fb, smooth)
	if best < 0 {
		if len(vs) == 0 {
			return lm, ErrNotAHand
		}
		return lm, ErrFingersClosed
	}
	nv := len(vs)
	tri := [3]valley{vs[best], vs[(best+1)%nv], vs[(best+2)%nv]}
	for k := range tri {
		lm.Valleys[k] = tri[k].p
	}
	// Toward the fingers from the palm centre.
	fingerDir := lm.Valleys[0].Add(lm.Valleys[1]).Add(lm.Valleys[2]).Mul(1.0 / 3).Sub(centre).Unit()
	lm.Thumb, lm.HasThumb = thumbValley(vs, best, centre, radius, fingerDir, fb)
	ia, ib := 0, 2 // valleys on the index and little side
	if !indexFirst(&lm, contour, fingerDir, fb) {
		ia, ib = 2, 0
		lm.Valleys[0], lm.Valleys[2] = lm.Valleys[2], lm.Valleys[0]
	}
	lm.IndexSide, lm.LittleSide = tangent(contour, tri[ia].d, tri[ib].d, centre, radius)
	if smooth != nil {
		// Where a gap continues below the outline's valley, its end is
		// the true valley; keep whichever point lies deeper in the palm.
		deeper := func(tp, v geom.Vec) geom.Vec {
			r := refineValley(smooth, width, height, v, centre.Sub(v), 0.8*radius)
			if r.Dist(centre) < tp.Dist(centre)-1 {
				return r
			}
			return tp
		}
		lm.Valleys[1] = refineValley(smooth, width, height, lm.Valleys[1], centre.Sub(lm.Valleys[1]), 0.8*radius)
		lm.IndexSide = deeper(lm.IndexSide, lm.Valleys[0])
		lm.LittleSide = deeper(lm.LittleSide, lm.Valleys[2])
	}
	u := lm.IndexSide.Sub(lm.LittleSide)
	if u.Len() < 0.2*radius {
		return lm, ErrFingersClosed
	}
	n := u.Perp()
	if n.Dot(centre.Sub(lm.IndexSide.Add(lm.LittleSide).Mul(0.5))) < 0 {
		n = n.Mul(-1)
	}
	// Image coordinates have y down: a right hand (thumb right, fingers
	// up) has u × n > 0.
	lm.Left = u.Cross(n) < 0
	return lm, nil
}

// frameBounds is the frame a contour lies in.
type frameBounds struct{ width, height int }

// onBorder reports a point on the frame's edge.
func (f frameBounds) onBorder(p geom.Vec) bool {
	return p.X < 2 || p.Y < 2 || p.X > float64(f.width)-3 || p.Y > float64(f.height)-3
}

// nearBorder reports a point within a margin of the frame's edge.
func (f frameBounds) nearBorder(p geom.Vec) bool {
	const margin = 12
	return p.X < margin || p.Y < margin || p.X > float64(f.width-1-margin) || p.Y > float64(f.height-1-margin)
}

// fingerValleys finds the outline's valleys and the best triplet of them
// that look like the three finger valleys (its first index in vs, or −1).
// First the deep concavities of the outline. If no three of them look like
// finger valleys, the fingers may touch: then the shallow notches between
// fingertips are followed down their dark gaps, and those that reach deep
// enough count as valleys.
func fingerValleys(contour []geom.Vec, centre geom.Vec, radius float64, fb frameBounds, smooth []float32) ([]valley, int) {
	var vs []valley
	best := -1
	for pass, minDepth := range [...]float64{0.3, 0.06} {
		if pass == 1 && smooth == nil {
			break
		}
		vs = vs[:0]
		for _, d := range defects(contour, minDepth*radius, fb.onBorder) {
			v := valley{d: d, p: contour[d.far], depth: d.depth}
			if smooth != nil && pass == 1 {
				r := refineValley(smooth, fb.width, fb.height, v.p, centre.Sub(v.p), 0.8*radius)
				v.depth += r.Dist(v.p)
				v.p = r
			}
			// Concavities at the frame's edge are where the frame cuts
			// the hand (fingertips, wrist), not valleys of the hand.
			if v.depth >= 0.3*radius && !fb.nearBorder(v.p) {
				vs = append(vs, v)
			}
		}
		if best = bestTriplet(contour, vs, centre, radius, fb.onBorder); best >= 0 {
			break
		}
	}
	return vs, best
}

// thumbValley finds the thumb valley: a deep concavity next to the finger
// triplet (starting at best), on the index finger's side. It looks one and
// two concavities away on either side: a notch of the wrist or the thenar
// outline may sit in between.
func thumbValley(vs []valley, best int, centre geom.Vec, radius float64, fingerDir geom.Vec, fb frameBounds) (geom.Vec, bool) {
	thumbLike := func(v valley) float64 {
		if v.depth < 0.45*radius || fb.onBorder(v.p) {
			return 0
		}
		if r := v.p.Dist(centre); r < 0.5*radius || r > 2.2*radius {
			return 0
		}
		// The thumb web is beside the palm centre, not down at the wrist,
		// where the forearm's narrowing makes concavities of its own.
		// A web as deep as a thumb is long may sit lower: an abducted
		// thumb pulls the thenar skin and its web toward the wrist.
		along := v.p.Sub(centre).Dot(fingerDir)
		if along < -1.25*radius || (along < -0.9*radius && v.depth < radius) ||
			(along < -0.4*radius && v.p.Dist(centre) > 1.3*radius) {
			return 0
		}
		return v.depth
	}
	nv := len(vs)
	thumbDepth := 0.0
	var thumb geom.Vec
	found := false
	for _, k := range []int{best - 1, best + 3, best - 2, best + 4} {
		k = (k%nv + nv) % nv
		if k >= best && k < best+3 || k+nv >= best && k+nv < best+3 {
			continue // one of the finger valleys (small contours wrap)
		}
		if d := thumbLike(vs[k]); d > thumbDepth {
			thumbDepth, thumb, found = d, vs[k].p, true
		}
	}
	return thumb, found
}

// indexFirst reports whether the first valley of lm's triplet is the
// index finger's. Three cues, most reliable first: the thumb valley is next
// to it; the thumb sticks out sideways on its side at palm level; the
// ring–little valley sits lower on the palm than the index–middle one.
func indexFirst(lm *Landmarks, contour []geom.Vec, fingerDir geom.Vec, fb frameBounds) bool {
	side0 := lm.Valleys[0].Sub(lm.Valleys[2]).Dot(fingerDir.Perp()) > 0
	if lm.HasThumb {
		return lm.Thumb.Dist(lm.Valleys[0]) < lm.Thumb.Dist(lm.Valleys[2])
	}
	if plus, minus := lateralExtent(contour, lm.Centre, fingerDir, lm.Radius, fb.onBorder); math.Abs(plus-minus) > 0.25*lm.Radius {
		return (plus > minus) == side0
	}
	return lm.Valleys[0].Sub(lm.Centre).Dot(fingerDir) >= lm.Valleys[2].Sub(lm.Centre).Dot(fingerDir)
}

// bestTriplet returns the index in vs of the first of the three
// consecutive valleys that best look like the valleys between the four
// fingers, or −1.
func bestTriplet(contour []geom.Vec, vs []valley, centre geom.Vec, radius float64, onBorder func(geom.Vec) bool) int {
	isCand := func(v valley) bool {
		r := v.p.Dist(centre)
		return r >= 0.75*radius && r <= 2.3*radius && !onBorder(v.p)
	}
	// The fingertip between two valleys: the contour point between them
	// farthest from the centre.
	tip := func(a, b valley) geom.Vec {
		n := len(contour)
		span := (b.d.far - a.d.far + n) % n
		best, bestR := contour[a.d.far], 0.0
		for s := 0; s <= span; s++ {
			p := contour[(a.d.far+s)%n]
			if r := p.Dist(centre); r > bestR {
				best, bestR = p, r
			}
		}
		return best
	}
	nv := len(vs)
	best, bestScore := -1, math.Inf(-1)
	for i := 0; nv >= 3 && i < nv; i++ {
		a, b, c := vs[i], vs[(i+1)%nv], vs[(i+2)%nv]
		if !isCand(a) || !isCand(b) || !isCand(c) {
			continue
		}
		// A finger's width apart.
		s1, s2 := a.p.Dist(b.p), b.p.Dist(c.p)
		if s1 < 0.22*radius || s1 > 1.0*radius || s2 < 0.22*radius || s2 > 1.0*radius {
			continue
		}
		// At similar distances from the palm centre, the middle one
		// between the outer two.
		ra, rb, rc := a.p.Dist(centre), b.p.Dist(centre), c.p.Dist(centre)
		if math.Max(ra, math.Max(rb, rc)) > 1.35*math.Min(ra, math.Min(rb, rc)) {
			continue
		}
		if t := b.p.Sub(a.p).Dot(c.p.Sub(a.p)) / c.p.Sub(a.p).Dot(c.p.Sub(a.p)); t < 0.15 || t > 0.85 {
			continue
		}
		// Fingertips stick out well beyond the valleys.
		if tip(a, b).Dist(centre) < rb+0.3*radius || tip(b, c).Dist(centre) < rb+0.3*radius {
			continue
		}
		score := (a.depth+b.depth+c.depth)/radius - 2*math.Abs(s1-s2)/radius
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// tangent returns the points where the common tangent of two valleys, on
// the palm's side, touches them. The valley bottoms are rounded (webbing),
// and the deepest point slides along them as the fingers spread; the
// tangent of both is the classic stable palm axis.
func tangent(contour []geom.Vec, a, b defect, centre geom.Vec, radius float64) (pa, pb geom.Vec) {
	bottom := func(d defect) []geom.Vec {
		f := contour[d.far]
		var out []geom.Vec
		n := len(contour)
		span := (d.end - d.start + n) % n
		for s := 0; s <= span; s++ {
			p := contour[(d.start+s)%n]
			if p.Dist(f) <= 0.35*radius {
				out = append(out, p)
			}
		}
		return out
	}
	A, B := bottom(a), bottom(b)
	pa, pb = contour[a.far], contour[b.far]
	// Rotating calipers would do; the sets are small, so iterate: move each
	// end to the point of its valley farthest toward the palm side of the
	// current line until nothing changes.
	for iter := 0; iter < 8; iter++ {
		changed := false
		for side := 0; side < 2; side++ {
			set, fixed, cur := A, pb, &pa
			if side == 1 {
				set, fixed, cur = B, pa, &pb
			}
			dir := cur.Sub(fixed)
			if dir.Len() == 0 {
				break
			}
			nrm := dir.Perp().Unit()
			if nrm.Dot(centre.Sub(fixed)) < 0 {
				nrm = nrm.Mul(-1)
			}
			bestP, bestD := *cur, 0.0
			for _, p := range set {
				// Signed distance toward the palm from the line fixed–cur.
				if d := nrm.Dot(p.Sub(fixed)) - nrm.Dot(cur.Sub(fixed)); d > bestD+1e-9 {
					bestP, bestD = p, d
				}
			}
			if bestP != *cur {
				*cur, changed = bestP, true
			}
		}
		if !changed {
			break
		}
	}
	return pa, pb
}

// roiFrom derives the ROI square from the landmarks and the hand mask.
// Orientation comes from the valley tangent. Scale and lateral position come
// from the palm's width measured along the tangent just below the finger
// bases: the valleys slide apart and together as the fingers spread, the
// palm's edges do not. If the width cannot be measured sensibly (a sleeve,
// the thumb pressed against the palm), the valley distance stands in. A
// palm whose width the frame's edge cuts is partly out of view
// (ErrPartialHand): its ROI would be placed and scaled from half a palm.
func roiFrom(lm Landmarks, mask gocv.Mat) (ROIGeometry, error) {
	u := lm.IndexSide.Sub(lm.LittleSide)
	d := u.Len()
	u = u.Unit()
	n := u.Perp()
	mid := lm.IndexSide.Add(lm.LittleSide).Mul(0.5)
	if n.Dot(lm.Centre.Sub(mid)) < 0 {
		n = n.Mul(-1)
	}
	// Orientation: the valley tangent's normal averaged with the direction
	// from the valleys to the palm centre. Their errors are independent
	// (one comes from the valleys' relative heights, the other from the
	// palm outline), so the mean is steadier than either.
	toPalm := lm.Centre.Sub(lm.Valleys[0].Add(lm.Valleys[1]).Add(lm.Valleys[2]).Mul(1.0 / 3)).Unit()
	if avg := n.Add(toPalm); avg.Len() > 1 {
		flip := u.Cross(n) < 0 // keep the handedness
		n = avg.Unit()
		u = n.Perp().Mul(-1)
		if (u.Cross(n) < 0) != flip {
			u = u.Mul(-1)
		}
	}
	width, centre, cut := widthAlong(mask, mid.Add(n.Mul(widthLevel*d)), u)
	if cut {
		return ROIGeometry{}, fmt.Errorf("%w: the frame's edge cuts the palm", ErrPartialHand)
	}
	if width < 1.5*d || width > 2.6*d {
		width, centre = palmPerValley*d, mid
	}
	// Lateral position from the palm's edges, vertical from the valleys.
	c := mid.Add(u.Mul(centre.Sub(mid).Dot(u))).Add(n.Mul(roiOffset * width))
	return ROIGeometry{Centre: c, Side: roiSide * width, U: u, N: n}, nil
}

// widthAlong measures the mask's extent through p along ±u and returns it
// with the midpoint of the chord, and whether the frame's edge cut the
// chord (a palm partly out of view: its width is not measurable).
func widthAlong(mask gocv.Mat, p, u geom.Vec) (float64, geom.Vec, bool) {
	d, err := mask.DataPtrUint8()
	if err != nil {
		return 0, p, false
	}
	w, h := mask.Cols(), mask.Rows()
	inFrame := func(q geom.Vec) bool {
		x, y := int(math.Round(q.X)), int(math.Round(q.Y))
		return x >= 0 && y >= 0 && x < w && y < h
	}
	in := func(q geom.Vec) bool {
		x, y := int(math.Round(q.X)), int(math.Round(q.Y))
		return inFrame(q) && d[y*w+x] != 0
	}
	if !in(p) {
		return 0, p, false
	}
	limit := float64(w + h)
	var a, b float64
	for a = 0; a < limit && in(p.Add(u.Mul(a+1))); a++ {
	}
	for b = 0; b < limit && in(p.Sub(u.Mul(b+1))); b++ {
	}
	cut := !inFrame(p.Add(u.Mul(a+1))) || !inFrame(p.Sub(u.Mul(b+1)))
	return a + b + 1, p.Add(u.Mul((a - b) / 2)), cut
}

// checkInside reports ErrPartialHand when the ROI leaves the frame.
func (g ROIGeometry) checkInside(width, height int) error {
	for _, c := range g.Corners() {
		if c[0] < 0 || c[1] < 0 || c[0] > float64(width-1) || c[1] > float64(height-1) {
			return fmt.Errorf("%w: ROI corner at (%.0f, %.0f)", ErrPartialHand, c[0], c[1])
		}
	}
	return nil
}

// lateralExtent returns how far the hand outline reaches on either side of
// the finger axis at palm level: the thumb makes one side reach further.
func lateralExtent(contour []geom.Vec, centre, fingerDir geom.Vec, radius float64, onBorder func(geom.Vec) bool) (plus, minus float64) {
	side := fingerDir.Perp()
	for _, p := range contour {
		d := p.Sub(centre)
		if along := d.Dot(fingerDir); along < -1.5*radius || along > 0.5*radius || onBorder(p) {
			continue
		}
		l := d.Dot(side)
		plus, minus = math.Max(plus, l), math.Max(minus, -l)
	}
	return plus, minus
}

// refineValley follows the dark gap between two fingers from the mask's
// valley point f toward the palm (initial direction dir) to where the gap
// ends, in the smoothed image img (CV_32F). Fingers held close together
// touch before their webbing: the mask closes over the gap at a height
// that depends on the threshold and the gap's width, while the end of the
// dark line in the image is the webbing itself.
func refineValley(img []float32, w, h int, f, dir geom.Vec, maxLen float64) geom.Vec {
	at := func(p geom.Vec) (float32, bool) {
		x, y := int(math.Round(p.X)), int(math.Round(p.Y))
		if x < 0 || y < 0 || x >= w || y >= h {
			return 0, false
		}
		return img[y*w+x], true
	}
	dir = dir.Unit()
	cur, misses := f, 0
	last := f
	for step := 0.0; step < maxLen; step++ {
		next := cur.Add(dir)
		side := dir.Perp()
		// The darkest point across the gap near the next step.
		best, bestV := next, float32(math.Inf(1))
		for o := -2.0; o <= 2; o++ {
			if v, ok := at(next.Add(side.Mul(o))); ok && v < bestV {
				best, bestV = next.Add(side.Mul(o)), v
			}
		}
		l, okl := at(best.Add(side.Mul(gapFlank)))
		r, okr := at(best.Sub(side.Mul(gapFlank)))
		if !okl || !okr {
			break
		}
		if bestV < gapContrast*min(l, r) {
			misses = 0
			last = best
		} else if misses++; misses > 1 {
			break
		}
		// Follow the gap as it bends.
		if d := best.Sub(cur); d.Len() > 0 {
			dir = dir.Mul(0.7).Add(d.Unit().Mul(0.3)).Unit()
		}
		cur = best
	}
	return last
}

const (
	gapFlank    = 5    // px from the gap's centre line to the skin beside it
	gapContrast = 0.93 // a gap is at least 7 % darker than the skin beside it
)

// Bounds of Moved: how far the palm may move between consecutive frames
// and still count as held still.
const (
	// MaxStillShift is the ROI centre's movement, as a fraction of the
	// frame width (6 px at 640: a hand held still trembles by a fraction
	// of a pixel, and the ROI's placement itself varies by a few).
	MaxStillShift = 0.01
	// MaxStillScale is the relative change of the ROI side (a hand still
	// coming in changes scale by several per cent a frame).
	MaxStillScale = 0.03
)

// Moved reports whether the palm moved between two consecutive frames of
// frameWidth pixels more than a hand held still does.
func Moved(prev, cur ROIGeometry, frameWidth int) bool {
	if prev.Side <= 0 {
		return false
	}
	shift := cur.Centre.Sub(prev.Centre).Len()
	return shift > MaxStillShift*float64(frameWidth) || math.Abs(cur.Side/prev.Side-1) > MaxStillScale
}
