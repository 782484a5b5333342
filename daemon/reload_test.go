package daemon

import (
	"bytes"
	"crypto/ed25519"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/orchestrator/orchestratortest"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor/sim"
)

// TestReloadKeepsTheCalibrationFilesThreshold: with liveness.calibration_file
// and no liveness.threshold, a reload keeps the file's threshold (read when
// palmd started) instead of falling to the built-in one; a threshold set
// later applies, and taking it out again brings the file's back.
func TestReloadKeepsTheCalibrationFilesThreshold(t *testing.T) {
	w := keyWorld(t)
	scen := writeScenario(t, w.dir, &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 1}}})
	writeCalibration(t, w.dir, 3.9, liveness.NoiseModel{})
	file := "liveness: {calibration_file: " + filepath.Join(w.dir, "liveness.json")
	cfg := w.config(t, "term-rl", scen, false, file+"}")
	live, fileThreshold, err := livenessConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sim.Config{Scenario: &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Device().Close() })
	_, priv, _ := ed25519.GenerateKey(nil)
	orch, err := orchestrator.New(s.Device(), &protocol.Sealer{DeviceID: "term-rl", DeviceKey: priv, Matcher: w.mk.Public()},
		&orchestratortest.Uplink{}, orchestrator.Config{Liveness: live})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cur := *cfg
	cur.Liveness.Threshold = live.Threshold
	r := &reloader{path: filepath.Join(w.dir, "palmd.yaml"), cur: &cur, level: new(slog.LevelVar), orch: orch,
		log: slog.New(slog.NewTextHandler(&logs, nil)), fileThreshold: fileThreshold}
	for _, tc := range []struct {
		name, liveness string
		want           float64
		applied        bool // liveness.threshold among the keys applied
	}{
		{"the same file again", file + "}", 3.9, false},
		{"a threshold set", file + ", threshold: 4.5}", 4.5, true},
		{"the threshold taken out", file + "}", 3.9, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			w.config(t, "term-rl", scen, false, tc.liveness)
			r.reload()
			if r.cur.Liveness.Threshold != tc.want {
				t.Errorf("threshold %v after the reload, want %v\n%s", r.cur.Liveness.Threshold, tc.want, logs.String())
			}
			if got := strings.Contains(logs.String(), "liveness.threshold"); got != tc.applied {
				t.Errorf("liveness.threshold applied: %v, want %v\n%s", got, tc.applied, logs.String())
			}
		})
	}
}
