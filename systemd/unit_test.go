// Package systemd holds palmd's unit file and the example configuration;
// this test checks the unit with systemd's own tools.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unitForTest copies palmd.service with ExecStart pointing at an existing
// executable (this test binary), as systemd-analyze verify checks it.
func unitForTest(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("palmd.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "palmd.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(raw), "/usr/bin/palmd", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func analyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed: run scripts/bootstrap.sh")
	}
	return p
}

func TestUnitVerifies(t *testing.T) {
	out, err := exec.Command(analyze(t), "verify", unitForTest(t)).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestUnitExposure(t *testing.T) {
	out, err := exec.Command(analyze(t), "security", "--offline=true", unitForTest(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for palmd\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("exposure level %.1f", score)
	if score > 1.5 {
		t.Fatalf("exposure level %.1f, want ≤ 1.5", score)
	}
}

func TestUnitEssentials(t *testing.T) {
	raw, _ := os.ReadFile("palmd.service")
	for _, want := range []string{"Type=notify", "WatchdogSec=", "Restart=on-failure", "LimitCORE=0", "ProtectSystem=strict",
		"CapabilityBoundingSet=\n", "LoadCredential=device.key", "LoadCredential=diag.token", "DevicePolicy=closed", "User=palmd",
		"ExecStopPost=/usr/bin/palmd -config /etc/palmd/palmd.yaml -illuminator-off", "StateDirectory=palmd", "After=network-online.target time-sync.target",
		"ExecStartPre=/usr/bin/palmd -config /etc/palmd/palmd.yaml -check-config", "ExecReload=/bin/kill -HUP $MAINPID",
		"ExecStartPre=+/usr/bin/palmd -config /etc/palmd/palmd.yaml -export-pwm", "ReadWritePaths=-/sys/devices/platform"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
}
