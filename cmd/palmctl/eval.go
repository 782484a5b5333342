package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/palmd/palmd/eval"
)

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "folder of PNG/JPEG/BMP images (required)")
	re := fs.String("label-regex", eval.DefaultLabelRegex, "regex whose group 1 is the identity in a file name")
	roiOut := fs.String("roi-out", "", "write every extracted ROI as PNG into this folder")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	workers := fs.Int("workers", 0, "parallel extractors (0 = one per CPU)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required")
	}
	var bar *progressbar.ProgressBar
	stage := ""
	rep, err := eval.Run(ctx, eval.Options{
		Dir: *dir, LabelRegex: *re, ROIOut: *roiOut, Workers: *workers,
		Progress: func(s string, done, total int) {
			if s != stage {
				if bar != nil {
					_ = bar.Finish()
				}
				stage = s
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription(s),
					progressbar.OptionShowCount(), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }))
			}
			_ = bar.Set(done)
		},
	})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(stdout)
}
