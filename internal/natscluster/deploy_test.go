package natscluster_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/palmd/palmd/internal/natscluster"
	"github.com/palmd/palmd/internal/pki"
)

// TestShippedNodeConfigValid: deploy/nats/palm-nats.conf, with the
// environment of palm-nats.env and a users.conf as palmctl nats-users
// writes it, is a configuration nats-server accepts (nats-server -t loads
// the certificates too, so they are made here and the credential paths
// pointed at them).
func TestShippedNodeConfigValid(t *testing.T) {
	src, err := os.ReadFile("../../deploy/nats/palm-nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := pki.NewCA("deploy test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue("nats-1.example.internal", true)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.pem": ca.PEM, "server.pem": cert, "server.key": key,
		"users.conf": []byte(natscluster.Authorization([]natscluster.User{natscluster.DeviceUser("term-0001"), natscluster.MatcherUser("palm-matcher-1")}))} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf := strings.ReplaceAll(string(src), "/run/credentials/palm-nats.service", dir)
	conf = strings.ReplaceAll(conf, "/var/lib/palm-nats", filepath.Join(dir, "js"))
	if conf == string(src) {
		t.Fatal("the shipped configuration no longer reads its certificates from the service's credentials")
	}
	path := filepath.Join(dir, "palm-nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile("../../deploy/nats/palm-nats.env")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nats-server", "-t", "-c", path)
	for _, line := range strings.Split(string(env), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			cmd.Env = append(cmd.Env, line)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration file "+path+" is valid") {
		t.Fatalf("nats-server -t: %v\n%s", err, out)
	}
}

// TestShippedNodeUnit: palm-nats.service verifies with systemd's own
// tool, and exposes no more than palmd.service (≤ 1.5).
func TestShippedNodeUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed: run scripts/bootstrap.sh")
	}
	unit := "../../deploy/nats/palm-nats.service"
	if out, err := exec.Command(analyze, "verify", unit).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(analyze, "security", "--offline=true", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for palm-nats\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 1.5 {
		t.Fatalf("exposure level %.1f, want ≤ 1.5", score)
	}
}
