// Command palmctl is the technician and developer tool for palmd: it talks
// to a terminal's diagnostics port (status, selftest, metrics), makes keys,
// runs the end-to-end demo, renders synthetic data sets, plays simulator
// scenarios, and measures the recognition pipeline (eval, calibrate).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/palmd/palmd/version"
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commandTable lists palmctl's commands (built when asked: commands that
// print help must not refer back to it during initialisation).
func commandTable() map[string]command {
	return map[string]command{
		"synth":         {"render a labelled synthetic NIR palm data set (PNG + manifest)", runSynth},
		"demo":          {"run broker, palm-matcher and palmd on the simulated sensor end to end", runDemo},
		"eval":          {"measure the recognition pipeline on a folder of labelled images", runEval},
		"calibrate":     {"compare a synthetic set's scores with the figures measured on real palms", runCalibrate},
		"status":        {"show a terminal's status (diagnostics port); --json for machines", runStatus},
		"selftest":      {"run a terminal's self-test (diagnostics port); --json for machines", runSelfTest},
		"camera-noise":  {"measure a terminal's camera noise for liveness.noise (diagnostics port; a grey card over the window, or the empty box)", runCameraNoise},
		"metrics":       {"print a terminal's Prometheus metrics (diagnostics port)", runMetrics},
		"liveness-cues": {"write a terminal's recent liveness cues as CSV for eval --pad --calibrate --cues-in (diagnostics port; a supervised pilot's living hands)", runLivenessCues},
		"keys":          {"generate device and matcher key pairs (files 0600/0644) and print their ids", runKeys},
		"simulate":      {"play a simulator scenario and print what the sensor sees", runSimulate},
		"fleet":         {"run a 3-node NATS cluster, palm-matchers and simulated terminals under load and faults", runFleet},
		"nats-users":    {"write the users.conf of a fleet's NATS nodes from the device registry", runNATSUsers},
		"version":       {"print the version", runVersion},
	}
}

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return usagef("version takes no arguments")
	}
	_, err := fmt.Fprintln(stdout, "palmctl", version.Version)
	return err
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: palmctl COMMAND [flags]\n\ncommands:")
	cmds := commandTable()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\n'palmctl help COMMAND' (or 'palmctl COMMAND -h') shows a command's flags; 'palmctl --version' the version.")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes, as the man page says.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// run runs one palmctl command line and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	case "help":
		switch len(rest) {
		case 0:
			usage(stdout)
			return exitOK
		case 1:
			cmd, ok := commandTable()[rest[0]]
			if !ok {
				fmt.Fprintf(stderr, "palmctl help: unknown command %q\n", rest[0])
				return exitUsage
			}
			fmt.Fprintf(stdout, "palmctl %s: %s\n\n", rest[0], cmd.summary)
			name, rest = rest[0], []string{"-h"}
		default:
			fmt.Fprintln(stderr, "palmctl help: one command at a time")
			return exitUsage
		}
	}
	cmd, ok := commandTable()[name]
	if !ok {
		fmt.Fprintf(stderr, "palmctl: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	err := cmd.run(ctx, rest, stdout, stderr)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "palmctl %s: %s\nrun 'palmctl help %s' for its flags\n", name, message(name, err), name)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "palmctl %s: %s\n", name, message(name, err))
		return exitFailure
	}
}

// message is err's text without a repeat of the command's name ("eval:
// eval: …" reads as a stutter after "palmctl eval:").
func message(name string, err error) string {
	msg := err.Error()
	for strings.HasPrefix(msg, name+": ") {
		msg = strings.TrimPrefix(msg, name+": ")
	}
	return msg
}
