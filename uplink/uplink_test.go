package uplink

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/palmd/palmd/internal/brokertest"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor/sensortest"
	"github.com/palmd/palmd/template"
)

type keys struct {
	resPub  ed25519.PublicKey
	resPriv ed25519.PrivateKey
	cmdPub  ed25519.PublicKey
	cmdPriv ed25519.PrivateKey
	sealer  *protocol.Sealer
}

func newKeys(t testing.TB, device string) *keys {
	t.Helper()
	k := &keys{}
	k.resPub, k.resPriv, _ = ed25519.GenerateKey(nil)
	k.cmdPub, k.cmdPriv, _ = ed25519.GenerateKey(nil)
	_, dev, _ := ed25519.GenerateKey(nil)
	mk, err := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	if err != nil {
		t.Fatal(err)
	}
	k.sealer = &protocol.Sealer{DeviceID: device, DeviceKey: dev, Matcher: mk.Public()}
	return k
}

// envelope seals a random template with the given lifetime.
func (k *keys) envelope(t testing.TB, life time.Duration) ([]byte, protocol.Header) {
	t.Helper()
	tp := &template.Template{Version: template.AlgorithmVersion}
	r := rand.New(rand.NewPCG(rand.Uint64(), 1))
	for m := range tp.Planes {
		for o := range tp.Planes[m] {
			for y := range tp.Planes[m][o] {
				tp.Planes[m][o][y] = r.Uint32()
			}
		}
	}
	k.sealer.Lifetime = life
	env, h, err := k.sealer.Seal(tp, protocol.PurposeIdentify, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	return env, h
}

func newClient(t testing.TB, k *keys, cfg Config) *Client {
	t.Helper()
	if cfg.DeviceID == "" {
		cfg.DeviceID = k.sealer.DeviceID
	}
	cfg.ResultKey, cfg.CommandKey = k.resPub, k.cmdPub
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 500 * time.Millisecond
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// peer is a matcher stand-in: it receives captures and, when answering,
// replies with a signed result.
type peer struct {
	t      testing.TB
	mq     mqtt.Client
	mu     sync.Mutex
	got    []received
	answer bool
	key    ed25519.PrivateKey
}

type received struct {
	env []byte
	hdr protocol.Header
	at  time.Time
}

func newPeer(t testing.TB, url string, tc *tls.Config, id, filter string, answer bool, key ed25519.PrivateKey) *peer {
	t.Helper()
	p := &peer{t: t, answer: answer, key: key}
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(true).
		SetMaxReconnectInterval(200 * time.Millisecond).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).SetOrderMatters(false)
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	ready := make(chan struct{}, 1)
	o.SetOnConnectHandler(func(c mqtt.Client) {
		go func() {
			c.Subscribe(filter, 1, p.onCapture).Wait()
			select {
			case ready <- struct{}{}:
			default:
			}
		}()
	})
	p.mq = mqtt.NewClient(o)
	p.mq.Connect()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("peer did not connect")
	}
	t.Cleanup(func() { p.mq.Disconnect(100) })
	return p
}

func (p *peer) onCapture(c mqtt.Client, m mqtt.Message) {
	env := bytes.Clone(m.Payload())
	h, err := protocol.PeekHeader(env)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.got = append(p.got, received{env: env, hdr: h, at: time.Now()})
	p.mu.Unlock()
	if p.answer {
		res, _ := protocol.SignResult(p.key, protocol.Result{Device: h.DeviceID, RequestID: hex.EncodeToString(h.RequestID[:]),
			Decision: protocol.DecisionNoMatch, Score: 0.45, Expires: time.Now().Add(5 * time.Second).UnixMilli()})
		go c.Publish(protocol.TopicsFor(h.DeviceID).Result, 1, false, res)
	}
}

func (p *peer) received() []received {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]received(nil), p.got...)
}

func TestDeliveryAndResult(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0001")
	p := newPeer(t, b.URL(), nil, "matcher-1", "palm/v1/+/capture", true, k.resPriv)
	c := newClient(t, k, Config{Brokers: []string{b.URL()}})
	waitFor(t, "connection", 5*time.Second, c.Connected)

	env, h := k.envelope(t, 5*time.Second)
	sent := bytes.Clone(env)
	res, err := c.Submit(context.Background(), env, h)
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != protocol.DecisionNoMatch || res.RequestID != hex.EncodeToString(h.RequestID[:]) {
		t.Fatalf("result %+v", res)
	}
	got := p.received()
	if len(got) != 1 || !bytes.Equal(got[0].env, sent) {
		t.Fatalf("matcher received %d captures, or not the exact bytes", len(got))
	}
	if !bytes.Equal(env, make([]byte, len(env))) {
		t.Error("envelope not zeroed after delivery")
	}
	// A newcomer sees the retained online status.
	st := make(chan []byte, 1)
	o := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("observer")
	obs := mqtt.NewClient(o)
	obs.Connect().Wait()
	defer obs.Disconnect(50)
	obs.Subscribe(protocol.TopicsFor("term-0001").Status, 1, func(_ mqtt.Client, m mqtt.Message) { st <- m.Payload() })
	select {
	case s := <-st:
		if !strings.Contains(string(s), `"state":"online"`) {
			t.Errorf("status %s", s)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no retained status")
	}
}

// silentMatcher connects a client for device, configured as cfg, to a
// broker where a matcher takes captures and never answers; the client
// and the device's envelopes run on the returned manual clock.
func silentMatcher(t *testing.T, device string, cfg Config) (*Client, *keys, *sensortest.Clock) {
	t.Helper()
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, device)
	newPeer(t, b.URL(), nil, "silent-matcher", "palm/v1/+/capture", false, nil)
	clk := sensortest.NewClock()
	cfg.Brokers, cfg.Clock = []string{b.URL()}, clk
	c := newClient(t, k, cfg)
	waitFor(t, "connection", 5*time.Second, c.Connected)
	// The envelope's own lifetime is on the manual clock's scale too.
	k.sealer.Clock = clk
	return c, k, clk
}

// TestResultDeadline: a delivered capture the matcher does not answer
// ends with ErrNoResult at the deadline. The client runs on a manual
// clock: the test moves time past a one-minute deadline instead of
// waiting for it.
func TestResultDeadline(t *testing.T) {
	c, k, clk := silentMatcher(t, "term-0002", Config{ResultDeadline: time.Minute, ResendAfter: time.Hour})
	env, h := k.envelope(t, time.Hour)
	done := make(chan error, 1)
	go func() { _, err := c.Submit(context.Background(), env, h); done <- err }()
	waitFor(t, "delivery", 5*time.Second, func() bool { return c.Stats().Delivered == 1 })
	start := time.Now()
	var err error
	for err == nil {
		select {
		case err = <-done:
		case <-time.After(20 * time.Millisecond):
			clk.Advance(10 * time.Second) // a minute of deadline in a few real ticks
		}
	}
	if !errors.Is(err, ErrNoResult) {
		t.Fatalf("no answer: %v", err)
	}
	if s := c.Stats(); s.NoResult != 1 || s.Delivered < 1 || s.Republished != 0 {
		t.Errorf("stats %+v", s)
	}
	t.Logf("a 1 min deadline took %v of real time", time.Since(start).Round(time.Millisecond))
}

// TestSendMargin: a capture too close to its expiry to be delivered and
// answered is not published at all; it expires in the outbox.
func TestSendMargin(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0012")
	p := newPeer(t, b.URL(), nil, "matcher-1", "palm/v1/+/capture", true, k.resPriv)
	c := newClient(t, k, Config{Brokers: []string{b.URL()}, SendMargin: 300 * time.Millisecond})
	waitFor(t, "connection", 5*time.Second, c.Connected)
	env, h := k.envelope(t, 250*time.Millisecond)
	if _, err := c.Submit(context.Background(), env, h); !errors.Is(err, ErrExpired) {
		t.Fatalf("capture inside the margin: %v", err)
	}
	// A capture with time to spare goes through on the same client.
	env, h = k.envelope(t, 5*time.Second)
	if _, err := c.Submit(context.Background(), env, h); err != nil {
		t.Fatal(err)
	}
	if got := p.received(); len(got) != 1 || got[0].hdr.RequestID != h.RequestID {
		t.Fatalf("matcher received %d captures, want only the second", len(got))
	}
	if s := c.Stats(); s.Expired != 1 || s.Delivered != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestMutualTLS(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{TLS: true})
	k := newKeys(t, "term-0003")
	good := newClient(t, k, Config{Brokers: []string{b.URL()}, TLS: brokertest.ClientTLS(t, b.CA, b.CA, "term-0003")})
	waitFor(t, "mutual-TLS connection", 5*time.Second, good.Connected)

	rogue := brokertest.NewCA(t)
	k2 := newKeys(t, "term-0004")
	bad := newClient(t, k2, Config{Brokers: []string{b.URL()}, TLS: brokertest.ClientTLS(t, b.CA, rogue, "term-0004")})
	time.Sleep(1500 * time.Millisecond)
	if bad.Connected() {
		t.Fatal("a client certificate from another CA was accepted")
	}
	// And without any client certificate.
	noCert := &tls.Config{RootCAs: b.CA.Pool, MinVersion: tls.VersionTLS12, ServerName: "localhost"}
	k3 := newKeys(t, "term-0005")
	anon := newClient(t, k3, Config{Brokers: []string{b.URL()}, TLS: noCert})
	time.Sleep(500 * time.Millisecond)
	if anon.Connected() {
		t.Fatal("a client without certificate was accepted")
	}
}

const deviceACL = `
# each device only its own topics
pattern readwrite palm/v1/%u/#
user matcher-1
topic read palm/v1/+/capture
topic write palm/v1/+/result
`

func TestACLConfinesDevices(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{TLS: true, ACL: deviceACL})
	// The matcher sees device B's topic; device A tries to use it.
	seen := make(chan string, 10)
	mo := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("matcher-1").SetTLSConfig(brokertest.ClientTLS(t, b.CA, b.CA, "matcher-1"))
	m := mqtt.NewClient(mo)
	if tok := m.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("matcher connect: %v\n%s", tok.Error(), b.Log())
	}
	defer m.Disconnect(50)
	m.Subscribe("palm/v1/+/capture", 1, func(_ mqtt.Client, msg mqtt.Message) { seen <- msg.Topic() }).Wait()

	ao := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("term-a").SetTLSConfig(brokertest.ClientTLS(t, b.CA, b.CA, "term-a"))
	a := mqtt.NewClient(ao)
	if tok := a.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	defer a.Disconnect(50)
	a.Publish("palm/v1/term-b/capture", 1, false, []byte("forged")).WaitTimeout(2 * time.Second)
	a.Publish("palm/v1/term-a/capture", 1, false, []byte("own")).WaitTimeout(2 * time.Second)
	select {
	case topic := <-seen:
		if topic != "palm/v1/term-a/capture" {
			t.Fatalf("device A published as device B (%s)", topic)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("device A's own capture did not arrive")
	}
	select {
	case topic := <-seen:
		t.Fatalf("unexpected message on %s", topic)
	case <-time.After(300 * time.Millisecond):
	}
	// Device A cannot read device B's results (mosquitto applies read ACLs
	// when delivering), but reads its own.
	leaked := make(chan string, 4)
	a.Subscribe("palm/v1/+/result", 1, func(_ mqtt.Client, msg mqtt.Message) { leaked <- msg.Topic() }).WaitTimeout(2 * time.Second)
	m.Publish("palm/v1/term-b/result", 1, false, []byte("for b")).WaitTimeout(2 * time.Second)
	m.Publish("palm/v1/term-a/result", 1, false, []byte("for a")).WaitTimeout(2 * time.Second)
	select {
	case topic := <-leaked:
		if topic != "palm/v1/term-a/result" {
			t.Fatalf("device A read %s", topic)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("device A did not receive its own result")
	}
	select {
	case topic := <-leaked:
		t.Fatalf("device A read %s", topic)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestBrokerRestartMidStream kills the broker in the middle of a stream of
// captures and starts it again: every capture is delivered (once or more,
// never after its expiry) or reported expired; none is silently lost.
func TestBrokerRestartMidStream(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0006")
	p := newPeer(t, b.URL(), nil, "matcher-1", "palm/v1/+/capture", true, k.resPriv)
	c := newClient(t, k, Config{Brokers: []string{b.URL()}, ResultDeadline: time.Second, WriteTimeout: time.Second, PingTimeout: time.Second, KeepAlive: 2 * time.Second})
	waitFor(t, "connection", 5*time.Second, c.Connected)

	const n = 24
	type outcome struct {
		h   protocol.Header
		err error
	}
	results := make([]outcome, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		env, h := k.envelope(t, 1200*time.Millisecond)
		results[i].h = h
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, results[i].err = c.Submit(context.Background(), env, h)
		}(i)
		time.Sleep(60 * time.Millisecond)
		if i == 6 {
			b.Kill()
		}
		if i == 20 {
			b.Restart()
		}
	}
	wg.Wait()
	got := map[[16]byte][]time.Time{}
	for _, r := range p.received() {
		got[r.hdr.RequestID] = append(got[r.hdr.RequestID], r.at)
	}
	var ok, expired, noResult int
	for i, r := range results {
		for _, at := range got[r.h.RequestID] {
			if at.After(r.h.Expiry) {
				t.Errorf("capture %d delivered %v after its expiry", i, at.Sub(r.h.Expiry))
			}
		}
		switch {
		case r.err == nil:
			ok++
			if len(got[r.h.RequestID]) == 0 {
				t.Errorf("capture %d answered but the matcher never saw it", i)
			}
		case errors.Is(r.err, ErrExpired):
			expired++
		case errors.Is(r.err, ErrNoResult):
			// Acknowledged by the broker, not answered in time: reported,
			// not lost (the user is asked to retry).
			noResult++
		default:
			t.Errorf("capture %d: unexpected %v", i, r.err)
		}
	}
	t.Logf("%d answered, %d expired undelivered, %d delivered without answer in time; reconnects %d, republished %d",
		ok, expired, noResult, c.Stats().Reconnects, c.Stats().Republished)
	if ok < n/2 {
		t.Errorf("a 0.8 s outage should spare most captures of 1.2 s lifetime (%d of %d answered)", ok, n)
	}
	if s := c.Stats(); s.OutboxDepth != 0 || s.OutboxBytes != 0 {
		t.Errorf("outbox not empty afterwards: %+v", s)
	}
}

func TestBrokerNeverComesBack(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	url := b.URL()
	b.Stop()
	k := newKeys(t, "term-0007")
	c := newClient(t, k, Config{Brokers: []string{url}, OutboxEntries: 8, OutboxBytes: 8 * 2100})
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := map[string]int{}
	for i := 0; i < 30; i++ {
		env, h := k.envelope(t, 400*time.Millisecond)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Submit(context.Background(), env, h)
			mu.Lock()
			errs[fmt.Sprint(err)]++
			mu.Unlock()
		}()
		if s := c.Stats(); s.OutboxDepth > 8 || s.OutboxBytes > 8*2100 {
			t.Fatalf("outbox over its bound: %+v", s)
		}
	}
	wg.Wait()
	if errs[ErrExpired.Error()] == 0 || errs[ErrOutboxFull.Error()] == 0 || errs[ErrExpired.Error()]+errs[ErrOutboxFull.Error()] != 30 {
		t.Fatalf("outcomes %v", errs)
	}
	if s := c.Stats(); s.OutboxDepth != 0 || s.Expired == 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestHungBrokerNoticed: a broker that stops answering with its sockets
// open (SIGSTOP) is noticed — the link is dropped and Connected says so —
// whether the link is idle (keep-alive) or a capture is being sent (no
// PUBACK), and the capture is given up after DeliveryDeadline instead of
// the envelope's lifetime; once the broker answers again, captures flow.
func TestHungBrokerNoticed(t *testing.T) {
	for _, busy := range []bool{false, true} {
		t.Run(map[bool]string{false: "idle", true: "sending"}[busy], func(t *testing.T) {
			b := brokertest.Start(t, brokertest.Options{})
			k := newKeys(t, "term-0014")
			newPeer(t, b.URL(), nil, "matcher-1", "palm/v1/+/capture", true, k.resPriv)
			c := newClient(t, k, Config{Brokers: []string{b.URL()}})
			waitFor(t, "connection", 5*time.Second, c.Connected)
			b.Pause()
			paused := time.Now()
			if busy {
				env, h := k.envelope(t, 30*time.Second)
				_, err := c.Submit(context.Background(), env, h)
				if !errors.Is(err, ErrExpired) {
					t.Fatalf("capture to a hung broker: %v", err)
				}
				if waited := time.Since(paused); waited > 10*time.Second {
					t.Errorf("the shopper waited %v for a hung broker", waited.Round(time.Millisecond))
				}
				if c.Stats().HungLinks == 0 {
					t.Error("the missing PUBACK did not drop the link")
				}
			}
			waitFor(t, "hung broker noticed", 10*time.Second, func() bool { return !c.Connected() })
			t.Logf("noticed after %v", time.Since(paused).Round(time.Millisecond))
			b.Resume()
			waitFor(t, "reconnection", 10*time.Second, c.Connected)
			env, h := k.envelope(t, 5*time.Second)
			if _, err := c.Submit(context.Background(), env, h); err != nil {
				t.Fatalf("after the broker came back: %v", err)
			}
		})
	}
}

// TestLastWillTime: the offline status the broker publishes for a lost
// device carries the time of the connection it lost, not of the process
// start.
func TestLastWillTime(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0015")
	c := newClient(t, k, Config{Brokers: []string{b.URL()}})
	waitFor(t, "connection", 5*time.Second, c.Connected)
	time.Sleep(1500 * time.Millisecond)
	c.cutHungLink("test") // a lost link: the device reconnects at once
	waitFor(t, "reconnection", 5*time.Second, func() bool { return c.Stats().Reconnects == 1 && c.Connected() })
	reconnected := time.Now()
	statuses := make(chan protocol.Status, 8)
	x := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("watcher"))
	x.Connect().Wait()
	defer x.Disconnect(50)
	x.Subscribe(protocol.TopicsFor("term-0015").Status, 1, func(_ mqtt.Client, m mqtt.Message) {
		if s, err := protocol.ParseStatus(m.Payload()); err == nil {
			statuses <- s
		}
	}).Wait()
	c.cutHungLink("test") // lost again: the broker publishes the will
	for {
		select {
		case s := <-statuses:
			if s.State != "offline" {
				continue
			}
			if s.Boot != c.Boot() {
				t.Errorf("will boot %q, want %q", s.Boot, c.Boot())
			}
			if at := time.UnixMilli(s.TS); at.Before(reconnected.Add(-time.Second)) {
				t.Fatalf("will time %v is before the connection it belongs to (%v)", at, reconnected)
			}
			return
		case <-time.After(10 * time.Second):
			t.Fatal("no offline will published")
		}
	}
}

func TestBadResultsAndCommands(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0008")
	c := newClient(t, k, Config{Brokers: []string{b.URL()}, ResultDeadline: 2 * time.Second})
	waitFor(t, "connection", 5*time.Second, c.Connected)
	// A hostile or broken peer on the device's topics.
	o := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("chaos")
	x := mqtt.NewClient(o)
	x.Connect().Wait()
	defer x.Disconnect(50)
	topics := protocol.TopicsFor("term-0008")
	pub := func(topic string, payload []byte) { x.Publish(topic, 1, false, payload).Wait() }

	// Answer the real capture only after the garbage, twice.
	env, h := k.envelope(t, 5*time.Second)
	req := hex.EncodeToString(h.RequestID[:])
	done := make(chan error, 1)
	go func() { _, err := c.Submit(context.Background(), env, h); done <- err }()
	waitFor(t, "delivery", 3*time.Second, func() bool { return c.Stats().Delivered == 1 })

	_, stranger, _ := ed25519.GenerateKey(nil)
	good, _ := protocol.SignResult(k.resPriv, protocol.Result{Device: "term-0008", RequestID: req, Decision: protocol.DecisionMatch, Expires: time.Now().Add(time.Minute).UnixMilli()})
	forged, _ := protocol.SignResult(stranger, protocol.Result{Device: "term-0008", RequestID: req, Decision: protocol.DecisionMatch, Expires: time.Now().Add(time.Minute).UnixMilli()})
	unknown, _ := protocol.SignResult(k.resPriv, protocol.Result{Device: "term-0008", RequestID: strings.Repeat("ab", 16), Decision: protocol.DecisionMatch, Expires: time.Now().Add(time.Minute).UnixMilli()})
	stale, _ := protocol.SignResult(k.resPriv, protocol.Result{Device: "term-0008", RequestID: req, Decision: protocol.DecisionMatch, Expires: time.Now().Add(-time.Minute).UnixMilli()})
	other, _ := protocol.SignResult(k.resPriv, protocol.Result{Device: "term-9999", RequestID: req, Decision: protocol.DecisionMatch, Expires: time.Now().Add(time.Minute).UnixMilli()})
	pub(topics.Result, []byte("{not json"))
	pub(topics.Result, bytes.Repeat([]byte("x"), protocol.MaxMessage+1))
	pub(topics.Result, forged)
	pub(topics.Result, unknown)
	pub(topics.Result, stale)
	pub(topics.Result, other)
	pub(topics.Result, []byte(`{"payload":"!!","sig":"??"}`))
	pub(topics.Result, good)
	pub(topics.Result, good) // duplicate
	if err := <-done; err != nil {
		t.Fatalf("valid result not accepted among garbage: %v", err)
	}

	boot := c.Boot()
	enroll, _ := protocol.SignCommand(k.cmdPriv, protocol.Command{Device: "term-0008", ID: "c1", Kind: protocol.CommandEnroll, Session: strings.Repeat("cd", 16), Samples: 3, Expires: time.Now().Add(time.Minute).UnixMilli(), Boot: boot})
	forgedCmd, _ := protocol.SignCommand(stranger, protocol.Command{Device: "term-0008", ID: "c2", Kind: protocol.CommandSelfTest, Expires: time.Now().Add(time.Minute).UnixMilli(), Boot: boot})
	badEnroll, _ := protocol.SignCommand(k.cmdPriv, protocol.Command{Device: "term-0008", ID: "c3", Kind: protocol.CommandEnroll, Samples: 99, Expires: time.Now().Add(time.Minute).UnixMilli(), Boot: boot})
	oldCmd, _ := protocol.SignCommand(k.cmdPriv, protocol.Command{Device: "term-0008", ID: "c4", Kind: protocol.CommandSelfTest, Expires: time.Now().Add(-time.Second).UnixMilli(), Boot: boot})
	// A command issued to the device's previous run: what a replay after
	// a restart looks like (TestCommandReplayAfterRestart).
	prevRun, _ := protocol.SignCommand(k.cmdPriv, protocol.Command{Device: "term-0008", ID: "c5", Kind: protocol.CommandEnroll, Session: strings.Repeat("ef", 16), Samples: 3, Expires: time.Now().Add(time.Minute).UnixMilli(), Boot: strings.Repeat("01", 16)})
	pub(topics.Cmd, prevRun)
	pub(topics.Cmd, enroll)
	pub(topics.Cmd, enroll) // replay
	pub(topics.Cmd, forgedCmd)
	pub(topics.Cmd, badEnroll)
	pub(topics.Cmd, oldCmd)
	pub(topics.Cmd, []byte("garbage"))
	select {
	case cmd := <-c.Commands():
		if cmd.Kind != protocol.CommandEnroll || cmd.Samples != 3 {
			t.Fatalf("command %+v", cmd)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("valid command not delivered")
	}
	want := map[string]uint64{"malformed": 2, "oversized": 1, "bad_signature": 1, "unknown": 1, "expired": 1, "wrong_device": 1, "duplicate": 1}
	wantCmd := map[string]uint64{"replay": 1, "bad_signature": 1, "malformed": 2, "expired": 1, "stale_boot": 1}
	// Messages are handled concurrently (paho, order not kept): wait for
	// every count, then check them.
	waitFor(t, "all drops counted", 3*time.Second, func() bool {
		s := c.Stats()
		for k, v := range want {
			if s.ResultsDropped[k] != v {
				return false
			}
		}
		for k, v := range wantCmd {
			if s.CommandsDropped[k] != v {
				return false
			}
		}
		return true
	})
	s := c.Stats()
	for k, v := range want {
		if s.ResultsDropped[k] != v {
			t.Errorf("results dropped %s = %d, want %d (all: %v)", k, s.ResultsDropped[k], v, s.ResultsDropped)
		}
	}
	for k, v := range wantCmd {
		if s.CommandsDropped[k] != v {
			t.Errorf("commands dropped %s = %d, want %d (all: %v)", k, s.CommandsDropped[k], v, s.CommandsDropped)
		}
	}
	select {
	case cmd := <-c.Commands():
		t.Fatalf("second command delivered: %+v", cmd)
	default:
	}
}

// TestCommandReplayAfterRestart: a signed enrol command captured on the
// wire and published again once the device has restarted (and forgotten
// the command ids it saw) is refused: it names the previous run's boot id.
func TestCommandReplayAfterRestart(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0010")
	x := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("attacker"))
	x.Connect().Wait()
	defer x.Disconnect(50)
	topic := protocol.TopicsFor("term-0010").Cmd

	first := newClient(t, k, Config{Brokers: []string{b.URL()}})
	waitFor(t, "connection", 5*time.Second, first.Connected)
	captured, _ := protocol.SignCommand(k.cmdPriv, protocol.Command{Device: "term-0010", ID: "enrol-alice", Kind: protocol.CommandEnroll,
		Session: strings.Repeat("a1", 16), Samples: 3, Expires: time.Now().Add(time.Minute).UnixMilli(), Boot: first.Boot()})
	x.Publish(topic, 1, false, captured).Wait()
	select {
	case <-first.Commands():
	case <-time.After(3 * time.Second):
		t.Fatal("the genuine command was not delivered")
	}
	if err := first.Close(context.Background()); err != nil {
		t.Log(err)
	}

	second := newClient(t, k, Config{Brokers: []string{b.URL()}})
	waitFor(t, "reconnection", 5*time.Second, second.Connected)
	if second.Boot() == first.Boot() {
		t.Fatal("a restart kept the boot id")
	}
	time.Sleep(100 * time.Millisecond) // the command subscription
	x.Publish(topic, 1, false, captured).Wait()
	waitFor(t, "replay counted", 3*time.Second, func() bool { return second.Stats().CommandsDropped["stale_boot"] == 1 })
	select {
	case c := <-second.Commands():
		t.Fatalf("replayed command delivered after a restart: %+v", c)
	default:
	}
}

func TestSharedSubscriptionSplitsCaptures(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0009")
	p1 := newPeer(t, b.URL(), nil, "matcher-1", protocol.SharedCaptureFilter, true, k.resPriv)
	p2 := newPeer(t, b.URL(), nil, "matcher-2", protocol.SharedCaptureFilter, true, k.resPriv)
	c := newClient(t, k, Config{Brokers: []string{b.URL()}})
	waitFor(t, "connection", 5*time.Second, c.Connected)
	const n = 20
	for i := 0; i < n; i++ {
		env, h := k.envelope(t, 5*time.Second)
		if _, err := c.Submit(context.Background(), env, h); err != nil {
			t.Fatalf("capture %d: %v", i, err)
		}
	}
	n1, n2 := len(p1.received()), len(p2.received())
	if n1+n2 != n || n1 == 0 || n2 == 0 {
		t.Fatalf("matchers received %d and %d of %d captures", n1, n2, n)
	}
	if d := c.Stats().ResultsDropped["duplicate"]; d != 0 {
		t.Errorf("%d captures answered twice", d)
	}
}

func TestBackoffJitter(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		d := Backoff(100*time.Millisecond, time.Second, 10)
		if d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("capped backoff %v outside [max/2, max]", d)
		}
		seen[d] = true
	}
	if len(seen) < 40 {
		t.Errorf("backoff barely varies: %d distinct values of 50", len(seen))
	}
	if d := Backoff(100*time.Millisecond, time.Second, 0); d < 50*time.Millisecond || d > 100*time.Millisecond {
		t.Errorf("first backoff %v", d)
	}
}

func TestConfigValidation(t *testing.T) {
	k := newKeys(t, "term-0010")
	for _, cfg := range []Config{
		{DeviceID: "bad/id", Brokers: []string{"tcp://x:1"}, ResultKey: k.resPub},
		{DeviceID: "ok", ResultKey: k.resPub},
		{DeviceID: "ok", Brokers: []string{"tcp://x:1"}},
		{DeviceID: "ok", Brokers: []string{"tcp://x:1"}, ResultKey: k.resPub, BackoffMin: time.Second, BackoffMax: time.Millisecond},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

// BenchmarkPublishAck measures capture publish → PUBACK on loopback.
func BenchmarkPublishAck(b *testing.B) {
	br := brokertest.Start(b, brokertest.Options{})
	o := mqtt.NewClientOptions().AddBroker(br.URL()).SetClientID("bench").SetStore(mqtt.NewMemoryStore())
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer c.Disconnect(50)
	payload := make([]byte, 3089) // a hybrid-suite envelope
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		tok := c.Publish("palm/v1/bench/capture", 1, false, payload)
		tok.Wait()
		if tok.Error() != nil {
			b.Fatal(tok.Error())
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "µs-median")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "µs-p99")
}

// BenchmarkRecoveryAfterRestart measures the time from the broker accepting
// connections again to the first capture delivered, with default backoff.
func BenchmarkRecoveryAfterRestart(b *testing.B) {
	br := brokertest.Start(b, brokertest.Options{})
	k := newKeys(b, "term-bench")
	newPeer(b, br.URL(), nil, "matcher-1", "palm/v1/+/capture", false, nil)
	c, err := New(Config{DeviceID: "term-bench", Brokers: []string{br.URL()}, ResultKey: k.resPub, ResultDeadline: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	c.Start()
	defer c.Close(context.Background())
	waitFor(b, "connection", 5*time.Second, c.Connected)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		br.Kill()
		waitFor(b, "loss noticed", 30*time.Second, func() bool { return !c.Connected() })
		time.Sleep(1500 * time.Millisecond) // several failed attempts: backoff at its cap
		before := c.Stats().Delivered
		env, h := k.envelope(b, 10*time.Second)
		go c.Submit(context.Background(), env, h)
		br.Restart()
		up := time.Now()
		waitFor(b, "delivery", 10*time.Second, func() bool { return c.Stats().Delivered > before })
		total += time.Since(up)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-first-delivery")
}

// TestCommandAcksAndDegradedUnderABaseTopic: under a configured base
// topic, every command whose id can be read is answered on cmd/ack —
// accepted by the device, or refused by the uplink with the reason — and
// the retained status says degraded, with why, while the terminal is.
func TestCommandAcksAndDegradedUnderABaseTopic(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0021")
	const base = "acme/palm-v2"
	topics := protocol.NewTopics(base, "term-0021")
	acks := observe(t, b.URL(), topics.CmdAck)
	status := observe(t, b.URL(), topics.Status)
	elsewhere := observe(t, b.URL(), "palm/v1/#")
	c := newClient(t, k, Config{Brokers: []string{b.URL()}, BaseTopic: base})
	waitFor(t, "connection", 5*time.Second, c.Connected)
	waitState(t, status, "online")

	x := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("cloud"))
	x.Connect().Wait()
	defer x.Disconnect(50)
	pub := func(payload []byte) { x.Publish(topics.Cmd, 1, false, payload).Wait() }
	nextAck := func() protocol.CommandAck {
		t.Helper()
		select {
		case m := <-acks:
			var a protocol.CommandAck
			if err := json.Unmarshal(m, &a); err != nil {
				t.Fatalf("ack %s: %v", m, err)
			}
			return a
		case <-time.After(3 * time.Second):
			t.Fatal("no ack")
		}
		return protocol.CommandAck{}
	}
	boot := c.Boot()
	_, stranger, _ := ed25519.GenerateKey(nil)
	cmd := func(key ed25519.PrivateKey, id string, expires time.Time) []byte {
		b, _ := protocol.SignCommand(key, protocol.Command{Device: "term-0021", ID: id, Kind: protocol.CommandSelfTest, Expires: expires.UnixMilli(), Boot: boot})
		return b
	}
	good := cmd(k.cmdPriv, "a1", time.Now().Add(time.Minute))
	pub(good)
	got := <-c.Commands()
	c.AckCommand(got, true, "", "passed=true")
	if a := nextAck(); a.ID != "a1" || a.Status != protocol.AckAccepted || a.Detail != "passed=true" || a.Kind != protocol.CommandSelfTest {
		t.Errorf("accepted ack %+v", a)
	}
	for _, tc := range []struct {
		name, id, reason string
		msg              []byte
	}{
		{"replay", "a1", "replay", good},
		{"forged", "a2", "bad_signature", cmd(stranger, "a2", time.Now().Add(time.Minute))},
		{"expired", "a3", "expired", cmd(k.cmdPriv, "a3", time.Now().Add(-time.Second))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub(tc.msg)
			if a := nextAck(); a.ID != tc.id || a.Status != protocol.AckRefused || a.Reason != tc.reason {
				t.Errorf("ack %+v, want refused %s for %s", a, tc.reason, tc.id)
			}
		})
	}
	pub([]byte("garbage")) // no id to echo: no answer
	select {
	case m := <-acks:
		t.Errorf("garbage answered: %s", m)
	case <-time.After(300 * time.Millisecond):
	}
	if n := c.Stats().CommandAcks; n != 4 {
		t.Errorf("%d acks counted, want 4", n)
	}

	c.SetDegraded([]string{"camera: no frame for 2s"})
	waitState(t, status, "degraded")
	c.SetDegraded(nil)
	waitState(t, status, "online")
	select {
	case m := <-elsewhere:
		t.Errorf("published under the default base topic: %s", m)
	default:
	}
}

// TestResendBacksOff: a delivered capture without a result is published
// again ResendAfter after its delivery, then after twice that, four
// times…, not at a fixed pace. The clock moves in 100 ms steps; each
// resend is seen at the first step where it shows (a late look can only
// see it later, never earlier).
func TestResendBacksOff(t *testing.T) {
	c, k, clk := silentMatcher(t, "term-0003", Config{ResultDeadline: time.Minute, ResendAfter: time.Second})
	env, h := k.envelope(t, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _, _ = c.Submit(ctx, env, h) }()
	waitFor(t, "delivery", 5*time.Second, func() bool { return c.Stats().Delivered == 1 })
	start := clk.Now()
	var seen []time.Duration
	for len(seen) < 3 && clk.Now().Sub(start) < 10*time.Second {
		clk.Advance(100 * time.Millisecond)
		want := uint64(len(seen) + 1)
		deadline := time.Now().Add(50 * time.Millisecond)
		for time.Now().Before(deadline) && c.Stats().Republished < want {
			time.Sleep(time.Millisecond)
		}
		if c.Stats().Republished >= want {
			seen = append(seen, clk.Now().Sub(start))
			// The copy is delivered before time moves on.
			waitFor(t, "copy delivered", 5*time.Second, func() bool { return c.Stats().Delivered == 1+c.Stats().Republished })
		}
	}
	// 1 s after the first delivery, then 2 s after the second, then 4 s.
	for i, want := range []time.Duration{time.Second, 3 * time.Second, 7 * time.Second} {
		// Never before its time; late by a few steps at most (a loaded
		// machine may take more than one look to show it).
		if i >= len(seen) || seen[i] < want || seen[i] > want+600*time.Millisecond {
			t.Fatalf("resends at %v after the first delivery, want about 1 s, 3 s, 7 s", seen)
		}
	}
}
