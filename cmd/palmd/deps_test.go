package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWhatEachBinaryLinks pins the import graph's promises: the firmware
// never links the matcher or the developer tooling, and the matcher never
// links OpenCV or GPIO code.
func TestWhatEachBinaryLinks(t *testing.T) {
	for _, tc := range []struct {
		binary    string
		forbidden []string
	}{
		{"palmd", []string{"github.com/palmd/palmd/matcher", "github.com/palmd/palmd/internal/eval", "github.com/palmd/palmd/internal/demo",
			"github.com/palmd/palmd/internal/dataset", "github.com/palmd/palmd/internal/memreport", "github.com/palmd/palmd/internal/brokertest"}},
		{"palm-matcher", []string{"gocv.io/x/gocv", "periph.io/", "github.com/palmd/palmd/imaging", "github.com/palmd/palmd/sensor",
			"github.com/palmd/palmd/orchestrator", "github.com/palmd/palmd/internal/eval", "github.com/palmd/palmd/uplink"}},
	} {
		t.Run(tc.binary, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "github.com/palmd/palmd/cmd/"+tc.binary).CombinedOutput()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, out)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, f := range tc.forbidden {
					if dep == f || strings.HasPrefix(dep, f) && strings.HasSuffix(f, "/") || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s links %s", tc.binary, dep)
					}
				}
			}
		})
	}
}
