package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"

	"github.com/palmd/palmd/internal/demo"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	self, _ := os.Executable()
	bin := fs.String("bin", filepath.Dir(self), "folder holding palmd and palm-matcher")
	people := fs.Int("people", 4, "people who enrol")
	strangers := fs.Int("strangers", 2, "people who never enrol")
	pad := fs.Int("pad", demo.DefaultPad, "stand-in people in the gallery before anyone enrols (0: none)")
	verbose := fs.Bool("v", false, "show the processes' logs")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	o := demo.Options{BinDir: *bin, People: *people, Strangers: *strangers, Pad: *pad, Out: stdout}
	if *pad == 0 {
		o.Pad = -1
	}
	if *verbose {
		o.Verbose = stderr
	}
	return demo.Run(ctx, o)
}
