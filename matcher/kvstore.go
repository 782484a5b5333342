package matcher

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KVStore keeps the gallery and the enrolment sessions in replicated
// JetStream key-value buckets, shared by matcher instances on any number
// of machines: one key per subject ("<bucket>") and per session
// ("<bucket>_sessions", whose entries expire after KVConfig.SessionTTL),
// each value sealed with AES-256-GCM under the gallery key (additional
// data: bucket and key, so a value cannot be moved to another subject).
// A deleted subject is purged: its earlier values leave the stream.
//
// Every instance watches both buckets and keeps its in-memory index in
// step (Changed tells it when to sync). Update takes a lock held in a
// third bucket whose entries expire (so a matcher killed while holding it
// delays the others by at most KVConfig.LockTTL), reads up to the buckets'
// last revision, and writes each change only if its key is still at the
// revision it read: two writers can never overwrite each other, even if a
// lock expired under a stalled one.
type KVStore struct {
	cfg      KVConfig
	aead     cipher.AEAD
	gallery  jetstream.KeyValue
	sessions jetstream.KeyValue
	lock     jetstream.KeyValue
	owner    string

	mu      sync.Mutex // serialises Load, Sync and Update in this process
	queueMu sync.Mutex
	queue   []jetstream.KeyValueEntry // watched entries not applied yet
	arrived *sync.Cond
	applied map[string]uint64 // bucket → last revision applied
	rev     map[string]uint64 // bucket + "\x00" + key → revision applied (0: none)
	changed chan struct{}
	cancel  context.CancelFunc
	watches []jetstream.KeyWatcher
	done    sync.WaitGroup
	bad     int // undecodable values skipped since the last report
}

// KVConfig configures a KVStore. Zero values take the defaults noted.
type KVConfig struct {
	// Bucket names the gallery bucket; DefaultKVBucket.
	Bucket string
	// Replicas of each bucket; 3 (a three-node cluster survives a node).
	Replicas int
	// SessionTTL is how long a session's entry is kept after its last
	// change: longer than any session lives; 1 h.
	SessionTTL time.Duration
	// LockTTL bounds how long a dead matcher's Update lock blocks the
	// others; 5 s (an Update takes milliseconds).
	LockTTL time.Duration
	// Timeout bounds each Update (lock, catch-up and writes); 10 s.
	Timeout time.Duration
}

// DefaultKVBucket is the gallery bucket's name.
const DefaultKVBucket = "palm_gallery"

// OpenKVStore creates the buckets if they do not exist and opens them
// with the 32-byte gallery key. Nothing is read until Load.
func OpenKVStore(ctx context.Context, js jetstream.JetStream, key []byte, cfg KVConfig) (*KVStore, error) {
	aead, err := galleryAEAD(key)
	if err != nil {
		return nil, err
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultKVBucket
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 3
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = time.Hour
	}
	if cfg.LockTTL == 0 {
		cfg.LockTTL = 5 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	s := &KVStore{cfg: cfg, aead: aead, applied: map[string]uint64{}, rev: map[string]uint64{},
		changed: make(chan struct{}, 1), owner: hex.EncodeToString(randomBytes(8))}
	s.arrived = sync.NewCond(&s.queueMu)
	open := func(name string, ttl time.Duration) (jetstream.KeyValue, error) {
		kv, err := openBucket(ctx, js, jetstream.KeyValueConfig{Bucket: name, History: 1, TTL: ttl,
			Replicas: cfg.Replicas, Storage: jetstream.FileStorage})
		if err != nil {
			return nil, fmt.Errorf("matcher: key-value bucket %s: %w", name, err)
		}
		return kv, nil
	}
	if s.gallery, err = open(cfg.Bucket, 0); err != nil {
		return nil, err
	}
	if s.sessions, err = open(cfg.Bucket+"_sessions", cfg.SessionTTL); err != nil {
		return nil, err
	}
	if s.lock, err = open(cfg.Bucket+"_lock", cfg.LockTTL); err != nil {
		return nil, err
	}
	return s, nil
}

// openBucket opens the key-value bucket cfg names, creating it with cfg
// when it does not exist. An existing bucket is looked up, not updated:
// an update is a clustered stream change that every instance would make
// at its start, and on a busy cluster it can time out although nothing
// needs changing (seen once in TestKVStoreAcrossInstances). Its
// configuration is therefore the first creator's.
func openBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) { // another instance created it meanwhile
		return js.KeyValue(ctx, cfg.Bucket)
	}
	return kv, err
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Changed receives a value whenever another instance's change has
// arrived and waits to be applied (Sync).
func (s *KVStore) Changed() <-chan struct{} { return s.changed }

// Load watches both buckets and applies every entry they hold.
func (s *KVStore) Load(apply func(Change) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return errors.New("matcher: key-value store already loaded")
	}
	if err := s.watch(); err != nil {
		return err
	}
	return s.drain(apply)
}

// watch starts watching both buckets (s.mu held) and returns once the
// entries present have arrived in the queue.
func (s *KVStore) watch() error {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	fail := func(err error) error {
		s.stopWatching()
		s.cancel = nil
		s.queueMu.Lock()
		s.queue = nil
		s.queueMu.Unlock()
		return err
	}
	for _, kv := range []jetstream.KeyValue{s.gallery, s.sessions} {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			return fail(fmt.Errorf("matcher: watching %s: %w", kv.Bucket(), err))
		}
		s.watches = append(s.watches, w)
		initial := make(chan struct{})
		s.done.Add(1)
		go s.pump(w, initial)
		select {
		case <-initial:
		case <-time.After(s.cfg.Timeout):
			return fail(fmt.Errorf("matcher: %s: no initial values within %v", kv.Bucket(), s.cfg.Timeout))
		}
	}
	return nil
}

// pump moves a watcher's entries to the queue; initial is closed once the
// values present when the watch began have arrived.
func (s *KVStore) pump(w jetstream.KeyWatcher, initial chan struct{}) {
	defer s.done.Done()
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			if initial != nil {
				close(initial)
				initial = nil
			}
			continue
		}
		s.queueMu.Lock()
		s.queue = append(s.queue, e)
		s.queueMu.Unlock()
		s.arrived.Broadcast()
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
}

// drain applies the queued entries (s.mu held). Undecodable values are
// skipped and reported once, after the good ones are applied.
func (s *KVStore) drain(apply func(Change) error) error {
	s.queueMu.Lock()
	q := s.queue
	s.queue = nil
	s.queueMu.Unlock()
	for i, e := range q {
		if err := s.applyEntry(e, apply); err != nil {
			if errors.Is(err, errKVValue) {
				s.bad++
				continue
			}
			// What was not applied waits for the next Sync.
			s.queueMu.Lock()
			s.queue = append(q[i+1:], s.queue...)
			s.queueMu.Unlock()
			return err
		}
	}
	if s.bad > 0 {
		n := s.bad
		s.bad = 0
		return fmt.Errorf("%w: %d skipped", errKVValue, n)
	}
	return nil
}

var errKVValue = errors.New("matcher: undecodable key-value entry")

func (s *KVStore) applyEntry(e jetstream.KeyValueEntry, apply func(Change) error) error {
	b := e.Bucket()
	if e.Revision() > s.applied[b] {
		s.applied[b] = e.Revision()
	}
	rk := b + "\x00" + e.Key()
	if e.Revision() <= s.rev[rk] && s.rev[rk] != 0 {
		return nil // our own write, applied already
	}
	key, err := hex.DecodeString(e.Key())
	if err != nil || len(key) < 3 {
		return fmt.Errorf("%w: key %q", errKVValue, e.Key())
	}
	switch e.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		delete(s.rev, rk)
		if b != s.gallery.Bucket() || string(key[:2]) != "e/" {
			return nil // a session's entry goes when the session is over
		}
		return apply(Change{Kind: ChangeDelete, Subject: string(key[2:])})
	}
	s.rev[rk] = e.Revision()
	c, err := s.open(b, e.Key(), e.Value())
	if err != nil {
		return err
	}
	if c.Key() != string(key) {
		c.zero()
		return fmt.Errorf("%w: %s holds a change for another key", errKVValue, e.Key())
	}
	return apply(c)
}

func (s *KVStore) aad(bucket, key string) []byte { return []byte("PKV1" + bucket + "/" + key) }

func (s *KVStore) seal(bucket, key string, c Change) ([]byte, error) {
	plain, err := c.AppendBinary(nil)
	defer clear(plain)
	if err != nil {
		return nil, err
	}
	nonce := randomBytes(s.aead.NonceSize())
	return s.aead.Seal(nonce, nonce, plain, s.aad(bucket, key)), nil
}

func (s *KVStore) open(bucket, key string, v []byte) (Change, error) {
	n := s.aead.NonceSize()
	if len(v) < n+s.aead.Overhead() {
		return Change{}, fmt.Errorf("%w: %s: %d bytes", errKVValue, key, len(v))
	}
	plain, err := s.aead.Open(nil, v[:n], v[n:], s.aad(bucket, key))
	if err != nil {
		return Change{}, fmt.Errorf("%w: %s: %v", errKVValue, key, err)
	}
	defer clear(plain)
	c, err := UnmarshalChange(plain)
	if err != nil {
		return Change{}, fmt.Errorf("%w: %s: %w", errKVValue, key, err)
	}
	return c, nil
}

// Sync applies the changes that arrived from the watch. A watched bucket
// is never rewritten, so reset is not needed.
func (s *KVStore) Sync(apply func(Change) error, _ func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drain(apply)
}

// Update takes the cluster-wide lock, catches up with both buckets, runs
// f and writes its changes (each only if its key is still at the revision
// read), then releases the lock.
func (s *KVStore) Update(apply func(Change) error, _ func(), f func() ([]Change, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel == nil {
		// Used without Load (palm-matcher -delete-subject): the state
		// comes through the watch all the same.
		if err := s.watch(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	lockRev, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer rcancel()
		_ = s.lock.Delete(rctx, "update", jetstream.LastRevision(lockRev))
	}()
	if err := s.catchUp(ctx, apply); err != nil {
		return err
	}
	changes, ferr := f()
	for _, c := range changes {
		if err := s.write(ctx, c); err != nil {
			return errors.Join(ferr, err)
		}
	}
	return ferr
}

// acquire creates the lock entry, waiting while another instance holds it.
func (s *KVStore) acquire(ctx context.Context) (uint64, error) {
	for {
		rev, err := s.lock.Create(ctx, "update", []byte(s.owner))
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("matcher: gallery lock: %w", err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("matcher: gallery lock held by another matcher for %v", s.cfg.Timeout)
		case <-time.After(5*time.Millisecond + time.Duration(randomBytes(1)[0])*40*time.Microsecond):
		}
	}
}

// catchUp applies entries until both buckets' last revisions are in.
func (s *KVStore) catchUp(ctx context.Context, apply func(Change) error) error {
	for _, kv := range []jetstream.KeyValue{s.gallery, s.sessions} {
		st, err := kv.Status(ctx)
		if err != nil {
			return fmt.Errorf("matcher: %s status: %w", kv.Bucket(), err)
		}
		info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
		last := info.State.LastSeq
		if info.State.Msgs == 0 {
			continue
		}
		stop := context.AfterFunc(ctx, func() {
			s.queueMu.Lock()
			s.arrived.Broadcast()
			s.queueMu.Unlock()
		})
		for {
			if err := s.drain(apply); err != nil && !errors.Is(err, errKVValue) {
				stop()
				return err
			}
			if s.applied[kv.Bucket()] >= last {
				break
			}
			if ctx.Err() != nil {
				stop()
				return fmt.Errorf("matcher: %s: revision %d not seen within %v", kv.Bucket(), last, s.cfg.Timeout)
			}
			s.queueMu.Lock()
			if len(s.queue) == 0 && ctx.Err() == nil {
				s.arrived.Wait()
			}
			s.queueMu.Unlock()
		}
		stop()
	}
	return nil
}

// write records one change, conditional on the revision last applied.
func (s *KVStore) write(ctx context.Context, c Change) error {
	kv := s.gallery
	if c.Kind == ChangeSession {
		kv = s.sessions
	}
	key := hex.EncodeToString([]byte(c.Key()))
	rk := kv.Bucket() + "\x00" + key
	last := s.rev[rk]
	var rev uint64
	var err error
	switch {
	case c.Kind == ChangeDelete:
		if err = kv.Purge(ctx, key, jetstream.LastRevision(last)); err == nil {
			delete(s.rev, rk)
			return nil
		}
	default:
		v, serr := s.seal(kv.Bucket(), key, c)
		if serr != nil {
			return serr
		}
		if last == 0 {
			rev, err = kv.Create(ctx, key, v)
		} else {
			rev, err = kv.Update(ctx, key, v, last)
		}
	}
	if err != nil {
		return fmt.Errorf("matcher: writing %s to %s: %w", c.Kind, kv.Bucket(), err)
	}
	s.rev[rk] = rev
	return nil
}

// String names a change kind.
func (k ChangeKind) String() string {
	switch k {
	case ChangePut:
		return "put"
	case ChangeDelete:
		return "delete"
	case ChangeSession:
		return "session"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// Close stops watching.
func (s *KVStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopWatching()
	return nil
}

// stopWatching stops the watches and waits for their pumps (s.mu held).
func (s *KVStore) stopWatching() {
	if s.cancel != nil {
		s.cancel()
	}
	for _, w := range s.watches {
		_ = w.Stop() // closes its updates: the pump returns
	}
	s.watches = nil
	s.done.Wait()
}
