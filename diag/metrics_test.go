package diag

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestMetricsFollowTheGuidelines runs the exposition through promlint —
// the linter behind `promtool check metrics` — and checks what the
// Prometheus instrumentation guidelines ask beyond it: the runtime and
// process collectors, a build_info series, every label value present
// before its first event, and latency buckets past the result deadline.
func TestMetricsFollowTheGuidelines(t *testing.T) {
	ts := server(t, running(t))
	code, body := do(t, ts, "GET", "/metrics", token)
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint could not parse the exposition: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promtool check metrics: %s: %s", p.Metric, p.Text)
	}
	for _, tc := range []struct{ name, want string }{
		{"go runtime collector", "go_goroutines "},
		{"process collector", "process_resident_memory_bytes "},
		{"build info", `palmd_build_info{go_version="go`},
		{"outcome before any presentation", `palmd_presentations_total{outcome="attack"} 0`},
		{"gate before any failure", `palmd_quality_gate_failures_total{gate="blurred"} 0`},
		{"stage before any observation", `palmd_stage_seconds_count{stage="seal"} 0`},
		{"bucket past a 10 s result", `palmd_stage_seconds_bucket{stage="result",le="15"}`},
		{"camera reopens", "palmd_camera_reopens_total 0"},
		{"illuminator duty", "palmd_illuminator_duty_ratio "},
		{"rejection reason before any rejection", `palmd_diag_requests_rejected_total{reason="cross_origin"} 0`},
		{"attack cue before any attack", `palmd_attacks_refused_total{cue="surface_detail"} 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(body, tc.want) {
				t.Errorf("metrics lack %s", tc.want)
			}
		})
	}
	// No family mixes a superset with its parts: the old
	// palmd_captures_total{fate} summed submitted with delivered with
	// republished.
	if strings.Contains(body, "palmd_captures_total") {
		t.Error("palmd_captures_total is back")
	}
}
