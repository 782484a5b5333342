package natscluster_test

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/palmd/palmd/internal/natscluster"
	"github.com/palmd/palmd/internal/pki"
)

func startSecure(t *testing.T) (*natscluster.Cluster, *pki.CA) {
	t.Helper()
	ca, err := pki.NewCA("fleet test CA")
	if err != nil {
		t.Fatal(err)
	}
	users := []natscluster.User{natscluster.DeviceUser("term-a"), natscluster.DeviceUser("term-b"), natscluster.MatcherUser("palm-matcher-1"),
		{Name: "CN=auditor", Publish: []string{"_INBOX.>", "palm.v1.*.result"}, Subscribe: []string{">"}}}
	mt := clientTLS(t, ca, ca, "palm-matcher-1")
	c, err := natscluster.Start(context.Background(), natscluster.Config{Dir: t.TempDir(), CA: ca, Users: users, MaxPayload: 32 << 10}, mt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c, ca
}

func clientTLS(t *testing.T, trust, issuer *pki.CA, cn string) *tls.Config {
	t.Helper()
	cfg, err := issuer.ClientTLS(trust.Pool, cn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mqttConnect(t *testing.T, url string, cfg *tls.Config, id string) (mqtt.Client, error) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetTLSConfig(cfg).SetCleanSession(true).SetAutoReconnect(false))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

// TestDevicesConfined: on every node, a terminal authenticated by its
// certificate publishes and receives on its own topics only; another
// CA's certificate, or none, is refused.
func TestDevicesConfined(t *testing.T) {
	c, ca := startSecure(t)
	nc, err := nats.Connect(c.ClientURLs()[0], nats.Secure(clientTLS(t, ca, ca, "auditor")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	seen := make(chan string, 16)
	if _, err := nc.Subscribe("palm.v1.*.capture", func(m *nats.Msg) { seen <- m.Subject }); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	for i, url := range c.MQTTURLs() {
		a, err := mqttConnect(t, url, clientTLS(t, ca, ca, "term-a"), "term-a")
		if err != nil {
			t.Fatalf("node %d: term-a: %v\nits log:\n%s", i, err, c.Nodes[i].Log())
		}
		a.Publish("palm/v1/term-b/capture", 1, false, []byte("forged")).WaitTimeout(2 * time.Second)
		a.Publish("palm/v1/term-a/capture", 1, false, []byte("own")).WaitTimeout(2 * time.Second)
		select {
		case s := <-seen:
			if s != "palm.v1.term-a.capture" {
				t.Fatalf("node %d: term-a published as %s", i, s)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("node %d: term-a's own capture did not arrive", i)
		}
		select {
		case s := <-seen:
			t.Fatalf("node %d: unexpected %s", i, s)
		case <-time.After(300 * time.Millisecond):
		}
		// Its own results reach it (QoS 1 subscription, published by
		// a matcher over NATS).
		got := make(chan string, 4)
		tok := a.Subscribe("palm/v1/term-a/result", 1, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) })
		if !tok.WaitTimeout(5*time.Second) || tok.(*mqtt.SubscribeToken).Result()["palm/v1/term-a/result"] == 0x80 {
			t.Fatalf("node %d: term-a may not subscribe to its own results", i)
		}
		nc.Publish("palm.v1.term-a.result", []byte("answer"))
		select {
		case s := <-got:
			if s != "answer" {
				t.Fatalf("node %d: got %q", i, s)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("node %d: term-a's result did not arrive", i)
		}
		for _, filter := range []string{"#", "palm/v1/+/result", "palm/v1/term-b/result", "$MQTT/sub/#"} {
			tok := a.Subscribe(filter, 1, func(mqtt.Client, mqtt.Message) {})
			tok.WaitTimeout(5 * time.Second)
			st := tok.(*mqtt.SubscribeToken)
			if code := st.Result()[filter]; code != 0x80 {
				t.Errorf("node %d: subscribing %q answered %#x, want 0x80 (refused)", i, filter, code)
			}
		}
		a.Disconnect(50)
	}
	rogue, _ := pki.NewCA("rogue")
	if _, err := mqttConnect(t, c.MQTTURLs()[0], clientTLS(t, ca, rogue, "term-a"), "term-a"); err == nil {
		t.Error("a certificate from another CA was accepted")
	}
	if _, err := mqttConnect(t, c.MQTTURLs()[0], &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}, "anon"); err == nil {
		t.Error("a client without certificate was accepted")
	}
	if _, err := mqttConnect(t, c.MQTTURLs()[0], clientTLS(t, ca, ca, "term-z"), "term-z"); err == nil {
		t.Error("a certificate of a device not in the users was accepted")
	}
}
