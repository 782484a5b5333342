package uplink

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/palmd/palmd/internal/brokertest"
	"github.com/palmd/palmd/template"
)

// packet is the fixed header of an MQTT packet of type byte t with a body
// of n bytes.
func packet(t byte, n int) []byte {
	b := []byte{t}
	for {
		x := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			x |= 0x80
		}
		b = append(b, x)
		if n == 0 {
			break
		}
	}
	return b
}

func body(b []byte, n int) []byte { return append(b, bytes.Repeat([]byte{'x'}, n)...) }

func TestLimitConnFollowsFraming(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream []byte
		ok     bool
	}{
		{"empty packets", append(packet(0xd0, 0), packet(0xc0, 0)...), true},
		{"packets at the limit", append(body(packet(0x30, 100), 100), body(packet(0x30, 100), 100)...), true},
		{"length over the limit", packet(0x30, 101), false},
		{"big length behind a small packet", append(body(packet(0x30, 5), 5), packet(0x30, 64<<20)...), false},
		{"five length bytes", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 3, len(tc.stream)} { // split anywhere
				c := &limitConn{max: 100}
				var err error
				for i := 0; i < len(tc.stream) && err == nil; i += chunk {
					err = c.follow(tc.stream[i:min(i+chunk, len(tc.stream))])
				}
				if (err == nil) != tc.ok {
					t.Errorf("chunks of %d: err %v, want ok %v", chunk, err, tc.ok)
				}
			}
		})
	}
}

// FuzzLimitConn: any byte stream, split anywhere, gives the verdict of
// reading it whole, and never a panic.
func FuzzLimitConn(f *testing.F) {
	f.Add(append(body(packet(0x30, 20), 20), packet(0x30, 200)...), uint8(3))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}, uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		whole := (&limitConn{max: 64}).follow(stream)
		c := &limitConn{max: 64}
		step := int(chunk%16) + 1
		var err error
		for i := 0; i < len(stream) && err == nil; i += step {
			err = c.follow(stream[i:min(i+step, len(stream))])
		}
		if (whole == nil) != (err == nil) {
			t.Fatalf("whole %v, in chunks of %d %v", whole, step, err)
		}
	})
}

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
	x.Publish(TopicsFor("term-0011").Result, 1, false, bytes.Repeat([]byte("x"), 16<<20)).Wait()
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
// publisher off at uplink.MaxPacket, so nothing large reaches a device,
// while every real message fits.
func TestBrokerPacketLimit(t *testing.T) {
	if brokertest.DefaultMaxPacket != MaxPacket {
		t.Fatalf("brokertest.DefaultMaxPacket %d != MaxPacket %d", brokertest.DefaultMaxPacket, MaxPacket)
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
	x.Publish(TopicsFor("term-0013").Result, 1, false, bytes.Repeat([]byte("x"), MaxPacket+1))
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("the broker kept a publisher sending an oversized packet")
	}
	time.Sleep(200 * time.Millisecond)
	if s := c.Stats(); s.PacketsRefused != 0 || len(s.ResultsDropped) != 0 || !s.Connected {
		t.Fatalf("the device saw the oversized message: %+v", s)
	}
	hybrid, err := template.GenerateMatcherKey(template.SuiteHybrid)
	if err != nil {
		t.Fatal(err)
	}
	s := &template.Sealer{DeviceID: strings.Repeat("d", 64), DeviceKey: k.sealer.DeviceKey, Matcher: hybrid.Public()}
	env, _, err := s.Seal(&template.Template{Version: template.AlgorithmVersion}, template.PurposeIdentify, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if len(env)+200 > MaxPacket/4 {
		t.Errorf("the largest capture (%d bytes) is too close to MaxPacket", len(env))
	}
}
