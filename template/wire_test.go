package template

import (
	"bytes"
	"errors"
	"fmt"
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

// TestTemplateWireReadsSameBitsVersion reads templates of every older
// version with today's bits (a gallery enrolled before version 6) as
// today's: the same bits, and the offset Centre gives them, measured as
// they are read (their writers left those bytes zero), where a current
// template's stored offset is kept as it is.
func TestTemplateWireReadsSameBitsVersion(t *testing.T) {
	want := sample()
	want.Offset = 0
	if err := Centre(want); err != nil {
		t.Fatal(err)
	}
	if want.Offset == 0 {
		t.Fatal("the sample's offset is zero: the test would not see it measured")
	}
	b, _ := want.MarshalBinary()
	for v := byte(sameBitsVersion); v < centredVersion; v++ {
		t.Run(fmt.Sprintf("version %d", v), func(t *testing.T) {
			old := bytes.Clone(b)
			old[WireAlgorithmOffset] = v
			old[10], old[11] = 0, 0
			var got Template
			if err := got.UnmarshalBinary(old); err != nil {
				t.Fatal(err)
			}
			if got != *want || got.Version != AlgorithmVersion {
				t.Errorf("read as version %d with offset %d, want %d with %d; bits equal: %v",
					got.Version, got.Offset, AlgorithmVersion, want.Offset, got.Planes == want.Planes && got.Mask == want.Mask)
			}
			// Read for a reader that centres it itself: the same, offset zero.
			var raw Template
			if err := raw.UnmarshalUncentred(old); err != nil {
				t.Fatal(err)
			}
			wantRaw := *want
			wantRaw.Offset = 0
			if raw != wantRaw {
				t.Errorf("read uncentred with offset %d, version %d; want offset 0, version %d", raw.Offset, raw.Version, AlgorithmVersion)
			}
		})
	}
	t.Run("current", func(t *testing.T) {
		cur := bytes.Clone(b)
		cur[10], cur[11] = 0, 0
		var got Template
		if err := got.UnmarshalBinary(cur); err != nil {
			t.Fatal(err)
		}
		if got.Offset != 0 {
			t.Errorf("a version %d template's stored offset 0 was measured again: %d", AlgorithmVersion, got.Offset)
		}
	})
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
		// Before version 6 bytes 10–11 were reserved: always zero.
		"reserved bytes, version 5": mod(func(b []byte) []byte { b[5], b[10], b[11] = 5, 1, 0; return b }),
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
