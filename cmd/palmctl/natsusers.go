package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/palmd/palmd/internal/natscluster"
	"github.com/palmd/palmd/protocol"
)

// runNATSUsers writes the users.conf a fleet node includes: one user per
// registered terminal (confined to its own topics), per matcher and per
// cloud sender of commands.
func runNATSUsers(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats-users", flag.ContinueOnError)
	fs.SetOutput(stderr)
	devices := fs.String("devices", "", "folder of device public keys named <device-id>.pub (the matchers' -devices)")
	var matchers, clouds list
	fs.Var(&matchers, "matcher", "a matcher's certificate common name (repeatable; default palm-matcher-1, -2, -3)")
	fs.Var(&clouds, "cloud", "common name of a cloud service that sends commands (repeatable)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *devices == "" {
		return usagef("-devices is required")
	}
	if len(matchers) == 0 {
		matchers = list{"palm-matcher-1", "palm-matcher-2", "palm-matcher-3"}
	}
	entries, err := os.ReadDir(*devices)
	if err != nil {
		return err
	}
	var ids []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".pub")
		if !ok || e.IsDir() {
			continue
		}
		// A NATS subject token cannot hold '.': the MQTT topic of such a
		// device has no subject on the cluster.
		if !protocol.ValidDeviceID(id) || strings.Contains(id, ".") {
			return fmt.Errorf("device id %q cannot be a NATS user (letters, digits, '-' and '_' only)", id)
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var users []natscluster.User
	for _, id := range ids {
		users = append(users, natscluster.DeviceUser(id))
	}
	for _, m := range matchers {
		users = append(users, natscluster.MatcherUser(m))
	}
	for _, c := range clouds {
		users = append(users, natscluster.CloudUser(c))
	}
	fmt.Fprintf(stdout, "# users.conf for the palmd fleet's NATS nodes: %d terminals, %d matchers, %d cloud senders\n# written by palmctl nats-users; write it again when a terminal is registered, then reload the nodes.\n", len(ids), len(matchers), len(clouds))
	_, err = io.WriteString(stdout, natscluster.Authorization(users))
	return err
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }
