package brokertest

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/palmd/palmd/internal/natscluster"
)

// NATSOptions configure a NATS cluster (internal/natscluster) for a test.
type NATSOptions struct {
	// Nodes: 3 unless set.
	Nodes int
	// TLS turns on certificates everywhere; Users are then the only
	// identities admitted (a "CN=tester" user may do anything, for
	// Conn).
	TLS   bool
	Users []natscluster.User
}

// NATSCluster is a running cluster that fails its test instead of
// returning errors; stopped by t.Cleanup.
type NATSCluster struct {
	*natscluster.Cluster
	t  testing.TB
	CA *CA
}

// StartNATS starts a cluster of nats-server processes (installed by
// scripts/bootstrap.sh) and waits until JetStream is ready.
func StartNATS(t testing.TB, o NATSOptions) *NATSCluster {
	t.Helper()
	c := &NATSCluster{t: t}
	cfg := natscluster.Config{Dir: t.TempDir(), Nodes: o.Nodes, MaxPayload: DefaultMaxPacket}
	var tlsCfg *tls.Config
	if o.TLS {
		c.CA = NewCA(t)
		cfg.CA = c.CA.CA
		cfg.Users = append(append([]natscluster.User{}, o.Users...),
			natscluster.User{Name: "CN=tester", Publish: []string{">"}, Subscribe: []string{">"}})
		tlsCfg = ClientTLS(t, c.CA, c.CA, "tester")
	}
	cl, err := natscluster.Start(context.Background(), cfg, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Cluster = cl
	t.Cleanup(cl.Stop)
	return c
}

// ClientTLS is a client configuration for identity cn (nil without TLS).
func (c *NATSCluster) ClientTLS(cn string) *tls.Config {
	if c.CA == nil {
		return nil
	}
	return ClientTLS(c.t, c.CA, c.CA, cn)
}

// Conn connects to every node as the all-powerful tester; closed by
// t.Cleanup.
func (c *NATSCluster) Conn() *nats.Conn {
	c.t.Helper()
	opts := []nats.Option{nats.MaxReconnects(-1)}
	if c.CA != nil {
		opts = append(opts, nats.Secure(c.ClientTLS("tester")))
	}
	var urls string
	for i, u := range c.ClientURLs() {
		if i > 0 {
			urls += ","
		}
		urls += u
	}
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}
