package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/schollz/progressbar/v3"

	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/internal/eval"
	"github.com/palmd/palmd/template"
)

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "folder of PNG/JPEG/BMP images (required)")
	re := fs.String("label-regex", eval.DefaultLabelRegex, "regex whose group 1 is the identity in a file name")
	roiOut := fs.String("roi-out", "", "write every extracted ROI as PNG into this folder")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	workers := fs.Int("workers", 0, "parallel extractors (0 = one per CPU)")
	scoresOut := fs.String("scores-out", "", "write every pair's score and kind as CSV to this file (no biometric content)")
	plot := fs.String("plot", "", "draw the DET curve and the genuine/impostor histograms as SVG into this file")
	roiLevel := fs.Bool("roi", false, "the images are pre-cut palm ROIs (e.g. PolyU, Tongji 128×128): features and comparison only")
	sessRe := fs.String("session-regex", "", "regex whose group 1 is the session in a file name (genuine pairs within and across sessions)")
	modelOut := fs.String("model-out", "", "write the impostor model fitted to this set as JSON to this file (for template/impostor_model.json)")
	identify := fs.Bool("identify", false, "measure 1:N identification instead: FNIR at FPIR, rank-1, decision rules, pre-selection")
	enrolSamples := fs.Int("enrol-samples", 3, "--identify: samples that enrol each gallery identity (its first ones)")
	strangers := fs.Float64("strangers", eval.DefaultStrangers, "--identify: share of identities kept out of the gallery")
	standIns := fs.Int("stand-ins", 0, "--identify: add this many stand-in entries (mosaics of other palms) to measure pre-selection")
	exhaustive := fs.Bool("exhaustive", true, "--identify --stand-ins: also search the padded gallery in full (slow for large galleries)")
	pad := fs.Bool("pad", false, "presentation-attack detection (ISO/IEC 30107-3): APCER per attack species and BPCER; with --dir the single-frame cues on a folder, without it the daemon's state machine on the simulator")
	bonaFide := fs.Int("bona-fide", 200, "--pad without --dir: bona fide presentations (one per simulated person)")
	attacks := fs.Int("attacks", 50, "--pad without --dir: attack presentations per species")
	seed := fs.Uint64("seed", 1, "--pad without --dir: identity seed of the first person")
	cuesOut := fs.String("cues-out", "", "--pad: write every attempt's outcome, its instrument's variant and extra blur, and its raw cue values as CSV to this file (numbers and names only), to re-score later with --cues-in")
	cuesIn := fs.String("cues-in", "", "--pad: re-score attempts written by --cues-out (comma-separated files) instead of presenting anything")
	calibrate := fs.Bool("calibrate", false, fmt.Sprintf("--pad without --dir: measure the cues on bona fide presentations of other people (seeds from %d) and print a liveness calibration", eval.PADCalibrationSeed))
	calibrationOut := fs.String("calibration-out", "", "--pad --calibrate: also write the calibration and its threshold to this file, for palmd's liveness.calibration_file")
	pairsOnly := fs.Bool("pairs-only", false, "sample pairs only: skip the comparisons of every sample against fused session entries (the matcher's rule)")
	threshold := fs.Float64("threshold", 0, "--identify: decision threshold (0 = palm-matcher's default)")
	cohortOut := fs.String("cohort-out", "", "write the set's templates to this file as a reference cohort (template/cohort.bin: make cohort) and stop; synthetic sets only, templates are biometric data")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *pad {
		return runEvalPAD(ctx, stdout, stderr, padRun{dir: *dir, asJSON: *asJSON, workers: *workers, bonaFide: *bonaFide,
			attacks: *attacks, seed: *seed, calibrate: *calibrate, cuesOut: *cuesOut, cuesIn: *cuesIn, calibrationOut: *calibrationOut})
	}
	if *dir == "" {
		return usagef("--dir is required")
	}
	var bar *progressbar.ProgressBar
	stage := ""
	opts := eval.Options{
		Dir: *dir, LabelRegex: *re, ROIOut: *roiOut, Workers: *workers,
		KeepPairs: *scoresOut != "" || *plot != "", ROILevel: *roiLevel, SessionRegex: *sessRe,
		PairsOnly: *pairsOnly,
	}
	// A progress bar only where a person watches: never into a file or pipe.
	if isTerminal(stderr) {
		opts.Progress = func(s string, done, total int) {
			if s != stage {
				if bar != nil {
					_ = bar.Finish()
				}
				stage = s
				bar = newBar(stderr, total, s)
			}
			_ = bar.Set(done)
		}
	}
	if *cohortOut != "" {
		return writeCohort(ctx, stdout, opts, *cohortOut)
	}
	if *identify {
		rep, err := eval.Identify(ctx, eval.IdentifyOptions{Options: opts, EnrolSamples: *enrolSamples,
			Strangers: *strangers, Pad: *standIns, Exhaustive: *exhaustive, Threshold: *threshold})
		if err != nil {
			return err
		}
		return printReport(stdout, *asJSON, rep)
	}
	rep, err := eval.Run(ctx, opts)
	if err != nil {
		return err
	}
	if *scoresOut != "" {
		var failed []eval.Image
		for _, f := range rep.Files {
			if f.Gate != "ok" {
				failed = append(failed, f)
			}
		}
		if err := writeFile(*scoresOut, func(w io.Writer) error { return eval.WriteScores(w, rep.Pairs(), failed) }); err != nil {
			return err
		}
	}
	if *plot != "" {
		if err := writeFile(*plot, func(w io.Writer) error { return eval.WritePlot(w, rep.Pairs()) }); err != nil {
			return err
		}
	}
	if *modelOut != "" {
		if rep.Model == nil {
			return fmt.Errorf("--model-out: %d impostor pairs are too few to fit a model", rep.Impostor)
		}
		m := *rep.Model
		m.Source = fmt.Sprintf("%s: %d images of %d identities", *dir, rep.Images, rep.Identities)
		if err := writeFile(*modelOut, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(m)
		}); err != nil {
			return err
		}
	}
	return printReport(stdout, *asJSON, rep)
}

// padRun is what palmctl eval --pad was asked for.
type padRun struct {
	dir               string
	asJSON, calibrate bool
	workers           int
	bonaFide, attacks int
	seed              uint64
	cuesOut, cuesIn   string
	calibrationOut    string
}

// runEvalPAD measures presentation-attack detection: on a folder (the
// single-frame cues) or on the simulator (the daemon's whole state
// machine, sequence cues included), or re-scores attempts saved earlier.
func runEvalPAD(ctx context.Context, stdout, stderr io.Writer, o padRun) error {
	if o.dir != "" {
		rep, err := eval.RunPADFolder(ctx, eval.PADFolderOptions{Dir: o.dir, Workers: o.workers, Progress: progressTo(stderr, "scoring")})
		if err != nil {
			return err
		}
		return printReport(stdout, o.asJSON, rep)
	}
	var att []eval.PADAttempt
	switch {
	case o.cuesIn != "":
		for _, p := range strings.Split(o.cuesIn, ",") {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			a, err := eval.ReadPADCues(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			att = append(att, a...)
		}
	default:
		if o.bonaFide < 1 || o.attacks < 0 || o.bonaFide > 100000 || o.attacks > 100000 {
			return usagef("--bona-fide %d / --attacks %d outside 1..100000 / 0..100000", o.bonaFide, o.attacks)
		}
		opts := eval.PADOptions{BonaFide: o.bonaFide, Attacks: o.attacks, FirstSeed: o.seed, Workers: o.workers, Progress: progressTo(stderr, "presenting")}
		if o.calibrate {
			// The calibration's people are none of the evaluation's.
			opts.FirstSeed, opts.Attacks = eval.PADCalibrationSeed, 0
		}
		var err error
		if att, err = eval.RunPAD(ctx, opts); err != nil {
			return err
		}
	}
	if o.cuesOut != "" {
		if err := writeFile(o.cuesOut, func(w io.Writer) error { return eval.WritePADCues(w, att) }); err != nil {
			return err
		}
	}
	if o.calibrationOut != "" && !o.calibrate {
		return usagef("--calibration-out needs --calibrate")
	}
	if o.calibrate {
		cf, err := eval.WritePADCalibration(stdout, att)
		if err != nil || o.calibrationOut == "" {
			return err
		}
		if math.IsInf(cf.Threshold, 1) {
			return fmt.Errorf("%d bona fide presentations cannot show BPCER ≤ 1 %% with 95 %% confidence (at least %d, none refused, can): no calibration file written", cf.Presentations, eval.PADConfidentMinimum)
		}
		b, err := cf.Marshal()
		if err != nil {
			return err
		}
		return writeFile(o.calibrationOut, func(w io.Writer) error { _, err := w.Write(b); return err })
	}
	rep := eval.Summarise(att, liveness.DefaultCalibration(), liveness.DefaultThreshold, 0.01)
	if o.asJSON {
		return printReport(stdout, true, rep)
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	op := eval.Summarise(att, liveness.DefaultCalibration(), 0, 0.01)
	fmt.Fprintf(stdout, "\nat the operating point of BPCER ≤ 1 %% on these bona fide presentations (threshold %.2f):\n", op.Threshold)
	return op.WriteText(stdout)
}

// printReport prints a report as indented JSON or as text.
func printReport(w io.Writer, asJSON bool, rep interface{ WriteText(io.Writer) error }) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(w)
}

// writeFile writes a file through fill, removing it again if fill fails.
func writeFile(path string, fill func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// isTerminal reports whether w is a terminal.

// writeCohort writes the reference cohort of make cohort.
func writeCohort(ctx context.Context, stdout io.Writer, opts eval.Options, path string) error {
	// The cohort is template's to describe (CohortSeed, CohortSize):
	// refuse a set rendered otherwise.
	var m struct {
		FirstSeed  uint64 `json:"first_seed"`
		Identities int    `json:"identities"`
	}
	if b, err := os.ReadFile(filepath.Join(opts.Dir, "manifest.json")); err != nil || json.Unmarshal(b, &m) != nil ||
		m.FirstSeed != template.CohortSeed || m.Identities != template.CohortSize {
		return fmt.Errorf("cohort: %s is not palmctl synth --identities %d --samples 1 --seed %d (manifest: %+v)",
			opts.Dir, template.CohortSize, template.CohortSeed, m)
	}
	var buf bytes.Buffer
	n, err := eval.WriteCohort(ctx, opts, &buf)
	if err == nil && n != template.CohortSize {
		err = fmt.Errorf("%d templates extracted, template.CohortSize is %d", n, template.CohortSize)
	}
	if err == nil {
		err = os.WriteFile(path, buf.Bytes(), 0o644)
	}
	clear(buf.Bytes())
	if err != nil {
		return fmt.Errorf("cohort: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %d cohort templates to %s\n", n, path)
	return nil
}
