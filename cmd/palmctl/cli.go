package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// usageError is a mistake in the command line (an unknown flag, a stray
// argument, a required flag missing): palmctl exits 2 for it, 1 for a
// command that failed.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// errHelp: -h or --help was asked for and answered; palmctl exits 0.
var errHelp = errors.New("help shown")

// parseFlags parses a command's flags as every palmctl command does: -h
// prints the usage on stdout (exit 0); a bad flag, and any argument left
// over (which would otherwise silently end flag parsing), is a usage
// error.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: palmctl %s [flags]\n\nflags:\n", fs.Name())
		fs.PrintDefaults()
	}
	out := fs.Output()
	fs.SetOutput(io.Discard) // the error is reported once, by main
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return errHelp
	case err != nil:
		return usageError{err}
	case fs.NArg() > 0:
		return usagef("unexpected argument %q: every value goes with a flag (-flag value), before any other argument", fs.Arg(0))
	}
	return nil
}

// isTerminal reports whether w is a terminal (where a person watches).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newBar returns a progress bar drawn on w when w is a terminal and
// invisible otherwise: never carriage returns into a file or pipe.
func newBar(w io.Writer, total int, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetVisibility(isTerminal(w)),
		progressbar.OptionOnCompletion(func() {
			if isTerminal(w) {
				fmt.Fprintln(w)
			}
		}))
}

// progressTo returns a progress callback drawing a bar on w when w is a
// terminal, nil otherwise.
func progressTo(w io.Writer, what string) func(done, total int) {
	if !isTerminal(w) {
		return nil
	}
	var bar *progressbar.ProgressBar
	return func(done, total int) {
		if bar == nil {
			bar = newBar(w, total, what)
		}
		_ = bar.Set(done)
	}
}
