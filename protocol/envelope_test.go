package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/palmd/palmd/clock"
	"github.com/palmd/palmd/template"
)

type fixture struct {
	devPub  ed25519.PublicKey
	devKey  ed25519.PrivateKey
	matcher *MatcherPrivateKey
	sealer  *Sealer
	opener  *Opener
	now     time.Time
}

func newFixture(t testing.TB, suite Suite) *fixture {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := GenerateMatcherKey(suite)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{devPub: pub, devKey: priv, matcher: mk, now: time.Unix(1_800_000_000, 0)}
	clk := clock.Func(func() time.Time { return f.now })
	f.sealer = &Sealer{DeviceID: "term-0001", DeviceKey: priv, Matcher: mk.Public(), Clock: clk}
	f.opener = &Opener{
		Keys: map[KeyID]*MatcherPrivateKey{mk.ID: mk},
		Devices: func(id string) (ed25519.PublicKey, bool) {
			if id == "term-0001" {
				return pub, true
			}
			return nil, false
		},
		Clock: clk,
	}
	return f
}

func sample() *template.Template {
	return testTemplate(11)
}

func reasonOf(err error) Reason {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return -1
}

func TestSealOpenRoundTrip(t *testing.T) {
	for _, suite := range []Suite{SuiteHybrid, SuiteX25519} {
		f := newFixture(t, suite)
		in := sample()
		want := *in
		env, h, err := f.sealer.Seal(in, PurposeIdentify, [16]byte{})
		if err != nil {
			t.Fatal(err)
		}
		if *in != (template.Template{}) {
			t.Errorf("%v: Seal did not zero the template", suite)
		}
		if bytes.Contains(env, mustMarshal(t, &want)[12:12+64]) {
			t.Errorf("%v: plaintext features visible in the envelope", suite)
		}
		got, gh, err := f.opener.Open(env)
		if err != nil {
			t.Fatalf("%v: %v", suite, err)
		}
		if *got != want || gh.RequestID != h.RequestID || gh.DeviceID != "term-0001" || gh.Suite != suite {
			t.Fatalf("%v: round trip changed the template or header", suite)
		}
		t.Logf("%v envelope: %d bytes", suite, len(env))
		// Enrolment carries its session.
		sess := [16]byte{1, 2, 3}
		env, _, err = f.sealer.Seal(sample(), PurposeEnroll, sess)
		if err != nil {
			t.Fatal(err)
		}
		if _, gh, err := f.opener.Open(env); err != nil || gh.SessionID != sess || gh.Purpose != PurposeEnroll {
			t.Fatalf("%v enrol: %v %+v", suite, err, gh)
		}
	}
}

func mustMarshal(t *testing.T, tp *template.Template) []byte {
	b, err := tp.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealRejectsBadRequests(t *testing.T) {
	f := newFixture(t, SuiteX25519)
	if _, _, err := f.sealer.Seal(sample(), PurposeEnroll, [16]byte{}); err == nil {
		t.Error("enrol without session accepted")
	}
	if _, _, err := f.sealer.Seal(sample(), PurposeIdentify, [16]byte{9}); err == nil {
		t.Error("identify with a session accepted")
	}
	bad := &Sealer{DeviceID: "bad/id", DeviceKey: f.devKey, Matcher: f.matcher.Public()}
	tp := sample()
	if _, _, err := bad.Seal(tp, PurposeIdentify, [16]byte{}); err == nil {
		t.Error("device id with '/' accepted")
	}
	if *tp != (template.Template{}) {
		t.Error("failed Seal did not zero the template")
	}
}

// TestEveryTamperedByteIsRejected flips each byte of an envelope in turn
// and checks the rejection reason for the region the byte is in.
func TestEveryTamperedByteIsRejected(t *testing.T) {
	f := newFixture(t, SuiteX25519)
	env, h, err := f.sealer.Seal(sample(), PurposeIdentify, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	idEnd := 8 + len(h.DeviceID)
	headerEnd := idEnd + 64
	sealedEnd := len(env) - ed25519.SignatureSize
	for i := range env {
		bad := bytes.Clone(env)
		bad[i] ^= 0x5a
		_, _, err := f.opener.Open(bad)
		if err == nil {
			t.Fatalf("byte %d tampered: accepted", i)
		}
		r := reasonOf(err)
		var ok bool
		switch {
		case i < 8: // magic, version, suite, purpose, id length
			ok = r == ReasonFormat || r == ReasonSignature
		case i < idEnd: // device id
			ok = r == ReasonFormat || r == ReasonUnknownDevice
		case i < headerEnd: // key id, session, request, sequence, times
			ok = r == ReasonSignature || r == ReasonFormat // session id on identify is a format error
		case i < headerEnd+4: // sealed length
			ok = r == ReasonFormat
		default: // ciphertext and signature
			ok = r == ReasonSignature
		}
		if !ok {
			t.Errorf("byte %d of %d (header %d, sealed to %d): rejected for %v", i, len(env), headerEnd, sealedEnd, r)
		}
	}
}

func TestOpenRejections(t *testing.T) {
	f := newFixture(t, SuiteHybrid)
	seal := func() []byte {
		env, _, err := f.sealer.Seal(sample(), PurposeIdentify, [16]byte{})
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	// Expired.
	env := seal()
	f.now = f.now.Add(DefaultLifetime)
	if _, _, err := f.opener.Open(env); reasonOf(err) != ReasonExpired {
		t.Errorf("expired: %v", err)
	}
	// Captured in the future (device clock far ahead).
	f.sealer.Clock = clock.Func(func() time.Time { return f.now.Add(2 * time.Minute) })
	env = seal()
	if _, _, err := f.opener.Open(env); reasonOf(err) != ReasonClockSkew {
		t.Errorf("future: %v", err)
	}
	f.sealer.Clock = clock.Func(func() time.Time { return f.now })
	// Implausible lifetime.
	f.sealer.Lifetime = time.Hour
	env = seal()
	if _, _, err := f.opener.Open(env); reasonOf(err) != ReasonClockSkew {
		t.Errorf("one-hour lifetime: %v", err)
	}
	f.sealer.Lifetime = 0
	// Replay: the same envelope twice, and an old sequence number.
	old := seal()
	env = seal()
	if _, _, err := f.opener.Open(env); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.opener.Open(env); reasonOf(err) != ReasonReplay {
		t.Errorf("replay: %v", err)
	}
	if _, _, err := f.opener.Open(old); err != nil {
		t.Errorf("older but unseen sequence inside the window rejected: %v", err)
	}
	for i := 0; i < replayWindowSize+1; i++ {
		if _, _, err := f.opener.Open(seal()); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.opener.Open(old); reasonOf(err) != ReasonReplay {
		t.Errorf("sequence below the window: %v", err)
	}
	// Wrong matcher key: sealed to a key this opener does not hold.
	other, _ := GenerateMatcherKey(SuiteHybrid)
	f.sealer.Matcher = other.Public()
	if _, _, err := f.opener.Open(seal()); reasonOf(err) != ReasonMatcherKey {
		t.Errorf("unknown matcher key: %v", err)
	}
	// A key under the right id that is not the right key: decryption fails.
	f.opener.Keys[other.ID] = f.matcher
	f.matcher.ID = other.ID
	if _, _, err := f.opener.Open(seal()); reasonOf(err) != ReasonDecrypt {
		t.Errorf("wrong private key: %v", err)
	}
	// Unknown device.
	f2 := newFixture(t, SuiteHybrid)
	f2.sealer.DeviceID = "term-9999"
	env, _, _ = f2.sealer.Seal(sample(), PurposeIdentify, [16]byte{})
	if _, _, err := f2.opener.Open(env); reasonOf(err) != ReasonUnknownDevice {
		t.Errorf("unknown device: %v", err)
	}
	// Signed by another key.
	_, stranger, _ := ed25519.GenerateKey(nil)
	f2.sealer.DeviceID, f2.sealer.DeviceKey = "term-0001", stranger
	env, _, _ = f2.sealer.Seal(sample(), PurposeIdentify, [16]byte{})
	if _, _, err := f2.opener.Open(env); reasonOf(err) != ReasonSignature {
		t.Errorf("wrong device key: %v", err)
	}
	_, counts := f.opener.Counts()
	for _, r := range []Reason{ReasonExpired, ReasonClockSkew, ReasonReplay, ReasonMatcherKey, ReasonDecrypt} {
		if counts[r] == 0 {
			t.Errorf("reason %v not counted", r)
		}
	}
}

// TestOpenRejectsBadTemplateBody signs and seals a body that is not a
// template, as only a broken or hostile device would.
func TestOpenRejectsBadTemplateBody(t *testing.T) {
	f := newFixture(t, SuiteX25519)
	h := Header{Suite: SuiteX25519, Purpose: PurposeIdentify, DeviceID: "term-0001", MatcherKeyID: f.matcher.ID,
		Sequence: 1, CaptureTime: f.now, Expiry: f.now.Add(time.Second)}
	hdr := h.appendTo(nil)
	enc, snd, err := hpke.NewSender(f.matcher.Public().key, SuiteX25519.kdf(), SuiteX25519.aead(), hdr)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := snd.Seal(hdr, []byte("not a template"))
	env := binary.BigEndian.AppendUint32(bytes.Clone(hdr), uint32(len(enc)+len(ct)))
	env = append(append(env, enc...), ct...)
	env = append(env, ed25519.Sign(f.devKey, signedMessage(env))...)
	if _, _, err := f.opener.Open(env); reasonOf(err) != ReasonTemplate {
		t.Fatalf("bad body: %v", err)
	}
}

func TestOpenConcurrentReplayRace(t *testing.T) {
	f := newFixture(t, SuiteX25519)
	env, _, _ := f.sealer.Seal(sample(), PurposeIdentify, [16]byte{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := f.opener.Open(env); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("one envelope opened %d times concurrently", ok)
	}
}

func TestKeyIDAndSuiteParsing(t *testing.T) {
	mk, _ := GenerateMatcherKey(SuiteX25519)
	id, err := ParseKeyID(mk.ID.String())
	if err != nil || id != mk.ID {
		t.Fatalf("key id round trip: %v", err)
	}
	for _, bad := range []string{"", "zz", "0123456789abcdef00"} {
		if _, err := ParseKeyID(bad); err == nil {
			t.Errorf("key id %q accepted", bad)
		}
	}
	raw, _ := mk.Bytes()
	back, err := ParseMatcherPrivateKey(SuiteX25519, raw)
	if err != nil || back.ID != mk.ID {
		t.Fatalf("private key round trip: %v", err)
	}
	pub, err := ParseMatcherPublicKey(SuiteX25519, mk.Public().Bytes())
	if err != nil || pub.ID != mk.ID {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := ParseMatcherPublicKey(SuiteHybrid, []byte{1, 2, 3}); err == nil {
		t.Error("short hybrid public key accepted")
	}
	for _, n := range []string{"x25519", "mlkem768x25519"} {
		if s, err := ParseSuite(n); err != nil || s.String() != n {
			t.Errorf("suite %q: %v %v", n, s, err)
		}
	}
	if _, err := ParseSuite("rsa"); err == nil {
		t.Error("suite rsa accepted")
	}
}

func BenchmarkSeal(b *testing.B) {
	for _, suite := range []Suite{SuiteHybrid, SuiteX25519} {
		b.Run(suite.String(), func(b *testing.B) {
			f := newFixture(b, suite)
			src := sample()
			var size int
			for i := 0; i < b.N; i++ {
				tp := *src
				env, _, err := f.sealer.Seal(&tp, PurposeIdentify, [16]byte{})
				if err != nil {
					b.Fatal(err)
				}
				size = len(env)
			}
			b.ReportMetric(float64(size), "bytes/envelope")
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, suite := range []Suite{SuiteHybrid, SuiteX25519} {
		b.Run(suite.String(), func(b *testing.B) {
			f := newFixture(b, suite)
			envs := make([][]byte, b.N)
			for i := range envs {
				envs[i], _, _ = f.sealer.Seal(sample(), PurposeIdentify, [16]byte{})
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := f.opener.Open(envs[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestOpenLeavesOlderTemplatesUncentred: a template from a device still on
// algorithm 5 opens with its bits and no offset, for the matcher to centre
// once (template.Centre), not on reading and again after.
func TestOpenLeavesOlderTemplatesUncentred(t *testing.T) {
	s, o := fuzzKeys(t)
	want := sample()
	want.Offset = 0
	body, err := want.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if c := *want; template.Centre(&c) != nil || c.Offset == 0 {
		t.Fatal("the sample centres to offset zero: the test would not see it centred")
	}
	body[template.WireAlgorithmOffset] = template.AlgorithmVersion - 1
	now := s.Clock.Now()
	h := Header{Suite: s.Matcher.Suite, Purpose: PurposeIdentify, DeviceID: s.DeviceID, MatcherKeyID: s.Matcher.ID, Sequence: 1,
		CaptureTime: now, Expiry: now.Add(time.Second)}
	got, _, err := o.Open(sealRaw(t, s, h, body))
	if err != nil {
		t.Fatal(err)
	}
	if got.Offset != 0 || got.Planes != want.Planes || got.Mask != want.Mask || got.Version != template.AlgorithmVersion {
		t.Errorf("opened version %d, offset %d, bits equal %v; want version %d, offset 0, the same bits",
			got.Version, got.Offset, got.Planes == want.Planes && got.Mask == want.Mask, template.AlgorithmVersion)
	}
}
