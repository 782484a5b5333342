package matcher

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/palmd/palmd/protocol"
)

// The capture queue on a NATS cluster. Terminals publish captures over
// MQTT on palm/v1/{device}/capture (under the default base topic), which
// nats-server maps to the subject palm.v1.{device}.capture; CaptureStream holds them (work-queue
// retention: a capture leaves the stream when a matcher acknowledges it)
// and every matcher instance pulls from the one durable CaptureConsumer,
// so each capture goes to one instance, and to another when that one
// does not acknowledge it within NATSConfig.AckWait.
const (
	CaptureStream   = "PALM_CAPTURES"
	CaptureConsumer = "matchers"
	CaptureSubjects = "palm.v1.*.capture" // under the default base topic
)

// NATSConfig connects a matcher to a NATS cluster (ServeNATS).
type NATSConfig struct {
	// BaseTopic is the devices' MQTT base topic (see protocol.NewTopics;
	// "" means protocol.DefaultBaseTopic): its subjects are the topic's
	// levels joined by '.', as nats-server maps MQTT topics.
	BaseTopic string
	// Workers bounds the captures handled at once; 2 × CPUs.
	Workers int
	// Replicas of the capture stream and consumer; 3.
	Replicas int
	// AckWait is how long a capture handed to an instance waits for its
	// acknowledgement before it goes to another; DefaultAckWait.
	AckWait time.Duration
	// Patience is how long a device waits for its result once its
	// capture is delivered (the terminals' mqtt.result_deadline); a
	// capture stored in the queue longer ago than that has been given up
	// by its device, and is dropped undecided. DefaultPatience.
	Patience time.Duration
	Logger   *slog.Logger
	// OnDecision, when set, is called after each answered capture.
	OnDecision func(protocol.Result, time.Duration)
	// OnSubscribed, when set, is called once captures are being pulled.
	OnSubscribed func()
}

// DefaultAckWait: a matcher decides in milliseconds; one that has not
// acknowledged within 2 s is dead or stuck, and the capture (valid for
// 10 s) still has time to be decided by another.
const DefaultAckWait = 2 * time.Second

// DefaultPatience is the devices' default wait for a result after
// delivery (uplink.DefaultResultDeadline; a test holds them equal).
//
// Why drop what devices gave up on: while the capture queue has no
// leader (a broker node killed: seconds of election), captures and the
// terminals' republished copies pile up, and the queue is first in,
// first out. Deciding the pile in order answers only captures whose
// shoppers were already told to try again, while the fresh ones wait
// behind it and are given up in turn: on a busy matcher the queue never
// catches up. Since a device's wait starts at the latest when a copy of
// its capture is stored, a copy stored longer ago than the device's
// patience can go without a look.
const DefaultPatience = 3 * time.Second

// ConnectNATS connects to a NATS cluster (urls: nats:// or tls://, any
// node; the others are learnt and tried on reconnect, forever).
func ConnectNATS(urls []string, tlsCfg *tls.Config, name string, log *slog.Logger) (*nats.Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// No reconnect buffer: a result published while the link is down
	// would go out when it is back, seconds late; without it the publish
	// fails, the capture stays unacknowledged and goes to an instance
	// that can answer in time (or expires, the device knowing it).
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(true), nats.PingInterval(2 * time.Second), nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "server", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("nats", "err", err) })}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("matcher: connecting to NATS: %w", err)
	}
	return nc, nil
}

// ServeNATS pulls captures from the cluster's capture queue and answers
// each on its device's result subject (which terminals receive on their
// MQTT result topic, at QoS 0: a terminal that misses it publishes the
// capture again, and whichever instance takes the copy sends the answer
// recorded for it). A capture is acknowledged after its answer is
// published on the same connection, so an instance that dies before
// answering leaves the capture to another. Commands are taken from every
// device's cmd subject. Bad envelopes are counted and dropped for good.
func (m *Matcher) ServeNATS(ctx context.Context, nc *nats.Conn, sc NATSConfig) error {
	log, workers := m.serving(sc.Logger, sc.Workers)
	replicas := sc.Replicas
	if replicas == 0 {
		replicas = 3
	}
	ackWait := sc.AckWait
	if ackWait == 0 {
		ackWait = DefaultAckWait
	}
	patience := sc.Patience
	if patience == 0 {
		patience = DefaultPatience
	}
	base := sc.BaseTopic
	if base == "" {
		base = protocol.DefaultBaseTopic
	}
	if err := protocol.ValidBaseTopic(base); err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	subjects := strings.ReplaceAll(base, "/", ".")
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	var cons jetstream.Consumer
	for {
		// The cluster may be electing leaders (a node restarting): retry.
		cons, err = ensureCaptureQueue(ctx, js, subjects+".*.capture", replicas, ackWait, workers)
		if err == nil {
			break
		}
		log.Warn("capture queue not ready; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	if len(m.cfg.CommandKey) != 0 {
		sub, err := nc.Subscribe(subjects+".*.cmd", func(msg *nats.Msg) {
			if err := m.HandleCommand(msg.Data, deviceOfSubject(base, msg.Subject)); err != nil {
				log.Warn("command refused", "subject", msg.Subject, "err", err)
			}
		})
		if err != nil {
			return fmt.Errorf("matcher: subscribing to commands: %w", err)
		}
		defer sub.Unsubscribe()
	}
	go m.followStore(ctx)
	sem := make(chan struct{}, workers)
	var inflight sync.WaitGroup
	handle := func(msg jetstream.Msg) {
		if meta, err := msg.Metadata(); err == nil {
			if queued := m.now().Sub(meta.Timestamp); queued > patience {
				m.refuse(RefusedAbandoned)
				log.Debug("capture given up by its device while queued: dropped", "subject", msg.Subject(), "queued", queued)
				_ = msg.Ack()
				return
			}
		}
		env := append([]byte(nil), msg.Data()...)
		start := time.Now()
		signed, res, fresh := m.decide(env, deviceOfSubject(base, msg.Subject()), msg.Subject(), log)
		if signed == nil {
			_ = msg.Term() // never worth another try
			return
		}
		if err := nc.Publish(subjects+"."+res.Device+".result", signed); err != nil {
			log.Warn("publishing result", "err", err)
			return // not acknowledged: it goes again
		}
		// After the publish, on the same connection: the broker has the
		// answer before it sees the acknowledgement.
		_ = msg.Ack()
		if sc.OnDecision != nil && fresh {
			sc.OnDecision(res, time.Since(start))
		}
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		inflight.Add(1)
		go func() {
			defer func() { <-sem; inflight.Done() }()
			handle(msg)
		}()
	}, jetstream.PullMaxMessages(workers), jetstream.PullHeartbeat(2*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Debug("capture queue", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("matcher: consuming captures: %w", err)
	}
	log.Info("matcher subscribed", "stream", CaptureStream, "consumer", CaptureConsumer)
	if sc.OnSubscribed != nil {
		sc.OnSubscribed()
	}
	<-ctx.Done()
	cc.Stop()
	inflight.Wait()
	return nc.Drain()
}

// ensureCaptureQueue creates or updates the capture stream and the shared
// consumer (every instance asks for the same configuration).
func ensureCaptureQueue(ctx context.Context, js jetstream.JetStream, subjects string, replicas int, ackWait time.Duration, workers int) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: CaptureStream, Subjects: []string{subjects},
		Retention: jetstream.WorkQueuePolicy, Replicas: replicas, Storage: jetstream.FileStorage,
		MaxAge: 2 * time.Minute, MaxMsgSize: protocol.MaxPacket, Discard: jetstream.DiscardOld})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", CaptureStream, err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: CaptureConsumer,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxAckPending: 4096, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", CaptureConsumer, err)
	}
	return cons, nil
}

// Notifier is a Store that learns of other instances' changes as they
// happen (KVStore): the matcher then follows them at once instead of at
// its next identification.
type Notifier interface {
	Changed() <-chan struct{}
}

// followStore syncs the gallery whenever the store says it changed,
// until ctx is done.
func (m *Matcher) followStore(ctx context.Context) {
	n, ok := m.store.(Notifier)
	if !ok {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.Changed():
			if err := m.sync(); err != nil {
				m.refuse(RefusedStore)
			}
		}
	}
}

// deviceOfSubject returns the device id of a {base}.{device}.… subject
// (base with '.' for '/'), or "".
func deviceOfSubject(base, subject string) string {
	return protocol.DeviceOfTopic(base, strings.ReplaceAll(subject, ".", "/"))
}
