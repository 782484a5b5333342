// Package matcher is the reference cloud matcher: it opens sealed captures
// (protocol.Opener: every rejection counted by reason), fuses the samples
// of enrolment sessions into one template per subject (refusing a palm
// already enrolled as somebody else), identifies captures 1:N through the
// index package's staged search on every core, honours deletions, and
// answers with signed results. Several instances share the load through an
// MQTT shared subscription (Serve), or through the replicated work queue of
// a NATS JetStream cluster (ServeNATS).
//
// The gallery lives in memory and, optionally, in a Store: FileStore keeps
// it in an append-only file sealed record by record with AES-256-GCM under
// a key from configuration (the matcher is cloud side and may store
// templates, but never in clear), shared by the instances on a host;
// KVStore keeps it in replicated JetStream key-value buckets, shared by
// instances on any number of hosts.
package matcher

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palmd/palmd/clock"
	"github.com/palmd/palmd/matcher/index"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/template"
)

// Config configures the decision logic.
type Config struct {
	// Threshold: a capture matches a gallery entry when its distance to
	// the entry's (fused) template is below it. Zero derives it from FAR
	// and the impostor model built into the template package
	// (template.DefaultImpostorModel; README, "Choosing the threshold");
	// set it only to override that.
	Threshold float64
	// FAR is the 1:1 false-accept rate the derived threshold aims at;
	// zero means DefaultFAR.
	FAR float64
	// FPIR, when positive, makes the threshold follow the gallery's size
	// N: it is lowered to the distance whose modelled 1:1 FAR is FPIR/N,
	// so that a stranger is taken for somebody with probability about
	// FPIR however many enrol (at the price of more genuine shoppers
	// asked to try again as the gallery grows; README, "Identification").
	// It never raises the threshold above Threshold's.
	FPIR float64
	// EnrolSamples is the fewest samples an enrolment may have; 3. An
	// enrol command names its session's number of samples; one asking
	// fewer is refused.
	EnrolSamples int
	// ResultLifetime is how long after its capture was taken a result
	// stays valid (at least until the capture's expiry); 10 s. It counts
	// from the capture's header, in the device's time, not from the
	// matcher's clock: the same capture decided again (a copy published
	// again and taken by another instance while the record of answers
	// is unreachable) gets the very same signed result.
	ResultLifetime time.Duration
	// ResultKey signs results.
	ResultKey ed25519.PrivateKey
	// Workers for 1:N comparison; 0 = one per CPU.
	Workers int
	// CommandKey verifies the cloud's signed commands: enrol commands open
	// the only enrolment sessions the matcher accepts samples for
	// (HandleCommand). Without it, every enrolment sample is refused.
	CommandKey ed25519.PublicKey
	// SessionLifetime is how long an enrolment session stays open after
	// its command's expiry; DefaultSessionLifetime.
	SessionLifetime time.Duration
	// ConsistencyFAR sets the threshold each of a session's samples must
	// meet against at least one earlier sample; DefaultConsistencyFAR.
	ConsistencyFAR float64
	// Clock tells the time; nil means the system clock.
	Clock clock.Clock
}

// DefaultEnrolSamples is the fewest samples an enrolment may have (as the
// demo's three); DefaultResultLifetime how long a result stays valid.
const (
	DefaultEnrolSamples   = 3
	DefaultResultLifetime = 10 * time.Second
)

// DefaultFAR is the 1:1 false-accept rate the threshold is derived for
// unless configured: one in a million, so that a gallery of a thousand
// people takes a stranger for someone about once in a thousand attempts.
const DefaultFAR = 1e-6

// Threshold returns the match threshold in force: Config.Threshold, or
// lower under Config.FPIR for the gallery's present size.
func (m *Matcher) Threshold() float64 {
	if m.cfg.FPIR <= 0 {
		return m.cfg.Threshold
	}
	t, _ := m.model.Threshold(m.cfg.FPIR / float64(max(1, m.Size())))
	return min(m.cfg.Threshold, t)
}

// Entry is a subject and its enrolment samples.
type Entry struct {
	Subject   string
	Templates []*template.Template
}

// Matcher holds the gallery and the enrolment sessions.
type Matcher struct {
	cfg    Config
	Opener *protocol.Opener

	// idx holds one fused template per enrolled subject and searches it
	// (index.Index: sketch pre-selection, then full comparison); replaced
	// whole when the store is loaded again.
	idx atomic.Pointer[index.Index]

	mu       sync.RWMutex
	sessions map[[16]byte]*session
	answers  Answers // request ids answered, for duplicates

	consistency float64                // threshold between the samples of one session
	model       template.ImpostorModel // for thresholds at a false-accept rate

	decisions [5]atomic.Uint64 // match, no_match, enrolled, retry, error
	refMu     sync.Mutex
	refusals  map[string]uint64

	// store, when set, persists the gallery and the sessions and shares
	// them with every other instance using it.
	store Store
}

// UseStore makes the encrypted gallery file at path (key 32 bytes) the
// shared state of every instance that uses it (OpenFileStore, Attach).
func (m *Matcher) UseStore(path string, key []byte) error {
	s, err := OpenFileStore(path, key)
	if err != nil {
		return err
	}
	return m.Attach(s)
}

// Attach makes s the matcher's store and loads the gallery and sessions
// from it (closing s when that fails). Enrolments and deletions are then made in the store under its
// exclusive access, and the changes other instances make are followed
// before every identification.
func (m *Matcher) Attach(s Store) error {
	err := m.follow(func(apply func(Change) error, reset, _ func()) error {
		reset()
		return s.Load(apply)
	})
	if err != nil {
		s.Close()
		return fmt.Errorf("matcher: loading the gallery: %w", err)
	}
	m.store = s
	return nil
}

// follow runs a store operation (Load, Sync or Update) on the matcher's
// memory. Changes are applied to the live gallery and sessions, except
// when the store has to be read again from the start (loading, or a file
// another instance compacted): then they go into a fresh gallery, which
// replaces the live one only once complete (or when op calls live), so
// that identifications meanwhile search the old gallery instead of an
// empty or half-loaded one. A failed load leaves the live gallery as it
// was.
func (m *Matcher) follow(op func(apply func(Change) error, reset, live func()) error) error {
	var fresh *index.Index
	var freshSessions map[[16]byte]*session
	reset := func() {
		if fresh != nil {
			fresh.Wipe()
			wipeSessions(freshSessions)
		}
		fresh, freshSessions = &index.Index{Workers: m.cfg.Workers}, map[[16]byte]*session{}
	}
	apply := func(c Change) error {
		if fresh != nil {
			applyTo(fresh, freshSessions, c)
			return nil
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		applyTo(m.idx.Load(), m.sessions, c)
		return nil
	}
	live := func() {
		if fresh == nil {
			return
		}
		m.mu.Lock()
		old, oldSessions := m.idx.Swap(fresh), m.sessions
		m.sessions = freshSessions
		m.mu.Unlock()
		fresh, freshSessions = nil, nil
		wipeSessions(oldSessions)
		// A search may have taken the old gallery just before the swap;
		// its templates are wiped once no search can still be on it.
		clock.Or(m.cfg.Clock).AfterFunc(retireAfter, old.Wipe)
	}
	if err := op(apply, reset, live); err != nil {
		if fresh != nil {
			fresh.Wipe()
			wipeSessions(freshSessions)
		}
		return err
	}
	live()
	return nil
}

// retireAfter is how long a replaced gallery stays readable: far longer
// than any search takes.
const retireAfter = 10 * time.Second

// applyTo makes a stored change in gallery idx and sessions (m.mu held
// when they are live). The template of a put is copied into the index and
// wiped.
func applyTo(idx *index.Index, sessions map[[16]byte]*session, c Change) {
	switch c.Kind {
	case ChangePut:
		idx.Put(c.Subject, c.Template)
		c.Template.Zero()
	case ChangeDelete:
		idx.Delete(c.Subject)
	case ChangeSession:
		if old := sessions[c.Session]; old != nil {
			for _, t := range old.samples {
				if !slices.Contains(c.State.Samples, t) {
					t.Zero()
				}
			}
		}
		sessions[c.Session] = &session{device: c.State.Device, want: c.State.Want,
			expires: c.State.Expires, closed: c.State.Closed, samples: c.State.Samples}
	}
}

func wipeSessions(sessions map[[16]byte]*session) {
	for _, s := range sessions {
		for _, t := range s.samples {
			t.Zero()
		}
	}
}

// sync follows the changes other instances made to the store.
func (m *Matcher) sync() error {
	if m.store == nil {
		return nil
	}
	return m.follow(func(apply func(Change) error, reset, _ func()) error {
		return m.store.Sync(apply, reset)
	})
}

// update runs f on the store's latest state, with the gallery it read
// live, under the store's exclusive access, and records the changes f
// returns (also when f fails).
func (m *Matcher) update(f func() ([]Change, error)) error {
	return m.follow(func(apply func(Change) error, reset, live func()) error {
		return m.store.Update(apply, reset, func() ([]Change, error) {
			live()
			return f()
		})
	})
}

// ThresholdFor is the match threshold (distance) whose modelled 1:1
// false-accept rate is far, from the built-in impostor model
// (template.DefaultImpostorModel): what New uses when Config.Threshold is
// zero, and what evaluations compare at (ThresholdFor(DefaultFAR)).
func ThresholdFor(far float64) (float64, error) {
	model, err := template.DefaultImpostorModel()
	if err != nil {
		return 0, fmt.Errorf("matcher: %w", err)
	}
	t, _ := model.Threshold(far)
	return t, nil
}

// New returns a matcher deciding with cfg and opening with opener.
func New(cfg Config, opener *protocol.Opener) (*Matcher, error) {
	if cfg.FAR == 0 {
		cfg.FAR = DefaultFAR
	}
	if cfg.Threshold == 0 {
		if cfg.FAR <= 0 || cfg.FAR >= 0.5 {
			return nil, fmt.Errorf("matcher: false-accept rate %v outside (0, 0.5)", cfg.FAR)
		}
		t, err := ThresholdFor(cfg.FAR)
		if err != nil {
			return nil, err
		}
		cfg.Threshold = t
	}
	if cfg.EnrolSamples == 0 {
		cfg.EnrolSamples = DefaultEnrolSamples
	}
	if cfg.ResultLifetime == 0 {
		cfg.ResultLifetime = DefaultResultLifetime
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.SessionLifetime == 0 {
		cfg.SessionLifetime = DefaultSessionLifetime
	}
	if cfg.ConsistencyFAR == 0 {
		cfg.ConsistencyFAR = DefaultConsistencyFAR
	}
	if cfg.ConsistencyFAR <= 0 || cfg.ConsistencyFAR >= 0.5 {
		return nil, fmt.Errorf("matcher: consistency false-accept rate %v outside (0, 0.5)", cfg.ConsistencyFAR)
	}
	model, err := template.DefaultImpostorModel()
	if err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	consistency, _ := model.Threshold(cfg.ConsistencyFAR)
	switch {
	case cfg.Threshold <= 0 || cfg.Threshold >= 0.5:
		return nil, fmt.Errorf("matcher: threshold %v outside (0, 0.5)", cfg.Threshold)
	case cfg.FPIR < 0 || cfg.FPIR >= 0.5:
		return nil, fmt.Errorf("matcher: false-positive identification rate %v outside [0, 0.5)", cfg.FPIR)
	case cfg.EnrolSamples < 1 || cfg.EnrolSamples > 10:
		return nil, fmt.Errorf("matcher: enrolment samples %d outside 1..10", cfg.EnrolSamples)
	case len(cfg.ResultKey) != ed25519.PrivateKeySize:
		return nil, errors.New("matcher: no result signing key")
	case opener == nil:
		return nil, errors.New("matcher: no opener")
	case len(cfg.CommandKey) != 0 && len(cfg.CommandKey) != ed25519.PublicKeySize:
		return nil, errors.New("matcher: command key is not an Ed25519 public key")
	}
	mt := &Matcher{cfg: cfg, Opener: opener, sessions: map[[16]byte]*session{}, answers: &memAnswers{clock: cfg.Clock},
		consistency: consistency, model: model, refusals: map[string]uint64{}}
	mt.idx.Store(&index.Index{Workers: cfg.Workers})
	return mt, nil
}

// ErrDuplicate is returned with the stored answer for a capture already
// answered (a republished copy, or a replay): the same signed result goes
// out again, so a device whose first answer was lost still gets it, and
// nothing is decided twice.
var ErrDuplicate = errors.New("matcher: request already answered")

// Handle opens one envelope and decides. It returns the signed result to
// publish on the device's result topic and the decision, or an error for an
// envelope that is rejected (already counted by reason in Opener). For a
// request already answered it returns the same signed result as before
// with ErrDuplicate (counted as a refusal, RefusedDuplicate), once the
// copy's signature verifies: a tampered copy is a rejection.
func (m *Matcher) Handle(env []byte) (signed []byte, res protocol.Result, err error) {
	if h, perr := protocol.PeekHeader(env); perr == nil {
		if signed, dup := m.answers.Lookup(h.RequestID); dup {
			if _, err := m.Opener.Authenticate(env); err != nil {
				return nil, res, err
			}
			m.refuse(RefusedDuplicate)
			return m.again(signed, h)
		}
	}
	t, h, err := m.Opener.Open(env)
	if err != nil {
		return nil, res, err
	}
	// The offset is the matcher's to measure, never the device's to
	// claim; a template overlapping too little of the cohort compares
	// uncentred.
	_ = template.Centre(t)
	res = protocol.Result{Device: h.DeviceID, RequestID: hex.EncodeToString(h.RequestID[:]),
		Expires: max(h.CaptureTime.Add(m.cfg.ResultLifetime).UnixMilli(), h.Expiry.UnixMilli())}
	switch h.Purpose {
	case protocol.PurposeEnroll:
		res.Decision, res.Subject = m.enrol(h.DeviceID, h.SessionID, t)
	default:
		subject, score := m.Identify(t)
		t.Zero()
		res.Score = score
		if subject != "" && score < m.Threshold() {
			res.Decision, res.Subject = protocol.DecisionMatch, subject
		} else {
			res.Decision = protocol.DecisionNoMatch
		}
	}
	m.count(res.Decision)
	signed, err = protocol.SignResult(m.cfg.ResultKey, res)
	if err != nil {
		return nil, res, err
	}
	kept, err := m.answers.Record(h.RequestID, signed)
	if err != nil {
		// The answer still goes out; a copy published again may be
		// decided again.
		m.refuse(RefusedStore)
	}
	if !bytes.Equal(kept, signed) {
		// Another instance decided the same request first: its answer
		// is the one.
		return m.again(kept, h)
	}
	return signed, res, nil
}

// again returns a recorded answer with ErrDuplicate, and the result it
// carries (read from it when it verifies under this instance's key; an
// instance that signed with another, during a key rotation, still
// answered this request of this device).
func (m *Matcher) again(signed []byte, h protocol.Header) ([]byte, protocol.Result, error) {
	res, err := protocol.VerifyResult(m.cfg.ResultKey.Public().(ed25519.PublicKey), signed)
	if err != nil {
		res = protocol.Result{Device: h.DeviceID, RequestID: hex.EncodeToString(h.RequestID[:])}
	}
	return signed, res, ErrDuplicate
}

// UseAnswers makes a the record of answers sent (KVAnswers, shared by
// every instance); before the first Handle.
func (m *Matcher) UseAnswers(a Answers) { m.answers = a }

func (m *Matcher) count(d protocol.Decision) {
	i := map[protocol.Decision]int{protocol.DecisionMatch: 0, protocol.DecisionNoMatch: 1, protocol.DecisionEnrolled: 2, protocol.DecisionRetry: 3}[d]
	if d == protocol.DecisionError {
		i = 4
	}
	m.decisions[i].Add(1)
}

// Decisions returns how many of each decision were made.
func (m *Matcher) Decisions() map[protocol.Decision]uint64 {
	return map[protocol.Decision]uint64{
		protocol.DecisionMatch: m.decisions[0].Load(), protocol.DecisionNoMatch: m.decisions[1].Load(),
		protocol.DecisionEnrolled: m.decisions[2].Load(), protocol.DecisionRetry: m.decisions[3].Load(),
		protocol.DecisionError: m.decisions[4].Load(),
	}
}

// Add enrols e directly, in memory only (tests, benchmarks): its
// templates are fused into one, as an enrolment's are.
func (m *Matcher) Add(e Entry) error {
	fused, err := template.Fuse(e.Templates)
	if err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	m.idx.Load().Put(e.Subject, &fused)
	fused.Zero()
	return nil
}

// Size returns the number of gallery entries.
func (m *Matcher) Size() int { return m.idx.Load().Len() }

// Identify returns the gallery subject nearest to t and the distance ("" and 1
// for an empty gallery), searching the index on every worker, after
// following the store's changes (a failed sync keeps the gallery in
// memory as it was; counted as a store refusal).
func (m *Matcher) Identify(t *template.Template) (string, float64) {
	if err := m.sync(); err != nil {
		m.refuse(RefusedStore)
	}
	r := m.idx.Load().Search(t)
	return r.Subject, r.Distance
}

// ErrUnknownSubject is returned by Delete for a subject not enrolled.
var ErrUnknownSubject = errors.New("matcher: no such subject")

// Delete removes subject from the gallery, in memory and in the store
// (where its template is wiped from the file before Delete returns), and
// from every instance sharing the store at their next identification.
func (m *Matcher) Delete(subject string) error {
	if m.store == nil {
		if !m.idx.Load().Delete(subject) {
			return ErrUnknownSubject
		}
		return nil
	}
	return m.update(func() ([]Change, error) {
		if !m.idx.Load().Delete(subject) {
			return nil, ErrUnknownSubject
		}
		return []Change{{Kind: ChangeDelete, Subject: subject}}, nil
	})
}

// DeleteSubject removes subject from store s without a running matcher
// (palm-matcher -delete-subject): instances using s drop it at their next
// identification.
func DeleteSubject(s Store, subject string) error {
	present := false
	track := func(c Change) error {
		if c.Key() == (Change{Kind: ChangeDelete, Subject: subject}).Key() {
			present = c.Kind == ChangePut
		}
		c.zero()
		return nil
	}
	return s.Update(track, func() { present = false }, func() ([]Change, error) {
		if !present {
			return nil, ErrUnknownSubject
		}
		return []Change{{Kind: ChangeDelete, Subject: subject}}, nil
	})
}
