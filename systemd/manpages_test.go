package systemd

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/palmd/palmd/config"
)

// TestManPagesNameEveryFlag keeps docs/man true: every flag a binary (or
// palmctl command) accepts is in its manual page, and every page renders
// without groff warnings.
func TestManPagesNameEveryFlag(t *testing.T) {
	bin := buildCommands(t, "./cmd/...")
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

// TestConfigManPageNamesEveryKey: palmd.yaml(5) documents every key the
// configuration has.
func TestConfigManPageNamesEveryKey(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "docs", "man", "palmd.yaml.5"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(src), `\-`, "-")
	var c config.Config
	var walk func(t reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := name
			if path != "" {
				key = path + "." + name
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[config.Duration]() {
				walk(f.Type, key)
				continue
			}
			if !strings.Contains(text, `\fB`+key+`\fR`) && !strings.Contains(text, ".B "+key+"\n") {
				t.Errorf("palmd.yaml.5 does not document %s", key)
			}
		}
	}
	walk(reflect.TypeOf(c), "")
}

// TestThresholdDocsMatchEvalJSON: what the README and the manual pages
// say palmctl eval --json holds for choosing a threshold is what it holds.
func TestThresholdDocsMatchEvalJSON(t *testing.T) {
	bin := buildCommands(t, "./cmd/palmctl")
	set := filepath.Join(t.TempDir(), "set")
	palmctl := filepath.Join(bin, "palmctl")
	if out, err := exec.Command(palmctl, "synth", "-out", set, "-identities", "20", "-samples", "3", "-width", "320", "-height", "240").CombinedOutput(); err != nil {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	out, err := exec.Command(palmctl, "eval", "-dir", set, "-json").Output()
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	var rep struct {
		Thresholds []map[string]any `json:"thresholds"`
		Quantiles  map[string]any   `json:"impostor_quantiles"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Thresholds) == 0 || len(rep.Quantiles) == 0 {
		t.Fatalf("eval --json lacks thresholds or impostor_quantiles:\n%.2000s", out)
	}
	for _, field := range []string{"far", "threshold", "source", "frr"} {
		if _, ok := rep.Thresholds[0][field]; !ok {
			t.Errorf("a threshold lacks %s: %v", field, rep.Thresholds[0])
		}
	}
	for _, doc := range []string{"README.md", "docs/man/palmctl.1", "docs/man/palm-matcher.8"} {
		b, err := os.ReadFile(filepath.Join("..", doc))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), `\fB`, "")
		for _, name := range []string{"thresholds", "impostor_quantiles"} {
			if doc == "docs/man/palm-matcher.8" && name == "impostor_quantiles" {
				continue
			}
			if !strings.Contains(text, name) {
				t.Errorf("%s does not name eval --json's %s", doc, name)
			}
		}
	}
}

// buildCommands builds the commands of pkgs (go build patterns, from the
// module's root) into a temporary folder and returns it.
func buildCommands(t *testing.T, pkgs ...string) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", append([]string{"build", "-o", bin + "/"}, pkgs...)...)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
