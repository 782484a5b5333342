package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palmd/palmd/protocol"
)

func write(t *testing.T, dir, name string, data []byte, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := WriteNew(p, data, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeviceKeyRoundTrip(t *testing.T) {
	dir := t.TempDir()
	_, k, _ := ed25519.GenerateKey(nil)
	priv, pub, err := EncodeDevice(k)
	if err != nil {
		t.Fatal(err)
	}
	pp := write(t, dir, "device.key", priv, 0o600)
	pu := write(t, dir, "device.pub", pub, 0o644)
	back, err := LoadDevicePrivateKey(pp)
	if err != nil || !back.Equal(k) {
		t.Fatalf("private: %v", err)
	}
	bp, err := LoadDevicePublicKey(pu)
	if err != nil || !bp.Equal(k.Public()) {
		t.Fatalf("public: %v", err)
	}
	if st, _ := os.Stat(pp); st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", st.Mode().Perm())
	}
	if err := WriteNew(pp, priv, 0o600); err == nil {
		t.Error("existing key overwritten")
	}
}

func TestMatcherKeyRoundTrip(t *testing.T) {
	for _, s := range []protocol.Suite{protocol.SuiteHybrid, protocol.SuiteX25519} {
		dir := t.TempDir()
		mk, _ := protocol.GenerateMatcherKey(s)
		priv, pub, err := EncodeMatcher(mk)
		if err != nil {
			t.Fatal(err)
		}
		back, err := LoadMatcherPrivateKey(write(t, dir, "m.key", priv, 0o400))
		if err != nil || back.ID != mk.ID || back.Suite != s {
			t.Fatalf("%v private: %v", s, err)
		}
		bp, err := LoadMatcherPublicKey(write(t, dir, "m.pub", pub, 0o644))
		if err != nil || bp.ID != mk.ID {
			t.Fatalf("%v public: %v", s, err)
		}
	}
}

func TestRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	_, k, _ := ed25519.GenerateKey(nil)
	priv, pub, _ := EncodeDevice(k)
	mk, _ := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	mpriv, mpub, _ := EncodeMatcher(mk)
	otherID := bytes.Replace(mpub, []byte(mk.ID.String()), []byte("0000000000000000"), 1)
	cases := []struct {
		name string
		data []byte
		perm os.FileMode
		load func(string) error
		want string
	}{
		{"world-readable private key", priv, 0o644, devPriv, "accessible to other users"},
		{"world-writable private key", priv, 0o602, devPriv, "accessible to other users"},
		{"public key as private", pub, 0o600, devPriv, `want "PRIVATE KEY"`},
		{"garbage", []byte("hello"), 0o600, devPriv, "no PEM block"},
		{"trailing data", append(bytes.Clone(priv), []byte("extra")...), 0o600, devPriv, "after the PEM block"},
		{"matcher key as device key", mpriv, 0o600, devPriv, "want \"PRIVATE KEY\""},
		{"matcher id mismatch", otherID, 0o644, matPub, "does not match"},
		{"matcher without headers", []byte("-----BEGIN PALMD MATCHER PUBLIC KEY-----\nAAAA\n-----END PALMD MATCHER PUBLIC KEY-----\n"), 0o644, matPub, "Suite header"},
		{"world-readable matcher key", mpriv, 0o604, matPriv, "accessible to other users"},
	}
	for i, tc := range cases {
		p := write(t, dir, "f"+string(rune('a'+i)), tc.data, tc.perm)
		err := tc.load(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want error containing %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "BEGIN") {
			t.Errorf("%s: error quotes key material: %v", tc.name, err)
		}
	}
	if _, err := LoadDevicePrivateKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
	if err := devPriv(dir); err == nil {
		t.Error("directory accepted as a key file")
	}
	p := write(t, dir, "perm.key", priv, 0o644)
	if _, err := ReadSecret(p); !errors.Is(err, ErrPermissions) {
		t.Errorf("ReadSecret on 0644: %v", err)
	}
}

func devPriv(p string) error { _, err := LoadDevicePrivateKey(p); return err }
func matPub(p string) error  { _, err := LoadMatcherPublicKey(p); return err }
func matPriv(p string) error { _, err := LoadMatcherPrivateKey(p); return err }

func TestResolveSystemdCredentials(t *testing.T) {
	creds := t.TempDir()
	_, k, _ := ed25519.GenerateKey(nil)
	priv, _, _ := EncodeDevice(k)
	write(t, creds, "device.key", priv, 0o400)
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	got, err := LoadDevicePrivateKey("device.key")
	if err != nil || !got.Equal(k) {
		t.Fatalf("credential not found: %v", err)
	}
	if p := Resolve("/etc/palmd/device.key"); p != "/etc/palmd/device.key" {
		t.Errorf("absolute path resolved to %s", p)
	}
	if p := Resolve("other.key"); p != "other.key" {
		t.Errorf("missing credential resolved to %s", p)
	}
}
