package demo

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoEndToEnd builds palmd and palm-matcher and runs them as real
// processes against a real mosquitto: enrolment, identification of the
// enrolled, rejection of a stranger.
func TestDemoEndToEnd(t *testing.T) {
	bin := t.TempDir()
	for _, cmd := range []string{"palmd", "palm-matcher"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, cmd), "github.com/palmd/palmd/cmd/"+cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("building %s: %v\n%s", cmd, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, logs bytes.Buffer
	err := Run(ctx, Options{BinDir: bin, People: 2, Strangers: 1, Pad: 5000, Out: &out, Verbose: &logs})
	if err != nil {
		t.Fatalf("%v\n%s\n--- logs ---\n%s", err, out.String(), logs.String())
	}
	for _, want := range []string{"alice/enrol3", "enrolled", "match", "no_match", "print-of-alice", "attack (", "10 of 10 decisions correct"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
}

func TestParseLogLine(t *testing.T) {
	kv := parseLogLine(`level=INFO msg=presentation outcome=match scene=alice score=0.168 subject="ab cd" still_to_result_ms=94`)
	if kv["msg"] != "presentation" || kv["scene"] != "alice" || kv["subject"] != "ab cd" || kv["still_to_result_ms"] != "94" {
		t.Fatalf("parsed %v", kv)
	}
}
