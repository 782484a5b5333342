package protocol

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// MaxPacket is the largest MQTT packet anything in a palmd deployment
// needs (a sealed capture is about 3 KiB; results, commands, status and
// telemetry are under MaxMessage): brokers are configured with it
// (mosquitto's max_packet_size), so a hostile publisher is cut off before
// the broker buffers its message.
const MaxPacket = 32 << 10

// MaxIncoming bounds the packets a device reads: a result or command
// payload (MaxMessage) plus its topic and headers. A larger packet is
// refused from its length prefix, before paho allocates a buffer for it.
const MaxIncoming = MaxMessage + 1024

// ErrPacketTooLarge ends a connection on which the broker sent a packet
// larger than the client accepts.
var ErrPacketTooLarge = errors.New("uplink: incoming MQTT packet too large")

// limitConn passes a broker connection through, following the MQTT
// framing of what it reads (fixed header byte, remaining length as a
// variable-length integer, body), and fails the read that completes a
// length prefix over max: paho then drops the connection without ever
// seeing, or allocating for, the packet.
type limitConn struct {
	net.Conn
	max     int
	refused *atomic.Uint64

	state     int // 0: fixed header byte next; 1: in the length; 2: in the body
	length    int
	shift     uint
	lenBytes  int
	remaining int
}

func (c *limitConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if ferr := c.follow(p[:n]); ferr != nil {
		if c.refused != nil {
			c.refused.Add(1)
		}
		return 0, ferr
	}
	return n, err
}

// follow advances the framing state over b.
func (c *limitConn) follow(b []byte) error {
	for len(b) > 0 {
		switch c.state {
		case 0:
			c.state, c.length, c.shift, c.lenBytes = 1, 0, 0, 0
			b = b[1:]
		case 1:
			x := b[0]
			b = b[1:]
			c.length |= int(x&0x7f) << c.shift
			c.shift += 7
			c.lenBytes++
			if x&0x80 != 0 {
				if c.lenBytes == 4 {
					return fmt.Errorf("%w: malformed remaining length", ErrPacketTooLarge)
				}
				continue
			}
			if c.length > c.max {
				return fmt.Errorf("%w: %d bytes, at most %d", ErrPacketTooLarge, c.length, c.max)
			}
			c.remaining = c.length
			c.state = 2
			if c.remaining == 0 {
				c.state = 0
			}
		case 2:
			k := min(len(b), c.remaining)
			b = b[k:]
			if c.remaining -= k; c.remaining == 0 {
				c.state = 0
			}
		}
	}
	return nil
}

// Dialer opens broker connections for paho (tcp://, mqtt://, ssl://,
// tls://, mqtts://) that end, before reading it, at any incoming packet
// longer than max bytes, counting each in refused (may be nil). The
// device's client uses it with a bound just above MaxMessage; matchers
// with MaxPacket.
func Dialer(max int, refused *atomic.Uint64) mqtt.OpenConnectionFunc {
	return func(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		host := u.Host
		if u.Port() == "" {
			port := "1883"
			if isTLSScheme(u.Scheme) {
				port = "8883"
			}
			host = net.JoinHostPort(u.Hostname(), port)
		}
		d := &net.Dialer{Timeout: o.ConnectTimeout}
		var conn net.Conn
		var err error
		switch {
		case u.Scheme == "tcp" || u.Scheme == "mqtt":
			conn, err = d.Dial("tcp", host)
		case isTLSScheme(u.Scheme):
			conn, err = tls.DialWithDialer(d, "tcp", host, o.TLSConfig)
		default:
			return nil, fmt.Errorf("uplink: broker scheme %q not supported", u.Scheme)
		}
		if err != nil {
			return nil, err
		}
		return &limitConn{Conn: conn, max: max, refused: refused}, nil
	}
}

func isTLSScheme(s string) bool { return s == "ssl" || s == "tls" || s == "mqtts" }
