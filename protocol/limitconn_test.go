package protocol

import (
	"bytes"
	"testing"
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
