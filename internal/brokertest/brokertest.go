// Package brokertest starts real Mosquitto brokers for tests
// (internal/mosquitto, which the demo runs too): on a free loopback port,
// with a generated configuration, optionally with TLS (a test CA, server
// and client certificates generated on the fly) and an ACL. Brokers are
// stopped by t.Cleanup and can be killed, paused and restarted to test
// outages.
package brokertest

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palmd/palmd/internal/mosquitto"
	"github.com/palmd/palmd/internal/pki"
)

// Options configure a broker.
type Options struct {
	// TLS makes the listener ssl:// with client certificates required;
	// the certificate's common name becomes the MQTT user name.
	TLS bool
	// ACL is the content of an ACL file (mosquitto syntax); empty means
	// everyone may do everything.
	ACL string
	// MaxPacket is the broker's max_packet_size: larger packets end the
	// sender's connection before the broker buffers them. Zero means
	// DefaultMaxPacket; negative means no limit (to test the client's own).
	MaxPacket int
}

// DefaultMaxPacket is protocol.MaxPacket, the limit every shipped broker
// configuration sets (this package cannot import uplink, whose tests use
// it; TestBrokerPacketLimit in uplink checks the two agree).
const DefaultMaxPacket = 32 << 10

// Broker is a running (or stopped) mosquitto (internal/mosquitto) that
// fails its test instead of returning errors.
type Broker struct {
	*mosquitto.Broker
	t   testing.TB
	tls bool
	CA  *CA
}

// Start starts a broker; the test fails if mosquitto is not installed
// (scripts/bootstrap.sh installs it).
func Start(t testing.TB, o Options) *Broker {
	t.Helper()
	dir := t.TempDir()
	b := &Broker{t: t, tls: o.TLS}
	var conf strings.Builder
	if o.TLS {
		b.CA = NewCA(t)
		cert, key := b.CA.Issue(t, "localhost", true)
		write(t, dir, "ca.pem", b.CA.PEM)
		write(t, dir, "server.pem", cert)
		write(t, dir, "server.key", key)
		fmt.Fprintf(&conf, "cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\nallow_anonymous false\n",
			filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	} else {
		conf.WriteString("allow_anonymous true\n")
	}
	if o.ACL != "" {
		write(t, dir, "acl", []byte(o.ACL))
		fmt.Fprintf(&conf, "acl_file %s\n", filepath.Join(dir, "acl"))
	}
	max := o.MaxPacket
	if max == 0 {
		max = DefaultMaxPacket
	}
	mb, err := mosquitto.New(dir, max, conf.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Broker = mb
	b.Restart()
	t.Cleanup(b.Stop)
	return b
}

// URL is the broker's address for paho.
func (b *Broker) URL() string {
	if b.tls {
		return fmt.Sprintf("ssl://127.0.0.1:%d", b.Port())
	}
	return fmt.Sprintf("tcp://127.0.0.1:%d", b.Port())
}

// Restart starts the broker (again) on the same port and waits until it
// accepts connections.
func (b *Broker) Restart() {
	b.t.Helper()
	if err := b.Start(); err != nil {
		b.t.Fatal(err)
	}
}

func write(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// CA is a throw-away certificate authority (pki.CA) that fails its test
// instead of returning errors.
type CA struct {
	*pki.CA
}

// NewCA makes a CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca, err := pki.NewCA("palmd test CA")
	if err != nil {
		t.Fatal(err)
	}
	return &CA{ca}
}

// Issue signs a certificate for cn (a server certificate for 127.0.0.1 and
// localhost when server is set, a client certificate otherwise) and
// returns it and its key in PEM.
func (ca *CA) Issue(t testing.TB, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.CA.Issue(cn, server)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// ClientTLS returns a TLS configuration that trusts ca and presents a
// client certificate for cn issued by issuer (which may be another CA, to
// test refusal).
func ClientTLS(t testing.TB, ca, issuer *CA, cn string) *tls.Config {
	t.Helper()
	cfg, err := issuer.CA.ClientTLS(ca.Pool, cn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
