package dataset

import (
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/palmd/palmd/sensor/sim"
)

func TestSynthesizeWritesLabelledSet(t *testing.T) {
	dir := t.TempDir()
	n := 0
	m, err := Synthesize(context.Background(), dir, SynthOptions{
		Identities: 3, Samples: 4, Width: 320, Height: 240, FirstSeed: 10,
		Variation: sim.DefaultVariation(), Workers: 2, Progress: func() { n++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Images) != 12 || n != 12 {
		t.Fatalf("%d images, %d progress ticks; want 12", len(m.Images), n)
	}
	for _, e := range m.Images {
		if e.File != FileName(e.Identity, e.Sample) || !e.Truth.Hand {
			t.Errorf("bad entry %+v", e)
		}
		if want := e.Sample / 2; e.Session != want {
			t.Errorf("%s: session %d, want %d", e.File, e.Session, want)
		}
		f, err := os.Open(filepath.Join(dir, e.File))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != 320 || b.Dy() != 240 {
			t.Errorf("%s is %v", e.File, b)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Manifest
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Images) != 12 {
		t.Fatalf("manifest does not round-trip: %v", err)
	}
	if FileName(7, 3) != "0007_03.png" {
		t.Errorf("FileName(7,3) = %s", FileName(7, 3))
	}
}

func TestSynthesizeRejectsBadOptions(t *testing.T) {
	for _, o := range []SynthOptions{{}, {Identities: 1}, {Identities: 1e6, Samples: 1}} {
		if _, err := Synthesize(context.Background(), t.TempDir(), o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

func TestSynthesizeHonoursCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Synthesize(ctx, t.TempDir(), SynthOptions{Identities: 50, Samples: 6, Variation: sim.DefaultVariation()}); err == nil {
		t.Fatal("cancelled synthesis reported success")
	}
}
