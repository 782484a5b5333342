// Command palmctl is the technician and developer tool for palmd: it talks
// to a terminal's diagnostics port (status, selftest, metrics), makes keys,
// runs the end-to-end demo, renders synthetic data sets, plays simulator
// scenarios, and measures the recognition pipeline (eval, calibrate).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/palmd/palmd/version"
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"synth":      {"render a labelled synthetic NIR palm data set (PNG + manifest)", runSynth},
	"demo":       {"run broker, palm-matcher and palmd on the simulated sensor end to end", runDemo},
	"eval":       {"measure the recognition pipeline on a folder of labelled images", runEval},
	"calibrate":  {"compare a synthetic set's scores with the figures measured on real palms", runCalibrate},
	"status":     {"show a terminal's status (diagnostics port)", diagCommand("GET", "/api/v1/status")},
	"selftest":   {"run a terminal's self-test (diagnostics port)", diagCommand("POST", "/api/v1/selftest")},
	"metrics":    {"print a terminal's Prometheus metrics (diagnostics port)", diagCommand("GET", "/metrics")},
	"keys":       {"generate device and matcher key pairs (files 0600/0644) and print their ids", runKeys},
	"simulate":   {"play a simulator scenario and print what the sensor sees", runSimulate},
	"fleet":      {"run a 3-node NATS cluster, palm-matchers and simulated terminals under load and faults", runFleet},
	"nats-users": {"write the users.conf of a fleet's NATS nodes from the device registry", runNATSUsers},
	"version": {"print the version", func(_ context.Context, _ []string, out, _ io.Writer) error {
		_, err := fmt.Fprintln(out, version.Version)
		return err
	}},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: palmctl COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\n'palmctl COMMAND -h' shows a command's flags.")
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		if os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
			usage(os.Stdout)
			return
		}
		fmt.Fprintf(os.Stderr, "palmctl: unknown command %q\n\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "palmctl %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
