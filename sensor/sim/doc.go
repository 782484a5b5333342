// Package sim is the simulated palm-vein sensor: an implementation of the
// sensor interfaces that renders synthetic near-infrared (940 nm) hand
// images, used by CI, the demo and every developer.
//
// The simulator decides whether what we test means anything, so it is
// calibrated to be as hard as real captures, not easier. TestStatisticsMatchRealCaptures
// measures a generated cross-session set and checks every figure against
// the ranges measured on a public research database of contactless 940 nm
// palm images (768×576, hand over a dark box, two sessions a month apart):
// hand coverage 0.25–0.36, hand/background grey 82–102 / 16–20, background
// p99 52–68, palm 89–114 ± 10.5–15.3, vein contrast (std of image − G σ8)
// 1.8–2.9 with p5 −4.3…−2.7, fine noise (std of image − G σ1) 0.50–0.69,
// Laplacian variance 3.5–6.4 and about 0.2 % saturated pixels.
//
// # The model
//
// An Identity is one hand, built from a seed (same seed, same person):
//
//   - Geometry: palm width 78–96 mm and length 90–112 mm scaled by an
//     overall size factor, wrist width, four fingers with individual
//     length ratios (index 0.72, middle 0.80, ring 0.75, little 0.59 of palm
//     length ±8 %), widths and bases on an arc, a broad thumb, a thenar
//     bulge, and skin webbing between finger bases. Left or right hand.
//   - Veins: a branching tree grown by space colonisation from two or three
//     wrist trunks toward attraction points over the palm and proximal
//     fingers; branch diameters follow Murray's law (2 mm leaves up to 6 mm
//     trunks), each segment has a depth that makes it fainter, and the
//     absorption profile is blurred ≈0.8 mm for scattering in tissue, which
//     is why veins look broad and faint.
//   - Palm lines: heart, head and life lines as personal Bézier curves
//     (1–2 mm, 5–9 % darker) and 10–21 minor creases; flexion creases at the
//     finger joints.
//   - Skin: band-limited reflectance texture at 10 mm and 1.2 mm scales;
//     mean NIR reflectance 0.78–1.0; relief shading (thenar and hypothenar
//     eminences brighter, the hollow of the palm darker) that all palms
//     share and that makes most of a real palm's grey-level spread.
//
// A Presentation is one moment of an identity in front of the sensor, drawn
// by Variation.Sample from a session (habits that persist for a visit:
// mean rotation ±10°, distance ±5 %, finger spread, lighting, tilt) and a
// sample within it (rotation ±5°, distance ±3.5 %, shift, spread, tilt):
//
//   - Pose: palm centre, in-plane rotation, distance (image scale is
//     2.4 px/mm at the nominal 150 mm for a 640-pixel-wide frame, inversely
//     proportional to distance), tilt out of the image plane (foreshortening
//     and an irradiance gradient across the palm).
//   - Finger spread: each finger turns about its base by its own fan angle;
//     webbing closes the gaps near the palm, so spread changes the shape
//     and depth of the finger valleys.
//   - Non-rigid deformation: a smooth random displacement field of
//     60–140 mm wavelength and ≈1 mm amplitude (a cupped or stretched palm).
//   - Light: irradiance multiplier (angle to the light, skin moisture, LED
//     ageing) and a linear gradient across the frame.
//   - Defocus, composed with the distance-dependent blur.
//
// What a real hand does between two captures that no rigid move undoes —
// and so what the recogniser's ROI normalisation cannot remove — is
// modelled by a body (body.go): the palm as a surface seen by a pinhole
// camera, and its skin moving within that surface.
//
//   - Perspective: every point is magnified by D/(D − z) about the optical
//     axis, z its height above the palm's plane. A palm tilted out of the
//     image plane (TiltX, TiltY) shows keystone distortion, not just
//     foreshortening; and the palm's relief (Identity.Relief: the thenar
//     eminence 5–17 mm high, the hypothenar and finger pads lower, the
//     hollow below, deeper when the palm is cupped) shows parallax that
//     changes with where in the frame the hand is held.
//   - Skin folding that follows the posture (PostureGain, scaled per
//     person by Identity.Laxity^1.5): for each part of the pose — the
//     wrist's turn, the distance, the offset across and along the frame —
//     the skin folds by a shape of the person's own (a displacement field
//     of 15–35 mm wavelength), in proportion to how far that part lies
//     from the natural pose (the visit's own direction and distance count
//     half). Two captures of one palm differ by the fold of their poses'
//     difference, so genuine distance grows with the pose difference as
//     on real palms: on the calibrated set the recognition-v1 distances
//     correlate with the rotation, scale and shift differences by +0.18,
//     +0.13 and +0.24 (real palms +0.28, +0.30, +0.30; before this, +0.05,
//     +0.07, +0.02), and failing pairs differ by 12° / 6.4 % / 7.4 % of
//     the frame at the median against 7° / 5.3 % / 5.2 % for the others
//     (real 7° / 5.3 % / 7.6 % against 4° / 3.2 % / 5.2 %).
//   - Skin folding that does not (FoldSD, scaled by Identity.Laxity): a
//     small habitual amplitude per visit plus an exponential part per
//     capture — finer than any per-quarter alignment follows.
//   - Stretch (StretchGain): spreading the fingers widens the upper palm
//     and pulls the pads toward the fingers; ThumbPull: the thenar skin
//     follows an abducted thumb.
//   - Wrist bend (WristBend): part of a hand's turn away from "fingers up"
//     is taken by the wrist, which turns the heel of the palm against its
//     upper part.
//   - Blood volume and temperature (VeinSD, SessionVeinSD): the veins'
//     contrast changes between captures; people differ in vein contrast by
//     ±28 % (Identity.VeinContrast).
//   - Cupping (Cup) deepens the flexion creases as well as the hollow.
//   - Moisture: the skin's surface reflectance at the 1–2 mm scale changes
//     between captures with sweat and dryness.
//   - Specular glints (Glints): small bright spots where sweat or skin oil
//     faces the LED ring, added to the diffuse light.
//
// These are calibrated (make calibrate) so that the pipeline as released
// in recognition-v1 scores a 400 × 6 synthetic set as it scored real
// palms: genuine 0.263 ± 0.053, impostor 0.457 ± 0.015, d′ 5, EER 2 %,
// FRR 3 % at FAR 1e-4, and an impostor tail beyond 6σ. Principal lines
// follow a population layout with personal scatter (palmLines), so some
// people's heart, head and life lines run close to another's: part of
// that impostor tail.
//
// # Attack instruments
//
// What an attacker holds over the terminal instead of a living hand
// (Instrument, NewInstrument; scenario kinds photo, vein_print, screen and
// replica; palmctl synth --attacks), each drawn anew for every attempt:
//
//   - Print (AttackPrint): a photograph of the palm, as a camera like this
//     one saw it (its edge shading and blur baked in), printed on paper.
//     Toner and most inks absorb 940 nm light and paper reflects it, so
//     the print maps the photo's radiance onto paper reflectance with
//     compressed contrast (black paper 0.08–0.16, contrast 0.5–0.75). Its
//     surface carries a halftone screen (0.4–1.3 mm, which aliases into
//     moiré at 2.4 px/mm) and toner grain, and paper reflects at its
//     surface: the frame has only the lens's blur (0.75 px), not skin's
//     sub-surface scattering (1.45 px in all). Flat or bent about the
//     hand's long axis (radius 180–450 mm); cut out along the hand's
//     outline (a paper edge) or held as a whole sheet; rigid, bloodless.
//   - Vein print (AttackVeinPrint): the same with the veins enhanced 2.5–4×
//     and the creases faded, as the published attacks on vein sensors do.
//   - Screen (AttackScreen): a phone showing a palm photograph. A display
//     emits only visible light, so at 940 nm the camera sees its glass
//     (2–4 % reflectance) in a bezel (6–20 %) with the LED ring's specular
//     reflection in it: a dark rectangle with a glare, darker than the
//     empty box behind it.
//   - Replica (AttackReplica): a hand cast in silicone or wax from a mould
//     of the victim's hand: its shape, relief, creases and deformation
//     (the body as for a hand), but no blood: no veins and no pulse. The
//     cast's own reflectance (0.9–1.2 × skin) and scattering (0.6–1.8 px:
//     wax scatters more than skin, pigmented silicone less), and in half
//     of the attempts veins painted on its surface with NIR-absorbing
//     paint: hard-edged, since paint sits on top. The cast keeps its
//     donor's skin mottling (3.5 % over about 10 mm), which a mould cannot
//     copy (it is blood and tissue under the skin): a cast of an even
//     material lacks it. Rendered without it (74 unpainted casts of other
//     people), the detector accepted 12 instead of 19, and none matched its
//     victim against 7 of 150: the replicas' APCER rests on this choice in
//     part (the mottling stands in for faint veins), their IAPMR wholly.
//
// A held hand is never still (Timeline): physiological tremor (8–12 Hz,
// about 0.1 mm and 0.3°) and postural sway (0.2–0.4 Hz, about a millimetre
// and a degree, in depth too) move it; its soft tissue flexes with the
// tremor (wrist and skin folding: not a rigid move); and its skin's
// reflectance follows the heartbeat (Identity.pulse: 55–95 beats a
// minute, 0.3–1.2 % of the palm's brightness, less in cold hands). An
// instrument is held by a hand, so it trembles and sways too, but
// rigidly, and has no pulse. The tremor is larger than most people's:
// the hand's 0.1 mm at 8–12 Hz is about 0.05 g, the heel's bend (0.006
// rad) about 0.15 g at the wrist, where a normative study of 97 people
// (Arch. Neurol. 1982;39:358) found 0.0015–0.035 g, 0.01 g typical. A cue
// that needs the hand's tremor to be seen (the liveness package measured
// one) would find less on real hands.
//
// These instruments and their parameter ranges are this project's model of
// published attacks, not measurements of real ones: a liveness figure
// measured on them says how the detector does against this model.
//
// Variation.Harder scales every source of variation for robustness curves.
//
// # Physics
//
// Grey level = exposure/10 ms × gain × [reflectance × edge shading ×
// (ambient + illuminator level × irradiance)] for the hand, and the box's
// background map × (ambient + a little illuminator light) elsewhere.
// Irradiance falls with the square of distance and across a Gaussian beam,
// so a hand too far is small and dark and one too close saturates; the lens
// is focused at 150 mm, so blur grows with the distance from it (1.45 px at
// focus: NIR light scatters under the skin and real frames are soft). Blurs
// compose as the convolutions they are, their variances adding: 0.035 px
// of defocus per mm away from focus, and a presentation's own, combine with
// the material's blur as √(material² + defocus²) (Presentation.ExtraBlur),
// so the further out of focus a hand or a print is, the less of its
// material's blur is left to tell them apart. A frame taken with the
// illuminator off shows only dim ambient light. Sensor noise is read noise
// plus shot noise, both scaled by gain, slightly correlated between
// neighbouring pixels, then quantised to 8 bits.
//
// # Scenarios
//
// A Scenario scripts a timeline: empty scenes, hands that approach, hold
// and withdraw, hands half out of view, hands sweeping across without
// settling, and attack instruments. Scenarios are built in Go or read from JSON
// with ParseScenario (see scenarios/ in the repository). Camera plays one,
// either paced in real time or as fast as frames are requested, and
// Camera.Truth reports the ground truth of each frame (palm centre, angle,
// scale, true ROI corners) for measuring the recognition pipeline.
//
// Nothing here writes a file: frames exist only in memory.
package sim
