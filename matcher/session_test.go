package matcher

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/palmd/palmd/clock"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor/sensortest"
	"github.com/palmd/palmd/template"
	"github.com/prometheus/client_golang/prometheus"
)

// TestEnrolmentSessions: a session exists only through a signed enrol
// command, belongs to its device, is used once, and makes one subject out
// of one palm only; every refusal is counted by reason.
func TestEnrolmentSessions(t *testing.T) {
	type sample struct {
		palm   uint64
		device string
	}
	for _, tc := range []struct {
		name       string
		command    string // device the command names; "" for no command
		samples    []sample
		advance    time.Duration // before the samples
		want       []protocol.Decision
		refusal    string
		enrolled   int
		replayCmd  bool   // the command published again after the samples
		enrolledAs uint64 // a palm enrolled before, as subject "earlier"
	}{
		{name: "genuine", command: "term-m1", samples: []sample{{1, "term-m1"}, {1, "term-m1"}, {1, "term-m1"}},
			want: []protocol.Decision{protocol.DecisionRetry, protocol.DecisionRetry, protocol.DecisionEnrolled}, enrolled: 1},
		{name: "no command", samples: []sample{{1, "term-m1"}},
			want: []protocol.Decision{protocol.DecisionError}, refusal: RefusedNoSession},
		{name: "three people", command: "term-m1", samples: []sample{{1, "term-m1"}, {2, "term-m1"}, {3, "term-m1"}},
			want:    []protocol.Decision{protocol.DecisionRetry, protocol.DecisionError, protocol.DecisionError},
			refusal: RefusedInconsistent},
		{name: "another device's session", command: "term-m9", samples: []sample{{1, "term-m1"}},
			want: []protocol.Decision{protocol.DecisionError}, refusal: RefusedSessionDevice},
		{name: "session expired", command: "term-m1", samples: []sample{{1, "term-m1"}}, advance: time.Minute + DefaultSessionLifetime + time.Second,
			want: []protocol.Decision{protocol.DecisionError}, refusal: RefusedSessionExpired},
		{name: "replayed command and samples after completion", command: "term-m1",
			samples: []sample{{1, "term-m1"}, {1, "term-m1"}, {1, "term-m1"}, {4, "term-m1"}, {4, "term-m1"}, {4, "term-m1"}},
			want: []protocol.Decision{protocol.DecisionRetry, protocol.DecisionRetry, protocol.DecisionEnrolled,
				protocol.DecisionError, protocol.DecisionError, protocol.DecisionError},
			refusal: RefusedSessionClosed, enrolled: 1, replayCmd: true},
		{name: "palm already enrolled as somebody else", command: "term-m1", enrolledAs: 1,
			samples: []sample{{1, "term-m1"}, {1, "term-m1"}, {1, "term-m1"}},
			want:    []protocol.Decision{protocol.DecisionRetry, protocol.DecisionRetry, protocol.DecisionError},
			refusal: RefusedAlreadyEnrolled, enrolled: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			now := time.Now()
			r.m.cfg.Clock = clock.Func(func() time.Time { return now })
			r.m.Opener.Clock = r.m.cfg.Clock
			r.sealer.Clock = r.m.cfg.Clock
			if tc.enrolledAs != 0 {
				if err := r.m.Add(Entry{Subject: "earlier", Templates: []*template.Template{palm(tc.enrolledAs, 0.05, 5)}}); err != nil {
					t.Fatal(err)
				}
			}
			sess := [16]byte{7, 7}
			cmd := []byte(nil)
			if tc.command != "" {
				cmd = r.command(t, tc.command, sess, 3)
				if err := r.m.HandleCommand(cmd, tc.command); err != nil {
					t.Fatal(err)
				}
			}
			now = now.Add(tc.advance)
			sealers := map[string]*protocol.Sealer{}
			for i, s := range tc.samples {
				if i == 3 && tc.replayCmd {
					if err := r.m.HandleCommand(cmd, tc.command); err == nil {
						t.Fatal("a replayed enrol command reopened a completed session")
					}
					if r.m.Refusals()[RefusedCmdReplay] != 1 {
						t.Errorf("replayed command not counted: %v", r.m.Refusals())
					}
				}
				sealer := sealers[s.device]
				if sealer == nil {
					sealer = &protocol.Sealer{DeviceID: s.device, DeviceKey: r.sealer.DeviceKey, Matcher: r.sealer.Matcher, Clock: r.m.cfg.Clock}
					sealers[s.device] = sealer
				}
				env, _, err := sealer.Seal(palm(s.palm, 0.12, uint64(i)), protocol.PurposeEnroll, sess)
				if err != nil {
					t.Fatal(err)
				}
				_, res, err := r.m.Handle(env)
				if err != nil {
					t.Fatalf("sample %d: %v", i, err)
				}
				if res.Decision != tc.want[i] {
					t.Errorf("sample %d: %s, want %s", i, res.Decision, tc.want[i])
				}
			}
			if r.m.Size() != tc.enrolled {
				t.Errorf("gallery holds %d subjects, want %d", r.m.Size(), tc.enrolled)
			}
			if tc.refusal != "" && r.m.Refusals()[tc.refusal] == 0 {
				t.Errorf("refusal %q not counted: %v", tc.refusal, r.m.Refusals())
			}
			if subject, d := r.m.Identify(palm(1, 0.1, 99)); tc.enrolled == 1 && (subject == "" || d >= r.m.Threshold()) {
				t.Errorf("another capture of the enrolled palm: %q at %.3f", subject, d)
			}
		})
	}
}

// TestCommandsRefused: commands that do not verify, name another device
// than their topic, or have expired open nothing, and are counted.
func TestCommandsRefused(t *testing.T) {
	r := newRig(t)
	other := newRig(t)
	good := r.command(t, "term-m1", [16]byte{1}, 3)
	expired, _ := protocol.SignCommand(r.cmdKey, protocol.Command{Device: "term-m1", ID: "x", Kind: protocol.CommandEnroll,
		Session: "000102030405060708090a0b0c0d0e0f", Samples: 3, Expires: time.Now().Add(-time.Second).UnixMilli(), Boot: testBoot})
	for _, tc := range []struct {
		name, topic, reason string
		msg                 []byte
	}{
		{"forged", "term-m1", RefusedCmdSignature, other.command(t, "term-m1", [16]byte{2}, 3)},
		{"garbage", "term-m1", RefusedCmdMalformed, []byte("{}")},
		{"wrong topic", "term-m9", RefusedCmdTopic, good},
		{"expired", "term-m1", RefusedCmdExpired, expired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.m.HandleCommand(tc.msg, tc.topic); err == nil {
				t.Fatal("accepted")
			}
			if r.m.Refusals()[tc.reason] == 0 {
				t.Errorf("not counted as %s: %v", tc.reason, r.m.Refusals())
			}
		})
	}
	if len(r.m.sessions) != 0 {
		t.Errorf("%d sessions opened by refused commands", len(r.m.sessions))
	}
	m, _ := New(Config{ResultKey: r.m.cfg.ResultKey}, r.m.Opener)
	if err := m.HandleCommand(good, "term-m1"); !errors.Is(err, ErrNoCommandKey) {
		t.Errorf("without a command key: %v", err)
	}
}

// TestRepublishedCaptureAnsweredAgain: a byte-identical copy of an answered
// capture gets the same signed answer (counted as a duplicate); a tampered
// copy with the same request id is a counted signature rejection.
func TestRepublishedCaptureAnsweredAgain(t *testing.T) {
	r := newRig(t)
	env := r.seal(t, palm(3, 0.1, 1), protocol.PurposeIdentify, [16]byte{})
	keep := append([]byte(nil), env...)
	first, _, err := r.m.Handle(env)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := r.m.Handle(keep)
	if !errors.Is(err, ErrDuplicate) || !bytes.Equal(first, again) {
		t.Fatalf("republished copy: %v, same answer %v", err, bytes.Equal(first, again))
	}
	if r.m.Refusals()[RefusedDuplicate] != 1 {
		t.Errorf("duplicate not counted: %v", r.m.Refusals())
	}
	tampered := append([]byte(nil), keep...)
	tampered[len(tampered)-100] ^= 1
	if _, _, err := r.m.Handle(tampered); !errors.Is(err, &protocol.RejectError{Reason: protocol.ReasonSignature}) {
		t.Fatalf("tampered copy: %v", err)
	}
	if _, rej := r.m.Opener.Counts(); rej[protocol.ReasonSignature] != 1 {
		t.Errorf("tampered copy not counted: %v", rej)
	}
	if d := r.m.Decisions(); d[protocol.DecisionNoMatch] != 1 {
		t.Errorf("decided %v: the copies were decided again", d)
	}
}

// TestGalleryV2StillReads: a gallery written before sessions were bound to
// commands keeps its subjects.
func TestGalleryV2StillReads(t *testing.T) {
	key := bytes.Repeat([]byte{5}, 32)
	var plain []byte
	plain = binary.BigEndian.AppendUint32(plain, 1)
	plain = binary.BigEndian.AppendUint16(plain, 3)
	plain = append(plain, "abc"...)
	plain = binary.BigEndian.AppendUint16(plain, 1)
	plain, _ = palm(1, 0, 0).AppendBinary(plain)
	plain = binary.BigEndian.AppendUint32(plain, 1) // one v2 session: id, templates
	plain = append(plain, make([]byte, 16)...)
	plain = binary.BigEndian.AppendUint16(plain, 0)
	aead, _ := galleryAEAD(key)
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	file := aead.Seal(append(append([]byte{}, galleryMagicV2...), nonce...), nonce, plain, galleryMagicV2)
	path := filepath.Join(t.TempDir(), "gallery")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	if err := r.m.UseStore(path, key); err != nil {
		t.Fatal(err)
	}
	if r.m.Size() != 1 || len(r.m.sessions) != 0 {
		t.Fatalf("v2 gallery: %d subjects, %d sessions", r.m.Size(), len(r.m.sessions))
	}
}

// TestCollectorExportsRefusals: the Prometheus collector carries the
// refusals by reason beside the envelope rejections.
func TestCollectorExportsRefusals(t *testing.T) {
	r := newRig(t)
	_ = r.m.HandleCommand([]byte("{}"), "term-m1")
	families, err := prometheusRegistry(t, r.m).Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, f := range families {
		seen[f.GetName()] = len(f.GetMetric())
	}
	if seen["palm_matcher_refused_total"] != 1 || seen["palm_matcher_envelopes_rejected_total"] == 0 {
		t.Fatalf("series %v", seen)
	}
}

func prometheusRegistry(t *testing.T, m *Matcher) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(m.Collector()); err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestLateCaptureNotAnswered: a capture whose expiry is nearer than
// LateMargin once decided gets no answer (the device has given up on it),
// counted; one with time left is answered.
func TestLateCaptureNotAnswered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		left   time.Duration // validity left when decided
		answer bool
	}{
		{"time left", time.Second, true},
		{"inside the margin", LateMargin / 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			clk := sensortest.NewClock()
			r.m.cfg.Clock, r.m.Opener.Clock, r.sealer.Clock = clk, clk, clk
			r.sealer.Lifetime = 5 * time.Second
			env := r.seal(t, palm(1, 0.1, 1), protocol.PurposeIdentify, [16]byte{})
			clk.Advance(r.sealer.Lifetime - tc.left)
			signed, _, _ := r.m.decide(env, "term-m1", "palm/v1/term-m1/capture", slog.New(slog.DiscardHandler))
			if got := signed != nil; got != tc.answer {
				t.Fatalf("answered %v, want %v", got, tc.answer)
			}
			if late := r.m.Refusals()[RefusedLate]; late != map[bool]uint64{true: 0, false: 1}[tc.answer] {
				t.Fatalf("late refusals %d", late)
			}
		})
	}
}

// TestSameCaptureSameAnswer: two instances that do not share their
// record of answers (the shared one unreachable) decide the same capture
// into the very same signed result, so a terminal can never hold two
// different answers to one request.
func TestSameCaptureSameAnswer(t *testing.T) {
	a, b := newRig(t), newRig(t)
	b.m.Opener = &protocol.Opener{Keys: a.m.Opener.Keys, Devices: a.m.Opener.Devices}
	b.m.cfg.ResultKey = a.m.cfg.ResultKey
	clk := sensortest.NewClock()
	a.sealer.Clock = clk
	for _, r := range []*rig{a, b} {
		r.m.cfg.Clock, r.m.Opener.Clock = clk, clk
		if err := r.m.Add(Entry{Subject: "alice", Templates: []*template.Template{palm(1, 0, 0)}}); err != nil {
			t.Fatal(err)
		}
	}
	env := a.seal(t, palm(1, 0.1, 2), protocol.PurposeIdentify, [16]byte{})
	first, res, err := a.m.Handle(bytes.Clone(env))
	if err != nil || res.Decision != protocol.DecisionMatch {
		t.Fatalf("first: %+v %v", res, err)
	}
	clk.Advance(5 * time.Millisecond) // a later decision must not carry a later expiry
	second, _, err := b.m.Handle(env)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("the same capture decided by two instances gave two different signed results")
	}
}
