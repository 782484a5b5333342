package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandLine: palm-matcher without flags prints its usage, not a log
// line; -h exits 0; usage errors exit 2; -version prints the version.
func TestCommandLine(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "palm-matcher")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"no flags", nil, 2, "", "usage: palm-matcher"},
		{"-h", []string{"-h"}, 0, "usage: palm-matcher", ""},
		{"-version", []string{"-version"}, 0, "palm-matcher ", ""},
		{"unknown flag", []string{"-bogus"}, 2, "", "flag provided but not defined"},
		{"stray argument", []string{"-broker", "tcp://127.0.0.1:1", "stray"}, 2, "", `unexpected argument "stray"`},
		{"bad transport", []string{"-broker", "x", "-matcher-key", "k", "-devices", "d", "-result-key", "r", "-transport", "carrier-pigeon"}, 2, "", "-transport"},
		{"bad log level", []string{"-broker", "x", "-matcher-key", "k", "-devices", "d", "-result-key", "r", "-log-level", "loud"}, 2, "", "-log-level"},
		{"a failure exits 1", []string{"-broker", "tcp://127.0.0.1:1", "-matcher-key", "/nonexistent", "-devices", "d", "-result-key", "r"}, 1, "", "palm-matcher failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := exec.Command(bin, tc.args...)
			cmd.Stdout, cmd.Stderr = &out, &errOut
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errOut.String(), tc.stderr) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errOut.String())
			}
		})
	}
}
