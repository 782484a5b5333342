package matcher

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/palmd/palmd/clock"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/template"
)

// An enrolment session exists on the matcher only because a signed enrol
// command opened it: samples sealed for any other session id are refused.
// A session belongs to the device the command named, takes the number of
// samples it named, and is used once: when it completes (or fails) it is
// closed, and stays remembered as closed until it would have expired, so a
// replayed command cannot open it again and a replayed sample cannot add to
// it. The samples of a session must be of one palm: a sample that agrees
// with none of those before it fails the session, so one session cannot
// make a subject out of several people.
type session struct {
	device  string
	want    int
	expires time.Time
	closed  bool
	samples []*template.Template
}

// DefaultSessionLifetime is how long an enrolment session stays open after
// its command's expiry: time for the shopper to present the samples.
const DefaultSessionLifetime = 5 * time.Minute

// DefaultConsistencyFAR is the 1:1 false-accept rate of the threshold that
// each sample of a session must meet against an earlier one. It is far looser than the
// match threshold (genuine samples rarely fail it) yet two different
// people's samples pass it once in a thousand pairs.
const DefaultConsistencyFAR = 1e-3

// Refusal reasons the matcher counts beyond the opener's envelope
// rejections (Refusals).
const (
	RefusedDuplicate       = "duplicate"            // request id already answered: the result is sent again
	RefusedNoSession       = "unknown_session"      // enrol sample for a session no command opened
	RefusedSessionClosed   = "session_closed"       // enrol sample for a completed or failed session
	RefusedSessionExpired  = "session_expired"      // enrol sample after the session's lifetime
	RefusedSessionDevice   = "session_device"       // enrol sample from another device than the command named
	RefusedInconsistent    = "inconsistent_samples" // the session's samples are not of one palm
	RefusedAlreadyEnrolled = "already_enrolled"     // the session's palm matches another subject at the threshold
	RefusedStore           = "store"                // the gallery file could not be read or written
	RefusedCaptureTopic    = "capture_topic"        // capture published under another device's topic
	RefusedLate            = "late"                 // capture that expired while it was decided: not answered
	RefusedAbandoned       = "abandoned"            // capture queued longer than its device waits (NATSConfig.Patience): dropped undecided
	RefusedCmdSignature    = "command_signature"    // command that does not verify
	RefusedCmdMalformed    = "command_malformed"    // command that is not well formed
	RefusedCmdTopic        = "command_topic"        // command published under another device's topic
	RefusedCmdReplay       = "command_replay"       // enrol command for a session already known
	RefusedCmdExpired      = "command_expired"      // command past its expiry
	RefusedCmdSamples      = "command_samples"      // enrol command asking fewer samples than Config.EnrolSamples
)

// ErrNoCommandKey is returned by HandleCommand when the matcher has no
// command key: it then opens no enrolment sessions.
var ErrNoCommandKey = errors.New("matcher: no command key: enrolment is disabled")

// HandleCommand verifies a signed cloud command (as published on a
// device's cmd topic; topicDevice is the device of that topic, or "" when
// not known) and, for an enrol command, opens its session. Every refusal is
// counted by reason.
func (m *Matcher) HandleCommand(msg []byte, topicDevice string) error {
	if len(m.cfg.CommandKey) == 0 {
		return ErrNoCommandKey
	}
	c, err := protocol.VerifyCommand(m.cfg.CommandKey, msg)
	switch {
	case errors.Is(err, protocol.ErrBadSig):
		m.refuse(RefusedCmdSignature)
		return fmt.Errorf("matcher: command: %w", err)
	case err != nil:
		m.refuse(RefusedCmdMalformed)
		return fmt.Errorf("matcher: command: %w", err)
	case topicDevice != "" && c.Device != topicDevice:
		m.refuse(RefusedCmdTopic)
		return fmt.Errorf("matcher: command for %q published under device %q", c.Device, topicDevice)
	case c.Kind != protocol.CommandEnroll:
		return nil
	case c.Samples < m.cfg.EnrolSamples:
		m.refuse(RefusedCmdSamples)
		return fmt.Errorf("matcher: enrol command asks %d samples, fewer than the %d required", c.Samples, m.cfg.EnrolSamples)
	}
	now := m.now()
	if now.UnixMilli() > c.Expires {
		m.refuse(RefusedCmdExpired)
		return errors.New("matcher: enrol command expired")
	}
	id, _ := hex.DecodeString(c.Session) // VerifyCommand checked it
	var sid [16]byte
	copy(sid[:], id)
	s := &session{device: c.Device, want: c.Samples,
		expires: time.UnixMilli(c.Expires).Add(m.cfg.SessionLifetime)}
	return m.withStore(func() ([]Change, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.pruneSessions(now)
		if _, known := m.sessions[sid]; known || m.idx.Load().Has(c.Session) {
			m.refuse(RefusedCmdReplay)
			return nil, errors.New("matcher: enrol command for a session already opened")
		}
		m.sessions[sid] = s
		return []Change{s.change(sid)}, nil
	})
}

// change is the session's state as a store change.
func (s *session) change(id [16]byte) Change {
	return Change{Kind: ChangeSession, Session: id, State: SessionState{
		Device: s.device, Want: s.want, Expires: s.expires, Closed: s.closed, Samples: s.samples}}
}

// pruneSessions forgets sessions past their lifetime; m.mu held.
func (m *Matcher) pruneSessions(now time.Time) {
	for id, s := range m.sessions {
		if now.After(s.expires) {
			for _, t := range s.samples {
				t.Zero()
			}
			delete(m.sessions, id)
		}
	}
}

// errRefused is an enrolment sample refused for a counted reason.
type errRefused string

func (e errRefused) Error() string { return "matcher: enrolment sample refused: " + string(e) }

// enrol adds a sample to its session; the session's last sample makes the
// gallery entry (subject = the session id): the samples fused into one
// template, unless that palm is already enrolled as somebody else.
func (m *Matcher) enrol(device string, sid [16]byte, t *template.Template) (d protocol.Decision, subject string) {
	var fused template.Template
	defer fused.Zero()
	err := m.withStore(func() ([]Change, error) {
		var err error
		var changes []Change
		d, subject, changes, err = m.enrolLocked(device, sid, t, &fused)
		return changes, err
	})
	var r errRefused
	switch {
	case errors.As(err, &r):
		m.refuse(string(r))
		return protocol.DecisionError, ""
	case err != nil:
		m.refuse(RefusedStore)
		return protocol.DecisionError, ""
	}
	return d, subject
}

// enrolLocked does enrol's work on the latest state; it returns the
// changes to store (also when it refuses a sample that closes the
// session). fused receives the completed entry's template.
func (m *Matcher) enrolLocked(device string, sid [16]byte, t *template.Template, fused *template.Template) (protocol.Decision, string, []Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	s := m.sessions[sid]
	switch {
	case s == nil:
		t.Zero()
		return "", "", nil, errRefused(RefusedNoSession)
	case s.closed:
		t.Zero()
		return "", "", nil, errRefused(RefusedSessionClosed)
	case now.After(s.expires):
		t.Zero()
		return "", "", nil, errRefused(RefusedSessionExpired)
	case s.device != device:
		t.Zero()
		return "", "", nil, errRefused(RefusedSessionDevice)
	}
	fail := func(reason string) (protocol.Decision, string, []Change, error) {
		t.Zero()
		for _, p := range s.samples {
			p.Zero()
		}
		s.samples, s.closed = nil, true
		return "", "", []Change{s.change(sid)}, errRefused(reason)
	}
	// Each sample must agree with at least one before it: samples of
	// several people never do, while a genuine sample fails only if it
	// fails against every earlier one.
	agrees := len(s.samples) == 0
	for _, prev := range s.samples {
		if d, err := template.Compare(t, prev); err == nil && d < m.consistency {
			agrees = true
			break
		}
	}
	if !agrees {
		return fail(RefusedInconsistent)
	}
	s.samples = append(s.samples, t)
	if len(s.samples) < s.want {
		return protocol.DecisionRetry, "", []Change{s.change(sid)}, nil
	}
	f, err := template.Fuse(s.samples)
	if err != nil {
		return fail(RefusedInconsistent)
	}
	*fused = f
	f.Zero()
	// One palm, one subject: a palm that already matches somebody at the
	// identification threshold is not enrolled again under a new name
	// (it would make every later search of it ambiguous).
	if r := m.idx.Load().Search(fused); r.Subject != "" && r.Distance < m.Threshold() {
		return fail(RefusedAlreadyEnrolled)
	}
	subject := hex.EncodeToString(sid[:])
	m.idx.Load().Put(subject, fused)
	for _, p := range s.samples {
		p.Zero()
	}
	s.samples, s.closed = nil, true
	return protocol.DecisionEnrolled, subject, []Change{{Kind: ChangePut, Subject: subject, Template: fused}, s.change(sid)}, nil
}

// withStore runs f on the shared state: with a store, under its exclusive
// access, on its latest contents, recording the changes f returns.
func (m *Matcher) withStore(f func() ([]Change, error)) error {
	if m.store == nil {
		_, err := f()
		return err
	}
	return m.update(f)
}

func (m *Matcher) refuse(reason string) {
	m.refMu.Lock()
	m.refusals[reason]++
	m.refMu.Unlock()
}

// Refusals returns how many captures and commands were refused for each
// reason beyond the opener's envelope rejections (Opener.Counts).
func (m *Matcher) Refusals() map[string]uint64 {
	m.refMu.Lock()
	defer m.refMu.Unlock()
	return maps.Clone(m.refusals)
}

func (m *Matcher) now() time.Time {
	return clock.Or(m.cfg.Clock).Now()
}
