package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/palmd/palmd/internal/dataset"
	"github.com/palmd/palmd/sensor/sim"
)

func runSynth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("synth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ids := fs.Int("identities", 100, "number of synthetic people")
	samples := fs.Int("samples", 6, "images per person (first half session 0, second half a month later)")
	out := fs.String("out", "", "output folder (required)")
	width := fs.Int("width", 640, "frame width")
	height := fs.Int("height", 480, "frame height")
	seed := fs.Uint64("seed", 1, "seed of the first identity")
	harder := fs.Float64("harder", 1, "scale every source of variation (1 = like real captures; 1.5, 2 = harder)")
	anyDir := fs.Bool("any-direction", false, "hands point in any direction, not only roughly up")
	workers := fs.Int("workers", 0, "parallel renderers (0 = one per CPU)")
	attacks := fs.Int("attacks", 0, "also write this many attack presentations per species (print, vein_print, screen, replica) into OUT/attacks/SPECIES/, copied from the set's palms, with attacks/manifest.json")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	if *harder <= 0 || *harder > 10 {
		return usagef("--harder %v outside (0, 10]", *harder)
	}
	v := sim.DefaultVariation().Harder(*harder)
	v.AnyDirection = *anyDir
	bar := newBar(stderr, *ids**samples, "rendering")
	start := time.Now()
	m, err := dataset.Synthesize(ctx, *out, dataset.SynthOptions{
		Identities: *ids, Samples: *samples, Width: *width, Height: *height, FirstSeed: *seed,
		Variation: v, Workers: *workers, Progress: func() { _ = bar.Add(1) },
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "wrote %d images of %d identities to %s in %.1fs (manifest.json has the ground truth)\n",
		len(m.Images), m.Identities, *out, time.Since(start).Seconds())
	if err != nil || *attacks == 0 {
		return err
	}
	a, err := dataset.SynthesizeAttacks(ctx, *out, dataset.SynthOptions{
		Identities: *ids, Width: *width, Height: *height, FirstSeed: *seed, Variation: v, Workers: *workers,
	}, *attacks)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "wrote %d attack presentations (%d per species) to %s\n", len(a), *attacks, filepath.Join(*out, dataset.AttacksDir))
	return err
}
