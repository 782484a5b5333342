package sim

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"

	"github.com/palmd/palmd/geom"
	"gocv.io/x/gocv"
)

// Species names a kind of presentation-attack instrument (ISO/IEC 30107's
// "PAI species"): what an attacker holds over the terminal instead of a
// living hand. The zero value is a bona fide presentation.
type Species string

// The attack species the simulator renders.
const (
	// BonaFide is a living hand.
	BonaFide Species = ""
	// AttackPrint is a photograph of a palm printed on paper with a laser
	// (toner) or inkjet printer, flat or gently curved, held as a hand is
	// held; sometimes cut out along the hand's outline.
	AttackPrint Species = "print"
	// AttackVeinPrint is a print of a vein image enhanced for contrast:
	// the classic attack on vein sensors.
	AttackVeinPrint Species = "vein_print"
	// AttackScreen is a phone showing a palm photograph.
	AttackScreen Species = "screen"
	// AttackReplica is a hand cast in silicone or wax from a mould of a
	// real hand: realistic shape, relief and creases, no veins or painted
	// ones, no blood.
	AttackReplica Species = "replica"
)

// AttackSpecies lists every attack species, in the order reports use.
var AttackSpecies = []Species{AttackPrint, AttackVeinPrint, AttackScreen, AttackReplica}

// Valid reports whether s is a known species (or bona fide).
func (s Species) Valid() bool {
	switch s {
	case BonaFide, AttackPrint, AttackVeinPrint, AttackScreen, AttackReplica:
		return true
	}
	return false
}

// Instrument is one attack instrument as made for one attempt: the species
// and the parameters that differ from one attacker (and printer, phone or
// mould) to the next. Bona fide presentations have the zero Instrument.
type Instrument struct {
	Species Species
	// Seed draws the instrument's own texture (toner grain, paint strokes).
	Seed uint64

	// Prints. Paper is the reflectance of the printed background around
	// the hand (toner-black paper is not black at 940 nm: 0.08–0.16);
	// Contrast maps the photographed hand's radiance onto paper
	// (0.5–0.75: a print compresses contrast). ScreenMM, ScreenAngle and
	// ScreenAmp are the halftone screen (period in mm, angle in radians,
	// relative amplitude): at the camera's 2.4 px/mm a 0.4–1.3 mm screen
	// aliases into moiré. Grain is the toner's or ink's granularity
	// (relative, per 0.33 mm texel). Cut is a print cut out along the
	// hand's outline (a sharp paper edge, no skin curving away);
	// otherwise the whole sheet is held. Curve is the sheet's curvature
	// (1/mm) about the hand's long axis, 0 for a flat print. VeinBoost
	// multiplies the veins' contrast (vein prints: 2.5–4; creases are
	// suppressed by the enhancement).
	Paper, Contrast                  float64
	ScreenMM, ScreenAngle, ScreenAmp float64
	Grain                            float64
	Cut                              bool
	Curve                            float64
	VeinBoost                        float64

	// Screens: Glass is the display's reflectance at 940 nm (an LCD or
	// OLED emits only visible light; its glass and black matrix reflect
	// 2–4 % of NIR); Bezel the frame's; Glare the peak of the LED ring's
	// specular reflection in the glass, relative to a reflectance-1
	// palm.
	Glass, Bezel, Glare float64

	// Replicas. Material is the cast's NIR reflectance relative to skin
	// (silicone and wax: 0.9–1.2), Scatter its own sub-surface blur (px at
	// the nominal distance; skin's is about 1.2): wax scatters more than
	// skin, pigmented silicone less. Painted replicas have veins painted
	// on their surface with NIR-absorbing paint (Paint: fractional
	// reflectance loss): sharp-edged, since paint sits on the surface.
	Material, Scatter float64
	Painted           bool
	Paint             float64
}

// Live reports a bona fide presentation.
func (in Instrument) Live() bool { return in.Species == BonaFide }

// The variants of a species that an evaluation reports apart
// (Instrument.Variant): prints cut out along the hand's outline or held
// on their whole sheet, casts with veins painted on or without.
const (
	VariantCut       = "cut"
	VariantSheet     = "sheet"
	VariantPainted   = "painted"
	VariantUnpainted = "unpainted"
)

// Variant names the kind of instrument within its species, "" for living
// hands and screens (one kind each): the detector sees a cut print by its
// paper edge and a whole sheet by the sheet around the hand, and a painted
// cast by its veins, so their attack rates differ and are worth reporting
// apart.
func (in Instrument) Variant() string {
	switch in.Species {
	case AttackPrint, AttackVeinPrint:
		if in.Cut {
			return VariantCut
		}
		return VariantSheet
	case AttackReplica:
		if in.Painted {
			return VariantPainted
		}
		return VariantUnpainted
	}
	return ""
}

// Variants lists the variants of species s (none for living hands and
// screens).
func Variants(s Species) []string {
	switch s {
	case AttackPrint, AttackVeinPrint:
		return []string{VariantCut, VariantSheet}
	case AttackReplica:
		return []string{VariantPainted, VariantUnpainted}
	}
	return nil
}

// NewInstrument draws the instrument of species s for one attempt; the
// same (s, seed) gives the same instrument.
func NewInstrument(s Species, seed uint64) Instrument {
	r := rand.New(rand.NewPCG(seed, 0xa77ac))
	u := func(lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }
	in := Instrument{Species: s, Seed: r.Uint64()}
	switch s {
	case AttackPrint, AttackVeinPrint:
		in.Paper, in.Contrast = u(0.08, 0.16), u(0.5, 0.75)
		in.ScreenMM, in.ScreenAngle, in.ScreenAmp = u(0.4, 1.3), u(0, math.Pi/2), u(0.03, 0.1)
		in.Grain = u(0.02, 0.06)
		in.Cut = r.IntN(2) == 0
		if r.IntN(2) == 0 {
			in.Curve = 1 / u(180, 450) // a gently curved sheet
		}
		if s == AttackVeinPrint {
			in.VeinBoost = u(2.5, 4)
			in.Cut = r.IntN(4) != 0 // vein-print attacks usually cut the hand out
		}
	case AttackScreen:
		in.Glass, in.Bezel, in.Glare = u(0.02, 0.04), u(0.06, 0.2), u(2, 6)
	case AttackReplica:
		in.Material, in.Scatter = u(0.9, 1.2), u(0.6, 1.8)
		in.Painted = r.IntN(2) == 0
		in.Paint = u(0.08, 0.25)
	}
	return in
}

// Optics of materials other than skin. opticsBlur is the lens's own blur
// at focus: baseBlur is that combined with skin's sub-surface scattering
// (√(0.75² + 1.24²) ≈ 1.45 px), which paper, glass and paint lack.
const (
	opticsBlur = 0.75
	skinBlur   = 1.24
	// printBlur is the blur the printed photograph itself carries: it
	// was taken by a camera like this one, through skin.
	printBlur = baseBlur
	// phone size, mm
	phoneW, phoneH, bezelMM = 70.0, 148.0, 4.0
)

// printPhoto turns the posed hand into a printed photograph of it (prints
// and vein prints): the hand as a camera saw it (its edge shading and blur
// baked in), its radiance mapped onto paper with compressed contrast, a
// halftone screen and toner grain on top, all sharp at the paper's
// surface; the sheet is either cut along the hand's outline or held whole.
func (r *Renderer) printPhoto(p *Presentation, tex *texture, rad, cov, dist []float32) error {
	in := p.Attack
	w, h := tex.size.X, tex.size.Y
	k := float32(-1 / (edgeShadeMM * tex.pxPerMM))
	img := gocv.NewMatWithSize(h, w, gocv.MatTypeCV32F)
	defer img.Close()
	id, err := img.DataPtrFloat32()
	if err != nil {
		return fmt.Errorf("sim: print: %w", err)
	}
	for i := range rad {
		id[i] = rad[i] * (1 - edgeShade*float32(math.Exp(float64(dist[i]*k))))
	}
	// The photograph's own blur, in texture pixels.
	s := printBlur / (focalPx640 / NominalDistance) * tex.pxPerMM
	gocv.GaussianBlur(img, &img, image.Point{}, s, s, gocv.BorderConstant)
	x0, y0 := tex.toTex(geom.V(-p.Identity.PalmWidth*0.95, p.Identity.PalmLength*1.45))
	x1, y1 := tex.toTex(geom.V(p.Identity.PalmWidth*0.95, -p.Identity.PalmLength*1.2))
	g := rand.New(rand.NewPCG(in.Seed, 0x70e3))
	sn, cs := math.Sincos(in.ScreenAngle)
	period := in.ScreenMM * tex.pxPerMM
	paper, contrast := float32(in.Paper), float32(in.Contrast)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := y*w + x
			inSheet := float64(x) >= x0 && float64(x) <= x1 && float64(y) >= y0 && float64(y) <= y1
			if in.Cut {
				inSheet = cov[i] >= 0.5
			}
			if !inSheet {
				rad[i], cov[i] = 0, 0
				continue
			}
			u, v := cs*float64(x)+sn*float64(y), -sn*float64(x)+cs*float64(y)
			dot := in.ScreenAmp * math.Sin(2*math.Pi*u/period) * math.Sin(2*math.Pi*v/period)
			grain := in.Grain * g.NormFloat64()
			rad[i], cov[i] = (paper+contrast*id[i])*float32(1+dot+grain), 1
		}
	}
	return nil
}

// phoneScreen draws a phone held where the palm would be: a dark glass
// rectangle (the display's image is invisible at 940 nm) in a brighter
// bezel, with the LED ring's specular reflection in the glass.
func phoneScreen(p *Presentation, tex *texture, rad, cov []float32) {
	in := p.Attack
	w, h := tex.size.X, tex.size.Y
	c, _ := p.Identity.PalmROI()
	g := rand.New(rand.NewPCG(in.Seed, 0x6a1e))
	glare := c.Add(geom.V((g.Float64()-0.5)*30, (g.Float64()-0.5)*40))
	sigma := 3 + 3*g.Float64()
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := y*w + x
			hp := geom.V(texMinX+float64(x)/tex.pxPerMM, texMaxY-float64(y)/tex.pxPerMM)
			d := hp.Sub(c)
			ax, ay := math.Abs(d.X), math.Abs(d.Y)
			switch {
			case ax > phoneW/2 || ay > phoneH/2:
				rad[i], cov[i] = 0, 0
			case ax > phoneW/2-bezelMM || ay > phoneH/2-bezelMM:
				rad[i], cov[i] = float32(in.Bezel), 1
			default:
				gd := hp.Sub(glare)
				rad[i] = float32(in.Glass + in.Glare*math.Exp(-(gd.X*gd.X+gd.Y*gd.Y)/(2*sigma*sigma)))
				cov[i] = 1
			}
		}
	}
}

// castReplica turns the posed hand into a cast replica: the skin's shape,
// relief and creases (a mould takes them), no veins, the cast material's
// own reflectance and sub-surface blur, and, for painted replicas, veins
// painted sharp on the surface.
func castReplica(p *Presentation, tex *texture, rad, cov []float32) {
	in := p.Attack
	w, h := tex.size.X, tex.size.Y
	m := gocv.NewMatWithSize(h, w, gocv.MatTypeCV32F)
	defer m.Close()
	md, _ := m.DataPtrFloat32()
	for i := range rad {
		md[i] = rad[i] * float32(in.Material)
	}
	// The material's scatter acts on its own reflectance; the frame's blur
	// is then the lens's alone (see Render).
	s := in.Scatter / (focalPx640 / NominalDistance) * tex.pxPerMM
	gocv.GaussianBlur(m, &m, image.Point{}, s, s, gocv.BorderReplicate)
	copy(rad, md)
	if !in.Painted {
		return
	}
	veins, _ := tex.veins.DataPtrFloat32()
	// Painted by hand along the (visible on the mould's donor) superficial
	// veins: a hard-edged stroke where the real vein is dark enough, with
	// the painter's unevenness along it.
	wob := noiseField(rand.New(rand.NewPCG(in.Seed, 0x9a17)), w, h, 4*tex.pxPerMM, 0.3)
	defer wob.Close()
	wd, _ := wob.DataPtrFloat32()
	for i := range rad {
		if cov[i] > 0 && veins[i] > 90 {
			rad[i] *= float32(1 - in.Paint*(1+float64(wd[i])))
		}
	}
}
