// Package uplink carries sealed captures to the matcher and signed results
// and commands back, over MQTT 3.1.1 (paho), with the contract of
// docs/design: palm/v1/{device}/{status,capture,result,cmd,telemetry}.
//
// Delivery is at least once while the capture is still useful: captures wait
// in a bounded in-memory outbox (never on disk: paho's memory store only),
// are published with QoS 1 whenever the link is up, count as delivered only
// on PUBACK, and are dropped and zeroed at their envelope's expiry, which the
// caller learns as ErrExpired (the user is told to try again). The client
// reconnects itself with exponential backoff and jitter, so a fleet does not
// reconnect in lock-step after a broker restart.
package uplink

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/palmd/palmd/clock"
	"github.com/palmd/palmd/protocol"
)

// Config configures a Client. Zero durations and sizes take the defaults
// noted.
type Config struct {
	DeviceID string
	// BaseTopic is the first levels of every topic (see
	// protocol.NewTopics); "" means protocol.DefaultBaseTopic.
	BaseTopic string
	// Brokers are tried in order on every connection attempt:
	// tcp://host:1883, ssl://host:8883, mqtts://…
	Brokers []string
	// TLS, when set, is used for ssl:// brokers: CA bundle, client
	// certificate (mutual TLS), MinVersion ≥ TLS 1.2.
	TLS                *tls.Config
	Username, Password string
	// KeepAlive and PingTimeout notice a broker that stopped answering
	// while the link is idle: a ping after KeepAlive of silence, the link
	// dropped when its answer is PingTimeout late; with the defaults (2 s,
	// 1 s) within about 3.5 s. AckTimeout notices it while a capture is
	// sent: a PUBACK later than that (1 s; a broker answers in
	// milliseconds) drops the link, and the capture goes again on the next.
	KeepAlive      time.Duration // 2 s
	PingTimeout    time.Duration // 1 s
	AckTimeout     time.Duration // 1 s
	WriteTimeout   time.Duration // 3 s
	ConnectTimeout time.Duration // 5 s
	BackoffMin     time.Duration // 100 ms: first reconnect delay
	BackoffMax     time.Duration // 1 s: delay cap (plus jitter)
	// ResultDeadline is how long Submit waits for the matcher's answer
	// after a capture is delivered; 3 s.
	ResultDeadline time.Duration
	// DeliveryDeadline is how long Submit waits for a capture to be
	// delivered at all (the broker unreachable or hung) before giving up
	// with ErrExpired, so the shopper is told to try again instead of
	// waiting out the envelope's lifetime; ResultDeadline.
	DeliveryDeadline time.Duration
	// ResendAfter is how long after delivery without a result a capture is
	// published again (while still valid): a broker restart or a matcher
	// that lost its subscription can swallow an acknowledged capture. The
	// matcher answers each request id once. 500 ms, doubling with each
	// resend (0.5, 1.5, 3.5 s after the first delivery): a matcher that is
	// slow, not deaf, is not buried under copies of what it is deciding
	// (make fleet on an overloaded cluster: copies a capture every 500 ms
	// kept the queue full of work already done).
	ResendAfter time.Duration
	// SendMargin: a capture with less validity left than this is not
	// published (again); it expires in the outbox. It covers the time from
	// publish to the matcher through a busy broker, so that a capture is
	// not delivered after its expiry, and a capture the matcher could not
	// answer in time anyway does not load it. 200 ms.
	SendMargin time.Duration
	// Outbox bounds: captures not yet answered; 32 and 256 KiB.
	OutboxEntries int
	OutboxBytes   int
	// ResultKey verifies the matcher's results; CommandKey the cloud's
	// commands (nil: commands are refused).
	ResultKey  ed25519.PublicKey
	CommandKey ed25519.PublicKey
	// TelemetryInterval between health messages; 60 s, negative disables.
	TelemetryInterval time.Duration
	// Telemetry, when set, adds the daemon's figures to each message.
	Telemetry func() map[string]any
	Version   string
	Logger    *slog.Logger
	// Clock tells the time for deadlines, resends, telemetry and
	// backoff; nil means the system clock. (paho's own network timeouts
	// run on real time.)
	Clock clock.Clock
}

func (c *Config) defaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.KeepAlive, DefaultKeepAlive)
	def(&c.PingTimeout, DefaultPingTimeout)
	def(&c.AckTimeout, DefaultAckTimeout)
	def(&c.WriteTimeout, 3*time.Second)
	def(&c.ConnectTimeout, 5*time.Second)
	def(&c.BackoffMin, 100*time.Millisecond)
	def(&c.BackoffMax, time.Second)
	def(&c.ResultDeadline, DefaultResultDeadline)
	def(&c.DeliveryDeadline, c.ResultDeadline)
	def(&c.ResendAfter, 500*time.Millisecond)
	def(&c.SendMargin, 200*time.Millisecond)
	def(&c.TelemetryInterval, DefaultTelemetryInterval)
	if c.OutboxEntries == 0 {
		c.OutboxEntries = DefaultOutboxEntries
	}
	if c.OutboxBytes == 0 {
		c.OutboxBytes = DefaultOutboxBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Clock = clock.Or(c.Clock)
	switch {
	case !protocol.ValidDeviceID(c.DeviceID):
		return fmt.Errorf("uplink: invalid device id %q", c.DeviceID)
	case c.BaseTopic != "" && protocol.ValidBaseTopic(c.BaseTopic) != nil:
		return fmt.Errorf("uplink: %w", protocol.ValidBaseTopic(c.BaseTopic))
	case len(c.Brokers) == 0:
		return errors.New("uplink: no broker URL")
	case len(c.ResultKey) != ed25519.PublicKeySize:
		return errors.New("uplink: no matcher result key")
	case c.BackoffMax < c.BackoffMin:
		return errors.New("uplink: backoff max below min")
	}
	return nil
}

// Defaults of Config.
const (
	DefaultKeepAlive      = 2 * time.Second
	DefaultPingTimeout    = time.Second
	DefaultAckTimeout     = time.Second
	DefaultResultDeadline = 3 * time.Second
	// DefaultTelemetryInterval is the time between health messages.
	DefaultTelemetryInterval = time.Minute
	// DefaultOutboxEntries and DefaultOutboxBytes bound the captures not
	// yet answered.
	DefaultOutboxEntries = 32
	DefaultOutboxBytes   = 256 << 10
	// MaxOutboxEntries is the largest outbox a configuration may ask for.
	MaxOutboxEntries = 1024
)

// Errors Submit returns; each means "no decision: ask the user to retry".
var (
	ErrExpired    = errors.New("uplink: capture not delivered in time")
	ErrNoResult   = errors.New("uplink: no result before the deadline")
	ErrOutboxFull = errors.New("uplink: outbox full")
	ErrClosed     = errors.New("uplink: client closed")
)

// Stats are the client's counters.
type Stats struct {
	Connected                                  bool
	Reconnects, Submitted, Delivered, Expired  uint64
	Republished, Results, NoResult, OutboxFull uint64
	ResultsDropped                             map[string]uint64 // by reason
	Commands                                   uint64
	CommandsDropped                            map[string]uint64
	OutboxDepth, OutboxBytes                   int
	// PacketsRefused counts connections dropped because the broker sent a
	// packet larger than the client accepts (before reading it).
	PacketsRefused uint64
	// HungLinks counts connections dropped because the broker stopped
	// answering (a PUBACK later than AckTimeout).
	HungLinks uint64
	// CommandAcks counts command acknowledgements published.
	CommandAcks uint64
}

type entryState int

const (
	statePending entryState = iota
	stateInflight
	stateDelivered
)

type entry struct {
	env         []byte
	hdr         protocol.Header
	reqHex      string
	state       entryState
	deliveredAt time.Time    // last PUBACK
	delivered   bool         // acknowledged at least once
	resends     int          // times published again for want of a result
	done        chan outcome // buffered 1
	settled     bool
	sending     chan struct{} // closed when the current publish is over
}

type outcome struct {
	res protocol.Result
	err error
}

// Client is the device's uplink. Create with New, then Start.
type Client struct {
	cfg    Config
	topics protocol.Topics
	mqMu   sync.Mutex
	mq     mqtt.Client // the current connection's client (options)
	start  time.Time

	connMu sync.Mutex
	conn   net.Conn // the current broker connection, to cut a hung one
	boot   string   // this run's boot id (Status.Boot, Command.Boot)

	mu       sync.Mutex
	entries  map[string]*entry // by request id hex, until settled
	order    []*entry          // outbox in submission order (pending/inflight)
	bytes    int
	recent   map[string]string // settled request id → "answered" / "timed_out"
	recentQ  []string
	seenCmds map[string]int64 // command id → expiry
	closing  bool

	connected atomic.Bool
	wake      chan struct{}
	lost      chan struct{}
	commands  chan protocol.Command
	stop      chan struct{}
	wg        sync.WaitGroup

	nReconnects, nSubmitted, nDelivered, nExpired, nRepublished atomic.Uint64
	nResults, nNoResult, nOutboxFull, nCommands                 atomic.Uint64
	nPacketsRefused, nHung, nAcks                               atomic.Uint64
	dropMu                                                      sync.Mutex
	resDropped, cmdDropped                                      map[string]uint64

	statusMu sync.Mutex
	problems []string // why the device is degraded; none: online
}

// New validates cfg and prepares a client; nothing connects until Start.
func New(cfg Config) (*Client, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg: cfg, topics: protocol.NewTopics(cfg.BaseTopic, cfg.DeviceID),
		entries: map[string]*entry{}, recent: map[string]string{}, seenCmds: map[string]int64{},
		wake: make(chan struct{}, 1), lost: make(chan struct{}, 1), commands: make(chan protocol.Command, 8),
		stop: make(chan struct{}), resDropped: map[string]uint64{}, cmdDropped: map[string]uint64{},
		boot: newBootID(),
	}
	c.mq = mqtt.NewClient(c.options(c.cfg.Clock.Now()))
	return c, nil
}

// options are the paho options of one connection attempt. The Last Will
// is fixed per connection, so each attempt gets a client of its own whose
// will carries the attempt's time (Status.TS): "offline" from the broker
// then says when the link it replaces was made, not when palmd started.
func (c *Client) options(now time.Time) *mqtt.ClientOptions {
	cfg := c.cfg
	o := mqtt.NewClientOptions()
	for _, b := range cfg.Brokers {
		o.AddBroker(b)
	}
	o.SetClientID(cfg.DeviceID)
	o.SetUsername(cfg.Username)
	o.SetPassword(cfg.Password)
	if cfg.TLS != nil {
		t := cfg.TLS.Clone()
		if t.MinVersion < tls.VersionTLS12 {
			t.MinVersion = tls.VersionTLS12
		}
		o.SetTLSConfig(t)
	}
	o.SetKeepAlive(cfg.KeepAlive)
	o.SetPingTimeout(cfg.PingTimeout)
	o.SetWriteTimeout(cfg.WriteTimeout)
	o.SetConnectTimeout(cfg.ConnectTimeout)
	// Reconnection is ours (jittered backoff), and so is delivery state:
	// a clean session and the memory store, so paho never resends on its
	// own and nothing touches the disk.
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetCleanSession(true)
	o.SetProtocolVersion(4) // MQTT 3.1.1 only: no fallback to 3.1 when a connect fails
	o.SetStore(mqtt.NewMemoryStore())
	o.SetOrderMatters(false)
	// Our own dialer: it refuses oversized packets from their length
	// prefix, before paho reads them into memory.
	dial := protocol.Dialer(protocol.MaxIncoming, &c.nPacketsRefused)
	o.SetCustomOpenConnectionFn(func(u *url.URL, opts mqtt.ClientOptions) (net.Conn, error) {
		conn, err := dial(u, opts)
		if err == nil {
			c.connMu.Lock()
			c.conn = conn
			c.connMu.Unlock()
		}
		return conn, err
	})
	o.SetBinaryWill(c.topics.Status, protocol.StatusMessage("offline", cfg.Version, c.boot, now), 1, true)
	o.SetOnConnectHandler(c.onConnect)
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		c.connected.Store(false)
		c.cfg.Logger.Warn("uplink: connection to the broker lost", "err", err)
		select {
		case c.lost <- struct{}{}:
		default:
		}
	})
	return o
}

// client returns the current paho client.
func (c *Client) client() mqtt.Client {
	c.mqMu.Lock()
	defer c.mqMu.Unlock()
	return c.mq
}

// Start connects in the background and starts delivery; it returns at once.
func (c *Client) Start() {
	c.start = c.cfg.Clock.Now()
	c.wg.Add(3)
	go c.connectLoop()
	go c.sendLoop()
	go c.telemetryLoop()
}

// newBootID draws a boot id: 16 random bytes, hex.
func newBootID() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read does not fail (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

// Boot returns this run's boot id, which commands must carry.
func (c *Client) Boot() string { return c.boot }

// Commands delivers verified commands. The channel is never closed.
func (c *Client) Commands() <-chan protocol.Command { return c.commands }

// Connected reports whether the broker link is up.
func (c *Client) Connected() bool { return c.connected.Load() }

// Backoff returns the delay before reconnection attempt n (0-based):
// exponential from BackoffMin, capped at BackoffMax, with "equal jitter"
// (half fixed, half random) so devices that lost the broker together do not
// come back together.
func Backoff(min, max time.Duration, n int) time.Duration {
	d := min
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// StillDownWarning is how often a broker that stays unreachable is
// logged again as a warning (every attempt is logged at debug).
const StillDownWarning = 30 * time.Second

func (c *Client) connectLoop() {
	defer c.wg.Done()
	attempt := 0
	var downSince, warned time.Time
	for {
		if !c.connected.Load() {
			mq := mqtt.NewClient(c.options(c.cfg.Clock.Now()))
			c.mqMu.Lock()
			c.mq = mq
			c.mqMu.Unlock()
			tok := mq.Connect()
			ok := tok.WaitTimeout(c.cfg.ConnectTimeout + time.Second)
			if ok && tok.Error() == nil {
				if !downSince.IsZero() {
					c.cfg.Logger.Info("uplink: broker reachable again", "attempts", attempt, "down_for", c.cfg.Clock.Now().Sub(downSince).Round(time.Millisecond))
					downSince = time.Time{}
				}
				attempt = 0
				select {
				case <-c.stop: // Close ran during the attempt
					mq.Disconnect(0)
					return
				default:
				}
			} else {
				d := Backoff(c.cfg.BackoffMin, c.cfg.BackoffMax, attempt)
				attempt++
				now := c.cfg.Clock.Now()
				switch {
				case downSince.IsZero():
					downSince, warned = now, now
					c.cfg.Logger.Warn("uplink: broker unreachable; captures wait in the outbox until it answers", "brokers", c.cfg.Brokers, "err", tok.Error())
				case now.Sub(warned) >= StillDownWarning:
					warned = now
					c.cfg.Logger.Warn("uplink: broker still unreachable", "down_for", now.Sub(downSince).Round(time.Second), "attempts", attempt, "err", tok.Error())
				default:
					c.cfg.Logger.Debug("uplink: connect failed", "attempt", attempt, "retry_in", d, "err", tok.Error())
				}
				select {
				case <-c.stop:
					return
				case <-clock.NewTimer(c.cfg.Clock, d).C:
				}
				continue
			}
		}
		select {
		case <-c.stop:
			return
		case <-c.lost:
			c.nReconnects.Add(1)
			// First retry after a short jittered delay too.
			select {
			case <-c.stop:
				return
			case <-clock.NewTimer(c.cfg.Clock, Backoff(c.cfg.BackoffMin, c.cfg.BackoffMax, 0)).C:
			}
		}
	}
}

// onConnect (re)subscribes, announces the device online and wakes the
// sender. It runs on paho's goroutine, so it only starts work.
func (c *Client) onConnect(cl mqtt.Client) {
	c.requeueInflight()
	c.connected.Store(true)
	go func() {
		// QoS 0: the session is clean, so a QoS 1 subscription would
		// keep nothing across a lost link, and a result lost with one
		// is covered by republishing the capture. On a NATS cluster a
		// QoS 1 subscription would also cost a JetStream consumer per
		// terminal that must be deleted through the cluster on every
		// reconnection; results published over NATS arrive at QoS 0
		// whatever the subscription asks.
		cl.Subscribe(c.topics.Result, 0, c.onResult)
		cl.Subscribe(c.topics.Cmd, 0, c.onCommand)
		cl.Publish(c.topics.Status, 1, true, c.statusMessage())
		c.kick()
	}()
	c.cfg.Logger.Info("uplink: connected")
}

// requeueInflight puts every capture still in flight back in the queue:
// its publication was on a connection now gone. It runs as a new
// connection comes up and before the sender may use it: run after (as it
// once was, from onConnect's goroutine), it could take a capture the
// sender had just published on the new connection for lost and publish it
// twice, which matchers without a shared record of answers decide twice.
func (c *Client) requeueInflight() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.order {
		if e.state == stateInflight {
			e.state = statePending
			c.nRepublished.Add(1)
		}
	}
}

func (c *Client) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Submit queues a sealed capture and waits for the matcher's result. The
// envelope is zeroed once delivered or dropped: the caller must not reuse
// it. It returns ErrExpired when the capture could not be delivered within
// DeliveryDeadline or before its expiry, ErrNoResult when it was delivered but no valid result came
// within ResultDeadline (or the expiry), ErrOutboxFull when the outbox is at
// its bound, or ctx.Err().
func (c *Client) Submit(ctx context.Context, env []byte, hdr protocol.Header) (protocol.Result, error) {
	e := &entry{env: env, hdr: hdr, reqHex: hex.EncodeToString(hdr.RequestID[:]), done: make(chan outcome, 1)}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		clear(env)
		return protocol.Result{}, ErrClosed
	}
	if len(c.order) >= c.cfg.OutboxEntries || c.bytes+len(env) > c.cfg.OutboxBytes {
		c.mu.Unlock()
		c.nOutboxFull.Add(1)
		clear(env)
		return protocol.Result{}, ErrOutboxFull
	}
	c.entries[e.reqHex] = e
	c.order = append(c.order, e)
	c.bytes += len(env)
	c.mu.Unlock()
	c.nSubmitted.Add(1)
	c.kick()

	clk := c.cfg.Clock
	expiry := clock.NewTimer(clk, hdr.Expiry.Sub(clk.Now()))
	defer expiry.Stop()
	undelivered := clock.NewTimer(clk, c.cfg.DeliveryDeadline)
	defer undelivered.Stop()
	tick := clock.NewTicker(clk, 20*time.Millisecond)
	defer tick.Stop()
	var firstDelivery time.Time
	for {
		select {
		case o := <-e.done:
			// A result can overtake its capture's PUBACK (results come at
			// QoS 0): let the publish finish with the envelope, so that
			// it is zeroed and counted when Submit returns.
			c.mu.Lock()
			sending := e.sending
			c.mu.Unlock()
			if sending != nil {
				<-sending // within AckTimeout
			}
			return o.res, o.err
		case <-ctx.Done():
			c.settle(e, "timed_out", outcome{err: ctx.Err()})
			return protocol.Result{}, ctx.Err()
		case <-undelivered.C:
			if err := c.giveUpUndelivered(e); err != nil {
				return protocol.Result{}, err
			}
		case <-expiry.C:
			if err := c.giveUpUndelivered(e); err != nil {
				return protocol.Result{}, err
			}
			c.nNoResult.Add(1)
			c.settle(e, "timed_out", outcome{err: ErrNoResult})
			return protocol.Result{}, ErrNoResult
		case now := <-tick.C:
			c.mu.Lock()
			if e.delivered && firstDelivery.IsZero() {
				firstDelivery = e.deliveredAt
			}
			resend := e.state == stateDelivered && now.Sub(e.deliveredAt) >= c.cfg.ResendAfter<<min(e.resends, 6)
			if resend {
				e.state = statePending
				e.resends++
			}
			c.mu.Unlock()
			if resend {
				c.nRepublished.Add(1)
				c.kick()
			}
			if !firstDelivery.IsZero() && now.Sub(firstDelivery) >= c.cfg.ResultDeadline {
				c.nNoResult.Add(1)
				c.settle(e, "timed_out", outcome{err: ErrNoResult})
				return protocol.Result{}, ErrNoResult
			}
		}
	}
}

// giveUpUndelivered settles e with ErrExpired, and returns it, when e was
// never delivered; nil otherwise.
func (c *Client) giveUpUndelivered(e *entry) error {
	c.mu.Lock()
	delivered := e.delivered
	c.mu.Unlock()
	if delivered {
		return nil
	}
	c.nExpired.Add(1)
	c.settle(e, "timed_out", outcome{err: ErrExpired})
	return ErrExpired
}

// settle finishes an entry once: removes it from the outbox, zeroes its
// envelope, remembers its fate for late results and reports o to Submit.
func (c *Client) settle(e *entry, fate string, o outcome) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.settled {
		return false
	}
	e.settled = true
	delete(c.entries, e.reqHex)
	for i, x := range c.order {
		if x == e {
			c.order = append(c.order[:i], c.order[i+1:]...)
			c.bytes -= len(e.env)
			break
		}
	}
	if e.state != stateInflight {
		clear(e.env)
	}
	c.recent[e.reqHex] = fate
	c.recentQ = append(c.recentQ, e.reqHex)
	if len(c.recentQ) > 512 {
		delete(c.recent, c.recentQ[0])
		c.recentQ = c.recentQ[1:]
	}
	select {
	case e.done <- o:
	default:
	}
	return true
}

// sendLoop publishes pending captures whenever the link is up and drops
// expired ones.
func (c *Client) sendLoop() {
	defer c.wg.Done()
	tick := clock.NewTicker(c.cfg.Clock, 50*time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-tick.C:
		}
		last := c.cfg.Clock.Now().Add(c.cfg.SendMargin)
		var send []*entry
		var sending []chan struct{}
		c.mu.Lock()
		for _, e := range c.order {
			if e.state == statePending && last.Before(e.hdr.Expiry) && c.connected.Load() {
				e.state, e.sending = stateInflight, make(chan struct{})
				send, sending = append(send, e), append(sending, e.sending)
			}
		}
		c.mu.Unlock()
		for i, e := range send {
			go c.publish(e, sending[i])
		}
	}
}

// publish sends one capture and records the outcome. Only a PUBACK counts:
// a token that completes with an error (connection lost) puts the capture
// back in the queue, and so does one that does not complete within
// AckTimeout, which also cuts the link: a broker that takes the packet and
// does not answer is hung.
func (c *Client) publish(e *entry, done chan struct{}) {
	tok := c.client().Publish(c.topics.Capture, 1, false, e.env)
	ok := tok.WaitTimeout(c.cfg.AckTimeout)
	if !ok {
		c.cutHungLink("no PUBACK within " + c.cfg.AckTimeout.String())
	}
	c.published(e, done, ok && tok.Error() == nil)
}

// published records how the publication that done belongs to ended:
// acknowledged by the broker or not.
func (c *Client) published(e *entry, done chan struct{}, acked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A publication on a connection that dropped may end after the capture
	// was queued again and handed to a newer one (requeueInflight): only
	// the newest publisher decides the capture's state.
	current := e.sending == done
	defer func() {
		close(done)
		if current {
			e.sending = nil
		}
	}()
	if e.settled {
		if current || e.sending == nil {
			clear(e.env) // settle left the bytes to us while in flight
		}
		if acked {
			c.nDelivered.Add(1) // the answer overtook the PUBACK
		}
		return
	}
	if !current {
		return
	}
	if !acked {
		e.state = statePending
		return
	}
	// Acknowledged by the broker. The bytes stay until the matcher
	// answers, in case the capture has to go again.
	e.state, e.delivered, e.deliveredAt = stateDelivered, true, c.cfg.Clock.Now()
	c.nDelivered.Add(1)
}

// cutHungLink closes the current broker connection: paho sees the link
// lost, and the connect loop reconnects.
func (c *Client) cutHungLink(why string) {
	c.nHung.Add(1)
	c.cfg.Logger.Warn("uplink: broker not answering; dropping the connection", "why", why)
	c.connMu.Lock()
	conn := c.conn
	c.connMu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
}

// ResultDropReasons are the reasons an incoming result is dropped
// (Stats.ResultsDropped keys), for metrics that show every reason from
// the start.
func ResultDropReasons() []string {
	return []string{"oversized", "bad_signature", "malformed", "wrong_device", "expired", "duplicate", "late", "unknown"}
}

// CommandDropReasons are the reasons an incoming command is dropped
// (Stats.CommandsDropped keys).
func CommandDropReasons() []string {
	return []string{"no_key", "oversized", "bad_signature", "malformed", "wrong_device", "stale_boot", "expired", "replay", "queue_full"}
}

func (c *Client) dropResult(reason string) {
	c.dropMu.Lock()
	c.resDropped[reason]++
	c.dropMu.Unlock()
}

func (c *Client) dropCommand(reason string) {
	c.dropMu.Lock()
	c.cmdDropped[reason]++
	c.dropMu.Unlock()
}

// onResult runs on paho's goroutine: it verifies and hands over without
// blocking.
func (c *Client) onResult(_ mqtt.Client, m mqtt.Message) {
	r, err := protocol.VerifyResult(c.cfg.ResultKey, m.Payload())
	switch {
	case errors.Is(err, protocol.ErrOversized):
		c.dropResult("oversized")
		return
	case errors.Is(err, protocol.ErrBadSig):
		c.dropResult("bad_signature")
		return
	case err != nil:
		c.dropResult("malformed")
		return
	case r.Device != c.cfg.DeviceID:
		c.dropResult("wrong_device")
		return
	case c.cfg.Clock.Now().UnixMilli() > r.Expires:
		c.dropResult("expired")
		return
	}
	c.mu.Lock()
	e, ok := c.entries[r.RequestID]
	fate := c.recent[r.RequestID]
	c.mu.Unlock()
	if !ok {
		switch fate {
		case "answered":
			c.dropResult("duplicate")
		case "timed_out":
			c.dropResult("late")
		default:
			c.dropResult("unknown")
		}
		return
	}
	if c.settle(e, "answered", outcome{res: r}) {
		c.nResults.Add(1)
	} else {
		c.dropResult("duplicate")
	}
}

func (c *Client) onCommand(_ mqtt.Client, m mqtt.Message) {
	refuse := func(reason string) {
		c.dropCommand(reason)
		// Answered with the id it claims, so that the cloud learns why;
		// nothing else is taken from an unverified command.
		if id, kind := protocol.PeekCommand(m.Payload()); id != "" {
			c.ack(protocol.CommandAck{ID: id, Kind: kind, Status: protocol.AckRefused, Reason: reason})
		}
	}
	if len(c.cfg.CommandKey) != ed25519.PublicKeySize {
		refuse("no_key")
		return
	}
	cmd, err := protocol.VerifyCommand(c.cfg.CommandKey, m.Payload())
	switch {
	case errors.Is(err, protocol.ErrOversized):
		refuse("oversized")
		return
	case errors.Is(err, protocol.ErrBadSig):
		refuse("bad_signature")
		return
	case err != nil:
		refuse("malformed")
		return
	case cmd.Device != c.cfg.DeviceID:
		refuse("wrong_device")
		return
	case cmd.Boot != c.boot:
		// Issued before this start: possibly a capture replayed.
		refuse("stale_boot")
		return
	}
	now := c.cfg.Clock.Now().UnixMilli()
	if now > cmd.Expires {
		refuse("expired")
		return
	}
	c.mu.Lock()
	_, seen := c.seenCmds[cmd.ID]
	if !seen {
		c.seenCmds[cmd.ID] = cmd.Expires
		for id, exp := range c.seenCmds { // forget what can no longer be replayed
			if exp < now {
				delete(c.seenCmds, id)
			}
		}
	}
	c.mu.Unlock()
	if seen {
		refuse("replay")
		return
	}
	select {
	case c.commands <- cmd:
		c.nCommands.Add(1)
	default:
		refuse("queue_full")
	}
}

// AckCommand answers a verified command on the cmd/ack topic: accepted,
// or refused with the reason (a stable word) and any detail. It does not
// wait: an answer that finds no link is not kept.
func (c *Client) AckCommand(cmd protocol.Command, accepted bool, reason, detail string) {
	a := protocol.CommandAck{ID: cmd.ID, Kind: cmd.Kind, Status: protocol.AckAccepted, Reason: reason, Detail: detail}
	if !accepted {
		a.Status = protocol.AckRefused
	}
	c.ack(a)
}

func (c *Client) ack(a protocol.CommandAck) {
	a.TS = c.cfg.Clock.Now().UnixMilli()
	b, err := json.Marshal(a)
	if err != nil || !c.connected.Load() {
		return
	}
	c.nAcks.Add(1)
	c.client().Publish(c.topics.CmdAck, 1, false, b)
}

// SetDegraded publishes the retained status "degraded" with problems, in
// words, while problems is not empty, and "online" again once it is. The
// state is kept across reconnections.
func (c *Client) SetDegraded(problems []string) {
	c.statusMu.Lock()
	same := slices.Equal(c.problems, problems)
	c.problems = slices.Clone(problems)
	c.statusMu.Unlock()
	if same || !c.connected.Load() {
		return
	}
	c.client().Publish(c.topics.Status, 1, true, c.statusMessage())
}

// statusMessage is the retained status of a connected device.
func (c *Client) statusMessage() []byte {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	st := protocol.Status{State: "online", Version: c.cfg.Version, Boot: c.boot}
	if len(c.problems) > 0 {
		st.State, st.Problems = "degraded", slices.Clone(c.problems)
	}
	return protocol.StatusMessageWith(st, c.cfg.Clock.Now())
}

func (c *Client) telemetryLoop() {
	defer c.wg.Done()
	if c.cfg.TelemetryInterval < 0 {
		return
	}
	t := clock.NewTicker(c.cfg.Clock, c.cfg.TelemetryInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if c.connected.Load() {
				c.client().Publish(c.topics.Telemetry, 0, false, c.telemetry())
			}
		}
	}
}

func (c *Client) telemetry() []byte {
	s := c.Stats()
	m := map[string]any{
		"ts": c.cfg.Clock.Now().UnixMilli(), "uptime_s": int(c.cfg.Clock.Now().Sub(c.start).Seconds()),
		"captures": s.Submitted, "delivered": s.Delivered, "expired": s.Expired, "results": s.Results,
		"no_result": s.NoResult, "outbox_full": s.OutboxFull, "outbox_depth": s.OutboxDepth,
		"reconnects": s.Reconnects, "results_dropped": s.ResultsDropped, "commands_dropped": s.CommandsDropped,
		"packets_refused": s.PacketsRefused, "hung_links": s.HungLinks,
	}
	if c.cfg.Telemetry != nil {
		for k, v := range c.cfg.Telemetry() {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return b
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	depth, bytes := len(c.order), c.bytes
	c.mu.Unlock()
	c.dropMu.Lock()
	rd, cd := map[string]uint64{}, map[string]uint64{}
	for k, v := range c.resDropped {
		rd[k] = v
	}
	for k, v := range c.cmdDropped {
		cd[k] = v
	}
	c.dropMu.Unlock()
	return Stats{
		Connected: c.connected.Load(), Reconnects: c.nReconnects.Load(), Submitted: c.nSubmitted.Load(),
		Delivered: c.nDelivered.Load(), Expired: c.nExpired.Load(), Republished: c.nRepublished.Load(),
		Results: c.nResults.Load(), NoResult: c.nNoResult.Load(), OutboxFull: c.nOutboxFull.Load(),
		ResultsDropped: rd, Commands: c.nCommands.Load(), CommandsDropped: cd, OutboxDepth: depth, OutboxBytes: bytes,
		PacketsRefused: c.nPacketsRefused.Load(), HungLinks: c.nHung.Load(), CommandAcks: c.nAcks.Load(),
	}
}

// Close stops accepting captures, lets queued ones be delivered or expire
// (until ctx is done at the latest), announces the device offline and
// disconnects. Whatever is still queued is zeroed. Calls after the first
// return nil at once.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	already := c.closing
	c.closing = true
	c.mu.Unlock()
	if already {
		return nil
	}
	for {
		c.mu.Lock()
		n := len(c.order)
		c.mu.Unlock()
		if n == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-clock.NewTimer(c.cfg.Clock, 20*time.Millisecond).C:
		}
	}
	var err error
	if c.connected.Load() {
		tok := c.client().Publish(c.topics.Status, 1, true, protocol.StatusMessage("offline", c.cfg.Version, c.boot, c.cfg.Clock.Now()))
		if !tok.WaitTimeout(time.Second) || tok.Error() != nil {
			err = fmt.Errorf("uplink: publishing offline status: %v", tok.Error())
		}
	}
	close(c.stop)
	c.client().Disconnect(250)
	c.connected.Store(false)
	c.wg.Wait()
	c.mu.Lock()
	for _, e := range c.order {
		clear(e.env)
		e.settled = true
		select {
		case e.done <- outcome{err: ErrClosed}:
		default:
		}
	}
	c.order, c.bytes = nil, 0
	clear(c.entries)
	c.mu.Unlock()
	return err
}

// RoundTrip republishes the retained online status at QoS 1 and returns the
// time to its PUBACK: the broker round trip the self-test reports.
func (c *Client) RoundTrip(ctx context.Context) (time.Duration, error) {
	if !c.connected.Load() {
		return 0, errors.New("uplink: not connected")
	}
	start := c.cfg.Clock.Now()
	tok := c.client().Publish(c.topics.Status, 1, true, c.statusMessage())
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return 0, fmt.Errorf("uplink: %w", err)
	}
	return c.cfg.Clock.Now().Sub(start), nil
}
