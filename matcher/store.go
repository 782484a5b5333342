package matcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/palmd/palmd/template"
)

// Store keeps the gallery and the enrolment sessions beyond one process,
// shared by every matcher instance that uses it. It holds changes, not
// snapshots: an instance loads every change once, then follows the
// changes other instances make (Sync), and makes its own under exclusive
// access to the latest state (Update). FileStore is the single-host
// implementation; a replicated store (a JetStream key-value bucket, one
// key per subject and session) fits the same interface.
type Store interface {
	// Load applies every change in the store, from the start.
	Load(apply func(Change) error) error
	// Sync applies the changes made since the last Load, Sync or Update
	// (by other instances); a store rewritten meanwhile is loaded again
	// from the start, after reset.
	Sync(apply func(Change) error, reset func()) error
	// Update syncs (as Sync), then runs f with every other instance's
	// Update excluded, and durably records the changes f returns. When f
	// fails, the changes it returned are recorded all the same (a failed
	// enrolment session is closed for everybody), and f's error returned.
	Update(apply func(Change) error, reset func(), f func() ([]Change, error)) error
	// Close releases the store.
	Close() error
}

// ChangeKind says what a Change does.
type ChangeKind uint8

// Change kinds.
const (
	// ChangePut enrols or replaces Subject with Template.
	ChangePut ChangeKind = 1
	// ChangeDelete removes Subject, honouring a deletion request.
	ChangeDelete ChangeKind = 2
	// ChangeSession records the state of enrolment session Session.
	ChangeSession ChangeKind = 3
)

// Change is one change to the gallery or the sessions. Its encoding
// (MarshalBinary) holds templates: a store encrypts it.
type Change struct {
	Kind     ChangeKind
	Subject  string             // ChangePut, ChangeDelete
	Template *template.Template // ChangePut: the subject's fused template
	Session  [16]byte           // ChangeSession
	State    SessionState       // ChangeSession
}

// SessionState is an enrolment session as stored.
type SessionState struct {
	Device  string
	Want    int
	Expires time.Time
	Closed  bool
	Samples []*template.Template
}

// Key identifies what a change is about: a later change with the same key
// supersedes it (a store may then forget the earlier one).
func (c Change) Key() string {
	if c.Kind == ChangeSession {
		return "s/" + string(c.Session[:])
	}
	return "e/" + c.Subject
}

// Limits of the encoding.
const (
	maxSubject = 255
	maxDevice  = 255
	maxSamples = 255
)

// AppendBinary appends the change's encoding: kind, then for a put the
// subject (u8 length) and the template's wire encoding; for a delete the
// subject; for a session its 16-byte id, device (u8 length), samples
// wanted (u8), expiry (i64 Unix ms), closed (u8) and samples (u8 count,
// wire encodings). Integers are big-endian.
func (c Change) AppendBinary(p []byte) ([]byte, error) {
	p = append(p, byte(c.Kind))
	var err error
	switch c.Kind {
	case ChangePut, ChangeDelete:
		if c.Subject == "" || len(c.Subject) > maxSubject {
			return p, fmt.Errorf("matcher: subject of %d bytes", len(c.Subject))
		}
		p = append(append(p, byte(len(c.Subject))), c.Subject...)
		if c.Kind == ChangePut {
			if c.Template == nil {
				return p, errors.New("matcher: put without a template")
			}
			p, err = c.Template.AppendBinary(p)
		}
	case ChangeSession:
		s := c.State
		if len(s.Device) > maxDevice || s.Want < 0 || s.Want > maxSamples || len(s.Samples) > maxSamples {
			return p, errors.New("matcher: session does not fit the store's encoding")
		}
		p = append(p, c.Session[:]...)
		p = append(append(p, byte(len(s.Device))), s.Device...)
		p = append(p, byte(s.Want))
		p = binary.BigEndian.AppendUint64(p, uint64(s.Expires.UnixMilli()))
		closed := byte(0)
		if s.Closed {
			closed = 1
		}
		p = append(p, closed, byte(len(s.Samples)))
		for _, t := range s.Samples {
			if p, err = t.AppendBinary(p); err != nil {
				return p, err
			}
		}
	default:
		return p, fmt.Errorf("matcher: change kind %d", c.Kind)
	}
	return p, err
}

// errChange wraps every decoding error of a change.
var errChange = errors.New("matcher: malformed change")

// UnmarshalChange decodes a change; strict (trailing bytes are an error).
func UnmarshalChange(p []byte) (Change, error) {
	var c Change
	take := func(n int) ([]byte, error) {
		if len(p) < n {
			return nil, fmt.Errorf("%w: truncated", errChange)
		}
		b := p[:n]
		p = p[n:]
		return b, nil
	}
	str := func() (string, error) {
		n, err := take(1)
		if err != nil {
			return "", err
		}
		b, err := take(int(n[0]))
		return string(b), err
	}
	tpl := func() (*template.Template, error) {
		b, err := take(template.WireSize)
		if err != nil {
			return nil, err
		}
		t := &template.Template{}
		if err := t.UnmarshalBinary(b); err != nil {
			return nil, fmt.Errorf("%w: %w", errChange, err)
		}
		return t, nil
	}
	k, err := take(1)
	if err != nil {
		return c, err
	}
	c.Kind = ChangeKind(k[0])
	switch c.Kind {
	case ChangePut, ChangeDelete:
		if c.Subject, err = str(); err != nil {
			return c, err
		}
		if c.Subject == "" {
			return c, fmt.Errorf("%w: empty subject", errChange)
		}
		if c.Kind == ChangePut {
			if c.Template, err = tpl(); err != nil {
				return c, err
			}
		}
	case ChangeSession:
		id, err := take(16)
		if err != nil {
			return c, err
		}
		copy(c.Session[:], id)
		if c.State.Device, err = str(); err != nil {
			return c, err
		}
		b, err := take(1 + 8 + 1 + 1)
		if err != nil {
			return c, err
		}
		c.State.Want = int(b[0])
		c.State.Expires = time.UnixMilli(int64(binary.BigEndian.Uint64(b[1:])))
		if b[9] > 1 {
			return c, fmt.Errorf("%w: closed flag %d", errChange, b[9])
		}
		c.State.Closed = b[9] == 1
		for i := 0; i < int(b[10]); i++ {
			t, err := tpl()
			if err != nil {
				return c, err
			}
			c.State.Samples = append(c.State.Samples, t)
		}
	default:
		return c, fmt.Errorf("%w: kind %d", errChange, c.Kind)
	}
	if len(p) != 0 {
		return c, fmt.Errorf("%w: %d trailing bytes", errChange, len(p))
	}
	return c, nil
}

// zero wipes the change's templates.
func (c *Change) zero() {
	if c.Template != nil {
		c.Template.Zero()
	}
	for _, t := range c.State.Samples {
		t.Zero()
	}
}
