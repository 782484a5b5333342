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
		q.Bend, q.Deform, q.Fold, q.Stretch, q.ThumbPull, q.PostureGain = 0.1, 0, 0, 0, 0, 0
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

// TestPostureFoldFollowsThePoseDifference checks the model behind the
// pose dependence of genuine distances: one person's skin takes one shape
// per posture, so two captures' skin differs in proportion to how far
// apart their poses are, and not at all when the poses agree.
func TestPostureFoldFollowsThePoseDifference(t *testing.T) {
	id := NewIdentity(5)
	base := [PostureComponents]float64{0.5, -1, 0.3, 0.8}
	rms := func(a, b [PostureComponents]float64) float64 {
		fa, fb := newPostureFold(id, a, 0.3), newPostureFold(id, b, 0.3)
		var sum float64
		n := 0
		for y := -40.0; y <= 40; y += 4 {
			for x := -40.0; x <= 40; x += 4 {
				d := fa.at(geom.V(x, y)).Sub(fb.at(geom.V(x, y)))
				sum += d.Dot(d)
				n++
			}
		}
		return math.Sqrt(sum / float64(n))
	}
	moved := func(k int, by float64) [PostureComponents]float64 {
		p := base
		p[k] += by
		return p
	}
	if d := rms(base, base); d != 0 {
		t.Errorf("same posture: skin differs by %.3f mm", d)
	}
	for k := range base {
		one, two := rms(base, moved(k, 1)), rms(base, moved(k, 2))
		if one < 0.05 || math.Abs(two/one-2) > 0.01 {
			t.Errorf("component %d: skin moves %.3f mm for one unit, %.3f for two (want twice)", k, one, two)
		}
	}
	if other := newPostureFold(NewIdentity(6), moved(0, 1), 0.3).at(geom.V(10, 10)); other == newPostureFold(id, moved(0, 1), 0.3).at(geom.V(10, 10)) {
		t.Error("two people's skin folds alike for one posture")
	}
	// Sample derives the posture from the pose it draws: captures of one
	// visit that differ more in turn differ more in posture.
	v := DefaultVariation()
	a, b := v.Sample(id, 0, 0, 640, 480), v.Sample(id, 0, 1, 640, 480)
	turn := (a.Pose.Angle - b.Pose.Angle) * 180 / math.Pi
	if got, want := a.Posture[0]-b.Posture[0], turn/postureUnits()[0]; math.Abs(got-want) > 1e-9 {
		t.Errorf("turn difference %.2f° gives posture difference %.3f, want %.3f", turn, got, want)
	}
}
