package uplink

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/palmd/palmd/internal/brokertest"
)

// TestRequeueOnlyWhatAnOldLinkCarried: a capture in flight when a link
// comes up was published on the one before it and goes again; one a
// newer publisher has taken over is decided by that publisher alone —
// the older one's late end neither queues it again (a second copy to the
// matchers) nor wipes bytes still being sent.
func TestRequeueOnlyWhatAnOldLinkCarried(t *testing.T) {
	k := newKeys(t, "term-rq")
	c, err := New(Config{DeviceID: "term-rq", Brokers: []string{"tcp://127.0.0.1:1"}, ResultKey: k.resPub})
	if err != nil {
		t.Fatal(err)
	}
	env, h := k.envelope(t, time.Minute)
	old := make(chan struct{})
	e := &entry{env: bytes.Clone(env), hdr: h, state: stateInflight, sending: old, done: make(chan outcome, 1)}
	c.order = append(c.order, e)

	// The link comes up: what the old one carried goes again.
	c.requeueInflight()
	if e.state != statePending || c.Stats().Republished != 1 {
		t.Fatalf("after a new link: state %v, republished %d; want pending, 1", e.state, c.Stats().Republished)
	}
	// The sender hands it to the new link.
	newer := make(chan struct{})
	e.state, e.sending = stateInflight, newer
	for _, tc := range []struct {
		name  string
		acked bool
	}{{"the old publication fails late", false}, {"the old publication is acknowledged late", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c.published(e, make(chan struct{}), tc.acked)
			if e.state != stateInflight || e.sending != newer {
				t.Errorf("state %v, publisher replaced: %v; the newer publication decides", e.state, e.sending != newer)
			}
		})
	}
	c.published(e, old, false) // the real old one, for good measure
	if e.state != stateInflight {
		t.Fatalf("state %v after the old publisher ended; want in flight", e.state)
	}
	// Settled while the new publication is in flight: the old
	// publisher's end leaves the bytes to it, the new one wipes them.
	e.settled, c.order = true, nil // as settle leaves it
	c.published(e, make(chan struct{}), false)
	if bytes.Count(e.env, []byte{0}) == len(e.env) {
		t.Fatal("a stale publisher wiped bytes the current one is sending")
	}
	c.published(e, newer, true)
	if bytes.Count(e.env, []byte{0}) != len(e.env) || e.sending != nil {
		t.Fatal("the current publisher left the settled capture's bytes")
	}
	// Nothing in flight when a link comes up: nothing goes twice.
	c.requeueInflight()
	if c.Stats().Republished != 1 {
		t.Errorf("republished %d, want still 1", c.Stats().Republished)
	}
}

// TestQueuedCapturesGoOnce: captures queued before the first connection
// reach the matcher once each when the link comes up.
func TestQueuedCapturesGoOnce(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-once")
	p := newPeer(t, b.URL(), nil, "matcher-once", "palm/v1/+/capture", true, k.resPriv)
	c, err := New(Config{DeviceID: "term-once", Brokers: []string{b.URL()}, ResultKey: k.resPub, ResendAfter: time.Minute, AckTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	const n = DefaultOutboxEntries
	errs := make(chan error, n)
	for range n {
		env, h := k.envelope(t, 20*time.Second)
		go func() { _, err := c.Submit(context.Background(), env, h); errs <- err }()
	}
	waitFor(t, "captures queued", 5*time.Second, func() bool { return c.Stats().OutboxDepth == n })
	c.Start()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	seen := map[[16]byte]int{}
	for _, r := range p.received() {
		seen[r.hdr.RequestID]++
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("capture %x reached the matcher %d times", id[:4], k)
		}
	}
	if len(seen) != n {
		t.Errorf("%d captures reached the matcher, want %d", len(seen), n)
	}
}
