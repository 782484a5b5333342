package liveness

import (
	"fmt"
	"image"

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
// Not safe for concurrent use.
type Occluder struct {
	cfg        OccluderConfig
	ref        []float32
	learnt     int
	run        int
	dark       bool
	lit, unlit gocv.Mat
}

// NewOccluder returns an Occluder; Close it when done.
func NewOccluder(cfg OccluderConfig) *Occluder {
	if cfg.MinShare == 0 {
		cfg.MinShare = DefaultOccluderShare
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = DefaultOccluderDebounce
	}
	return &Occluder{cfg: cfg, lit: gocv.NewMat(), unlit: gocv.NewMat()}
}

// Close releases the buffers.
func (o *Occluder) Close() { o.lit.Close(); o.unlit.Close() }

// OccluderCheck is the result of one check.
type OccluderCheck struct {
	// Share is the share of the frame darker than the empty box.
	Share float64
	// Dark is the debounced state; Triggered is true on the one check
	// where it turns on.
	Dark, Triggered bool
}

// Check compares a lit and an unlit frame with the empty box. hand reports
// that the presence detector sees a hand (the box is then not learnt).
func (o *Occluder) Check(lit, unlit *sensor.Frame, hand bool) (OccluderCheck, error) {
	var c OccluderCheck
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
