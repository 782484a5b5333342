package sim

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"time"

	"github.com/palmd/palmd/geom"
	"gocv.io/x/gocv"
)

// Pose places a hand in the frame.
type Pose struct {
	// X, Y is the palm centre in frame pixels.
	X, Y float64
	// Angle is the direction the fingers point, in radians: 0 is up (toward
	// row 0), positive turns clockwise on screen.
	Angle float64
	// Distance from the camera to the palm, mm. NominalDistance is where
	// the optics are focused and the illuminator is calibrated.
	Distance float64
}

// Presentation is one hand held over the sensor: who, where, and the
// conditions of that moment.
type Presentation struct {
	Identity *Identity
	Pose     Pose
	// Spread of the fingers: 0 closed, 1 wide open.
	Spread float64
	// Deform is the amplitude (mm) of smooth non-rigid skin deformation
	// (a cupped or stretched palm); DeformSeed picks its shape.
	Deform     float64
	DeformSeed uint64
	// Light multiplies the illuminator's irradiance on the hand (angle
	// of the palm to the light, skin moisture, LED ageing): 1 is nominal.
	Light float64
	// GradientX, GradientY tilt the illumination: the relative change in
	// irradiance from the frame centre to its right and bottom edges.
	GradientX, GradientY float64
	// TiltX, TiltY tilt the palm out of the image plane (degrees, about
	// the hand's x and y axes): one side comes closer to the camera and the
	// illuminator, so it is brighter and slightly foreshortened.
	TiltX, TiltY float64
	// Defocus adds optical blur (Gaussian sigma, pixels) to the blur
	// that follows from Distance (ExtraBlur).
	Defocus float64
	// Stretch is the skin's lateral stretch below the finger bases per
	// unit of finger spread away from half-open, ThumbPull how far (mm)
	// the thenar skin follows the thumb (see Variation).
	Stretch, ThumbPull float64
	// Bend is the wrist's share of the in-plane rotation (radians): the
	// heel of the palm turns against its upper part by up to this much.
	Bend float64
	// Cup is how deeply the palm is cupped, mm at its hollow.
	Cup float64
	// VeinGain multiplies the veins' contrast (1 = the identity's own).
	VeinGain float64
	// Glints is the number of specular highlights on the palm.
	Glints int
	// Moisture is the relative reflectance change at the skin's surface
	// (1–2 mm) from sweat or dryness, drawn anew for every capture.
	Moisture float64
	// Fold is the amplitude (mm) of small-scale skin folding; SkinSeed
	// picks its shape, the glints' places and the moisture pattern.
	Fold     float64
	SkinSeed uint64
	// Posture is how far this capture's pose lies from the hand's
	// natural one, per component (the wrist's turn, the distance, the
	// sideways and lengthways offset, each in units of its typical
	// scatter), and PostureGain the skin's displacement (mm) per unit:
	// the skin takes a shape of the identity's own for each component
	// (see Variation.PostureGain).
	Posture     [PostureComponents]float64
	PostureGain float64
	// Attack renders an attack instrument instead of a living hand (see
	// Instrument); the zero value is a hand.
	Attack Instrument
	// Pulse is the relative loss of NIR reflectance that the blood
	// volume in the skin causes at this instant, on top of its mean
	// (the photoplethysmographic wave; Timeline sets it frame by frame).
	// Zero for instruments and for single captures.
	Pulse float64
}

// ExtraBlur is the optical blur (Gaussian sigma, px) p's frames get
// beyond what the material itself shows (skin's sub-surface scattering,
// a paper or glass surface's none): the lens's defocus away from
// NominalDistance, and Defocus. Blurs compose as convolutions do, their
// variances adding: ExtraBlur is √(defocus² + Defocus²), and a frame's
// blur √(material² + ExtraBlur²). An evaluation reports by it because
// every fine-detail liveness cue fades with it.
func (p *Presentation) ExtraBlur() float64 {
	return math.Hypot(blurPerMM*math.Abs(p.Pose.Distance-NominalDistance), p.Defocus)
}

// Lighting is the state of the illuminator and camera for one exposure.
type Lighting struct {
	// Level of the NIR illuminator, 0 (off) to 100.
	Level int
	// Exposure time; NominalExposure gives the calibrated brightness.
	Exposure time.Duration
	// Gain is the analogue gain (1 = unity); it scales signal and noise.
	Gain float64
}

// Calibration of the simulated optics and illumination. The figures are
// chosen so that a nominal presentation reproduces the statistics measured
// on real 940 nm contactless palm captures (see the package documentation).
const (
	NominalDistance = 150.0                 // mm, where the lens is focused
	NominalExposure = 10 * time.Millisecond // exposure for the nominal grey levels
	// focalPx640 is the focal length in pixels for a 640-pixel-wide frame:
	// 2.4 px/mm at the nominal distance.
	focalPx640 = 2.4 * NominalDistance

	handIllum   = 132.0 // grey of a reflectance-1 palm at full light, nominal distance
	handAmbient = 7.0   // grey of a reflectance-1 palm in ambient light only
	bgIllum     = 11.0  // background grey under the illuminator (box floor, stray light)
	bgAmbient   = 5.5   // background grey in ambient light only

	baseBlur    = 1.45  // optical blur at focus, px (NIR scatters under the skin)
	blurPerMM   = 0.035 // extra defocus blur per mm away from focus, px
	readNoise   = 0.40  // grey levels at unity gain
	shotNoise   = 0.0022
	noiseBlur   = 0.55 // pixel crosstalk: the noise itself is slightly soft
	edgeShade   = 0.30 // darkening where the skin curves away at the hand's outline
	edgeShadeMM = 13.0 // how far in from the outline that darkening reaches
	illumSigma  = 0.32 // illuminator beam width, as a fraction of the frame diagonal
)

// Truth is what the simulator knows about a frame: the ground truth a
// recogniser's presence, quality and ROI decisions are measured against. It
// is synthetic data, not biometric data of a person.
type Truth struct {
	Hand bool `json:"hand"`
	// Attack is the species of the attack instrument in view ("" for a
	// living hand).
	Attack   Species `json:"attack,omitempty"`
	Identity uint64  `json:"identity,omitempty"`
	Left     bool    `json:"left,omitempty"`
	PalmX    float64 `json:"palm_x,omitempty"`
	PalmY    float64 `json:"palm_y,omitempty"`
	Angle    float64 `json:"angle,omitempty"`
	PxPerMM  float64 `json:"px_per_mm,omitempty"`
	Distance float64 `json:"distance,omitempty"`
	Spread   float64 `json:"spread,omitempty"`
	// ROI is the true palm region of interest: its corners in frame
	// pixels, in the order top-left, top-right, bottom-right, bottom-left
	// as seen with the fingers up and the thumb to the right.
	ROI [4][2]float64 `json:"roi,omitempty"`
	// Coverage is the share of the frame covered by the hand.
	Coverage float64 `json:"coverage"`
}

// Renderer draws frames. It is not safe for concurrent use; make one per
// goroutine (they are cheap apart from the identity cache).
type Renderer struct {
	width, height int
	focal         float64
	background    []float32 // background reflectance map, mean ≈ 1
	radial        []float32 // illuminator beam profile
	noise         []float32 // unit-variance, slightly correlated sensor noise
	noiseW        int

	textures texCache
	posedKey posedKey
	posed    gocv.Mat // CV_32FC2 radiance, coverage in hand-texture space
	posedTex *texture
	albedo   gocv.Mat // CV_32F skin of the posed presentation, texture space

	mapXY  gocv.Mat // CV_32FC2 frame → texture coordinates
	warped gocv.Mat // CV_32FC2 in frame space
	light  gocv.Mat // CV_32F frame

	lastHand bool // whether the last frame rendered had a hand
}

type posedKey struct {
	id             *Identity
	spread, deform float64
	deformSeed     uint64
	attack         Instrument
	veinGain, cup  float64
	moisture       float64
	glints         int
	skinSeed       uint64
	valid          bool
}

// texPxPerMM is the hand-space texture resolution: 3 px/mm resolves the
// finest creases at every distance the camera sees a usable hand from.
const texPxPerMM = 3.0

// NewRenderer returns a renderer for width×height frames whose background
// (box walls, stray light) is drawn from seed.
func NewRenderer(width, height int, seed uint64) (*Renderer, error) {
	if width < 64 || height < 64 || width > 4096 || height > 4096 {
		return nil, fmt.Errorf("sim: frame size %dx%d outside 64..4096", width, height)
	}
	r := &Renderer{width: width, height: height, focal: focalPx640 * float64(width) / 640}
	rng := rand.New(rand.NewPCG(seed, 0xb4c6))
	r.background = backgroundMap(rng, width, height)
	r.radial = make([]float32, width*height)
	diag := math.Hypot(float64(width), float64(height))
	cx, cy := float64(width)/2, float64(height)*0.55
	s2 := 2 * math.Pow(illumSigma*diag, 2)
	for y := 0; y < height; y++ {
		for x := 0; x < width; x++ {
			d2 := math.Pow(float64(x)-cx, 2) + math.Pow(float64(y)-cy, 2)
			r.radial[y*width+x] = float32(math.Exp(-d2 / s2))
		}
	}
	r.noise, r.noiseW = noiseTable(rng, width, height)
	r.posed = gocv.NewMat()
	r.albedo = gocv.NewMat()
	r.mapXY = gocv.NewMatWithSize(height, width, gocv.MatTypeCV32FC2)
	r.warped = gocv.NewMat()
	r.light = gocv.NewMatWithSize(height, width, gocv.MatTypeCV32F)
	r.textures.max = 4
	return r, nil
}

// Close releases the renderer's OpenCV buffers.
func (r *Renderer) Close() {
	r.posed.Close()
	r.albedo.Close()
	r.mapXY.Close()
	r.warped.Close()
	r.light.Close()
	r.textures.close()
}

// Size returns the frame size.
func (r *Renderer) Size() (int, int) { return r.width, r.height }

// PxPerMM returns the image scale of a palm at distance mm.
func (r *Renderer) PxPerMM(distance float64) float64 { return r.focal / distance }

// backgroundMap draws the inside of the scanner box: a dim, uneven floor,
// the bright rim of the box opening along one or two frame edges, and a few
// specular reflections near the border.
func backgroundMap(r *rand.Rand, w, h int) []float32 {
	m := make([]float32, w*h)
	f := noiseField(r, w, h, 90, 0.12)
	d, _ := f.DataPtrFloat32()
	for i := range m {
		m[i] = 1 + d[i]
	}
	f.Close()
	// Box rim: a bright band along an edge with a soft inner side.
	edges := r.Perm(4)[:1+r.IntN(2)]
	for _, e := range edges {
		width := 3 + r.Float64()*3
		level := 2.2 + r.Float64()*1.0
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				var dist float64
				switch e {
				case 0:
					dist = float64(y)
				case 1:
					dist = float64(h - 1 - y)
				case 2:
					dist = float64(x)
				default:
					dist = float64(w - 1 - x)
				}
				if dist < 3*width {
					m[y*w+x] += float32(level * math.Exp(-math.Pow(dist/width, 2)))
				}
			}
		}
	}
	// Specular glints near the border.
	for k := 0; k < 3+r.IntN(3); k++ {
		var gx, gy float64
		if r.IntN(2) == 0 {
			gx, gy = r.Float64()*float64(w), float64(r.IntN(2))*float64(h)+(r.Float64()-0.5)*40
		} else {
			gx, gy = float64(r.IntN(2))*float64(w)+(r.Float64()-0.5)*40, r.Float64()*float64(h)
		}
		rad := 3 + r.Float64()*7
		amp := 1.5 + r.Float64()*2.5
		for y := max(0, int(gy-4*rad)); y < min(h, int(gy+4*rad)); y++ {
			for x := max(0, int(gx-4*rad)); x < min(w, int(gx+4*rad)); x++ {
				d2 := math.Pow(float64(x)-gx, 2) + math.Pow(float64(y)-gy, 2)
				m[y*w+x] += float32(amp * math.Exp(-d2/(2*rad*rad)))
			}
		}
	}
	// One strong specular reflection (a screw head, the window's edge)
	// saturates a few hundred pixels, as in real captures.
	gx, gy := r.Float64()*float64(w), float64(h)*(0.03+0.94*float64(r.IntN(2)))
	rad := 7 + r.Float64()*2
	for y := max(0, int(gy-4*rad)); y < min(h, int(gy+4*rad)); y++ {
		for x := max(0, int(gx-4*rad)); x < min(w, int(gx+4*rad)); x++ {
			d2 := math.Pow(float64(x)-gx, 2) + math.Pow(float64(y)-gy, 2)
			m[y*w+x] += float32(60 * math.Exp(-d2/(2*rad*rad)))
		}
	}
	return m
}

// noiseTable precomputes slightly correlated unit-variance sensor noise for
// a frame somewhat larger than w×h; each frame reads it at a random offset.
func noiseTable(r *rand.Rand, w, h int) ([]float32, int) {
	tw, th := w+97, h+89
	m := gocv.NewMatWithSize(th, tw, gocv.MatTypeCV32F)
	defer m.Close()
	d, _ := m.DataPtrFloat32()
	for i := range d {
		d[i] = float32(r.NormFloat64())
	}
	gocv.GaussianBlur(m, &m, image.Pt(5, 5), noiseBlur, noiseBlur, gocv.BorderReflect101)
	var ss float64
	for _, v := range d {
		ss += float64(v) * float64(v)
	}
	scale := float32(1 / math.Sqrt(ss/float64(len(d))))
	out := make([]float32, len(d))
	for i, v := range d {
		out[i] = v * scale
	}
	return out, tw
}

// handToFrame returns the affine map from hand space (mm) to frame pixels
// for p: frame = o + a·hand, as [a11 a12 a21 a22] and o.
func (r *Renderer) handToFrame(p *Presentation) (a [4]float64, o geom.Vec) {
	s := r.PxPerMM(p.Pose.Distance)
	sin, cos := math.Sincos(p.Pose.Angle)
	u := geom.V(sin, -cos) // finger direction in frame
	v := geom.V(cos, sin)  // hand +x (thumb side of a right hand) in frame
	m := 1.0
	if p.Identity.Left {
		m = -1
	}
	// A tilted palm is foreshortened along the tilt.
	fx := s * m * math.Cos(p.TiltY*math.Pi/180)
	fy := s * math.Cos(p.TiltX*math.Pi/180)
	return [4]float64{fx * v.X, fy * u.X, fx * v.Y, fy * u.Y}, geom.V(p.Pose.X, p.Pose.Y)
}

// Truth computes the ground truth of a presentation without rendering it.
func (r *Renderer) Truth(p *Presentation) Truth {
	if p == nil {
		return Truth{}
	}
	a, o := r.handToFrame(p)
	body, ax := newBody(p), r.axis()
	tf := func(h geom.Vec) [2]float64 {
		f := geom.V(o.X+a[0]*h.X+a[1]*h.Y, o.Y+a[2]*h.X+a[3]*h.Y)
		f = ax.Add(f.Sub(ax).Mul(p.Pose.Distance / (p.Pose.Distance - body.height(h))))
		return [2]float64{f.X, f.Y}
	}
	c, side := p.Identity.PalmROI()
	hs := side / 2
	// Corners as seen with fingers up and the thumb to the right. In hand
	// space the thumb is at +x for both hands (a left hand is mirrored only
	// on its way into the frame), so the canonical corners are the same.
	t := Truth{
		Hand: true, Attack: p.Attack.Species, Identity: p.Identity.Seed, Left: p.Identity.Left,
		PalmX: tf(c)[0], PalmY: tf(c)[1], Angle: p.Pose.Angle,
		PxPerMM: r.PxPerMM(p.Pose.Distance), Distance: p.Pose.Distance, Spread: p.Spread,
	}
	t.ROI = [4][2]float64{
		tf(c.Add(geom.V(-hs, hs))), tf(c.Add(geom.V(hs, hs))),
		tf(c.Add(geom.V(hs, -hs))), tf(c.Add(geom.V(-hs, -hs))),
	}
	return t
}
