package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palmd/palmd/diag"
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
	for name, body := range map[string]string{"cues.csv": cues, "bad.csv": cuesHead + "print,1,attack,true,,200,0,false,x,2.1\n"} {
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
