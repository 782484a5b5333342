package template

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFuzzCorpus regenerates the seed corpus in testdata/ when
// PALMD_WRITE_CORPUS is set (go test -run WriteFuzzCorpus ./template with
// the variable set).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PALMD_WRITE_CORPUS") == "" {
		t.Skip("set PALMD_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	tpl, _ := sample().MarshalBinary()
	dir := filepath.Join("testdata", "fuzz", "FuzzUnmarshalTemplate")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"valid": tpl, "truncated": tpl[:100]} {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzUnmarshalTemplate(f *testing.F) {
	good, _ := sample().MarshalBinary()
	f.Add(good)
	f.Add([]byte("PTPL"))
	older := bytes.Clone(good)
	older[WireAlgorithmOffset] = sameBitsVersion
	f.Add(older)
	f.Fuzz(func(t *testing.T, b []byte) {
		var tp Template
		if err := tp.UnmarshalBinary(b); err != nil {
			return
		}
		// Whatever decodes re-encodes to the same bytes, but for an older
		// same-bits algorithm version, which is read as today's, its
		// offset measured (Centre).
		want := bytes.Clone(b)
		if b[WireAlgorithmOffset] < centredVersion {
			c := tp
			c.Offset = 0
			_ = Centre(&c)
			if c.Offset != tp.Offset {
				t.Fatalf("an older template was read with offset %d, Centre gives %d", tp.Offset, c.Offset)
			}
			binary.LittleEndian.PutUint16(want[10:], uint16(tp.Offset))
		}
		want[WireAlgorithmOffset] = AlgorithmVersion
		back, err := tp.MarshalBinary()
		if err != nil || string(back) != string(want) {
			t.Fatalf("decoded template does not re-encode identically: %v", err)
		}
	})
}
