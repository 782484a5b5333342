package keyfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/palmd/palmd/internal/brokertest"
)

func TestLoadTLS(t *testing.T) {
	dir := t.TempDir()
	ca := brokertest.NewCA(t)
	cert, key := ca.Issue(t, "term-0013", false)
	must := func(name string, b []byte, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, perm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caf, cf, kf := must("ca.pem", ca.PEM, 0o644), must("c.pem", cert, 0o644), must("c.key", key, 0o600)
	cfg, err := LoadTLS(caf, cf, kf)
	if err != nil || len(cfg.Certificates) != 1 || cfg.MinVersion < 0x0303 {
		t.Fatalf("LoadTLS: %v", err)
	}
	if _, err := LoadTLS(caf, cf, must("open.key", key, 0o644)); err == nil {
		t.Error("world-readable client key accepted")
	}
	if _, err := LoadTLS(must("junk.pem", []byte("junk"), 0o644), cf, kf); err == nil {
		t.Error("CA bundle without certificates accepted")
	}
	_, other := ca.Issue(t, "x", false)
	if _, err := LoadTLS(caf, cf, must("other.key", other, 0o600)); err == nil {
		t.Error("mismatched key accepted")
	}
}
