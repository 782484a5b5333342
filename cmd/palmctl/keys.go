package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/palmd/palmd/keyfile"
	"github.com/palmd/palmd/protocol"
)

// runKeys generates a device key pair and/or a matcher key pair as files
// (private 0600, public 0644; existing files are never overwritten) and
// prints the public halves and key ids.
func runKeys(_ context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "folder to write the key files into (required)")
	device := fs.String("device-id", "", "device id for the device key pair (letters, digits, . _ -)")
	suiteName := fs.String("suite", "mlkem768x25519", "matcher HPKE suite: mlkem768x25519 or x25519")
	noDevice := fs.Bool("no-device", false, "do not generate a device key pair")
	noMatcher := fs.Bool("no-matcher", false, "do not generate a matcher key pair")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	suite, err := protocol.ParseSuite(*suiteName)
	if err != nil {
		return usageError{err}
	}
	if !*noDevice && !protocol.ValidDeviceID(*device) {
		return usagef("--device-id %q: 1–64 letters, digits, '.', '_' or '-'", *device)
	}
	// A failure leaves no folder behind that this run made: only the
	// folder itself, and only while still empty, is removed.
	if _, statErr := os.Stat(*out); errors.Is(statErr, os.ErrNotExist) {
		defer func() {
			if err != nil {
				_ = os.Remove(*out)
			}
		}()
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	if !*noDevice {
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			return err
		}
		privPEM, pubPEM, err := keyfile.EncodeDevice(priv)
		clear(priv)
		if err != nil {
			return err
		}
		if err := keyfile.WriteNew(filepath.Join(*out, *device+".key"), privPEM, 0o600); err != nil {
			return err
		}
		clear(privPEM)
		if err := keyfile.WriteNew(filepath.Join(*out, *device+".pub"), pubPEM, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "device %s\n  private key  %s (0600)\n  public key   %s\n  Ed25519      %s\n",
			*device, filepath.Join(*out, *device+".key"), filepath.Join(*out, *device+".pub"), base64.StdEncoding.EncodeToString(pub))
	}
	if !*noMatcher {
		mk, err := protocol.GenerateMatcherKey(suite)
		if err != nil {
			return err
		}
		privPEM, pubPEM, err := keyfile.EncodeMatcher(mk)
		if err != nil {
			return err
		}
		base := "matcher-" + mk.ID.String()
		if err := keyfile.WriteNew(filepath.Join(*out, base+".key"), privPEM, 0o600); err != nil {
			return err
		}
		clear(privPEM)
		if err := keyfile.WriteNew(filepath.Join(*out, base+".pub"), pubPEM, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "matcher key %s (%s)\n  private key  %s (0600)\n  public key   %s (%d bytes)\n",
			mk.ID, suite, filepath.Join(*out, base+".key"), filepath.Join(*out, base+".pub"), len(mk.Public().Bytes()))
	}
	return nil
}
