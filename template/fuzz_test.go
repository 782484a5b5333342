package template

import (
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fuzzKeys are fixed so that the seed corpus in testdata/ (valid envelopes
// among them) stays valid.
func fuzzKeys(t testing.TB) (*Sealer, *Opener) {
	t.Helper()
	devKey := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	priv, err := hpke.MLKEM768X25519().DeriveKeyPair([]byte("palmd fuzz matcher key material 0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	mk := &MatcherPrivateKey{Suite: SuiteHybrid, ID: keyIDOf(SuiteHybrid, priv.PublicKey().Bytes()), key: priv}
	now := func() time.Time { return time.Unix(1_800_000_000, 0) }
	s := &Sealer{DeviceID: "fuzz-dev", DeviceKey: devKey, Matcher: mk.Public(), Now: now}
	o := &Opener{
		Keys: map[KeyID]*MatcherPrivateKey{mk.ID: mk},
		Devices: func(id string) (ed25519.PublicKey, bool) {
			return devKey.Public().(ed25519.PublicKey), id == "fuzz-dev"
		},
		Now: now,
	}
	return s, o
}

// TestWriteFuzzCorpus regenerates the seed corpora when PALMD_WRITE_CORPUS
// is set (go test -run WriteFuzzCorpus ./template with the variable set).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PALMD_WRITE_CORPUS") == "" {
		t.Skip("set PALMD_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	s, _ := fuzzKeys(t)
	tpl, _ := sample().MarshalBinary()
	env, _, err := s.Seal(sample(), PurposeIdentify, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	enr, _, _ := s.Seal(sample(), PurposeEnroll, [16]byte{7})
	write := func(fuzzer, name string, b []byte) {
		dir := filepath.Join("testdata", "fuzz", fuzzer)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("FuzzUnmarshalTemplate", "valid", tpl)
	write("FuzzUnmarshalTemplate", "truncated", tpl[:100])
	write("FuzzOpenEnvelope", "valid-identify", env)
	write("FuzzOpenEnvelope", "valid-enroll", enr)
	write("FuzzOpenEnvelope", "truncated", env[:len(env)/2])
}

func FuzzUnmarshalTemplate(f *testing.F) {
	good, _ := sample().MarshalBinary()
	f.Add(good)
	f.Add([]byte("PTPL"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var tp Template
		if err := tp.UnmarshalBinary(b); err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes.
		back, err := tp.MarshalBinary()
		if err != nil || string(back) != string(b) {
			t.Fatalf("decoded template does not re-encode identically: %v", err)
		}
	})
}

func FuzzOpenEnvelope(f *testing.F) {
	s, _ := fuzzKeys(f)
	env, _, _ := s.Seal(sample(), PurposeIdentify, [16]byte{})
	f.Add(env)
	f.Add([]byte("PENV\x01\x01\x01\x03abc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, o := fuzzKeys(t)
		tp, h, err := o.Open(b)
		if err != nil {
			if reasonOf(err) < 0 {
				t.Fatalf("rejection without a reason: %v", err)
			}
			return
		}
		if tp.Version != AlgorithmVersion || !ValidDeviceID(h.DeviceID) {
			t.Fatalf("accepted envelope with bad content: %+v", h)
		}
	})
}
