package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestManPagesNameEveryFlag keeps docs/man true: every flag a binary (or
// palmctl command) accepts is in its manual page, and every page renders
// without groff warnings.
func TestManPagesNameEveryFlag(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/...")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
	flags := func(args ...string) []string {
		out, _ := exec.Command(filepath.Join(bin, args[0]), args[1:]...).CombinedOutput() // -h exits non-zero
		var names []string
		for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
			names = append(names, m[1])
		}
		if len(names) == 0 {
			t.Fatalf("%v -h listed no flags:\n%s", args, out)
		}
		return names
	}
	pages := map[string][][]string{
		"palmd.8":        {{"palmd", "-h"}},
		"palm-matcher.8": {{"palm-matcher", "-h"}},
		"palmctl.1": {{"palmctl", "status", "-h"}, {"palmctl", "keys", "-h"}, {"palmctl", "demo", "-h"},
			{"palmctl", "simulate", "-h"}, {"palmctl", "synth", "-h"}, {"palmctl", "eval", "-h"},
			{"palmctl", "fleet", "-h"}, {"palmctl", "nats-users", "-h"}},
	}
	for page, cmds := range pages {
		src, err := os.ReadFile(filepath.Join("..", "docs", "man", page))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(src), `\-`, "-")
		for _, cmd := range cmds {
			for _, f := range flags(cmd...) {
				if !regexp.MustCompile(`\\fB-` + regexp.QuoteMeta(f) + `\\f|\.BI? -` + regexp.QuoteMeta(f) + `\b|\.RB \[ -` + regexp.QuoteMeta(f) + `\b`).MatchString(text) {
					t.Errorf("%s does not document %v's flag -%s", page, cmd[:len(cmd)-1], f)
				}
			}
		}
		if _, err := exec.LookPath("groff"); err == nil {
			out, err := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", filepath.Join("..", "docs", "man", page)).CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("%s: groff: %v\n%s", page, err, out)
			}
		}
	}
	// palmctl's command list and the page's agree.
	usage, _ := exec.Command(filepath.Join(bin, "palmctl")).CombinedOutput()
	src, _ := os.ReadFile(filepath.Join("..", "docs", "man", "palmctl.1"))
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z]+) `).FindAllStringSubmatch(string(usage), -1) {
		if !strings.Contains(string(src), `.B `+m[1]) && !strings.Contains(string(src), `\fB `+m[1]) && !strings.Contains(string(src), `.B `+m[1]+` \fR`) {
			t.Errorf("palmctl.1 does not describe the command %s", m[1])
		}
	}
}
