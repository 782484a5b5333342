package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/palmd/palmd/diag"
	"github.com/palmd/palmd/keyfile"
)

// diagClient talks to a terminal's diagnostics port.
type diagClient struct {
	base, token string
	http        *http.Client
}

func diagFlags(name string, stderr io.Writer) (*flag.FlagSet, *string, *string, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", diag.DefaultListen, "diagnostics address host:port")
	token := fs.String("token", "", "bearer token (else $PALMD_DIAG_TOKEN, else --token-file)")
	tokenFile := fs.String("token-file", "", "file holding the bearer token")
	return fs, addr, token, tokenFile
}

func newDiagClient(addr, token, tokenFile string) (*diagClient, error) {
	if token == "" {
		token = os.Getenv("PALMD_DIAG_TOKEN")
	}
	if token == "" && tokenFile != "" {
		b, err := keyfile.ReadSecret(tokenFile)
		if err != nil {
			return nil, err
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, fmt.Errorf("no token: use --token, $PALMD_DIAG_TOKEN or --token-file")
	}
	return &diagClient{base: "http://" + addr, token: token, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (c *diagClient) do(ctx context.Context, method, path string, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	_, err = out.Write(body)
	return err
}

func diagCommand(method, path string) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs, addr, token, tokenFile := diagFlags(path[strings.LastIndex(path, "/")+1:], stderr)
		if err := fs.Parse(args); err != nil {
			return err
		}
		c, err := newDiagClient(*addr, *token, *tokenFile)
		if err != nil {
			return err
		}
		return c.do(ctx, method, path, stdout)
	}
}
