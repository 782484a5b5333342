package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/template"
)

// runSimulate plays a scenario on the simulated sensor through the
// recognition pipeline as the daemon's capture loop will: the illuminator is
// pulsed (lit and unlit frames alternate) for presence, and once a hand is
// present and still, lit frames go through the quality gates and feature
// extraction; the best template of each presentation is kept. It prints one
// line per scenario step, then how the presentations' templates compare.
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
	results, err := playScenario(ctx, s, scen)
	defer func() {
		for i := range results {
			if results[i].best != nil {
				results[i].best.Template.Zero()
			}
		}
	}()
	if err != nil {
		return err
	}
	printSteps(stdout, scen, results)
	printDistances(stdout, scen, results)
	st := dev.Illuminator.State()
	_, err = fmt.Fprintf(stdout, "\nilluminator on for %v in total, %d safety cut-offs\n", st.TotalOn.Round(1e6), st.Cutoffs)
	return err
}

// stepResult is what the pipeline made of one scenario step.
type stepResult struct {
	frames, lit, triggers, tries int
	litSum                       float64
	gates                        map[string]int
	best                         *imaging.Result
}

// playScenario runs lit/unlit frame pairs through presence detection and,
// when a hand is present and still, extraction, step by step.
func playScenario(ctx context.Context, s *sim.Sensor, scen *sim.Scenario) ([]stepResult, error) {
	dev := s.Device()
	pres := imaging.NewPresenceDetector(imaging.DefaultPresenceConfig())
	defer pres.Close()
	ext := imaging.NewExtractor(imaging.DefaultConfig())
	defer ext.Close()
	results := make([]stepResult, len(scen.Steps))
	for i := range results {
		results[i].gates = map[string]int{}
	}
	for i := 0; i+1 < scen.Len(); i += 2 {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		if err := dev.Illuminator.On(100); err != nil {
			return results, err
		}
		lit, err := dev.Camera.NextFrame(ctx)
		if err != nil {
			return results, err
		}
		_, m := s.Camera.Truth()
		_ = dev.Illuminator.Off()
		unlit, err := dev.Camera.NextFrame(ctx)
		if err != nil {
			return results, err
		}
		if m.Step < 0 {
			break
		}
		r := &results[m.Step]
		r.frames += 2
		r.lit++
		r.litSum += meanGrey(lit.Pix)
		p, err := pres.Check(&lit, &unlit)
		if err != nil {
			return results, err
		}
		if p.Triggered {
			r.triggers++
		}
		if p.Present && p.Still {
			r.tries++
			res, err := ext.Extract(&lit, nil)
			r.gates[imaging.GateOf(err).String()]++
			if err == nil && (r.best == nil || res.Quality.Score > r.best.Quality.Score) {
				if r.best != nil {
					r.best.Template.Zero()
				}
				r.best = res
			}
		}
		lit.Zero()
		unlit.Zero()
	}
	return results, nil
}

// printSteps prints a row per scenario step.
func printSteps(w io.Writer, scen *sim.Scenario, results []stepResult) {
	fmt.Fprintf(w, "%-4s %-8s %-11s %6s %6s %7s %6s  %-5s  %s\n", "step", "kind", "label", "frames", "lit", "trigger", "tries", "best", "gates (frames)")
	for i, st := range scen.Steps {
		r := results[i]
		best := "-"
		if r.best != nil {
			best = fmt.Sprintf("q%d", r.best.Quality.Score)
		}
		var gates []string
		for g, n := range r.gates {
			gates = append(gates, fmt.Sprintf("%s %d", g, n))
		}
		sort.Strings(gates)
		fmt.Fprintf(w, "%-4d %-8s %-11s %6d %6.1f %7d %6d  %-5s  %s\n", i+1, st.Kind, st.Label, r.frames,
			r.litSum/float64(max(r.lit, 1)), r.triggers, r.tries, best, strings.Join(gates, ", "))
	}
}

// printDistances prints how the captured presentations compare: the same
// person close, others far.
func printDistances(w io.Writer, scen *sim.Scenario, results []stepResult) {
	fmt.Fprintf(w, "\ntemplate distances between presentations (0 = identical, ≈0.45 = unrelated):\n")
	var idx []int
	for i := range results {
		if results[i].best != nil {
			idx = append(idx, i)
		}
	}
	for a := 0; a < len(idx); a++ {
		for b := a + 1; b < len(idx); b++ {
			i, j := idx[a], idx[b]
			d, err := template.Compare(&results[i].best.Template, &results[j].best.Template)
			if err != nil {
				continue
			}
			same := "different people"
			if scen.Steps[i].Identity == scen.Steps[j].Identity {
				same = "same person"
			}
			fmt.Fprintf(w, "  %-11s ↔ %-11s %.3f  (%s)\n", scen.Steps[i].Label, scen.Steps[j].Label, d, same)
		}
	}
}

func meanGrey(pix []byte) float64 {
	var sum int
	for _, v := range pix {
		sum += int(v)
	}
	return float64(sum) / float64(max(len(pix), 1))
}
