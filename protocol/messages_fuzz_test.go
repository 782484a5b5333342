package protocol

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// signRaw signs any inner bytes as a result or command would be signed,
// so the fuzzer's mutations reach the JSON decoding and field checks that
// lie past the signature.
func signRaw(ctx []byte, key ed25519.PrivateKey, inner []byte) []byte {
	sig := ed25519.Sign(key, append(append([]byte{}, ctx...), inner...))
	b, _ := json.Marshal(signed{Payload: base64.StdEncoding.EncodeToString(inner), Sig: base64.StdEncoding.EncodeToString(sig)})
	return b
}

var fuzzSigner = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// FuzzVerifyResult: any inner JSON, validly signed, and any outer bytes,
// unsigned: no panic; an accepted result has valid fields.
func FuzzVerifyResult(f *testing.F) {
	f.Add([]byte(`{"device":"d","request_id":"000102030405060708090a0b0c0d0e0f","decision":"match","expires":1}`), []byte(`{}`))
	f.Add([]byte(`{"decision":"error","request_id":"zz","expires":-1}`), []byte(`{"payload":"","sig":""}`))
	pub := fuzzSigner.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, inner, outer []byte) {
		for _, msg := range [][]byte{signRaw(resultContext, fuzzSigner, inner), outer} {
			r, err := VerifyResult(pub, msg)
			if err != nil {
				continue
			}
			if !r.Decision.valid() || !validHexID(r.RequestID) || r.Expires <= 0 {
				t.Fatalf("accepted a result with bad fields: %+v", r)
			}
		}
	})
}

// FuzzVerifyCommand: as FuzzVerifyResult, for commands.
func FuzzVerifyCommand(f *testing.F) {
	f.Add([]byte(`{"device":"d","id":"c1","kind":"enroll","session":"000102030405060708090a0b0c0d0e0f","samples":3,"expires":1,"boot":"000102030405060708090a0b0c0d0e0f"}`), []byte(`{}`))
	f.Add([]byte(`{"kind":"selftest","id":"x","expires":5,"boot":""}`), []byte(`[]`))
	pub := fuzzSigner.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, inner, outer []byte) {
		for _, msg := range [][]byte{signRaw(commandContext, fuzzSigner, inner), outer} {
			c, err := VerifyCommand(pub, msg)
			if err != nil {
				continue
			}
			if c.ID == "" || !validHexID(c.Boot) || (c.Kind == CommandEnroll && (!validHexID(c.Session) || c.Samples < 1 || c.Samples > 10)) {
				t.Fatalf("accepted a command with bad fields: %+v", c)
			}
		}
	})
}

// FuzzParseStatus: any bytes; an accepted status has a known state.
func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"state":"online","version":"v1","ts":1,"boot":"00"}`))
	f.Add([]byte(`{"state":"gone"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStatus(b)
		if err == nil && s.State != "online" && s.State != "offline" && s.State != "degraded" {
			t.Fatalf("accepted state %q", s.State)
		}
	})
}

// FuzzPeekCommand: any inner JSON (signed, so it looks like a command)
// and any outer bytes: no panic, and an id read is 1–64 printable ASCII
// characters (what an ack may echo) and a kind one of the commands.
func FuzzPeekCommand(f *testing.F) {
	f.Add([]byte(`{"id":"c1","kind":"enroll"}`), []byte(`{}`))
	f.Add([]byte(`{"id":"a\nb","kind":"reboot"}`), []byte(`{"payload":"e30=","sig":""}`))
	f.Fuzz(func(t *testing.T, inner, outer []byte) {
		for _, msg := range [][]byte{signRaw(commandContext, fuzzSigner, inner), outer} {
			id, kind := PeekCommand(msg)
			if id == "" {
				continue
			}
			if len(id) > 64 {
				t.Fatalf("id of %d bytes", len(id))
			}
			for _, r := range id {
				if r < 0x21 || r > 0x7e {
					t.Fatalf("id %q has %q", id, r)
				}
			}
			if kind != "" && kind != CommandEnroll && kind != CommandSelfTest {
				t.Fatalf("kind %q", kind)
			}
		}
	})
}
