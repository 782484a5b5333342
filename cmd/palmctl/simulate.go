package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
)

// runSimulate plays a scenario on the simulated sensor, pulsing the
// illuminator on alternate frames as the presence detector does, and prints
// one line per scenario step: what was in front of the sensor and what the
// frames looked like lit and unlit.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("scenario", "", "scenario JSON file (required)")
	realtime := fs.Bool("realtime", false, "pace frames at the camera's frame rate")
	seed := fs.Uint64("seed", 1, "terminal seed (background, stray light)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("--scenario is required")
	}
	f, err := os.Open(*path)
	if err != nil {
		return err
	}
	scen, err := sim.ParseScenario(f)
	f.Close()
	if err != nil {
		return err
	}
	s, err := sim.New(sim.Config{Scenario: scen, Realtime: *realtime, Seed: *seed})
	if err != nil {
		return err
	}
	dev := s.Device()
	defer dev.Close()
	if err := dev.Camera.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "simulated camera %s, %d frames in %d steps\n\n", dev.Camera.Format(), scen.Len(), len(scen.Steps))
	fmt.Fprintf(stdout, "%-4s %-8s %-12s %6s %8s %8s %9s %9s\n", "step", "kind", "label", "frames", "lit", "unlit", "coverage", "distance")
	type acc struct {
		frames, lit, unlit    int
		litSum, unlitSum, cov float64
		minDist               float64
	}
	var cur acc
	step := 0
	flush := func() {
		if cur.frames == 0 {
			return
		}
		st := scen.Steps[step]
		dist := "-"
		if cur.minDist > 0 {
			dist = fmt.Sprintf("%.0f mm", cur.minDist)
		}
		fmt.Fprintf(stdout, "%-4d %-8s %-12s %6d %8.1f %8.1f %9.3f %9s\n", step+1, st.Kind, st.Label, cur.frames,
			cur.litSum/float64(max(cur.lit, 1)), cur.unlitSum/float64(max(cur.unlit, 1)), cur.cov/float64(cur.frames), dist)
		cur = acc{}
	}
	for i := 0; i < scen.Len(); i++ {
		if i%2 == 0 {
			err = dev.Illuminator.On(100)
		} else {
			err = dev.Illuminator.Off()
		}
		if err != nil {
			return err
		}
		fr, err := dev.Camera.NextFrame(ctx)
		if err != nil {
			return err
		}
		truth, m := s.Camera.Truth()
		if m.Step != step {
			flush()
			step = m.Step
		}
		mean := meanGrey(fr)
		fr.Zero()
		cur.frames++
		if fr.Illuminated {
			cur.lit++
			cur.litSum += mean
		} else {
			cur.unlit++
			cur.unlitSum += mean
		}
		cur.cov += truth.Coverage
		if truth.Hand && (cur.minDist == 0 || truth.Distance < cur.minDist) {
			cur.minDist = truth.Distance
		}
	}
	flush()
	st := dev.Illuminator.State()
	_, err = fmt.Fprintf(stdout, "\nilluminator on for %v in total, %d safety cut-offs; indicator showed %d signals\n",
		st.TotalOn.Round(1e6), st.Cutoffs, len(s.Indicator.History()))
	return err
}

func meanGrey(f sensor.Frame) float64 {
	var sum int
	for _, v := range f.Pix {
		sum += int(v)
	}
	return float64(sum) / float64(len(f.Pix))
}
