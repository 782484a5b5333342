// Command palmd is the palm-vein terminal daemon. See the README and
// systemd/palmd.yaml for its configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/palmd/palmd/config"
	"github.com/palmd/palmd/daemon"
	"github.com/palmd/palmd/version"
)

func main() {
	path := flag.String("config", config.DefaultPath, "configuration file")
	check := flag.Bool("check-config", false, "validate the configuration and exit")
	showVersion := flag.Bool("version", false, "print the version and exit")
	untilEnd := flag.Bool("exit-when-scenario-ends", false, "with the simulated sensor: stop once the scenario has played (demos, tests)")
	exportPWM := flag.Bool("export-pwm", false, "as root: export the configured illuminator PWM channel and give its attributes to the gpio group, then exit (systemd runs it before palmd starts)")
	lightOff := flag.Bool("illuminator-off", false, "drive the illuminator and indicator lines off and exit (systemd runs it after palmd stops, however it stopped)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "palmd: unexpected argument %q: every value goes with a flag (palmd -h lists them)\n", flag.Arg(0))
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println("palmd", version.Version)
		return
	}
	cfg, err := config.Load(*path)
	var problems *config.Error
	switch {
	case errors.As(err, &problems):
		// One line per problem, "file:line: key: message", as compilers
		// write them, then how many.
		fmt.Fprintln(os.Stderr, problems)
		fmt.Fprintf(os.Stderr, "palmd: %d problem(s) in %s\n", len(problems.Problems), *path)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "palmd:", err)
		os.Exit(2)
	}
	if *check {
		if err := daemon.Check(cfg); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Fprintf(os.Stderr, "palmd: %s: %s\n", *path, line)
			}
			os.Exit(1)
		}
		fmt.Printf("palmd: %s is valid, and every file it names opens\n", *path)
		return
	}
	var level slog.LevelVar
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := daemon.NewLogger(&level)
	if *exportPWM {
		if err := daemon.ExportPWM(cfg); err != nil {
			log.Error("PWM channel not ready", "err", err)
			os.Exit(1)
		}
		return
	}
	if *lightOff {
		if err := daemon.IlluminatorOff(cfg, log); err != nil {
			log.Error("illuminator off failed", "err", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop, hangups := daemon.StopOnSignals(context.Background(), log)
	defer stop()
	err = daemon.Run(ctx, cfg, daemon.Options{Logger: log, StopWhenScenarioEnds: *untilEnd, ConfigPath: *path, Hangups: hangups, LogLevel: &level})
	if err != nil {
		log.Error("palmd failed", "err", err)
		os.Exit(1)
	}
}
