package geom

import (
	"math"
	"testing"
)

func TestVec(t *testing.T) {
	a, b := V(3, 4), V(1, -2)
	for _, tc := range []struct {
		name      string
		got, want Vec
	}{
		{"add", a.Add(b), V(4, 2)},
		{"sub", a.Sub(b), V(2, 6)},
		{"mul", a.Mul(2), V(6, 8)},
		{"unit", a.Unit(), V(0.6, 0.8)},
		{"perp", a.Perp(), V(-4, 3)},
		{"rot quarter", a.Rot(math.Pi / 2), V(-4, 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got.Dist(tc.want) > 1e-12 {
				t.Errorf("%v, want %v", tc.got, tc.want)
			}
		})
	}
	if a.Len() != 5 || a.Dot(b) != -5 || a.Cross(b) != -10 {
		t.Errorf("len %v dot %v cross %v", a.Len(), a.Dot(b), a.Cross(b))
	}
}
