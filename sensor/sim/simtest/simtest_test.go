package simtest_test

import (
	"testing"

	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/sensor/sim/simtest"
)

// TestStart: the terminal is running (its camera delivers) and takes the
// lit and unlit frames the daemon takes between presentations.
func TestStart(t *testing.T) {
	s := simtest.Start(t, sim.Config{Scenario: &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 4}}}})
	lit, unlit, err := s.LitUnlit(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if !lit.Illuminated || unlit.Illuminated {
		t.Errorf("lit frame illuminated %v, unlit %v", lit.Illuminated, unlit.Illuminated)
	}
	if lit.Width != 640 || lit.Height != 480 {
		t.Errorf("frame %dx%d, want the default 640x480", lit.Width, lit.Height)
	}
}
