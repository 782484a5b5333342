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
	RefusedDuplicate      = "duplicate"            // request id already answered: the result is sent again
	RefusedNoSession      = "unknown_session"      // enrol sample for a session no command opened
	RefusedSessionClosed  = "session_closed"       // enrol sample for a completed or failed session
	RefusedSessionExpired = "session_expired"      // enrol sample after the session's lifetime
	RefusedSessionDevice  = "session_device"       // enrol sample from another device than the command named
	RefusedInconsistent   = "inconsistent_samples" // the session's samples are not of one palm
	RefusedStore          = "store"                // the gallery file could not be read or written
	RefusedCaptureTopic   = "capture_topic"        // capture published under another device's topic
	RefusedCmdSignature   = "command_signature"    // command that does not verify
	RefusedCmdMalformed   = "command_malformed"    // command that is not well formed
	RefusedCmdTopic       = "command_topic"        // command published under another device's topic
	RefusedCmdReplay      = "command_replay"       // enrol command for a session already known
	RefusedCmdExpired     = "command_expired"      // command past its expiry
	RefusedCmdSamples     = "command_samples"      // enrol command asking fewer samples than Config.EnrolSamples
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
	return m.withStore(func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.pruneSessions(now)
		if _, known := m.sessions[sid]; known || m.enrolled(c.Session) {
			m.refuse(RefusedCmdReplay)
			return errors.New("matcher: enrol command for a session already opened")
		}
		m.sessions[sid] = s
		return nil
	})
}

// enrolled reports whether subject is in the gallery; m.mu held.
func (m *Matcher) enrolled(subject string) bool {
	for _, e := range m.gallery {
		if e.Subject == subject {
			return true
		}
	}
	return false
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
// gallery entry (subject = the session id).
func (m *Matcher) enrol(device string, sid [16]byte, t *template.Template) (d protocol.Decision, subject string) {
	err := m.withStore(func() error {
		var err error
		d, subject, err = m.enrolLocked(device, sid, t)
		return err
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

func (m *Matcher) enrolLocked(device string, sid [16]byte, t *template.Template) (protocol.Decision, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	s := m.sessions[sid]
	switch {
	case s == nil:
		t.Zero()
		return "", "", errRefused(RefusedNoSession)
	case s.closed:
		t.Zero()
		return "", "", errRefused(RefusedSessionClosed)
	case now.After(s.expires):
		t.Zero()
		return "", "", errRefused(RefusedSessionExpired)
	case s.device != device:
		t.Zero()
		return "", "", errRefused(RefusedSessionDevice)
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
		t.Zero()
		for _, p := range s.samples {
			p.Zero()
		}
		s.samples, s.closed = nil, true
		return "", "", errRefused(RefusedInconsistent)
	}
	s.samples = append(s.samples, t)
	if len(s.samples) < s.want {
		return protocol.DecisionRetry, "", nil
	}
	subject := hex.EncodeToString(sid[:])
	m.gallery = append(m.gallery, Entry{Subject: subject, Templates: s.samples})
	s.samples, s.closed = nil, true
	return protocol.DecisionEnrolled, subject, nil
}

// withStore runs f on the shared state: with a gallery file, under the
// file lock, on the file's latest contents, writing them back after f
// succeeds.
func (m *Matcher) withStore(f func() error) error {
	if m.storePath == "" {
		return f()
	}
	unlock, err := m.lockStore()
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.refresh(true); err != nil {
		return err
	}
	if err := f(); err != nil {
		var r errRefused
		if errors.As(err, &r) && r == RefusedInconsistent {
			// The failed session is closed: that must be shared too.
			if _, serr := m.saveGalleryLocked(); serr != nil {
				return serr
			}
		}
		return err
	}
	_, err = m.saveGalleryLocked()
	return err
}

// saveGalleryLocked writes the store and remembers its version; the store
// lock is held.
func (m *Matcher) saveGalleryLocked() ([]byte, error) {
	ver, err := m.saveGallery(m.storePath, m.storeKey)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.storeVer = ver
	m.mu.Unlock()
	return ver, nil
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
