package sim

import (
	"math"
	"testing"

	"github.com/palmd/palmd/geom"
)

func TestBody(t *testing.T) {
	id := NewIdentity(42)
	v := DefaultVariation()
	p := v.Sample(id, 0, 0, 640, 480)
	t.Run("a hand's skin moves", func(t *testing.T) {
		b := newBody(&p)
		var moved float64
		for _, h := range []geom.Vec{geom.V(0, 20), geom.V(20, -10), geom.V(-20, -30), geom.V(25, 30)} {
			moved = max(moved, b.skin(h).Len())
		}
		if moved < 0.05 || moved > 8 {
			t.Errorf("largest skin movement %.3f mm, want a fraction of a mm to a few mm", moved)
		}
		if z := b.height(geom.V(id.PalmWidth/2-12, -id.PalmLength*0.22)); z <= 0 {
			t.Errorf("thenar eminence at height %.1f mm, want above the palm's plane", z)
		}
	})
	t.Run("a print is flat and rigid", func(t *testing.T) {
		q := p
		q.Attack, q.TiltX, q.TiltY = NewInstrument(AttackPrint, 1), 0, 0
		q.Attack.Curve = 0
		b := newBody(&q)
		for _, h := range []geom.Vec{geom.V(0, 20), geom.V(20, -10), geom.V(-20, -30)} {
			if d, z := b.skin(h).Len(), b.height(h); d != 0 || z != 0 {
				t.Errorf("at %v: skin moved %.3f mm, height %.2f mm", h, d, z)
			}
		}
	})
	t.Run("the wrist bends the heel, not the finger bases", func(t *testing.T) {
		q := p
		q.Bend, q.Deform, q.Fold, q.Stretch, q.ThumbPull = 0.1, 0, 0, 0, 0
		b := newBody(&q)
		top, heel := b.skin(geom.V(0, id.PalmLength*0.3)).Len(), b.skin(geom.V(0, -id.PalmLength/2)).Len()
		if top > 1e-9 || heel < 1 {
			t.Errorf("bend 0.1 rad moved the top %.3f mm and the heel %.3f mm", top, heel)
		}
	})
	t.Run("the same arguments give the same presentation", func(t *testing.T) {
		q := v.Sample(id, 0, 0, 640, 480)
		if q != p {
			t.Errorf("Sample is not deterministic")
		}
		if math.IsNaN(p.Fold) || p.VeinGain <= 0 || id.Laxity <= 0 {
			t.Errorf("fold %v, vein gain %v, laxity %v", p.Fold, p.VeinGain, id.Laxity)
		}
	})
}
