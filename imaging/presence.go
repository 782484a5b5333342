package imaging

import (
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/sensor"
)

// PresenceConfig tunes hand detection. Areas are fractions of the frame.
type PresenceConfig struct {
	// MinLevel is the least grey difference (lit − unlit, or grey of a
	// single frame) a hand pixel has.
	MinLevel float32
	// MinArea and MaxArea bound the hand's share of the frame: smaller is
	// too far (or a glint), larger covers the lens.
	MinArea, MaxArea float64
	// MinSolidity and MaxSolidity bound area ÷ convex hull area: an open
	// hand is 0.55–0.85; a sheet of paper, a sleeve or a face is near 1,
	// scattered reflections are far below.
	MinSolidity, MaxSolidity float64
	// StillFraction is the largest centroid movement between consecutive
	// frames, as a fraction of frame width, for the hand to count as still.
	StillFraction float64
	// Debounce is how many consecutive frames must agree before presence
	// starts or ends.
	Debounce int
}

// DefaultPresenceConfig returns thresholds that hold on real 940 nm
// captures: hand ≈ 90 grey on an 18-grey box, covering about a third of the
// frame when usable.
func DefaultPresenceConfig() PresenceConfig {
	return PresenceConfig{
		MinLevel: 25, MinArea: 0.04, MaxArea: 0.8,
		MinSolidity: 0.45, MaxSolidity: 0.93,
		StillFraction: 0.012, Debounce: 3,
	}
}

// Presence is what the detector saw in one frame.
type Presence struct {
	// Hand reports a hand-shaped object in range in this frame.
	Hand bool
	// Present is the debounced state; Triggered is true on the one frame
	// where Present turns on.
	Present, Triggered bool
	// Still reports that the hand moved less than StillFraction since the
	// previous frame.
	Still bool
	// Area (share of the frame), Solidity and Centroid (frame pixels) of
	// the largest bright object.
	Area, Solidity float64
	Centroid       image.Point
	// Reason says why Hand is false ("" when it is true).
	Reason string
}

// presenceScale is the downscaling applied before detection: a 640×480
// frame is examined at 160×120, which keeps the check well under a
// millisecond.
const presenceScale = 4

// PresenceDetector decides, frame by frame, whether a hand is in range. It
// keeps state across frames (debounce and stillness) and reuses its
// buffers: one per camera, not safe for concurrent use.
type PresenceDetector struct {
	cfg                  PresenceConfig
	small, smallOff, bin gocv.Mat
	labels, stats, cents gocv.Mat
	// open is the 3×3 opening's structuring element (analyse).
	open    gocv.Mat
	prev    image.Point
	prevOK  bool
	run     int // consecutive frames disagreeing with present
	present bool
}

// NewPresenceDetector returns a detector; Close it when done.
func NewPresenceDetector(cfg PresenceConfig) *PresenceDetector {
	return &PresenceDetector{
		cfg: cfg, small: gocv.NewMat(), smallOff: gocv.NewMat(), bin: gocv.NewMat(),
		labels: gocv.NewMat(), stats: gocv.NewMat(), cents: gocv.NewMat(),
		open: gocv.GetStructuringElement(gocv.MorphRect, image.Pt(3, 3)),
	}
}

// Close releases the detector's buffers.
func (d *PresenceDetector) Close() {
	for _, m := range []*gocv.Mat{&d.small, &d.smallOff, &d.bin, &d.labels, &d.stats, &d.cents, &d.open} {
		m.Close()
	}
}

// Reset forgets the debounce and stillness history.
func (d *PresenceDetector) Reset() { d.prevOK, d.run, d.present = false, 0, false }

// Check examines a frame lit by the illuminator and, when the hardware can
// pulse, a frame taken with it off just before or after (unlit may be nil).
// Differencing removes ambient light and the static background.
func (d *PresenceDetector) Check(lit, unlit *sensor.Frame) (Presence, error) {
	if err := d.downscale(lit, &d.small); err != nil {
		return Presence{}, err
	}
	if unlit != nil {
		if unlit.Width != lit.Width || unlit.Height != lit.Height {
			return Presence{}, fmt.Errorf("imaging: lit %dx%d and unlit %dx%d frames differ in size", lit.Width, lit.Height, unlit.Width, unlit.Height)
		}
		if err := d.downscale(unlit, &d.smallOff); err != nil {
			return Presence{}, err
		}
		gocv.Subtract(d.small, d.smallOff, &d.small) // saturates at 0
	}
	p := d.analyse()
	d.debounce(&p)
	wipe(&d.small, &d.smallOff, &d.bin, &d.labels)
	return p, nil
}

func (d *PresenceDetector) downscale(f *sensor.Frame, dst *gocv.Mat) error {
	if err := f.Validate(); err != nil {
		return err
	}
	// Wrapping without a copy is safe here: Resize reads the pixels
	// before returning and nothing keeps the wrapper.
	m, err := gocv.NewMatFromBytes(f.Height, f.Width, gocv.MatTypeCV8U, f.Pix)
	if err != nil {
		return fmt.Errorf("imaging: %w", err)
	}
	defer m.Close()
	gocv.Resize(m, dst, image.Pt(max(1, f.Width/presenceScale), max(1, f.Height/presenceScale)), 0, 0, gocv.InterpolationArea)
	return nil
}

func (d *PresenceDetector) analyse() Presence {
	var p Presence
	lo, hi := otsuClasses(d.small)
	level := float32(lo + 0.35*(hi-lo))
	if hi-lo < float64(d.cfg.MinLevel) {
		p.Reason = "nothing bright in view"
		return p
	}
	gocv.Threshold(d.small, &d.bin, level, 255, gocv.ThresholdBinary)
	// Thin bright lines (the box's lit rim, a cable) that touch the
	// wrist would join the hand and ruin its outline: an opening by 3×3
	// removes what is under 3 px (12 frame px) across, far thinner than
	// a finger.
	gocv.MorphologyEx(d.bin, &d.bin, gocv.MorphOpen, d.open)
	n := gocv.ConnectedComponentsWithStatsWithParams(d.bin, &d.labels, &d.stats, &d.cents, 8, gocv.MatTypeCV32S, gocv.CCL_DEFAULT)
	best, bestArea := 0, 0
	for i := 1; i < n; i++ {
		if a := int(d.stats.GetIntAt(i, int(gocv.CC_STAT_AREA))); a > bestArea {
			best, bestArea = i, a
		}
	}
	total := d.small.Rows() * d.small.Cols()
	p.Area = float64(bestArea) / float64(total)
	if best == 0 || p.Area < d.cfg.MinArea {
		p.Reason = "no object large enough"
		return p
	}
	p.Centroid = image.Pt(int(d.cents.GetDoubleAt(best, 0))*presenceScale, int(d.cents.GetDoubleAt(best, 1))*presenceScale)
	if p.Area > d.cfg.MaxArea {
		p.Reason = "object covers the view"
		return p
	}
	v := gocv.NewScalar(float64(best), 0, 0, 0)
	gocv.InRangeWithScalar(d.labels, v, v, &d.bin)
	cs := gocv.FindContours(d.bin, gocv.RetrievalExternal, gocv.ChainApproxSimple)
	defer cs.Close()
	var hullArea float64
	for i := 0; i < cs.Size(); i++ {
		c := cs.At(i)
		hull := gocv.NewMat()
		gocv.ConvexHull(c, &hull, false, true)
		if hull.Rows() >= 3 {
			hp := make([]image.Point, hull.Rows())
			for k := range hp {
				v := hull.GetVeciAt(k, 0)
				hp[k] = image.Pt(int(v[0]), int(v[1]))
			}
			pv := gocv.NewPointVectorFromPoints(hp)
			hullArea = math.Max(hullArea, gocv.ContourArea(pv))
			pv.Close()
		}
		hull.Close()
	}
	if hullArea > 0 {
		p.Solidity = math.Min(1, float64(bestArea)/hullArea)
	}
	switch {
	case p.Solidity < d.cfg.MinSolidity:
		p.Reason = fmt.Sprintf("object too ragged (solidity %.2f)", p.Solidity)
	case p.Solidity > d.cfg.MaxSolidity:
		p.Reason = fmt.Sprintf("object too compact for an open hand (solidity %.2f)", p.Solidity)
	default:
		p.Hand = true
	}
	return p
}

// debounce applies hysteresis and stillness.
func (d *PresenceDetector) debounce(p *Presence) {
	if p.Hand && d.prevOK {
		dx, dy := float64(p.Centroid.X-d.prev.X), float64(p.Centroid.Y-d.prev.Y)
		p.Still = math.Hypot(dx, dy) <= d.cfg.StillFraction*float64(d.small.Cols()*presenceScale)
	}
	d.prev, d.prevOK = p.Centroid, p.Hand
	if p.Hand != d.present {
		d.run++
		if d.run >= max(1, d.cfg.Debounce) {
			d.present, d.run = p.Hand, 0
			p.Triggered = d.present
		}
	} else {
		d.run = 0
	}
	p.Present = d.present
}
