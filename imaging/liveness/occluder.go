package liveness

import (
	"fmt"
	"image"
	"math"
	"slices"

	"gocv.io/x/gocv"

	"github.com/palmd/palmd/sensor"
)

// OccluderConfig tunes the screen check. The zero value means the
// defaults.
type OccluderConfig struct {
	// MinShare is the least share of the frame that must answer the
	// illuminator far less than the empty box does; DefaultOccluderShare.
	MinShare float64
	// Debounce is how many consecutive checks must agree;
	// DefaultOccluderDebounce.
	Debounce int
}

// Defaults of OccluderConfig.
const (
	DefaultOccluderShare    = 0.06
	DefaultOccluderDebounce = 3
	// occluderRatio: a pixel is dark when it answers the illuminator with
	// less than this share of what the empty box answers there.
	occluderRatio = 0.45
	// occluderMinRef is the least lit − unlit grey of the empty box for a
	// pixel to count at all (the box must be lit to be darkened).
	occluderMinRef = 4
	// learnChecks is how many empty checks the box's answer is first
	// learnt from; afterwards it follows slow changes (ageing LEDs, dust).
	learnChecks   = 8
	occluderScale = 8
)

// Occluder finds what a hand never is: something held in view that
// answers the illuminator less than the empty box behind it — a phone or
// tablet screen (a display emits nothing at 940 nm, its glass reflects a
// few per cent). It learns the empty box's lit − unlit answer between
// presentations, at 1/8 resolution, and holds no image of anything else.
// With a hand in view it also measures what surrounds the hand against
// that empty box (OccluderCheck.Sheet): the sheet a printed hand is on.
// Not safe for concurrent use.
type Occluder struct {
	cfg        OccluderConfig
	ref        []float32
	learnt     int
	run        int
	dark       bool
	lit, unlit gocv.Mat
	// The surroundings cue's buffers: the lit − unlit answer beyond the
	// box's (as a slice, sorted, and as an image), the hand's masks, and
	// the dilations' structuring elements.
	excess, sorted          []float32
	ex, hand, near, ring    gocv.Mat
	nearKernel, reachKernel gocv.Mat
}

// NewOccluder returns an Occluder; Close it when done.
func NewOccluder(cfg OccluderConfig) *Occluder {
	if cfg.MinShare == 0 {
		cfg.MinShare = DefaultOccluderShare
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = DefaultOccluderDebounce
	}
	return &Occluder{cfg: cfg, lit: gocv.NewMat(), unlit: gocv.NewMat(),
		ex: gocv.NewMat(), hand: gocv.NewMat(), near: gocv.NewMat(), ring: gocv.NewMat(),
		nearKernel:  gocv.GetStructuringElement(gocv.MorphRect, image.Pt(2*sheetGap+1, 2*sheetGap+1)),
		reachKernel: gocv.GetStructuringElement(gocv.MorphRect, image.Pt(2*sheetReach+1, 2*sheetReach+1))}
}

// Close releases the buffers.
func (o *Occluder) Close() {
	for _, m := range []*gocv.Mat{&o.lit, &o.unlit, &o.ex, &o.hand, &o.near, &o.ring, &o.nearKernel, &o.reachKernel} {
		m.Close()
	}
}

// OccluderCheck is the result of one check.
type OccluderCheck struct {
	// Share is the share of the frame darker than the empty box.
	Share float64
	// Dark is the debounced state; Triggered is true on the one check
	// where it turns on.
	Dark, Triggered bool
	// Sheet is measured only with a hand arriving (−1 otherwise): the
	// share of the hand's surroundings that answer the illuminator unlike
	// the empty box, either way (CueSheet). A living hand has the box
	// around it (about 0); a printed hand has the sheet it is printed on.
	Sheet float64
}

// View is what the presence detector sees when the Occluder checks a pair
// of frames. The zero value is an empty box.
type View int

// The views.
const (
	// NoHand: nothing the presence detector takes for a hand; the box
	// may be learnt.
	NoHand View = iota
	// HandArriving: a hand coming in, before its presentation; what
	// surrounds it is measured (OccluderCheck.Sheet).
	HandArriving
	// HandLeaving: a hand still in view after its presentation, waited
	// out before the next; nothing is learnt and nothing around it is
	// measured, since no presentation is left to judge.
	HandLeaving
)

// Check compares a lit and an unlit frame with the empty box. view says
// whether the presence detector sees a hand (the box is then not learnt)
// and whether one is arriving (the sheet around it is then measured).
func (o *Occluder) Check(lit, unlit *sensor.Frame, view View) (OccluderCheck, error) {
	hand := view != NoHand
	c := OccluderCheck{Sheet: -1}
	if lit.Width != unlit.Width || lit.Height != unlit.Height {
		return c, fmt.Errorf("liveness: lit %dx%d and unlit %dx%d frames differ in size", lit.Width, lit.Height, unlit.Width, unlit.Height)
	}
	if err := o.small(lit, &o.lit); err != nil {
		return c, err
	}
	if err := o.small(unlit, &o.unlit); err != nil {
		return c, err
	}
	ld, _ := o.lit.DataPtrUint8()
	ud, _ := o.unlit.DataPtrUint8()
	if len(o.ref) != len(ld) {
		o.ref, o.learnt, o.run, o.dark = make([]float32, len(ld)), 0, 0, false
	}
	var dark, bright, counted int
	for i := range ld {
		diff := float32(ld[i]) - float32(ud[i])
		if o.learnt < learnChecks {
			continue
		}
		if o.ref[i] >= occluderMinRef {
			counted++
			if diff < occluderRatio*o.ref[i] {
				dark++
			}
		}
		if diff > max(o.ref[i], occluderMinRef)/occluderRatio {
			bright++
		}
	}
	if counted > 0 {
		c.Share = float64(dark) / float64(len(ld))
	}
	// Learn only a view that answers like the box: a hand the presence
	// detector did not take for one (too ragged, too far) is still
	// something in view, and learnt as the box it would make the box
	// itself look dark once the hand left — a screen where there is none.
	empty := !hand && c.Share < 0.01 && float64(bright) < 0.01*float64(len(ld))
	if empty {
		// Learn the box: a running mean at first, then slowly.
		rate := float32(0.02)
		if o.learnt < learnChecks {
			o.learnt++
			rate = 1 / float32(o.learnt)
		}
		for i := range ld {
			o.ref[i] += rate * (float32(ld[i]) - float32(ud[i]) - o.ref[i])
		}
	}
	if view == HandArriving && o.learnt >= learnChecks {
		c.Sheet = o.sheet(ld, ud)
	}
	now := c.Share >= o.cfg.MinShare && !hand
	if now != o.dark {
		o.run++
		if o.run >= o.cfg.Debounce {
			o.dark, o.run = now, 0
			c.Triggered = now
		}
	} else {
		o.run = 0
	}
	c.Dark = o.dark
	wipe(&o.lit, &o.unlit)
	return c, nil
}

// Bounds of the surroundings cue, at the Occluder's 1/8 scale.
const (
	// sheetHand: a pixel is the hand's when it answers the illuminator,
	// beyond the box, with at least this share of the hand's answer (its
	// 95th percentile over the frame).
	sheetHand = 0.45
	// sheetGap and sheetReach: the surroundings are the ring from 2 to 12
	// pixels (about 7 to 40 mm) beyond the hand: outside the blur of its
	// outline, within the sheet a printed hand is on.
	sheetGap, sheetReach = 2, 12
	// sheetMinHand is the least answer (grey) of the hand for the cue to
	// be measured at all.
	sheetMinHand = 16
	// sheetLevel: a ring pixel differs from the box when its answer does
	// by this share of the hand's or more.
	sheetLevel = 0.03
)

// sheet measures what surrounds a hand: the share of the ring from
// sheetGap to sheetReach beyond it whose answer to the illuminator
// (lit − unlit) differs from the empty box's by sheetLevel of the hand's
// own answer or more, either way; −1 when there is too little hand or
// ring to measure. Around a living hand is the box (0 but for a dim
// fingertip); a print's sheet answers with its own reflectance — brighter
// than the box's dark background, darker than the lit rim it hides.
func (o *Occluder) sheet(ld, ud []uint8) float64 {
	w, h := o.lit.Cols(), o.lit.Rows()
	o.excess = o.excess[:0]
	for i := range ld {
		o.excess = append(o.excess, float32(ld[i])-float32(ud[i])-o.ref[i])
	}
	defer func() { clear(o.excess); clear(o.sorted); wipe(&o.hand, &o.near, &o.ring) }()
	o.sorted = append(o.sorted[:0], o.excess...)
	slices.Sort(o.sorted)
	answer := o.sorted[len(o.sorted)*95/100]
	if answer < sheetMinHand {
		return -1
	}
	if o.ex.Rows() != h || o.ex.Cols() != w {
		o.ex.Close()
		o.ex = gocv.NewMatWithSize(h, w, gocv.MatTypeCV32F)
	}
	ed, err := o.ex.DataPtrFloat32()
	if err != nil {
		return -1
	}
	copy(ed, o.excess)
	gocv.Threshold(o.ex, &o.hand, sheetHand*answer, 255, gocv.ThresholdBinary)
	clear(ed)
	o.hand.ConvertTo(&o.hand, gocv.MatTypeCV8U)
	gocv.Dilate(o.hand, &o.near, o.nearKernel)
	gocv.Dilate(o.hand, &o.ring, o.reachKernel)
	nd, _ := o.near.DataPtrUint8()
	rd, _ := o.ring.DataPtrUint8()
	differ, n := 0, 0
	for i, e := range o.excess {
		if rd[i] != 0 && nd[i] == 0 {
			n++
			if math.Abs(float64(e)) >= sheetLevel*float64(answer) {
				differ++
			}
		}
	}
	if n < sheetMinRing {
		return -1
	}
	return float64(differ) / float64(n)
}

// sheetMinSpread is the sheet cue's least spread (Norm.MinSpread): most
// living hands have the empty box all round them (a sixth exactly 0,
// half under 0.3 % of the ring), and the rest a fingertip or two at the
// edge of the beam, too dim to count as the hand's, in the ring: on 150
// living hands of people the calibration does not use, up to 6.6 % of
// it; whole-sheet prints and vein prints of the same people 18–57 %,
// cut-out ones and casts up to 4.6 %.
const sheetMinSpread = 0.04

// sheetMinRing is the least number of ring pixels for the cue to be
// measured (a hand filling the view leaves none).
const sheetMinRing = 50

func (o *Occluder) small(f *sensor.Frame, dst *gocv.Mat) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("liveness: %w", err)
	}
	// Resize reads the pixels before returning and nothing keeps the
	// wrapper, so wrapping without a copy is safe here.
	m, err := gocv.NewMatFromBytes(f.Height, f.Width, gocv.MatTypeCV8U, f.Pix)
	if err != nil {
		return fmt.Errorf("liveness: %w", err)
	}
	defer m.Close()
	gocv.Resize(m, dst, image.Pt(max(1, f.Width/occluderScale), max(1, f.Height/occluderScale)), 0, 0, gocv.InterpolationArea)
	return nil
}
