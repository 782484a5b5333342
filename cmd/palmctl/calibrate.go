package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/palmd/palmd/internal/eval"
)

// errCalibration is returned when a checked figure is out of range, so
// that `make calibrate` fails.
var errCalibration = errors.New("calibrate: the synthetic set is outside the real-palm ranges")

func runCalibrate(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("calibrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scores := fs.String("scores", "", "scores CSV of a synthetic set, from palmctl eval --scores-out or the calibration scorer (required)")
	images := fs.Int("images", 0, "number of images in the set (for the failure-to-extract rate; 0 = count them from the scores)")
	setDir := fs.String("set", "", "the synthetic set the scores came from: with its manifest, also print how genuine distances depend on the pose difference (shown only)")
	asJSON := fs.Bool("json", false, "print the figures as JSON")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *scores == "" {
		return usagef("--scores is required")
	}
	f, err := os.Open(*scores)
	if err != nil {
		return fmt.Errorf("calibrate: %w", err)
	}
	defer f.Close()
	set, err := eval.ReadScores(f)
	if err != nil {
		return err
	}
	n := *images
	if n == 0 {
		names := map[string]bool{}
		for _, p := range set.Pairs {
			names[p.A], names[p.B] = true, true
		}
		n = len(names) + len(set.Failed)
	}
	sum := set.Summarise(n)
	rows, ok := eval.Calibrate(sum)
	var pose *eval.PoseDependence
	if *setDir != "" {
		m, err := eval.ReadManifest(*setDir)
		if err != nil {
			return fmt.Errorf("calibrate: %w", err)
		}
		d, err := eval.MeasurePoseDependence(set, m, eval.RealPoseDependence.Threshold)
		if err != nil {
			return fmt.Errorf("calibrate: %w", err)
		}
		pose = &d
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		out := struct {
			eval.Summary
			Pose *eval.PoseDependence `json:"pose_dependence,omitempty"`
		}{sum, pose}
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%d images, %d genuine and %d impostor pairs\n", n, sum.All.Genuine, sum.Impostor)
		if err := eval.WriteCalibration(stdout, rows); err != nil {
			return err
		}
		if pose != nil {
			if err := eval.WritePoseDependence(stdout, *pose); err != nil {
				return err
			}
		}
	}
	if !ok {
		return errCalibration
	}
	return nil
}
