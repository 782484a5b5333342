package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/palmd/palmd/clock"
	"github.com/palmd/palmd/template"
)

// fuzzKeys are fixed so that the seed corpus in testdata/ (valid envelopes
// among them) stays valid.
func fuzzKeys(t testing.TB) (*Sealer, *Opener) {
	t.Helper()
	devKey := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	mk, err := fuzzMatcherKey()
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Func(func() time.Time { return time.Unix(1_800_000_000, 0) })
	s := &Sealer{DeviceID: "fuzz-dev", DeviceKey: devKey, Matcher: mk.Public(), Clock: now}
	o := &Opener{
		Keys: map[KeyID]*MatcherPrivateKey{mk.ID: mk},
		Devices: func(id string) (ed25519.PublicKey, bool) {
			return devKey.Public().(ed25519.PublicKey), id == "fuzz-dev"
		},
		Clock: now,
	}
	return s, o
}

// fuzzMatcherKey derives the fuzzers' matcher key once per process:
// deriving an ML-KEM key pair for every input would slow fuzzing tenfold.
var fuzzMatcherKey = sync.OnceValues(func() (*MatcherPrivateKey, error) {
	priv, err := hpke.MLKEM768X25519().DeriveKeyPair([]byte("palmd fuzz matcher key material 0123456789"))
	if err != nil {
		return nil, err
	}
	return &MatcherPrivateKey{Suite: SuiteHybrid, ID: keyIDOf(SuiteHybrid, priv.PublicKey().Bytes()), key: priv}, nil
})

// TestWriteFuzzCorpus regenerates the seed corpora when PALMD_WRITE_CORPUS
// is set (go test -run WriteFuzzCorpus ./template with the variable set).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PALMD_WRITE_CORPUS") == "" {
		t.Skip("set PALMD_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	s, _ := fuzzKeys(t)
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
	write("FuzzOpenEnvelope", "valid-identify", env)
	write("FuzzOpenEnvelope", "valid-enroll", enr)
	write("FuzzOpenEnvelope", "truncated", env[:len(env)/2])
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
		if tp.Version != template.AlgorithmVersion || !ValidDeviceID(h.DeviceID) {
			t.Fatalf("accepted envelope with bad content: %+v", h)
		}
	})
}

// sealRaw builds a correctly signed and sealed envelope around any header
// fields and any plaintext body, so the fuzzer's mutations reach what lies
// past the signature: expiry and skew checks, the replay window,
// decryption and template decoding.
func sealRaw(t *testing.T, s *Sealer, h Header, plain []byte) []byte {
	t.Helper()
	hdr := h.appendTo(nil)
	enc, snd, err := hpke.NewSender(s.Matcher.key, s.Matcher.Suite.kdf(), s.Matcher.Suite.aead(), hdr)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := snd.Seal(hdr, plain)
	if err != nil {
		t.Fatal(err)
	}
	env := append(hdr, make([]byte, 4)...)
	binary.BigEndian.PutUint32(env[len(hdr):], uint32(len(enc)+len(ct)))
	env = append(append(env, enc...), ct...)
	return append(env, ed25519.Sign(s.DeviceKey, signedMessage(env))...)
}

// FuzzSignedEnvelope signs inside the fuzz function: every input is a
// validly signed envelope from a registered device, with fuzzed header
// fields (purpose, session, sequence, times) and a fuzzed body, opened
// twice (the second time must be a replay or the same rejection).
func FuzzSignedEnvelope(f *testing.F) {
	good, _ := sample().MarshalBinary()
	f.Add(good, uint8(0), uint64(1), int64(0), int64(10_000), []byte{})
	f.Add(good[:50], uint8(1), uint64(1<<63), int64(-5000), int64(1), []byte{7})
	f.Add([]byte{}, uint8(9), uint64(0), int64(60_000), int64(-1), make([]byte, 16))
	f.Fuzz(func(t *testing.T, body []byte, purpose uint8, seq uint64, captureOffMs, lifeMs int64, session []byte) {
		s, o := fuzzKeys(t)
		now := s.Clock.Now()
		h := Header{Suite: s.Matcher.Suite, Purpose: Purpose(purpose), DeviceID: s.DeviceID, MatcherKeyID: s.Matcher.ID, Sequence: seq,
			CaptureTime: now.Add(time.Duration(captureOffMs) * time.Millisecond)}
		h.Expiry = h.CaptureTime.Add(time.Duration(lifeMs) * time.Millisecond)
		copy(h.SessionID[:], session)
		env := sealRaw(t, s, h, body)
		if _, err := PeekHeader(env); err != nil {
			return // a header the format cannot carry (e.g. an unknown purpose)
		}
		tp, got, err := o.Open(env)
		if err != nil {
			if reasonOf(err) < 0 {
				t.Fatalf("rejection without a reason: %v", err)
			}
			if reasonOf(err) <= ReasonSignature {
				t.Fatalf("a validly signed envelope rejected as %v", reasonOf(err))
			}
			return
		}
		if tp.Version != template.AlgorithmVersion || got.Sequence != seq || !got.Expiry.After(now) {
			t.Fatalf("accepted envelope with bad content: %+v", got)
		}
		// It re-encodes to itself, but for the algorithm version: an older
		// version with the same bits is read as today's, its offset left
		// for the matcher to measure (zero, as its writer left those
		// bytes).
		want := bytes.Clone(body)
		want[template.WireAlgorithmOffset] = template.AlgorithmVersion
		if back, err := tp.MarshalBinary(); err != nil || string(back) != string(want) {
			t.Fatalf("accepted body does not re-encode to itself: %v", err)
		}
		if _, _, err := o.Open(env); reasonOf(err) != ReasonReplay {
			t.Fatalf("second opening: %v, want a replay", err)
		}
	})
}

// FuzzPeekHeader: any bytes; a header that parses re-encodes to the
// envelope's own header bytes.
func FuzzPeekHeader(f *testing.F) {
	s, _ := fuzzKeys(f)
	env, _, _ := s.Seal(sample(), PurposeEnroll, [16]byte{3})
	f.Add(env)
	f.Add(env[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := PeekHeader(b)
		if err != nil {
			return
		}
		enc := h.appendTo(nil)
		if len(enc) > len(b) || string(enc) != string(b[:len(enc)]) {
			t.Fatalf("header %+v does not re-encode to the envelope's bytes", h)
		}
	})
}
