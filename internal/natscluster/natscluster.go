// Package natscluster runs a NATS cluster for the fleet run and the tests:
// nats-server processes on loopback, each with JetStream (RAFT-replicated
// across the nodes), an MQTT 3.1.1 listener for terminals, TLS on every
// listener and route, and users mapped from client certificates with
// per-identity permissions (Authorization). Nodes can be killed and
// restarted to test faults. The production configuration (deploy/nats)
// has the same shape; Config documents why each setting is what it is.
package natscluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/palmd/palmd/internal/pki"
	"github.com/palmd/palmd/internal/proc"
)

// Config describes a cluster.
type Config struct {
	// Dir holds each node's configuration, JetStream store and log.
	Dir string
	// Nodes is the cluster size; 3 (JetStream's R3 needs three).
	Nodes int
	// CA, when set, issues the nodes' certificates and is the only CA
	// whose client certificates they accept: TLS (≥ 1.2) on the client,
	// MQTT and route listeners, the user taken from the certificate.
	// Without it everything is plain and unauthenticated (tests of other
	// things only).
	CA *pki.CA
	// Users are the identities and their permissions (needs CA).
	Users []User
	// MaxPayload bounds a message, as Mosquitto's max_packet_size does.
	MaxPayload int
}

// Node is one nats-server of a cluster.
type Node struct {
	Name                            string
	ClientPort, MQTTPort, RoutePort int
	conf, log                       string
	proc                            proc.Process
}

// Cluster is a running (or partly stopped) set of nodes.
type Cluster struct {
	Nodes []*Node
	cfg   Config
}

// Start writes the configurations and starts every node; it returns once
// JetStream has a metadata leader (the cluster can create streams).
// tlsCfg is a client configuration able to connect (nil without CA).
func Start(ctx context.Context, cfg Config, tlsCfg *tls.Config) (*Cluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if _, err := exec.LookPath("nats-server"); err != nil {
		return nil, errors.New("natscluster: nats-server not installed (scripts/bootstrap.sh installs it)")
	}
	c := &Cluster{cfg: cfg}
	ports, err := freePorts(3 * cfg.Nodes)
	if err != nil {
		return nil, err
	}
	for i := range cfg.Nodes {
		c.Nodes = append(c.Nodes, &Node{Name: fmt.Sprintf("palm-%d", i+1),
			ClientPort: ports[3*i], MQTTPort: ports[3*i+1], RoutePort: ports[3*i+2]})
	}
	if err := c.writeConfigs(); err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitReady(ctx, tlsCfg); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natscluster: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *Cluster) writeConfigs() error {
	dir := c.cfg.Dir
	var tlsBlock, routeTLS string
	if c.cfg.CA != nil {
		cert, key, err := c.cfg.CA.Issue("localhost", true)
		if err != nil {
			return err
		}
		for name, data := range map[string][]byte{"ca.pem": c.cfg.CA.PEM, "server.pem": cert, "server.key": key} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				return fmt.Errorf("natscluster: %w", err)
			}
		}
		files := fmt.Sprintf("cert_file: %q, key_file: %q, ca_file: %q, timeout: 2",
			filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.pem"))
		tlsBlock = "tls { " + files + ", verify_and_map: true }"
		routeTLS = "tls { " + files + ", verify: true }"
	}
	var routes []string
	for _, n := range c.Nodes {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", n.RoutePort))
	}
	if err := os.WriteFile(filepath.Join(dir, "users.conf"), []byte(Authorization(c.cfg.Users)), 0o600); err != nil {
		return fmt.Errorf("natscluster: %w", err)
	}
	for _, n := range c.Nodes {
		n.conf, n.log = filepath.Join(dir, n.Name+".conf"), filepath.Join(dir, n.Name+".log")
		text := NodeConfig(NodeSettings{Name: n.Name, Host: "127.0.0.1", ClientPort: n.ClientPort, MQTTPort: n.MQTTPort,
			RoutePort: n.RoutePort, Routes: routes, StoreDir: filepath.Join(dir, n.Name), TLS: tlsBlock, RouteTLS: routeTLS,
			MaxPayload: c.cfg.MaxPayload, Users: len(c.cfg.Users) > 0})
		if err := os.WriteFile(n.conf, []byte(text), 0o600); err != nil {
			return fmt.Errorf("natscluster: %w", err)
		}
	}
	return nil
}

// NodeSettings fill NodeConfig.
type NodeSettings struct {
	Name                            string
	Host                            string
	ClientPort, MQTTPort, RoutePort int
	Routes                          []string
	StoreDir                        string
	TLS, RouteTLS                   string // tls { … } blocks, empty for none
	MaxPayload                      int
	Users                           bool // include users.conf beside the file
}

// NodeConfig is one node's nats-server configuration. Every stream that
// holds messages (MQTT's own, the captures', the gallery's) is replicated
// on the three nodes. Terminals subscribe at QoS 0 (uplink): a QoS 1
// subscription is a JetStream consumer per terminal, which costs a RAFT
// group each (300 terminals connecting at once time out on two cores) or,
// with one replica, cannot be deleted while its node is down — and a
// terminal reconnecting with a clean session must delete it, so it could
// not connect anywhere until that node returned.
func NodeConfig(s NodeSettings) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: %s:%d\n", s.Name, s.Host, s.ClientPort)
	if s.MaxPayload > 0 {
		fmt.Fprintf(&b, "max_payload: %d\n", s.MaxPayload)
	}
	if s.TLS != "" {
		fmt.Fprintf(&b, "%s\n", s.TLS)
	}
	fmt.Fprintf(&b, "jetstream { store_dir: %q, max_memory_store: 256MB, max_file_store: 4GB }\n", s.StoreDir)
	fmt.Fprintf(&b, "cluster {\n  name: palm\n  listen: %s:%d\n  routes: [%s]\n", s.Host, s.RoutePort, strings.Join(s.Routes, ", "))
	if s.RouteTLS != "" {
		fmt.Fprintf(&b, "  %s\n", s.RouteTLS)
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "mqtt {\n  listen: %s:%d\n  stream_replicas: 3\n  ack_wait: \"2s\"\n", s.Host, s.MQTTPort)
	if s.TLS != "" {
		fmt.Fprintf(&b, "  %s\n", s.TLS)
	}
	b.WriteString("}\n")
	if s.Users {
		b.WriteString("include users.conf\n")
	}
	return b.String()
}

// User is an identity (the subject of its client certificate as
// nats-server maps it: "CN=<name>") and what it may publish and subscribe
// to, in NATS subjects (an MQTT topic a/b/c is the subject a.b.c).
type User struct {
	Name               string
	Publish, Subscribe []string
}

// DeviceUser confines a terminal to its own topics: it publishes its
// captures, status and telemetry, and receives its results and commands;
// nothing else, so it can neither speak for another terminal nor read
// anybody else's results. ($MQTT.sub.> is where nats-server delivers a
// QoS 1 subscription's JetStream consumer to the MQTT connection: each
// consumer has a random subject, made by the server for that
// subscription, which it only creates for a filter the user may
// subscribe to.)
func DeviceUser(device string) User {
	p := "palm.v1." + device + "."
	return User{Name: "CN=" + device, Publish: []string{p + "capture", p + "status", p + "telemetry"},
		Subscribe: []string{p + "result", p + "cmd", "$MQTT.sub.>"}}
}

// MatcherUser may consume captures (JetStream API, acknowledgements),
// keep the gallery, sessions and answers buckets, read commands and answer
// every terminal.
func MatcherUser(name string) User {
	return User{Name: "CN=" + name,
		Publish:   []string{"palm.v1.*.result", "$JS.API.>", "$JS.ACK.>", "$KV.>", "_INBOX.>"},
		Subscribe: []string{"palm.v1.*.cmd", "_INBOX.>", "$KV.>"}}
}

// CloudUser may send commands to every terminal.
func CloudUser(name string) User {
	return User{Name: "CN=" + name, Publish: []string{"palm.v1.*.cmd"}, Subscribe: []string{"_INBOX.>"}}
}

// Authorization is the users.conf a node includes.
func Authorization(users []User) string {
	if len(users) == 0 {
		return ""
	}
	q := func(l []string) string {
		var s []string
		for _, x := range l {
			s = append(s, fmt.Sprintf("%q", x))
		}
		return "[" + strings.Join(s, ", ") + "]"
	}
	var b strings.Builder
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		fmt.Fprintf(&b, "    {user: %q, permissions: {publish: {allow: %s}, subscribe: {allow: %s}}}\n", u.Name, q(u.Publish), q(u.Subscribe))
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// Start starts the node (again, after Kill or Stop) and waits until its
// client and MQTT ports accept connections.
func (n *Node) Start() error {
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("natscluster: %w", err)
	}
	cmd := exec.Command("nats-server", "-c", n.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := n.proc.Start(cmd, func() { logf.Close() }); err != nil {
		logf.Close()
		return fmt.Errorf("natscluster: %s: %w", n.Name, err)
	}
	for _, port := range []int{n.ClientPort, n.MQTTPort} {
		if err := proc.WaitListening(port, n.proc.Exited(), 10*time.Second); err != nil {
			n.proc.Forget()
			return fmt.Errorf("natscluster: %s: %w: %s", n.Name, err, n.Log())
		}
	}
	return nil
}

// Kill stops the node with SIGKILL: no goodbye to its routes or clients.
func (n *Node) Kill() { n.proc.Stop(syscall.SIGKILL, 10*time.Second) }

// Stop stops the node with SIGTERM.
func (n *Node) Stop() { n.proc.Stop(syscall.SIGTERM, 10*time.Second) }

// Log returns the node's log so far (the end of it when long).
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.log)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// ClientURLs are the nodes' NATS addresses (tls:// with a CA).
func (c *Cluster) ClientURLs() []string {
	return c.urls("nats", "tls", func(n *Node) int { return n.ClientPort })
}

// MQTTURLs are the nodes' MQTT addresses for paho (ssl:// with a CA).
func (c *Cluster) MQTTURLs() []string {
	return c.urls("tcp", "ssl", func(n *Node) int { return n.MQTTPort })
}

func (c *Cluster) urls(plain, secure string, port func(*Node) int) []string {
	scheme := plain
	if c.cfg.CA != nil {
		scheme = secure
	}
	var u []string
	for _, n := range c.Nodes {
		u = append(u, fmt.Sprintf("%s://127.0.0.1:%d", scheme, port(n)))
	}
	return u
}

// WaitReady waits until JetStream can place a stream on every node,
// connecting with tlsCfg. A metadata leader alone is not enough: until the
// leader has heard from each peer it refuses a stream replicated on all of
// them ("no suitable peers for placement"), and an MQTT client's first
// connection, which creates the account's replicated session streams, is
// then closed without a CONNACK.
func (c *Cluster) WaitReady(ctx context.Context, tlsCfg *tls.Config) error {
	opts := []nats.Option{nats.Timeout(2 * time.Second)}
	if tlsCfg != nil {
		opts = append(opts, nats.Secure(tlsCfg))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		nc, err := nats.Connect(strings.Join(c.ClientURLs(), ","), opts...)
		if err == nil {
			err = c.probePlacement(ctx, nc)
			nc.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("natscluster: JetStream not ready: %v", last)
}

// readyProbeStream is the stream WaitReady creates and deletes to prove
// placement; the name cannot clash with nats-server's own ($MQTT_…, KV_…).
const readyProbeStream = "natscluster_ready_probe"

// probePlacement creates a memory stream replicated on every node, then
// deletes it.
func (c *Cluster) probePlacement(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.CreateOrUpdateStream(actx, jetstream.StreamConfig{Name: readyProbeStream,
		Subjects: []string{"natscluster.ready.probe"}, Storage: jetstream.MemoryStorage, Replicas: len(c.Nodes)})
	if err != nil {
		return fmt.Errorf("placing a stream on %d nodes: %w", len(c.Nodes), err)
	}
	if err := js.DeleteStream(actx, readyProbeStream); err != nil {
		return fmt.Errorf("deleting the readiness probe: %w", err)
	}
	return nil
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}
