package sim

import (
	"math"
	"slices"
	"testing"
)

// TestInstrumentVariants: every instrument names a variant of its own
// species, and over a few dozen attempts each variant occurs.
func TestInstrumentVariants(t *testing.T) {
	for _, tc := range []struct {
		name    string
		species Species
		want    []string
	}{
		{"living hands: none", BonaFide, nil},
		{"prints: cut or sheet", AttackPrint, []string{VariantCut, VariantSheet}},
		{"vein prints: cut or sheet", AttackVeinPrint, []string{VariantCut, VariantSheet}},
		{"screens: none", AttackScreen, nil},
		{"replicas: painted or not", AttackReplica, []string{VariantPainted, VariantUnpainted}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Variants(tc.species); !slices.Equal(got, tc.want) {
				t.Fatalf("Variants %v, want %v", got, tc.want)
			}
			seen := map[string]int{}
			for seed := range uint64(40) {
				in := NewInstrument(tc.species, seed)
				if tc.species == BonaFide {
					in = Instrument{}
				}
				v := in.Variant()
				if (len(tc.want) == 0 && v != "") || (len(tc.want) > 0 && !slices.Contains(tc.want, v)) {
					t.Fatalf("seed %d: variant %q, want one of %v", seed, v, tc.want)
				}
				seen[v]++
			}
			for _, v := range tc.want {
				if seen[v] == 0 {
					t.Errorf("no %s instrument in 40 attempts: %v", v, seen)
				}
			}
		})
	}
}

// TestExtraBlur: the blur a presentation's frames get beyond the
// material's own grows with the distance from focus, on either side, and
// adds the presentation's defocus.
func TestExtraBlur(t *testing.T) {
	for _, tc := range []struct {
		name              string
		distance, defocus float64
		want              float64
	}{
		{"in focus", NominalDistance, 0, 0},
		{"defocus alone", NominalDistance, 0.3, 0.3},
		{"20 mm closer", NominalDistance - 20, 0, 20 * blurPerMM},
		{"20 mm farther and defocused", NominalDistance + 20, 0.3, math.Sqrt(20*blurPerMM*20*blurPerMM + 0.3*0.3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Presentation{Pose: Pose{Distance: tc.distance}, Defocus: tc.defocus}
			if got := p.ExtraBlur(); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("extra blur %.4f, want %.4f", got, tc.want)
			}
		})
	}
}

// TestFrameBlur pins how a frame's blur is composed: the material's own
// (skin's scattering, or the lens's alone for an instrument) and the
// defocus add as variances, so a print and a hand far out of focus are
// almost equally soft while in focus they differ by a factor of two.
func TestFrameBlur(t *testing.T) {
	printed := NewInstrument(AttackPrint, 1)
	for _, tc := range []struct {
		name              string
		attack            Instrument
		distance, defocus float64
		want              float64
	}{
		{"hand in focus", Instrument{}, NominalDistance, 0, baseBlur},
		{"print in focus", printed, NominalDistance, 0, opticsBlur},
		{"hand 40 mm out", Instrument{}, NominalDistance + 40, 0, math.Sqrt(baseBlur*baseBlur + 1.4*1.4)},
		{"print 40 mm out and defocused", printed, NominalDistance - 40, 1.05, math.Sqrt(opticsBlur*opticsBlur + 1.4*1.4 + 1.05*1.05)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Presentation{Pose: Pose{Distance: tc.distance}, Defocus: tc.defocus, Attack: tc.attack}
			if got := frameBlur(&p); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("frame blur %.4f px, want %.4f", got, tc.want)
			}
		})
	}
	hand := Presentation{Pose: Pose{Distance: NominalDistance}, Defocus: 3}
	paper := hand
	paper.Attack = printed
	if ratio := frameBlur(&hand) / frameBlur(&paper); ratio > 1.1 {
		t.Errorf("3 px out of focus a hand is %.2f times as soft as a print; blurs adding as variances leave under 1.1", ratio)
	}
}
