package keyfile

import (
	"crypto/ed25519"
	"testing"

	"github.com/palmd/palmd/protocol"
)

// FuzzParseKeys feeds any bytes to every key parser, seeded with valid
// files of each kind: no panic, and whatever parses re-encodes to a key
// that parses to the same key.
func FuzzParseKeys(f *testing.F) {
	_, dev, _ := ed25519.GenerateKey(nil)
	priv, pub, _ := EncodeDevice(dev)
	mk, _ := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	mpriv, mpub, _ := EncodeMatcher(mk)
	for _, b := range [][]byte{priv, pub, mpriv, mpub, []byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := ParseDevicePrivateKey(b); err == nil {
			if len(k) != ed25519.PrivateKeySize {
				t.Fatalf("device key of %d bytes", len(k))
			}
		}
		if k, err := ParseDevicePublicKey(b, "fuzz"); err == nil && len(k) != ed25519.PublicKeySize {
			t.Fatalf("device public key of %d bytes", len(k))
		}
		if k, err := ParseMatcherPrivateKey(b, "fuzz"); err == nil {
			_, pub, err := EncodeMatcher(k)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseMatcherPublicKey(pub, "fuzz")
			if err != nil || back.ID != k.ID {
				t.Fatalf("matcher key does not round-trip: %v", err)
			}
		}
		if k, err := ParseMatcherPublicKey(b, "fuzz"); err == nil && k.ID.String() == "" {
			t.Fatal("matcher public key without an id")
		}
	})
}
