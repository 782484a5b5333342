package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palmd/palmd/config"
	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/sensor/sim"
)

// TestCheckOpensEveryFile: -check-config opens what the service would and
// reports every broken file, naming its key, instead of passing a file
// whose keys are missing, unreadable, world-readable, folders or garbage.
func TestCheckOpensEveryFile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(w *world)
		extra string
		want  string
	}{
		{name: "all good"},
		{name: "missing device key", spoil: func(w *world) { os.Remove(filepath.Join(w.dir, "device.key")) }, want: "keys.device:"},
		{name: "world-readable device key", spoil: func(w *world) { os.Chmod(filepath.Join(w.dir, "device.key"), 0o644) }, want: "keys.device:"},
		{name: "device key is a folder", spoil: func(w *world) {
			os.Remove(filepath.Join(w.dir, "device.key"))
			os.Mkdir(filepath.Join(w.dir, "device.key"), 0o700)
		}, want: "keys.device:"},
		{name: "garbage matcher key", spoil: func(w *world) { os.WriteFile(filepath.Join(w.dir, "matcher.pub"), []byte("hello"), 0o644) }, want: "keys.matcher:"},
		{name: "unreadable result key", spoil: func(w *world) { os.Chmod(filepath.Join(w.dir, "result.pub"), 0) }, want: "keys.result:"},
		{name: "missing command key", spoil: func(w *world) { os.Remove(filepath.Join(w.dir, "command.pub")) }, want: "keys.command:"},
		{name: "short token", spoil: func(w *world) { os.WriteFile(filepath.Join(w.dir, "diag.token"), []byte("short"), 0o600) },
			extra: "diagnostics: {token_file: %DIR%/diag.token}", want: "diagnostics.token_file:"},
		{name: "world-readable token", spoil: func(w *world) {
			os.WriteFile(filepath.Join(w.dir, "diag.token"), []byte("0123456789abcdef0123"), 0o644)
		},
			extra: "diagnostics: {token_file: %DIR%/diag.token}", want: "diagnostics.token_file:"},
		{name: "state folder missing", spoil: func(w *world) { os.RemoveAll(w.stateDir()) }, want: "state_dir:"},
		{name: "a terminal model's calibration", spoil: func(w *world) { writeCalibration(t, w.dir, 3.9, liveness.NoiseModel{}) },
			extra: "liveness: {calibration_file: %DIR%/liveness.json}"},
		{name: "calibration file missing", extra: "liveness: {calibration_file: %DIR%/liveness.json}", want: "liveness.calibration_file:"},
		{name: "calibration file of another kind", spoil: func(w *world) {
			os.WriteFile(filepath.Join(w.dir, "liveness.json"), []byte(`{"version": 1, "threshold": 3}`), 0o644)
		}, extra: "liveness: {calibration_file: %DIR%/liveness.json}", want: "liveness.calibration_file:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if os.Geteuid() == 0 && strings.Contains(tc.name, "unreadable") {
				t.Skip("root reads files whatever their mode")
			}
			w := keyWorld(t)
			scen := writeScenario(t, w.dir, &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 1}}})
			var extra []string
			if tc.extra != "" {
				extra = append(extra, strings.ReplaceAll(tc.extra, "%DIR%", w.dir))
			}
			cfg := w.config(t, "term-check", scen, false, extra...)
			if tc.spoil != nil {
				tc.spoil(w)
			}
			err := Check(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("a good configuration: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a problem with %s", err, tc.want)
			}
		})
	}
}

// TestCheckConfigReportsAll: the binary lists every problem and exits 1.
func TestCheckConfigReportsAll(t *testing.T) {
	w := keyWorld(t)
	w.config(t, "term-check", writeScenario(t, w.dir, &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 1}}}), false)
	os.Remove(filepath.Join(w.dir, "device.key"))
	os.WriteFile(filepath.Join(w.dir, "matcher.pub"), []byte("garbage"), 0o644)
	out, err := exec.Command(palmdBinary(t), "-config", filepath.Join(w.dir, "palmd.yaml"), "-check-config").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v\n%s", err, out)
	}
	for _, want := range []string{"keys.device:", "keys.matcher:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestPalmdCommandLine: -h exits 0, a stray argument and a broken file
// exit 2, the file's problems one per line as file:line: key: message.
func TestPalmdCommandLine(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "palmd.yaml")
	if err := os.WriteFile(bad, []byte("device_id: term-1\nloglevel: debug\ncapture: {burst: many}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"-h", []string{"-h"}, 0, []string{"-check-config"}},
		{"stray argument", []string{"-check-config", "extra"}, 2, []string{`unexpected argument "extra"`}},
		{"broken file", []string{"-config", bad, "-check-config"}, 2, []string{
			bad + ":2: loglevel: unknown key; did you mean log_level?",
			bad + `:3: capture.burst: want a whole number, got "many"`,
			bad + ": keys.device: required",
			"problem(s) in " + bad,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(palmdBinary(t), tc.args...).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// writeCalibration writes a terminal model's liveness calibration file
// (the built-in norms, print_texture's moved as a noisier camera's would
// be) with the given threshold, measured against noise (zero: not
// recorded), into dir/liveness.json.
func writeCalibration(t *testing.T, dir string, threshold float64, noise liveness.NoiseModel) liveness.CalibrationFile {
	t.Helper()
	cal := liveness.DefaultCalibration()
	n := cal[liveness.CueTexture]
	n.Median = 1.2
	cal[liveness.CueTexture] = n
	cf := liveness.CalibrationFile{Calibration: cal, Threshold: threshold, Presentations: 400, Noise: noise}
	b, err := cf.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "liveness.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return cf
}

// TestLivenessCalibrationFile: the file's norms replace the built-in ones
// and its threshold applies unless liveness.threshold is set; without a
// file the built-in calibration and the configured threshold stay; a
// measured noise model reaches the detector.
func TestLivenessCalibrationFile(t *testing.T) {
	w := keyWorld(t)
	scen := writeScenario(t, w.dir, &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 1}}})
	want := writeCalibration(t, w.dir, 3.9, liveness.NoiseModel{})
	file := "liveness: {calibration_file: " + filepath.Join(w.dir, "liveness.json")
	for _, tc := range []struct {
		name          string
		extra         string
		threshold     float64
		fileThreshold float64
		fromFile      bool
		noise         liveness.NoiseModel
	}{
		{name: "built in", threshold: liveness.DefaultThreshold},
		{name: "built in, threshold set", extra: "liveness: {threshold: 4.5}", threshold: 4.5},
		{name: "file", extra: file + "}", threshold: 3.9, fileThreshold: 3.9, fromFile: true},
		{name: "file, threshold set", extra: file + ", threshold: 4.5}", threshold: 4.5, fileThreshold: 3.9, fromFile: true},
		{name: "file and the camera's noise", extra: file + ", noise: {read: 0.6, shot: 0.003, corr: 0.4}}", threshold: 3.9, fileThreshold: 3.9, fromFile: true,
			noise: liveness.NoiseModel{Read: 0.6, Shot: 0.003, Corr: 0.4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.extra != "" {
				extra = append(extra, tc.extra)
			}
			lc, ft, err := livenessConfig(w.config(t, "term-cal", scen, false, extra...))
			if err != nil {
				t.Fatal(err)
			}
			if lc.Threshold != tc.threshold || ft != tc.fileThreshold {
				t.Errorf("threshold %v (file %v), want %v (file %v)", lc.Threshold, ft, tc.threshold, tc.fileThreshold)
			}
			if lc.Noise != tc.noise {
				t.Errorf("noise model %+v, want %+v", lc.Noise, tc.noise)
			}
			if got := lc.Calibration[liveness.CueTexture]; tc.fromFile != (got == want.Calibration[liveness.CueTexture]) || !tc.fromFile && lc.Calibration != nil {
				t.Errorf("print_texture norm %+v (calibration from the file: %v)", got, tc.fromFile)
			}
		})
	}
}

// TestCalibrationFileNoiseMustMatch: a calibration file that records the
// camera noise model its pilot measured against is refused unless palmd
// measures against the same one (liveness.noise, or the built-in model
// when unset); a file that records none is taken as it is.
func TestCalibrationFileNoiseMustMatch(t *testing.T) {
	w := keyWorld(t)
	scen := writeScenario(t, w.dir, &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 1}}})
	camera := liveness.NoiseModel{Read: 0.61, Shot: 0.0031, Corr: 0.38}
	file := "liveness: {calibration_file: " + filepath.Join(w.dir, "liveness.json")
	for _, tc := range []struct {
		name      string
		fileNoise liveness.NoiseModel
		extra     string
		refused   bool
	}{
		{name: "the pilot's model configured", fileNoise: camera, extra: file + ", noise: {read: 0.61, shot: 0.0031, corr: 0.38}}"},
		{name: "the pilot's model, none configured", fileNoise: camera, extra: file + "}", refused: true},
		{name: "another model configured", fileNoise: camera, extra: file + ", noise: {read: 0.4, shot: 0.0031, corr: 0.38}}", refused: true},
		{name: "the built-in model, none configured", fileNoise: liveness.DefaultNoise, extra: file + "}"},
		{name: "not recorded", extra: file + ", noise: {read: 0.61, shot: 0.0031, corr: 0.38}}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeCalibration(t, w.dir, 3.9, tc.fileNoise)
			_, _, err := livenessConfig(w.config(t, "term-noise", scen, false, tc.extra))
			if tc.refused != (err != nil) {
				t.Fatalf("error %v, want refused %v", err, tc.refused)
			}
			if err != nil && !strings.Contains(err.Error(), "set liveness.noise to the pilot's") {
				t.Errorf("the refusal does not say what to do: %v", err)
			}
		})
	}
}

// TestCalibrationFileDecides: palmd started with a calibration file
// decides with its norms and threshold — here one under which a living
// hand's fine detail is far above every living palm's, so the hand is
// refused as an attack — and says which calibration it runs.
func TestCalibrationFileDecides(t *testing.T) {
	const device = "term-calfile"
	w := newWorld(t, device)
	scen := writeScenario(t, w.dir, &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 20}, step(9, 0, 3), {Kind: sim.StepEmpty, Hold: 20}}})
	cal := liveness.DefaultCalibration()
	n := cal[liveness.CueTexture]
	n.Median, n.Spread = 0.2, 0.01 // a camera far quieter than this one
	cal[liveness.CueTexture] = n
	b, err := liveness.CalibrationFile{Calibration: cal, Threshold: 3.7, Presentations: 300}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(w.dir, "liveness.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	w.config(t, device, scen, false, "liveness: {calibration_file: "+path+"}")
	out, err := exec.Command(palmdBinary(t), "-config", filepath.Join(w.dir, "palmd.yaml"), "-exit-when-scenario-ends").CombinedOutput()
	if err != nil {
		t.Fatalf("palmd: %v\n%s", err, out)
	}
	for _, want := range []string{"liveness calibration loaded", "threshold=3.7", "cue=print_texture", "outcomes=map[attack:1]"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("palmd's log lacks %q:\n%s", want, out)
		}
	}
}

// TestLivenessWarnings: on real hardware palmd says which of the liveness
// detector's settings are still the simulator's; on the simulated sensor,
// or with liveness off, it says nothing.
func TestLivenessWarnings(t *testing.T) {
	noise := config.Noise{Read: 0.6, Shot: 0.003, Corr: 0.4}
	for _, tc := range []struct {
		name     string
		kind     string
		disabled bool
		noise    config.Noise
		file     string
		want     []string
	}{
		{name: "simulated sensor", kind: "sim"},
		{name: "hardware, nothing measured", kind: "hardware", want: []string{"liveness.noise", "liveness.calibration_file"}},
		{name: "hardware, noise measured", kind: "hardware", noise: noise, want: []string{"liveness.calibration_file"}},
		{name: "hardware, both measured", kind: "hardware", noise: noise, file: "liveness.json"},
		{name: "hardware, liveness off", kind: "hardware", disabled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg config.Config
			cfg.Sensor.Kind, cfg.Liveness.Disabled, cfg.Liveness.Noise, cfg.Liveness.CalibrationFile = tc.kind, tc.disabled, tc.noise, tc.file
			got := livenessWarnings(&cfg)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want ones naming %q", got, tc.want)
			}
			for i, key := range tc.want {
				if !strings.Contains(got[i], key) {
					t.Errorf("warning %q does not name %s", got[i], key)
				}
			}
		})
	}
}
