package matcher

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/template"
)

// FuzzMatcher drives the capture and command handling past every
// signature: a validly signed command with fuzzed content, then a validly
// signed and sealed capture with a fuzzed template, purpose and session,
// then a copy of it with one byte changed. No panic; a subject only ever
// comes from a session a verified command opened; a changed copy is never
// decided.
func FuzzMatcher(f *testing.F) {
	f.Add([]byte(`{"device":"term-m1","id":"c","kind":"enroll","session":"07070000000000000000000000000000","samples":3,"expires":9999999999999,"boot":"00000000000000000000000000000000"}`),
		[]byte("planes"), true, []byte{7, 7}, uint16(100))
	f.Add([]byte(`{}`), []byte{}, false, []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, cmdInner, planes []byte, enroll bool, session []byte, flip uint16) {
		r := newRig(t)
		sig := ed25519.Sign(r.cmdKey, append([]byte("palmd command v1\x00"), cmdInner...))
		cmd, _ := json.Marshal(map[string]string{"payload": base64.StdEncoding.EncodeToString(cmdInner), "sig": base64.StdEncoding.EncodeToString(sig)})
		opened := r.m.HandleCommand(cmd, "term-m1") == nil

		tp := palm(1, 0, 0)
		for i := 0; i+4 <= len(planes) && i/4 < len(tp.Planes[0][0]); i += 4 {
			tp.Planes[0][0][i/4] = binary.BigEndian.Uint32(planes[i:])
		}
		purpose, sid := protocol.PurposeIdentify, [16]byte{}
		if enroll {
			purpose = protocol.PurposeEnroll
			copy(sid[:], session)
			sid[15] |= 1 // an enrolment session id is never zero
		}
		env, _, err := r.sealer.Seal(tp, purpose, sid)
		if err != nil {
			t.Fatal(err)
		}
		tampered := append([]byte(nil), env...)
		_, res, err := r.m.Handle(env)
		if err == nil && res.Decision == protocol.DecisionEnrolled && !opened {
			t.Fatal("enrolled without a verified command")
		}
		if len(tampered) > 0 && flip > 0 {
			tampered[int(flip)%len(tampered)] ^= 0x5a
			before := r.m.Decisions()
			if _, _, err := r.m.Handle(tampered); err == nil {
				t.Fatal("a changed copy of a capture was decided")
			}
			if sum(r.m.Decisions()) != sum(before) {
				t.Fatal("a changed copy changed the decisions")
			}
		}
	})
}

func sum(m map[protocol.Decision]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}

// FuzzDecodeGallery feeds any plaintext to the gallery decoder (the file is
// authenticated, so this is what a key holder could write): no panic, and
// whatever decodes re-encodes to a file that decodes to as much.
func FuzzDecodeGallery(f *testing.F) {
	good, _ := encodeGallery([]Entry{{Subject: "abc", Templates: []*template.Template{palm(1, 0, 0)}}},
		map[[16]byte]*session{{1}: {device: "term-m1", want: 3, expires: time.UnixMilli(1), samples: []*template.Template{palm(2, 0, 0)}}})
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, sessions, err := decodeGallery(b)
		if err != nil {
			return
		}
		again, err := encodeGallery(entries, sessions)
		if err != nil {
			return // a session the format cannot carry again is refused, not mangled
		}
		e2, s2, err := decodeGallery(again)
		if err != nil || len(e2) != len(entries) || len(s2) != len(sessions) {
			t.Fatalf("re-encoded gallery: %v (%d/%d entries, %d/%d sessions)", err, len(e2), len(entries), len(s2), len(sessions))
		}
	})
}
