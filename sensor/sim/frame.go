package sim

import (
	"fmt"
	"image"
	"image/color"
	"math"

	"github.com/palmd/palmd/geom"
	"gocv.io/x/gocv"
)

func colorRGBA(v uint8) color.RGBA { return color.RGBA{v, v, v, 255} }

// Render draws one frame into dst (width×height bytes, row-major) and
// returns its ground truth. p is nil for an empty scene. motion is the hand's
// movement in pixels during this frame's period (for motion blur); noiseSeed
// picks this frame's sensor noise, so equal arguments give equal frames.
func (r *Renderer) Render(dst []byte, p *Presentation, l Lighting, motion [2]float64, noiseSeed uint64) (Truth, error) {
	w, h := r.width, r.height
	if len(dst) != w*h {
		return Truth{}, fmt.Errorf("sim: destination has %d bytes, want %d", len(dst), w*h)
	}
	if l.Gain <= 0 {
		l.Gain = 1
	}
	if l.Exposure <= 0 {
		l.Exposure = NominalExposure
	}
	ill := float32(clampf(float64(l.Level), 0, 100) / 100)
	expGain := float32(float64(l.Exposure) / float64(NominalExposure) * l.Gain)
	out, err := r.light.DataPtrFloat32()
	if err != nil {
		return Truth{}, fmt.Errorf("sim: light buffer: %w", err)
	}
	bgLight := float32(bgAmbient) + float32(bgIllum)*ill
	truth := r.Truth(p)
	blur := baseBlur
	r.lastHand = p != nil
	if p == nil {
		for i := range out {
			out[i] = r.background[i] * bgLight * expGain
		}
	} else {
		if err := r.pose(p); err != nil {
			return Truth{}, err
		}
		if err := r.warp(p); err != nil {
			return Truth{}, err
		}
		wd, _ := r.warped.DataPtrFloat32()
		d := p.Pose.Distance
		irr := float32(handIllum*float64(ill)*p.Light*(1-p.Pulse)) * float32(math.Pow(NominalDistance/d, 2))
		gx := float32(p.GradientX / (float64(w) / 2))
		gy := float32(p.GradientY / (float64(h) / 2))
		cx, cy := float32(w)/2, float32(h)/2
		var covered float64
		// Tilt: depth offset (mm) of the skin per frame pixel, from the
		// inverse pose; irradiance falls with the square of distance.
		a, o := r.handToFrame(p)
		det := a[0]*a[3] - a[1]*a[2]
		tx, ty := math.Tan(p.TiltY*math.Pi/180), math.Tan(p.TiltX*math.Pi/180)
		// z = tx·hx + ty·hy with hand = inv·(frame − o).
		zx := float32((tx*a[3] - ty*a[2]) / det)
		zy := float32((-tx*a[1] + ty*a[0]) / det)
		z0 := -zx*float32(o.X) - zy*float32(o.Y)
		fd := float32(d)
		for y := 0; y < h; y++ {
			grow := 1 + gy*(float32(y)-cy)
			zrow := z0 + zy*float32(y)
			for x := 0; x < w; x++ {
				i := y*w + x
				rad, m := wd[2*i], wd[2*i+1]
				if m == 0 {
					out[i] = r.background[i] * bgLight * expGain
					continue
				}
				grad := max(0.2, grow+gx*(float32(x)-cx))
				dz := fd / max(fd*0.5, fd-(zrow+zx*float32(x)))
				hand := rad * (handAmbient + irr*r.radial[i]*grad*dz*dz)
				out[i] = (hand + (1-m)*r.background[i]*bgLight) * expGain // rad is premultiplied by m
				covered += float64(m)
			}
		}
		truth.Coverage = covered / float64(w*h)
		blur = frameBlur(p)
	}
	gocv.GaussianBlur(r.light, &r.light, image.Point{}, blur, blur, gocv.BorderReflect101)
	if ml := math.Hypot(motion[0], motion[1]); ml >= 1 {
		r.motionBlur(motion, ml)
	}
	// Sensor noise: read noise plus shot noise, both scaled by gain.
	ox := int(noiseSeed % 97)
	oy := int((noiseSeed / 97) % 89)
	g := float32(l.Gain)
	read2 := float32(readNoise*readNoise) * g * g
	for y := 0; y < h; y++ {
		nrow := r.noise[(y+oy)*r.noiseW+ox:]
		for x := 0; x < w; x++ {
			v := out[y*w+x]
			sd := float32(math.Sqrt(float64(read2 + shotNoise*g*max(v, 0))))
			q := v + sd*nrow[x] + 0.5
			switch {
			case q <= 0:
				dst[y*w+x] = 0
			case q >= 255:
				dst[y*w+x] = 255
			default:
				dst[y*w+x] = uint8(q)
			}
		}
	}
	return truth, nil
}

// frameBlur is the optical blur (Gaussian sigma, px) a frame of p is
// rendered with: the material's own — skin's sub-surface scattering with
// the lens's blur at focus, or the lens's alone for paper, glass and paint,
// which do not scatter light under their surface — and p's ExtraBlur.
// Blurs compose by convolution, so their variances add: a defocused hand
// is as soft as √(material² + defocus²), not their sum, and the further
// out of focus an object is, the less its material's own blur shows.
func frameBlur(p *Presentation) float64 {
	material := baseBlur
	if !p.Attack.Live() {
		material = opticsBlur
	}
	return math.Hypot(material, p.ExtraBlur())
}

// HandMask writes the hand's coverage in the frame last rendered into dst:
// 255 where the hand covers at least half a pixel, 0 elsewhere (all 0 after
// an empty frame). It is ground truth for tests and evaluation.
func (r *Renderer) HandMask(dst []byte) error {
	if len(dst) != r.width*r.height {
		return fmt.Errorf("sim: mask has %d bytes, want %d", len(dst), r.width*r.height)
	}
	clear(dst)
	if !r.lastHand {
		return nil
	}
	wd, err := r.warped.DataPtrFloat32()
	if err != nil {
		return err
	}
	for i := range dst {
		if wd[2*i+1] >= 0.5 {
			dst[i] = 255
		}
	}
	return nil
}

// warp maps the posed hand texture into the frame through the pose and the
// presentation's smooth deformation.
func (r *Renderer) warp(p *Presentation) error {
	w, h := r.width, r.height
	a, o := r.handToFrame(p)
	det := a[0]*a[3] - a[1]*a[2]
	if math.Abs(det) < 1e-12 {
		return fmt.Errorf("sim: degenerate pose (distance %.0f mm)", p.Pose.Distance)
	}
	// Inverse affine: hand = inv·(frame − o).
	inv := [4]float64{a[3] / det, -a[1] / det, -a[2] / det, a[0] / det}
	body := newBody(p)
	c := r.axis()
	// Perspective and skin movement are smooth (relief and bends tens of
	// millimetres wide), so evaluating them on a coarse grid and
	// interpolating costs nothing visible. Each grid point holds the
	// correction to the plain affine inverse.
	const cell = 16
	gw, gh := w/cell+2, h/cell+2
	grid := make([]geom.Vec, gw*gh)
	for gy := 0; gy < gh; gy++ {
		for gx := 0; gx < gw; gx++ {
			f := geom.V(float64(gx*cell), float64(gy*cell))
			affine := mulInv(inv, f.Sub(o))
			// Perspective: a point at height z above the palm's plane is
			// magnified by D/(D − z) about the optical axis. Invert by
			// fixed-point iteration (z/D is a few per cent).
			hp := affine
			for range 3 {
				k := 1 - body.height(hp)/p.Pose.Distance
				hp = mulInv(inv, c.Add(f.Sub(c).Mul(k)).Sub(o))
			}
			grid[gy*gw+gx] = hp.Add(body.skin(hp)).Sub(affine)
		}
	}
	md, err := r.mapXY.DataPtrFloat32()
	if err != nil {
		return fmt.Errorf("sim: map buffer: %w", err)
	}
	T := texPxPerMM
	for y := 0; y < h; y++ {
		gy, ty := y/cell, float64(y%cell)/cell
		fy := float64(y) - o.Y
		for x := 0; x < w; x++ {
			gx, tx := x/cell, float64(x%cell)/cell
			d00, d10 := grid[gy*gw+gx], grid[gy*gw+gx+1]
			d01, d11 := grid[(gy+1)*gw+gx], grid[(gy+1)*gw+gx+1]
			dx := (d00.X*(1-tx)+d10.X*tx)*(1-ty) + (d01.X*(1-tx)+d11.X*tx)*ty
			dy := (d00.Y*(1-tx)+d10.Y*tx)*(1-ty) + (d01.Y*(1-tx)+d11.Y*tx)*ty
			fx := float64(x) - o.X
			hx := inv[0]*fx + inv[1]*fy + dx
			hy := inv[2]*fx + inv[3]*fy + dy
			i := 2 * (y*w + x)
			md[i] = float32((hx - texMinX) * T)
			md[i+1] = float32((texMaxY - hy) * T)
		}
	}
	// Replicating the border extends the forearm beyond the texture; the
	// other texture borders are empty, so they replicate to nothing.
	empty := gocv.NewMat()
	defer empty.Close()
	gocv.Remap(r.posed, &r.warped, &r.mapXY, &empty, gocv.InterpolationLinear, gocv.BorderReplicate, colorBlack)
	return nil
}

func mulInv(inv [4]float64, f geom.Vec) geom.Vec {
	return geom.V(inv[0]*f.X+inv[1]*f.Y, inv[2]*f.X+inv[3]*f.Y)
}

// axis is the optical axis's point in the frame: its centre.
func (r *Renderer) axis() geom.Vec { return geom.V(float64(r.width)/2, float64(r.height)/2) }

// motionBlur smears the frame along the motion vector (a box kernel of the
// motion's length), as a hand moving during the exposure does.
func (r *Renderer) motionBlur(motion [2]float64, length float64) {
	n := int(math.Ceil(length)) | 1
	k := gocv.NewMatWithSize(n, n, gocv.MatTypeCV32F)
	defer k.Close()
	k.SetTo(gocv.NewScalar(0, 0, 0, 0))
	c := float64(n-1) / 2
	steps := 4 * n
	wgt := float32(1) / float32(steps)
	for s := 0; s < steps; s++ {
		t := float64(s)/float64(steps-1) - 0.5
		x := int(math.Round(c + t*motion[0]))
		y := int(math.Round(c + t*motion[1]))
		k.SetFloatAt(y, x, k.GetFloatAt(y, x)+wgt)
	}
	gocv.Filter2D(r.light, &r.light, -1, k, image.Pt(-1, -1), 0, gocv.BorderReflect101)
}
