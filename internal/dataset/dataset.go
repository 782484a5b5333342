// Package dataset writes and reads labelled sets of palm images for
// evaluation: synthetic sets rendered by sensor/sim (palmctl synth) and
// folders of real captures (palmctl eval).
//
// A set is a folder of 8-bit greyscale PNG files named
// IDENTITY_SAMPLE.png (for example 0007_03.png) plus, for synthetic sets,
// a manifest.json with the ground truth of every image. Synthetic images
// are not biometric data of any person; this package is a developer tool
// and is never linked into the daemon's capture path.
package dataset

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"

	"github.com/palmd/palmd/internal/parallel"
	"github.com/palmd/palmd/sensor/sim"
)

// SynthOptions configures a synthetic set.
type SynthOptions struct {
	Identities int // number of people
	Samples    int // images per person; the first half in session 0, the rest in session 1
	Width      int
	Height     int
	// FirstSeed is the identity seed of person 0; person i has seed
	// FirstSeed+i.
	FirstSeed uint64
	Variation sim.Variation
	// Workers renders in parallel; zero means one per CPU.
	Workers int
	// Progress, when set, is called after each image.
	Progress func()
}

// Entry is one image of a synthetic set in its manifest.
type Entry struct {
	File     string    `json:"file"`
	Identity int       `json:"identity"`
	Sample   int       `json:"sample"`
	Session  int       `json:"session"`
	Truth    sim.Truth `json:"truth"`
}

// Manifest describes a synthetic set.
type Manifest struct {
	Generator  string        `json:"generator"`
	Width      int           `json:"width"`
	Height     int           `json:"height"`
	Identities int           `json:"identities"`
	Samples    int           `json:"samples"`
	FirstSeed  uint64        `json:"first_seed"`
	Variation  sim.Variation `json:"variation"`
	Images     []Entry       `json:"images"`
}

// FileName is the name of sample k of identity i: 0007_03.png.
func FileName(identity, sample int) string { return fmt.Sprintf("%04d_%02d.png", identity, sample) }

// Synthesize renders a set into dir (created if missing) and writes its
// manifest. Identity i's images are rendered by one worker, so each
// identity's texture is built once.
func Synthesize(ctx context.Context, dir string, o SynthOptions) (*Manifest, error) {
	if o.Identities <= 0 || o.Samples <= 0 {
		return nil, fmt.Errorf("dataset: need at least one identity and one sample (got %d×%d)", o.Identities, o.Samples)
	}
	if o.Identities > 100000 || o.Samples > 1000 {
		return nil, fmt.Errorf("dataset: %d identities × %d samples is more than this tool makes", o.Identities, o.Samples)
	}
	if o.Width == 0 {
		o.Width, o.Height = 640, 480
	}
	workers := parallel.Workers(o.Workers)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dataset: %w", err)
	}
	m := &Manifest{
		Generator: "palmctl synth", Width: o.Width, Height: o.Height,
		Identities: o.Identities, Samples: o.Samples, FirstSeed: o.FirstSeed, Variation: o.Variation,
		Images: make([]Entry, o.Identities*o.Samples),
	}
	type worker struct {
		r   *sim.Renderer
		buf []byte
	}
	setup := func() (worker, func(), error) {
		r, err := sim.NewRenderer(o.Width, o.Height, o.FirstSeed^0xb0c5)
		if err != nil {
			return worker{}, nil, err
		}
		return worker{r: r, buf: make([]byte, o.Width*o.Height)}, r.Close, nil
	}
	err := parallel.Do(ctx, o.Identities, workers, setup, func(w worker, i int) error {
		id := sim.NewIdentity(o.FirstSeed + uint64(i))
		for k := 0; k < o.Samples; k++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			session := 0
			if k >= (o.Samples+1)/2 {
				session = 1
			}
			p := o.Variation.Sample(id, session, k, o.Width, o.Height)
			truth, err := w.r.Render(w.buf, &p, sim.Lighting{Level: 100}, [2]float64{}, uint64(i)<<16|uint64(k))
			if err != nil {
				return err
			}
			name := FileName(i, k)
			if err := writePNG(filepath.Join(dir, name), w.buf, o.Width, o.Height); err != nil {
				return err
			}
			m.Images[i*o.Samples+k] = Entry{File: name, Identity: i, Sample: k, Session: session, Truth: truth}
			if o.Progress != nil {
				o.Progress()
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644); err != nil {
		return nil, fmt.Errorf("dataset: writing manifest: %w", err)
	}
	return m, nil
}

func writePNG(path string, pix []byte, w, h int) error {
	img := &image.Gray{Pix: pix, Stride: w, Rect: image.Rect(0, 0, w, h)}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("dataset: encoding %s: %w", path, err)
	}
	return f.Close()
}

// AttacksDir is the folder, inside a set, that holds its attack
// presentations: one sub-folder per species (attacks/print/0003_00.png).
const AttacksDir = "attacks"

// AttackEntry is one attack image in an attack manifest.
type AttackEntry struct {
	File    string      `json:"file"` // relative to the set's folder
	Species sim.Species `json:"species"`
	// Identity is the person whose palm the instrument copies.
	Identity int       `json:"identity"`
	Truth    sim.Truth `json:"truth"`
}

// SynthesizeAttacks renders perSpecies attack presentations of every
// species into dir/attacks/<species>/ (instruments made from the palms of
// the set's people, as an attacker would copy an enrolled person's) and
// writes dir/attacks/manifest.json. Each image is one lit frame of the
// instrument held where a hand would be.
func SynthesizeAttacks(ctx context.Context, dir string, o SynthOptions, perSpecies int) ([]AttackEntry, error) {
	if perSpecies <= 0 || perSpecies > 10000 || o.Identities <= 0 {
		return nil, fmt.Errorf("dataset: %d attacks per species outside 1..10000 (or no identities)", perSpecies)
	}
	if o.Width == 0 {
		o.Width, o.Height = 640, 480
	}
	for _, sp := range sim.AttackSpecies {
		if err := os.MkdirAll(filepath.Join(dir, AttacksDir, string(sp)), 0o755); err != nil {
			return nil, fmt.Errorf("dataset: %w", err)
		}
	}
	n := perSpecies * len(sim.AttackSpecies)
	out := make([]AttackEntry, n)
	setup := func() (*sim.Renderer, func(), error) {
		r, err := sim.NewRenderer(o.Width, o.Height, o.FirstSeed^0xa77a)
		if err != nil {
			return nil, nil, err
		}
		return r, r.Close, nil
	}
	err := parallel.Do(ctx, n, parallel.Workers(o.Workers), setup, func(r *sim.Renderer, j int) error {
		sp := sim.AttackSpecies[j/perSpecies]
		k := j % perSpecies
		i := k % o.Identities
		id := sim.NewIdentity(o.FirstSeed + uint64(i))
		p := o.Variation.Sample(id, 1, 100+k, o.Width, o.Height)
		p.Attack = sim.NewInstrument(sp, o.FirstSeed<<24^uint64(j))
		pix := make([]byte, o.Width*o.Height)
		truth, err := r.Render(pix, &p, sim.Lighting{Level: 100}, [2]float64{}, uint64(j)<<16|0xa7)
		if err != nil {
			return err
		}
		name := filepath.Join(AttacksDir, string(sp), FileName(i, k))
		if err := writePNG(filepath.Join(dir, name), pix, o.Width, o.Height); err != nil {
			return err
		}
		out[j] = AttackEntry{File: name, Species: sp, Identity: i, Truth: truth}
		if o.Progress != nil {
			o.Progress()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, AttacksDir, "manifest.json"), data, 0o644); err != nil {
		return nil, fmt.Errorf("dataset: writing attack manifest: %w", err)
	}
	return out, nil
}
