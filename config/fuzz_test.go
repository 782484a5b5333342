package config

import (
	"bytes"
	"testing"
)

// FuzzParse: any file; no panic, and an accepted configuration validates.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "capture: {feedback: soon, burst: many}\nloglevel: x\n"))
	f.Add([]byte("device_id: [\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(bytes.NewReader(b), nil)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted a configuration that does not validate: %v", err)
		}
	})
}
