package matcher

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/palmd/palmd/protocol"
)

// ServeConfig connects a matcher to a broker.
type ServeConfig struct {
	// BaseTopic is the first levels of the devices' topics (see
	// protocol.NewTopics); "" means protocol.DefaultBaseTopic.
	BaseTopic string
	Brokers   []string
	TLS       *tls.Config
	ClientID  string
	Username  string
	Password  string
	// Workers bounds the captures handled at once; 2 × CPUs.
	Workers int
	Logger  *slog.Logger
	// OnDecision, when set, is called after each answered capture.
	OnDecision func(protocol.Result, time.Duration)
	// OnSubscribed, when set, is called each time the shared capture
	// subscription is confirmed by the broker (first connect and every
	// reconnect): from then on, captures reach this instance.
	OnSubscribed func()
}

// Serve subscribes to every device's captures through the shared
// subscription and answers until ctx is done. Bad envelopes are counted
// (Opener.Counts) and dropped; valid traffic keeps flowing.
func (m *Matcher) Serve(ctx context.Context, sc ServeConfig) error {
	if len(sc.Brokers) == 0 || sc.ClientID == "" {
		return errors.New("matcher: brokers and client id are required")
	}
	if sc.BaseTopic == "" {
		sc.BaseTopic = protocol.DefaultBaseTopic
	}
	if err := protocol.ValidBaseTopic(sc.BaseTopic); err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	log, workers := m.serving(sc.Logger, sc.Workers)
	sem := make(chan struct{}, workers)
	o := mqtt.NewClientOptions().SetClientID(sc.ClientID).SetUsername(sc.Username).SetPassword(sc.Password).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(500 * time.Millisecond).
		SetMaxReconnectInterval(2 * time.Second).SetOrderMatters(false).SetStore(mqtt.NewMemoryStore()).SetCleanSession(true).
		SetCustomOpenConnectionFn(protocol.Dialer(protocol.MaxPacket, nil))
	for _, b := range sc.Brokers {
		o.AddBroker(b)
	}
	if sc.TLS != nil {
		o.SetTLSConfig(sc.TLS)
	}
	handler := func(c mqtt.Client, msg mqtt.Message) {
		env := append([]byte(nil), msg.Payload()...)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		go func() {
			defer func() { <-sem }()
			start := time.Now()
			signed, res, fresh := m.decide(env, protocol.DeviceOfTopic(sc.BaseTopic, msg.Topic()), msg.Topic(), log)
			if signed == nil {
				return
			}
			if !c.IsConnectionOpen() {
				// paho would queue it for the next connection, and it
				// would go out late; the device publishes the capture
				// again and gets the recorded answer then.
				log.Warn("broker link down: answer not sent", "device", res.Device, "request", res.RequestID)
				return
			}
			c.Publish(protocol.NewTopics(sc.BaseTopic, res.Device).Result, 1, false, signed)
			if sc.OnDecision != nil && fresh {
				sc.OnDecision(res, time.Since(start))
			}
		}()
	}
	onCommand := func(_ mqtt.Client, msg mqtt.Message) {
		if err := m.HandleCommand(msg.Payload(), protocol.DeviceOfTopic(sc.BaseTopic, msg.Topic())); err != nil {
			log.Warn("command refused", "topic", msg.Topic(), "err", err)
		}
	}
	subscribe := func(c mqtt.Client, filter string, h mqtt.MessageHandler) bool {
		tok := c.Subscribe(filter, 1, h)
		if !tok.WaitTimeout(10 * time.Second) {
			log.Error("subscribe: no answer from the broker in 10 s", "filter", filter)
			return false
		}
		if err := tok.Error(); err != nil {
			log.Error("subscribe", "filter", filter, "err", err)
			return false
		}
		log.Info("matcher subscribed", "filter", filter)
		return true
	}
	o.SetOnConnectHandler(func(c mqtt.Client) {
		go func() {
			// Commands first: a session must be known before its samples.
			if len(m.cfg.CommandKey) != 0 && !subscribe(c, protocol.CommandFilterFor(sc.BaseTopic), onCommand) {
				return
			}
			if !subscribe(c, protocol.SharedCaptureFilterFor(sc.BaseTopic), handler) {
				return
			}
			if sc.OnSubscribed != nil {
				sc.OnSubscribed()
			}
		}()
	})
	c := mqtt.NewClient(o)
	c.Connect()
	<-ctx.Done()
	c.Disconnect(250)
	return nil
}

// serving returns the logger (log, or one that discards) and the bound on
// captures handled at once (workers, or 2 × the search workers) of a
// serving loop.
func (m *Matcher) serving(log *slog.Logger, workers int) (*slog.Logger, int) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if workers <= 0 {
		workers = 2 * m.cfg.Workers
	}
	return log, workers
}

// decide handles one capture received under the topic (or subject) of
// topicDevice and returns the signed answer to send, and whether it was
// decided now (not an answer recorded earlier); nil when the capture is
// dropped — rejected, failed, or published under another device's topic —
// each logged and counted. It zeroes env.
func (m *Matcher) decide(env []byte, topicDevice, where string, log *slog.Logger) (signed []byte, res protocol.Result, fresh bool) {
	hdr, _ := protocol.PeekHeader(env) // Handle refuses what does not parse
	signed, res, err := m.Handle(env)
	clear(env)
	var re *protocol.RejectError
	switch {
	case errors.Is(err, ErrDuplicate):
		// The same answer again: the device may have lost it.
		log.Info("capture republished: answering again", "device", res.Device, "request", res.RequestID)
	case errors.As(err, &re):
		log.Info("capture rejected", "topic", where, "reason", re.Reason.String(), "err", err)
		return nil, res, false
	case err != nil:
		log.Warn("capture", "err", err)
		return nil, res, false
	}
	// Reply only on the topic of the device the envelope names.
	if topicDevice != res.Device {
		m.refuse(RefusedCaptureTopic)
		log.Warn("capture published under another device's topic", "topic", where)
		return nil, res, false
	}
	// Nothing late: the device gave up on the capture at its expiry and
	// told the shopper to try again; an answer now would contradict that.
	if m.now().After(hdr.Expiry.Add(-LateMargin)) {
		m.refuse(RefusedLate)
		log.Warn("capture expired while it was decided: not answered", "device", res.Device, "request", res.RequestID)
		return nil, res, false
	}
	return signed, res, err == nil
}

// LateMargin: a capture whose expiry is nearer than this when its answer
// is ready is not answered, since the answer would reach the device after
// the device gave up (the time from the matcher to the device through a
// busy broker).
const LateMargin = 50 * time.Millisecond
