package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palmd/palmd/config"
	"github.com/palmd/palmd/diag"
	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/orchestrator/orchestratortest"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor/sim"
)

// TestCommandLineConventions: palmctl behaves like a well-kept Go CLI —
// help on stdout with exit 0, usage errors with exit 2 and a pointer to
// the help, failures with exit 1, no stuttering prefixes, stray
// arguments refused.
func TestCommandLineConventions(t *testing.T) {
	dir := t.TempDir()
	// An evaluation's attempts as palmctl eval --pad --cues-out writes them.
	const cuesHead = "species,identity,outcome,decided,matched,in_view_ms,still_ms,occluder,surface_detail,print_texture\n"
	cues := cuesHead + "bona_fide,1,no_match,true,,300,220,false,0.03,0.99\nprint,1,attack,true,,200,0,false,0.4,2.1\n"
	// A pilot's living presentations, enough for a calibration file, and
	// too few for one.
	living := func(n int) string {
		var b strings.Builder
		b.WriteString("species,identity,outcome,decided,matched,in_view_ms,still_ms,occluder,surface_detail,print_texture,cut_edge,soft_outline,no_veins,vein_excess,no_pulse,sheet_around_hand\n")
		for i := range n {
			x := float64(i%50) / 50
			fmt.Fprintf(&b, "bona_fide,%d,no_match,true,,300,220,false,%g,%g,%g,%g,%g,%g,%g,%g\n", i+1,
				0.03+0.02*x, 1+0.1*x, 1.55+0.05*x, 1.55+0.05*x, 0.005+0.003*x, 0.005+0.003*x, 0.01+0.01*x, 0.001*x)
		}
		return b.String()
	}
	for name, body := range map[string]string{"cues.csv": cues, "bad.csv": cuesHead + "print,1,attack,true,,200,0,false,x,2.1\n",
		"pilot.csv": living(320), "small.csv": living(60)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stdout    string // substring expected on stdout
		stderr    string // substring expected on stderr
		quietOut  bool   // nothing on stdout
		noStderr  bool
		notStderr string
	}{
		{name: "no command", args: nil, code: 2, stderr: "usage: palmctl COMMAND", quietOut: true},
		{name: "top-level -h", args: []string{"-h"}, code: 0, stdout: "commands:", noStderr: true},
		{name: "--help", args: []string{"--help"}, code: 0, stdout: "commands:", noStderr: true},
		{name: "help", args: []string{"help"}, code: 0, stdout: "commands:"},
		{name: "help synth", args: []string{"help", "synth"}, code: 0, stdout: "-identities", noStderr: true},
		{name: "help unknown", args: []string{"help", "nosuch"}, code: 2, stderr: `unknown command "nosuch"`},
		{name: "command -h", args: []string{"synth", "-h"}, code: 0, stdout: "usage: palmctl synth [flags]", noStderr: true},
		{name: "command --help", args: []string{"eval", "--help"}, code: 0, stdout: "-dir", noStderr: true},
		{name: "--version", args: []string{"--version"}, code: 0, stdout: "palmctl "},
		{name: "-version", args: []string{"-version"}, code: 0, stdout: "palmctl "},
		{name: "version", args: []string{"version"}, code: 0, stdout: "palmctl "},
		{name: "version with a stray argument", args: []string{"version", "x"}, code: 2},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{name: "unknown flag", args: []string{"synth", "--bogus"}, code: 2, stderr: "palmctl synth: flag provided but not defined: -bogus", quietOut: true},
		{name: "stray argument", args: []string{"eval", "some/dir", "--json"}, code: 2, stderr: `unexpected argument "some/dir"`},
		{name: "stray argument after flags", args: []string{"synth", "--out", dir + "/s", "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{name: "required flag missing", args: []string{"eval"}, code: 2, stderr: "run 'palmctl help eval'"},
		{name: "failure exits 1 without a stutter", args: []string{"eval", "--dir", dir + "/none"}, code: 1, stderr: "palmctl eval: ", notStderr: "eval: eval:"},
		{name: "pad re-scored from saved cues", args: []string{"eval", "--pad", "--cues-in", dir + "/cues.csv"}, code: 0, stdout: "print              1        0"},
		{name: "pad saved cues damaged", args: []string{"eval", "--pad", "--cues-in", dir + "/cues.csv," + dir + "/bad.csv"}, code: 1, stderr: "bad.csv: eval: PAD cues line 2: surface_detail"},
		{name: "pad saved cues missing", args: []string{"eval", "--pad", "--cues-in", dir + "/none.csv"}, code: 1, stderr: "none.csv"},
		{name: "calibration file", args: []string{"eval", "--pad", "--calibrate", "--cues-in", dir + "/pilot.csv", "--calibration-out", dir + "/cal.json"}, code: 0, stdout: "threshold for BPCER"},
		{name: "calibration file from too few", args: []string{"eval", "--pad", "--calibrate", "--cues-in", dir + "/small.csv", "--calibration-out", dir + "/small.json"}, code: 1, stderr: "60 bona fide presentations cannot show BPCER ≤ 1 %"},
		{name: "calibration file without --calibrate", args: []string{"eval", "--pad", "--cues-in", dir + "/pilot.csv", "--calibration-out", dir + "/x.json"}, code: 2, stderr: "--calibration-out needs --calibrate"},
		{name: "status without a token", args: []string{"status", "--addr", "127.0.0.1:1"}, code: 2, stderr: "no token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PALMD_DIAG_TOKEN", "")
			var out, errOut bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errOut)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, out.String())
			}
			if !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errOut.String())
			}
			if tc.quietOut && out.Len() > 0 {
				t.Errorf("stdout should be empty:\n%s", out.String())
			}
			if tc.noStderr && errOut.Len() > 0 {
				t.Errorf("stderr should be empty:\n%s", errOut.String())
			}
			if tc.notStderr != "" && strings.Contains(errOut.String(), tc.notStderr) {
				t.Errorf("stderr has %q:\n%s", tc.notStderr, errOut.String())
			}
		})
	}
	// The calibration file written is one palmd reads; none was left
	// where the run failed.
	b, err := os.ReadFile(filepath.Join(dir, "cal.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cf, err := liveness.ParseCalibrationFile(b); err != nil || cf.Presentations != 320 {
		t.Errorf("calibration file: %v, %d presentations; want 320\n%s", err, cf.Presentations, b)
	}
	for _, name := range []string{"small.json", "x.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s written by a failed run (%v)", name, err)
		}
	}
}

// TestKeysLeavesNoEmptyFolder: a keys run that fails makes no folder.
func TestKeysLeavesNoEmptyFolder(t *testing.T) {
	out := filepath.Join(t.TempDir(), "new")
	for _, args := range [][]string{
		{"keys", "--out", out, "--device-id", "bad/id"},
		{"keys", "--out", out, "--device-id", "term-1", "--suite", "rot13"},
	} {
		var o, e bytes.Buffer
		if code := run(context.Background(), args, &o, &e); code == 0 {
			t.Fatalf("%v accepted", args)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("%v left %s behind (%v)", args, out, err)
		}
	}
	// And a folder the run did not make stays, with what it held.
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	if code := run(context.Background(), []string{"keys", "--out", out, "--device-id", "term-1"}, &o, &e); code != 0 {
		t.Fatalf("keys: %d %s", code, e.String())
	}
	if code := run(context.Background(), []string{"keys", "--out", out, "--device-id", "term-1"}, &o, &e); code != 1 {
		t.Fatalf("keys over existing files: exit %d, want 1", code)
	}
	if _, err := os.Stat(filepath.Join(out, "term-1.key")); err != nil {
		t.Fatalf("a failed run removed existing keys: %v", err)
	}
}

// TestProgressOnlyOnATerminal: rendering into a file or pipe draws no
// progress bar (no carriage returns in the log).
func TestProgressOnlyOnATerminal(t *testing.T) {
	var o, e bytes.Buffer
	if code := run(context.Background(), []string{"synth", "--out", t.TempDir() + "/set", "--identities", "2", "--samples", "2", "--width", "320", "--height", "240"}, &o, &e); code != 0 {
		t.Fatalf("synth: %d %s", code, e.String())
	}
	if strings.ContainsAny(e.String(), "\r") || strings.Contains(e.String(), "rendering") {
		t.Errorf("progress drawn into a non-terminal: %q", e.String())
	}
}

// TestStatusForPeopleAndMachines: palmctl status prints words and units
// for a person, and --json the port's snake_case JSON.
func TestStatusForPeopleAndMachines(t *testing.T) {
	const token = "0123456789abcdef-palmctl"
	srv, err := diag.New(diag.Source{DeviceID: "term-s"}, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	addr := strings.TrimPrefix(ts.URL, "http://")
	var o, e bytes.Buffer
	if code := run(context.Background(), []string{"status", "--addr", addr, "--token", token}, &o, &e); code != 0 {
		t.Fatalf("status: %d %s", code, e.String())
	}
	for _, want := range []string{"terminal", "term-s", "health", "ok", "no presentations yet"} {
		if !strings.Contains(o.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, o.String())
		}
	}
	if strings.Contains(o.String(), "{") {
		t.Errorf("status for a person is JSON:\n%s", o.String())
	}
	o.Reset()
	if code := run(context.Background(), []string{"status", "--json", "--addr", addr, "--token", token}, &o, &e); code != 0 {
		t.Fatalf("status --json: %d %s", code, e.String())
	}
	if !strings.Contains(o.String(), `"uptime_seconds"`) || strings.Contains(o.String(), `"UptimeS"`) {
		t.Errorf("status --json:\n%s", o.String())
	}
}

// TestLivenessCuesToCalibration: a supervised pilot's cues, fetched from
// the terminal's diagnostics port, become a calibration file palmd reads:
// liveness-cues, then eval --pad --calibrate --cues-in --calibration-out.
func TestLivenessCuesToCalibration(t *testing.T) {
	const token = "0123456789abcdef-palmctl"
	pilot := diag.LivenessLog{Noise: &diag.LivenessNoise{Read: 0.61, Shot: 0.0031, Corr: 0.38}} // the terminal's liveness.noise
	for i := range 320 {
		x := float64(i%40) / 40
		pilot.Presentations = append(pilot.Presentations, diag.LivenessPresentation{Outcome: "match", InViewToResultMS: 900, StillToResultMS: 420,
			Cues: map[liveness.Cue]float64{liveness.CueSurface: 0.04 + 0.02*x, liveness.CueTexture: 1.2 + 0.1*x, liveness.CueEdge: 1.5 + 0.05*x,
				liveness.CueSoftEdge: 1.5 + 0.05*x, liveness.CueVeins: 0.006 + 0.003*x, liveness.CueVeinExcess: 0.006 + 0.003*x,
				liveness.CuePulse: 0.012 + 0.01*x, liveness.CueSheet: 0.001 * x}})
	}
	body, err := json.Marshal(pilot)
	if err != nil {
		t.Fatal(err)
	}
	// The terminal's port, as far as this command uses it.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer "+token:
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		case r.URL.Path == "/api/v1/liveness":
			w.Write(body)
		case r.URL.Path == "/badnoise/api/v1/liveness":
			w.Write([]byte(`{"noise": {"read": -1, "shot": 0.002, "corr": 0.4}, "presentations": []}`))
		case r.URL.Path == "/garbled/api/v1/liveness":
			w.Write([]byte(`{"presentations": [{"cues": {"print_texture": "high"}}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(ts.Close)
	addr := strings.TrimPrefix(ts.URL, "http://")
	dir := t.TempDir()
	csvPath, calPath := filepath.Join(dir, "pilot.csv"), filepath.Join(dir, "liveness.json")
	var o, e bytes.Buffer
	if code := run(context.Background(), []string{"liveness-cues", "--addr", addr, "--token", token, "--out", csvPath}, &o, &e); code != 0 {
		t.Fatalf("liveness-cues: %d %s", code, e.String())
	}
	if !strings.Contains(o.String(), "320 presentations written") {
		t.Errorf("liveness-cues said %q", o.String())
	}
	if code := run(context.Background(), []string{"eval", "--pad", "--calibrate", "--cues-in", csvPath, "--calibration-out", calPath}, &o, &e); code != 0 {
		t.Fatalf("eval --calibrate: %d %s", code, e.String())
	}
	b, err := os.ReadFile(calPath)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := liveness.ParseCalibrationFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if m := cf.Calibration[liveness.CueTexture].Median; cf.Presentations != 320 || m < 1.2 || m > 1.3 {
		t.Errorf("calibration of %d presentations, print_texture median %v; want 320 and the pilot's 1.2–1.3", cf.Presentations, m)
	}
	if want := (liveness.NoiseModel{Read: 0.61, Shot: 0.0031, Corr: 0.38}); cf.Noise != want {
		t.Errorf("calibration file's noise model %+v, want the pilot's %+v", cf.Noise, want)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no --out", []string{"liveness-cues", "--addr", addr, "--token", token}, 2, "--out is required"},
		{"wrong token", []string{"liveness-cues", "--addr", addr, "--token", "0123456789abcdef-wrong", "--out", csvPath}, 1, "401"},
		{"not a terminal's log", []string{"liveness-cues", "--addr", addr + "/garbled", "--token", token, "--out", filepath.Join(dir, "x.csv")}, 1, "not what this palmctl reads"},
		{"a noise model no camera has", []string{"liveness-cues", "--addr", addr + "/badnoise", "--token", token, "--out", filepath.Join(dir, "y.csv")}, 1, "noise model: read -1 outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o, e bytes.Buffer
			if code := run(context.Background(), tc.args, &o, &e); code != tc.code || !strings.Contains(e.String(), tc.want) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tc.code, e.String(), tc.want)
			}
		})
	}
}

// TestCameraNoiseForPalmdYAML: palmctl camera-noise has a running
// (simulated) terminal measure its camera's noise and prints lines that
// palmd.yaml takes as they are, with the simulated camera's read and shot
// noise; a terminal that could not fit a model fails the command with
// its reason.
func TestCameraNoiseForPalmdYAML(t *testing.T) {
	const token = "0123456789abcdef-palmctl"
	s, err := sim.New(sim.Config{Scenario: &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 10}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	mk, _ := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	o, err := orchestrator.New(s.Device(), &protocol.Sealer{DeviceID: "term-n", DeviceKey: priv, Matcher: mk.Public()}, &orchestratortest.Uplink{}, orchestrator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = o.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; _ = s.Device().Close() })
	srv, err := diag.New(diag.Source{DeviceID: "term-n", Orchestrator: o}, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	var out, e bytes.Buffer
	if code := run(context.Background(), []string{"camera-noise", "--addr", strings.TrimPrefix(ts.URL, "http://"), "--token", token}, &out, &e); code != 0 {
		t.Fatalf("camera-noise: %d %s", code, e.String())
	}
	t.Log(out.String())
	i := strings.Index(out.String(), "liveness:\n")
	if i < 0 {
		t.Fatalf("no palmd.yaml lines in:\n%s", out.String())
	}
	cfg, err := config.Parse(strings.NewReader("device_id: term-n\nkeys: {device: d.key, matcher: m.pub, result: r.pub}\nmqtt: {brokers: [\"tcp://127.0.0.1:1883\"]}\n"+out.String()[i:]), nil)
	if err != nil {
		t.Fatalf("palmd.yaml does not take the printed lines: %v", err)
	}
	got, want := cfg.Liveness.Noise.Model(), liveness.DefaultNoise
	if math.Abs(got.Read-want.Read) > 0.05*want.Read || math.Abs(got.Shot-want.Shot) > 0.05*want.Shot || got.Corr <= 0 {
		t.Errorf("liveness.noise %+v, the simulated camera's read and shot %v and %v", got, want.Read, want.Shot)
	}

	failed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"passed": false, "problem": "liveness: noise: 0 usable tiles of 16 px, want 200", "exposures_ms": [], "illuminator_levels": []}`))
	}))
	t.Cleanup(failed.Close)
	out.Reset()
	e.Reset()
	if code := run(context.Background(), []string{"camera-noise", "--addr", strings.TrimPrefix(failed.URL, "http://"), "--token", token}, &out, &e); code != 1 ||
		!strings.Contains(e.String(), "no noise model: liveness: noise: 0 usable tiles") || strings.Contains(out.String(), "liveness:\n  noise") {
		t.Errorf("a failed measurement: exit %d, stdout %q, stderr %q", code, out.String(), e.String())
	}
}
