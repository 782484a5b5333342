// Package geom is 2-D geometry for the imaging pipeline, the simulator and
// the evaluation: one vector type instead of one per package.
package geom

import "math"

// Vec is a point or a direction in the plane.
type Vec struct{ X, Y float64 }

// V returns the vector (x, y).
func V(x, y float64) Vec { return Vec{X: x, Y: y} }

// Add returns a + b.
func (a Vec) Add(b Vec) Vec { return Vec{X: a.X + b.X, Y: a.Y + b.Y} }

// Sub returns a − b.
func (a Vec) Sub(b Vec) Vec { return Vec{X: a.X - b.X, Y: a.Y - b.Y} }

// Mul returns k·a.
func (a Vec) Mul(k float64) Vec { return Vec{X: a.X * k, Y: a.Y * k} }

// Dot returns a · b.
func (a Vec) Dot(b Vec) float64 { return a.X*b.X + a.Y*b.Y }

// Cross returns the z component of a × b.
func (a Vec) Cross(b Vec) float64 { return a.X*b.Y - a.Y*b.X }

// Len returns |a|.
func (a Vec) Len() float64 { return math.Hypot(a.X, a.Y) }

// Dist returns |a − b|.
func (a Vec) Dist(b Vec) float64 { return a.Sub(b).Len() }

// Unit returns a / |a|.
func (a Vec) Unit() Vec { l := a.Len(); return Vec{X: a.X / l, Y: a.Y / l} }

// Perp returns a turned a quarter turn counter-clockwise (y up).
func (a Vec) Perp() Vec { return Vec{X: -a.Y, Y: a.X} }

// Rot returns a turned by rad (counter-clockwise, y up).
func (a Vec) Rot(rad float64) Vec {
	s, c := math.Sincos(rad)
	return Vec{X: a.X*c - a.Y*s, Y: a.X*s + a.Y*c}
}
