package uplink

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/palmd/palmd/internal/brokertest"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/template"
)

// TestOversizedPacketRefusedUnread: a broker without a size limit relays a
// 16 MiB "result" to the device; the client drops the connection from the
// length prefix (counted), reconnects, and goes on delivering.
func TestOversizedPacketRefusedUnread(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{MaxPacket: -1})
	k := newKeys(t, "term-0011")
	c := newClient(t, k, Config{Brokers: []string{b.URL()}})
	waitFor(t, "connection", 5*time.Second, c.Connected)
	newPeer(t, b.URL(), nil, "matcher-1", "palm/v1/+/capture", true, k.resPriv)
	x := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("hostile"))
	x.Connect().Wait()
	defer x.Disconnect(50)
	time.Sleep(200 * time.Millisecond) // the device's subscriptions
	x.Publish(protocol.TopicsFor("term-0011").Result, 1, false, bytes.Repeat([]byte("x"), 16<<20)).Wait()
	waitFor(t, "oversized packet refused", 10*time.Second, func() bool { return c.Stats().PacketsRefused == 1 })
	if c.Stats().ResultsDropped["oversized"] != 0 {
		t.Error("the oversized message was read before being dropped")
	}
	waitFor(t, "reconnection", 10*time.Second, c.Connected)
	env, h := k.envelope(t, 5*time.Second)
	if _, err := c.Submit(context.Background(), env, h); err != nil {
		t.Fatalf("after the refusal: %v", err)
	}
}

// TestBrokerPacketLimit: the brokers the project configures cut a hostile
// publisher off at protocol.MaxPacket, so nothing large reaches a device,
// while every real message fits.
func TestBrokerPacketLimit(t *testing.T) {
	if brokertest.DefaultMaxPacket != protocol.MaxPacket {
		t.Fatalf("brokertest.DefaultMaxPacket %d != protocol.MaxPacket %d", brokertest.DefaultMaxPacket, protocol.MaxPacket)
	}
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0013")
	c := newClient(t, k, Config{Brokers: []string{b.URL()}})
	waitFor(t, "connection", 5*time.Second, c.Connected)
	lost := make(chan error, 1)
	x := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("hostile").
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err }))
	x.Connect().Wait()
	time.Sleep(200 * time.Millisecond)
	x.Publish(protocol.TopicsFor("term-0013").Result, 1, false, bytes.Repeat([]byte("x"), protocol.MaxPacket+1))
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("the broker kept a publisher sending an oversized packet")
	}
	time.Sleep(200 * time.Millisecond)
	if s := c.Stats(); s.PacketsRefused != 0 || len(s.ResultsDropped) != 0 || !s.Connected {
		t.Fatalf("the device saw the oversized message: %+v", s)
	}
	hybrid, err := protocol.GenerateMatcherKey(protocol.SuiteHybrid)
	if err != nil {
		t.Fatal(err)
	}
	s := &protocol.Sealer{DeviceID: strings.Repeat("d", 64), DeviceKey: k.sealer.DeviceKey, Matcher: hybrid.Public()}
	env, _, err := s.Seal(&template.Template{Version: template.AlgorithmVersion}, protocol.PurposeIdentify, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if len(env)+200 > protocol.MaxPacket/4 {
		t.Errorf("the largest capture (%d bytes) is too close to protocol.MaxPacket", len(env))
	}
}
