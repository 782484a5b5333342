// Package matcher is the reference cloud matcher: it opens sealed captures
// (template.Opener: every rejection counted by reason), collects the
// samples of enrolment sessions into gallery entries, identifies captures
// 1:N against the gallery on every core, and answers with signed results.
// Several instances share the load through an MQTT shared subscription.
//
// The gallery lives in memory and, optionally, in a file encrypted with
// AES-256-GCM under a key from configuration: the matcher is cloud side and
// may store templates, but never in clear.
package matcher

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/palmd/palmd/template"
	"github.com/palmd/palmd/uplink"
)

// Config configures the decision logic.
type Config struct {
	// Threshold: a capture matches a gallery entry when its distance to
	// any of the entry's templates is below it. Zero derives it from FAR
	// and the impostor model built into the template package
	// (template.DefaultImpostorModel; README, "Choosing the threshold");
	// set it only to override that.
	Threshold float64
	// FAR is the 1:1 false-accept rate the derived threshold aims at;
	// zero means DefaultFAR.
	FAR float64
	// EnrolSamples is how many samples make a gallery entry; 3.
	EnrolSamples int
	// ResultLifetime is how long a result stays valid; 10 s.
	ResultLifetime time.Duration
	// ResultKey signs results.
	ResultKey ed25519.PrivateKey
	// Workers for 1:N comparison; 0 = one per CPU.
	Workers int
}

// DefaultFAR is the 1:1 false-accept rate the threshold is derived for
// unless configured: one in a million, so that a gallery of a thousand
// people takes a stranger for someone about once in a thousand attempts.
const DefaultFAR = 1e-6

// Threshold returns the match threshold in force.
func (m *Matcher) Threshold() float64 { return m.cfg.Threshold }

// Entry is an enrolled subject.
type Entry struct {
	Subject   string
	Templates []*template.Template
}

// Matcher holds the gallery and the enrolment sessions.
type Matcher struct {
	cfg    Config
	Opener *template.Opener

	mu       sync.RWMutex
	gallery  []Entry
	sessions map[[16]byte][]*template.Template
	answered map[[16]byte]time.Time // request ids answered, for duplicates

	decisions [5]atomic.Uint64 // match, no_match, enrolled, retry, error

	// Shared store: with a gallery file, enrolments are read-modify-
	// written under a file lock and identification reloads the file when
	// another instance changed it.
	storePath string
	storeKey  []byte
	storeVer  []byte // version of the file the gallery was last read from or written to
}

// UseStore makes the encrypted gallery file at path (key 32 bytes) the
// shared state of every instance that uses it: enrolment samples are
// added to it under an exclusive lock, and the gallery is reloaded before
// identification whenever the file changed. The file is loaded now (a
// missing file is an empty gallery).
func (m *Matcher) UseStore(path string, key []byte) error {
	if _, err := galleryAEAD(key); err != nil {
		return err
	}
	m.storePath, m.storeKey = path, key
	return m.refresh(true)
}

// refresh reloads the store when its file changed (or always, when force).
// A change is a new version in the file's header, not a new modification
// time: two writes within one file-system clock tick share an mtime.
func (m *Matcher) refresh(force bool) error {
	if !force {
		ver, err := galleryVersion(m.storePath, m.storeKey)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		m.mu.RLock()
		same := bytes.Equal(ver, m.storeVer)
		m.mu.RUnlock()
		if same {
			return nil
		}
	}
	entries, sessions, ver, err := readGallery(m.storePath, m.storeKey)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.gallery, m.sessions, m.storeVer = entries, sessions, ver
	m.mu.Unlock()
	return nil
}

// lockStore takes an exclusive lock shared by every instance on the host
// (or the shared file system).
func (m *Matcher) lockStore() (func(), error) {
	f, err := os.OpenFile(m.storePath+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("matcher: lock: %w", err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// New returns a matcher deciding with cfg and opening with opener.
func New(cfg Config, opener *template.Opener) (*Matcher, error) {
	if cfg.FAR == 0 {
		cfg.FAR = DefaultFAR
	}
	if cfg.Threshold == 0 {
		if cfg.FAR <= 0 || cfg.FAR >= 0.5 {
			return nil, fmt.Errorf("matcher: false-accept rate %v outside (0, 0.5)", cfg.FAR)
		}
		model, err := template.DefaultImpostorModel()
		if err != nil {
			return nil, fmt.Errorf("matcher: %w", err)
		}
		cfg.Threshold, _ = model.Threshold(cfg.FAR)
	}
	if cfg.EnrolSamples == 0 {
		cfg.EnrolSamples = 3
	}
	if cfg.ResultLifetime == 0 {
		cfg.ResultLifetime = 10 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	switch {
	case cfg.Threshold <= 0 || cfg.Threshold >= 0.5:
		return nil, fmt.Errorf("matcher: threshold %v outside (0, 0.5)", cfg.Threshold)
	case cfg.EnrolSamples < 1 || cfg.EnrolSamples > 10:
		return nil, fmt.Errorf("matcher: enrolment samples %d outside 1..10", cfg.EnrolSamples)
	case len(cfg.ResultKey) != ed25519.PrivateKeySize:
		return nil, errors.New("matcher: no result signing key")
	case opener == nil:
		return nil, errors.New("matcher: no opener")
	}
	return &Matcher{cfg: cfg, Opener: opener, sessions: map[[16]byte][]*template.Template{}, answered: map[[16]byte]time.Time{}}, nil
}

// ErrDuplicate is returned for a capture already answered (a re-published
// copy): it is not answered again.
var ErrDuplicate = errors.New("matcher: request already answered")

// Handle opens one envelope and decides. It returns the signed result to
// publish on the device's result topic and the decision, or an error for an
// envelope that is rejected (already counted by reason in Opener) or a
// duplicate.
func (m *Matcher) Handle(env []byte) (signed []byte, res uplink.Result, err error) {
	h, perr := template.PeekHeader(env)
	if perr == nil {
		m.mu.RLock()
		_, dup := m.answered[h.RequestID]
		m.mu.RUnlock()
		if dup {
			return nil, res, ErrDuplicate
		}
	}
	t, h, err := m.Opener.Open(env)
	if err != nil {
		return nil, res, err
	}
	res = uplink.Result{Device: h.DeviceID, RequestID: hex.EncodeToString(h.RequestID[:]),
		Expires: time.Now().Add(m.cfg.ResultLifetime).UnixMilli()}
	switch h.Purpose {
	case template.PurposeEnroll:
		res.Decision, res.Subject = m.enrol(h.SessionID, t)
	default:
		subject, score := m.Identify(t)
		t.Zero()
		res.Score = score
		if subject != "" && score < m.cfg.Threshold {
			res.Decision, res.Subject = uplink.DecisionMatch, subject
		} else {
			res.Decision = uplink.DecisionNoMatch
		}
	}
	m.count(res.Decision)
	m.mu.Lock()
	m.answered[h.RequestID] = time.Now()
	if len(m.answered) > 100000 {
		cut := time.Now().Add(-10 * time.Minute)
		for k, v := range m.answered {
			if v.Before(cut) {
				delete(m.answered, k)
			}
		}
	}
	m.mu.Unlock()
	signed, err = uplink.SignResult(m.cfg.ResultKey, res)
	return signed, res, err
}

func (m *Matcher) count(d uplink.Decision) {
	i := map[uplink.Decision]int{uplink.DecisionMatch: 0, uplink.DecisionNoMatch: 1, uplink.DecisionEnrolled: 2, uplink.DecisionRetry: 3}[d]
	if d == uplink.DecisionError {
		i = 4
	}
	m.decisions[i].Add(1)
}

// Decisions returns how many of each decision were made.
func (m *Matcher) Decisions() map[uplink.Decision]uint64 {
	return map[uplink.Decision]uint64{
		uplink.DecisionMatch: m.decisions[0].Load(), uplink.DecisionNoMatch: m.decisions[1].Load(),
		uplink.DecisionEnrolled: m.decisions[2].Load(), uplink.DecisionRetry: m.decisions[3].Load(),
		uplink.DecisionError: m.decisions[4].Load(),
	}
}

// enrol adds a sample to its session; the session's last sample makes the
// gallery entry (subject = the session id).
func (m *Matcher) enrol(session [16]byte, t *template.Template) (uplink.Decision, string) {
	if m.storePath != "" {
		unlock, err := m.lockStore()
		if err != nil {
			return uplink.DecisionError, ""
		}
		defer unlock()
		if err := m.refresh(true); err != nil {
			return uplink.DecisionError, ""
		}
		d, s := m.enrolLocked(session, t)
		ver, err := m.saveGallery(m.storePath, m.storeKey)
		if err != nil {
			return uplink.DecisionError, ""
		}
		m.mu.Lock()
		m.storeVer = ver
		m.mu.Unlock()
		return d, s
	}
	return m.enrolLocked(session, t)
}

func (m *Matcher) enrolLocked(session [16]byte, t *template.Template) (uplink.Decision, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[session] = append(m.sessions[session], t)
	if len(m.sessions[session]) < m.cfg.EnrolSamples {
		return uplink.DecisionRetry, ""
	}
	subject := hex.EncodeToString(session[:])
	m.gallery = append(m.gallery, Entry{Subject: subject, Templates: m.sessions[session]})
	delete(m.sessions, session)
	return uplink.DecisionEnrolled, subject
}

// Add puts an entry in the gallery (loading, benchmarks).
func (m *Matcher) Add(e Entry) {
	m.mu.Lock()
	m.gallery = append(m.gallery, e)
	m.mu.Unlock()
}

// Size returns the number of gallery entries.
func (m *Matcher) Size() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.gallery)
}

// Identify returns the gallery subject closest to t and the distance,
// comparing on every worker in parallel ("" and 1 for an empty gallery).
func (m *Matcher) Identify(t *template.Template) (string, float64) {
	if m.storePath != "" {
		_ = m.refresh(false) // a failed reload keeps the gallery in memory
	}
	m.mu.RLock()
	g := m.gallery
	m.mu.RUnlock()
	if len(g) == 0 {
		return "", 1
	}
	workers := min(m.cfg.Workers, len(g))
	type best struct {
		i     int
		score float64
	}
	out := make([]best, workers)
	var wg sync.WaitGroup
	chunk := (len(g) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min(len(g), (w+1)*chunk)
		wg.Add(1)
		go func(w, lo, hi int) {
			defer wg.Done()
			b := best{-1, 1}
			for i := lo; i < hi; i++ {
				for _, gt := range g[i].Templates {
					if s, err := template.Compare(t, gt); err == nil && s < b.score {
						b = best{i, s}
					}
				}
			}
			out[w] = b
		}(w, lo, hi)
	}
	wg.Wait()
	b := best{-1, 1}
	for _, x := range out {
		if x.i >= 0 && x.score < b.score {
			b = x
		}
	}
	if b.i < 0 {
		return "", 1
	}
	return g[b.i].Subject, b.score
}
