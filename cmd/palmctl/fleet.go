package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/palmd/palmd/internal/fleet"
)

func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	self, _ := os.Executable()
	bin := fs.String("bin", filepath.Dir(self), "folder holding palm-matcher")
	terminals := fs.Int("terminals", 1000, "simulated terminals")
	matchers := fs.Int("matchers", 3, "palm-matcher instances")
	rate := fs.Float64("rate", 200, "presentations per second over the fleet")
	duration := fs.Duration("duration", 100*time.Second, "length of the load, cut in five phases (steady, node killed, node back, matcher killed, matcher back)")
	gallery := fs.Int("gallery", 500, "enrolled subjects")
	noFaults := fs.Bool("no-faults", false, "kill nothing")
	keep := fs.Bool("keep", false, "keep the run's folder (cluster state, keys, logs)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "palm-fleet-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintf(stderr, "fleet: state and logs in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	rep, err := fleet.Run(ctx, fleet.Config{Dir: dir, MatcherBin: filepath.Join(*bin, "palm-matcher"), Terminals: *terminals,
		Matchers: *matchers, Rate: *rate, Duration: *duration, Gallery: *gallery, NoFaults: *noFaults, Log: stderr})
	if err != nil {
		return err
	}
	rep.Print(stdout)
	if f := rep.Failures(); len(f) > 0 {
		return errors.New("fleet failed:\n  " + strings.Join(f, "\n  "))
	}
	fmt.Fprintln(stdout, "\nfleet: no capture vanished, none answered late, every decision right and made once")
	return nil
}
