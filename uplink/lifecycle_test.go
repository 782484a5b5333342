package uplink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/palmd/palmd/internal/brokertest"
	"github.com/palmd/palmd/protocol"
)

var observers int

// observe subscribes to topic and returns the messages as they come.
func observe(t *testing.T, url, topic string) <-chan []byte {
	t.Helper()
	ch := make(chan []byte, 16)
	observers++
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("observer-%d", observers)))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) { ch <- append([]byte(nil), m.Payload()...) }).Wait()
	return ch
}

func waitState(t *testing.T, ch <-chan []byte, state string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case b := <-ch:
			var s protocol.Status
			if json.Unmarshal(b, &s) == nil && s.State == state {
				return
			}
		case <-deadline:
			t.Fatalf("status %q never seen", state)
		}
	}
}

func TestOnlineOfflineAndTelemetry(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0011")
	status := observe(t, b.URL(), protocol.TopicsFor("term-0011").Status)
	tele := observe(t, b.URL(), protocol.TopicsFor("term-0011").Telemetry)
	c, err := New(Config{DeviceID: "term-0011", Brokers: []string{b.URL()}, ResultKey: k.resPub,
		TelemetryInterval: 100 * time.Millisecond, Telemetry: func() map[string]any { return map[string]any{"frames": 42} }})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	waitState(t, status, "online")
	select {
	case m := <-tele:
		var v map[string]any
		if err := json.Unmarshal(m, &v); err != nil || v["frames"] != float64(42) || v["uptime_s"] == nil || v["outbox_depth"] == nil || v["reconnects"] == nil {
			t.Fatalf("telemetry %s (%v)", m, err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no telemetry")
	}
	// Broker restart: online again after reconnecting.
	b.Kill()
	b.Restart()
	waitState(t, observe(t, b.URL(), protocol.TopicsFor("term-0011").Status), "online")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	later := observe(t, b.URL(), protocol.TopicsFor("term-0011").Status)
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, later, "offline")
}

// TestLastWill kills a process holding a connected client: the broker
// publishes the retained "offline" will on its behalf.
func TestLastWill(t *testing.T) {
	if url := os.Getenv("PALMD_WILL_CHILD"); url != "" {
		k := newKeys(t, "term-0012")
		c, err := New(Config{DeviceID: "term-0012", Brokers: []string{url}, ResultKey: k.resPub, KeepAlive: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c.Start()
		waitFor(t, "connection", 5*time.Second, c.Connected)
		os.Stdout.WriteString("CONNECTED\n")
		time.Sleep(time.Minute)
		return
	}
	b := brokertest.Start(t, brokertest.Options{})
	status := observe(t, b.URL(), protocol.TopicsFor("term-0012").Status)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLastWill$")
	cmd.Env = append(os.Environ(), "PALMD_WILL_CHILD="+b.URL())
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitState(t, status, "online")
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "CONNECTED") {
		t.Fatalf("child: %q", buf[:n])
	}
	_ = cmd.Process.Kill() // no clean shutdown: only the will can say offline
	waitState(t, status, "offline")
}

// TestFailover lists a dead broker first: the client connects to the next.
func TestFailover(t *testing.T) {
	dead := brokertest.Start(t, brokertest.Options{})
	deadURL := dead.URL()
	dead.Stop()
	live := brokertest.Start(t, brokertest.Options{})
	k := newKeys(t, "term-0014")
	p := newPeer(t, live.URL(), nil, "matcher-1", "palm/v1/+/capture", true, k.resPriv)
	c := newClient(t, k, Config{Brokers: []string{deadURL, live.URL()}})
	waitFor(t, "connection to the second broker", 10*time.Second, c.Connected)
	env, h := k.envelope(t, 5*time.Second)
	if _, err := c.Submit(context.Background(), env, h); err != nil {
		t.Fatal(err)
	}
	if len(p.received()) != 1 {
		t.Fatal("capture not delivered through the second broker")
	}
}

// syncBuffer is a log sink safe for paho's and the client's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUnreachableBrokerIsAWarning: a broker that cannot be reached is a
// warning at once (not 15 s of debug lines), and its return is logged.
func TestUnreachableBrokerIsAWarning(t *testing.T) {
	b := brokertest.Start(t, brokertest.Options{})
	b.Stop()
	var logs syncBuffer
	k := newKeys(t, "term-0019")
	c := newClient(t, k, Config{Brokers: []string{b.URL()}, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	waitFor(t, "the warning", 5*time.Second, func() bool { return strings.Contains(logs.String(), "level=WARN msg=\"uplink: broker unreachable") })
	if strings.Count(logs.String(), "broker unreachable") != 1 {
		t.Errorf("the outage is warned about more than once in its first seconds:\n%s", logs.String())
	}
	b.Restart()
	waitFor(t, "reconnection", 10*time.Second, c.Connected)
	waitFor(t, "the recovery logged", 5*time.Second, func() bool { return strings.Contains(logs.String(), "broker reachable again") })
}
