package template

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func sample() *Template {
	t := randomTemplate(rand.New(rand.NewPCG(11, 12)))
	t.Offset = -MaxOffset + 7 // negative: the sign survives the wire
	return t
}

func TestTemplateWireRoundTrip(t *testing.T) {
	in := sample()
	b, err := in.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != WireSize || WireSize > 2048 {
		t.Fatalf("encoded %d bytes (WireSize %d), target ≤ 2 KiB", len(b), WireSize)
	}
	var out Template
	if err := out.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if out != *in {
		t.Fatal("round trip changed the template")
	}
}

// TestTemplateWireReadsSameBitsVersion reads a version 2 template (a
// gallery enrolled before version 3) as version 3: its bits are the same.
func TestTemplateWireReadsSameBitsVersion(t *testing.T) {
	want := sample()
	b, _ := want.MarshalBinary()
	b[WireAlgorithmOffset] = sameBitsVersion
	var got Template
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got != *want || got.Version != AlgorithmVersion {
		t.Errorf("version %d template read as version %d, bits equal: %v", sameBitsVersion, got.Version, got == *want)
	}
}

func TestTemplateWireStrict(t *testing.T) {
	good, _ := sample().MarshalBinary()
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":          {},
		"short header":   good[:5],
		"truncated":      good[:WireSize-1],
		"trailing":       append(bytes.Clone(good), 0),
		"magic":          mod(func(b []byte) []byte { b[0] = 'X'; return b }),
		"format version": mod(func(b []byte) []byte { b[4] = 2; return b }),
		"algorithm":      mod(func(b []byte) []byte { b[5] = 9; return b }),
		"algorithm 1":    mod(func(b []byte) []byte { b[5] = 1; return b }),
		"grid":           mod(func(b []byte) []byte { b[6] = 16; return b }),
		"orientations":   mod(func(b []byte) []byte { b[7] = 8; return b }),
		"modalities":     mod(func(b []byte) []byte { b[8] = 1; return b }),
		"quality":        mod(func(b []byte) []byte { b[9] = 101; return b }),
		"offset too far": mod(func(b []byte) []byte { b[10], b[11] = 0x00, 0x80; return b }),
	}
	for name, b := range cases {
		var tp Template
		tp.Quality = 7
		if err := tp.UnmarshalBinary(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
		if tp != (Template{}) {
			t.Errorf("%s: template not left zero", name)
		}
	}
}
