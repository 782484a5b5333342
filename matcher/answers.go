package matcher

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/palmd/palmd/clock"
)

// Answers keeps the signed results sent, by request id, so that a
// capture published again (the device lost the answer, or a matcher died
// before acknowledging it) gets the same answer, not a second decision.
// The zero Matcher keeps them in memory (memAnswers); instances sharing
// captures keep them in a replicated bucket (KVAnswers), so that any of
// them answers a republished capture as the first did.
type Answers interface {
	// Lookup returns the result recorded for id.
	Lookup(id [16]byte) (signed []byte, ok bool)
	// Record records signed as id's answer unless one is recorded
	// already, and returns the one that stays recorded.
	Record(id [16]byte, signed []byte) (kept []byte, err error)
}

// answeredFor bounds how long answers are kept for republished captures:
// longer than any envelope lives (Opener.MaxLifetime).
const answeredFor = 10 * time.Minute

// memAnswers keeps answers in memory for answeredFor.
type memAnswers struct {
	clock clock.Clock
	mu    sync.Mutex
	m     map[[16]byte]memAnswer
}

type memAnswer struct {
	at     time.Time
	signed []byte
}

func (a *memAnswers) Lookup(id [16]byte) ([]byte, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	x, ok := a.m[id]
	return x.signed, ok
}

func (a *memAnswers) Record(id [16]byte, signed []byte) ([]byte, error) {
	now := clock.Or(a.clock).Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[[16]byte]memAnswer{}
	}
	if x, ok := a.m[id]; ok {
		return x.signed, nil
	}
	a.m[id] = memAnswer{at: now, signed: signed}
	if len(a.m) > 100000 {
		for k, v := range a.m {
			if now.Sub(v.at) > answeredFor {
				delete(a.m, k)
			}
		}
	}
	return signed, nil
}

// KVAnswers keeps answers in a replicated JetStream key-value bucket whose
// entries expire after answeredFor. Record creates the entry only if it
// does not exist, so of two instances deciding the same request at once,
// one answer is kept and both send it.
type KVAnswers struct {
	kv      jetstream.KeyValue
	timeout time.Duration
}

// AnswersTimeout bounds each read and write of the answers bucket. While
// the cluster elects a new leader for it (a node died) it does not
// answer for seconds; a capture is then decided without it rather than
// kept waiting past the shopper's patience — harmless, since the same
// capture decided again gets the same signed result (Config.ResultLifetime).
const AnswersTimeout = 250 * time.Millisecond

// DefaultAnswersBucket names the answers bucket.
const DefaultAnswersBucket = "palm_answers"

// OpenKVAnswers creates (if needed) and opens the answers bucket with
// the given replicas (0: 3).
func OpenKVAnswers(ctx context.Context, js jetstream.JetStream, replicas int) (*KVAnswers, error) {
	if replicas == 0 {
		replicas = 3
	}
	kv, err := openBucket(ctx, js, jetstream.KeyValueConfig{Bucket: DefaultAnswersBucket, History: 1,
		TTL: answeredFor, Replicas: replicas, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("matcher: answers bucket: %w", err)
	}
	return &KVAnswers{kv: kv, timeout: AnswersTimeout}, nil
}

// Lookup reads id's answer; an unreachable bucket is "not answered" (the
// capture is decided again: the same palm gets the same decision).
func (a *KVAnswers) Lookup(id [16]byte) ([]byte, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	e, err := a.kv.Get(ctx, hex.EncodeToString(id[:]))
	if err != nil {
		return nil, false
	}
	return e.Value(), true
}

// Record creates id's entry, or returns the one another instance made.
func (a *KVAnswers) Record(id [16]byte, signed []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	key := hex.EncodeToString(id[:])
	_, err := a.kv.Create(ctx, key, signed)
	if err == nil {
		return signed, nil
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		if e, gerr := a.kv.Get(ctx, key); gerr == nil {
			return e.Value(), nil
		}
	}
	return signed, fmt.Errorf("matcher: recording answer: %w", err)
}
