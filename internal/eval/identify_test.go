package eval

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestIdentify runs the identification measurement on a small synthetic
// set padded with stand-ins: every rule is reported, the enrolled people
// are found, pre-selection loses nobody exhaustive search finds, and the
// report prints.
func TestIdentify(t *testing.T) {
	dir := synthSet(t, 10, 5)
	rep, err := Identify(context.Background(), IdentifyOptions{Options: Options{Dir: dir}, Pad: 400, Exhaustive: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Enrolled != 5 || rep.Strangers+rep.PadSources != 5 || rep.Mated < 8 || len(rep.Rules) != len(Rules) {
		t.Fatalf("report: %d enrolled, %d strangers, %d stand-in sources, %d mated searches, %d rules",
			rep.Enrolled, rep.Strangers, rep.PadSources, rep.Mated, len(rep.Rules))
	}
	for _, r := range rep.Rules {
		if r.Rank1 < 0.75 || r.WrongMate != 0 || r.FPIR != 0 {
			t.Errorf("rule %s: rank-1 %.2f, %d wrong people, FPIR %.3f", r.Rule, r.Rank1, r.WrongMate, r.FPIR)
		}
	}
	p := rep.Preselection
	if p == nil || p.Gallery != 405 || p.ExhaustiveFNIR == nil {
		t.Fatalf("pre-selection: %+v", p)
	}
	if p.LostFound != 0 || p.FNIR != *p.ExhaustiveFNIR {
		t.Errorf("pre-selection lost %d mates exhaustive search found (FNIR %.3f against %.3f)", p.LostFound, p.FNIR, *p.ExhaustiveFNIR)
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil || !strings.Contains(out.String(), "fused") || !strings.Contains(out.String(), "pre-selection") {
		t.Errorf("text report: %v\n%s", err, out.String())
	}
}

func TestIdentifyRejectsBadOptions(t *testing.T) {
	dir := synthSet(t, 2, 2)
	for _, tc := range []struct {
		name string
		o    IdentifyOptions
	}{
		{"strangers share 1", IdentifyOptions{Strangers: 1}},
		{"negative pad", IdentifyOptions{Pad: -1}},
		{"too few identities", IdentifyOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Dir = dir
			if _, err := Identify(context.Background(), tc.o); err == nil {
				t.Error("accepted")
			}
		})
	}
}
