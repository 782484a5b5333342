package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/palmd/palmd/diag"
	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/internal/eval"
	"github.com/palmd/palmd/keyfile"
	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/sensor/sim"
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

// diagRequest parses a diagnostics command's flags and returns the body
// of its one request.
func diagRequest(ctx context.Context, name, method, path string, args []string, stdout, stderr io.Writer, extra func(*flag.FlagSet)) ([]byte, error) {
	fs, addr, token, tokenFile := diagFlags(name, stderr)
	if extra != nil {
		extra(fs)
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return nil, err
	}
	c, err := newDiagClient(*addr, *token, *tokenFile)
	if err != nil {
		return nil, usageError{err}
	}
	var body bytes.Buffer
	if err := c.do(ctx, method, path, &body); err != nil {
		return nil, err
	}
	return body.Bytes(), nil
}

func runMetrics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	body, err := diagRequest(ctx, "metrics", "GET", "/metrics", args, stdout, stderr, nil)
	if err != nil {
		return err
	}
	_, err = stdout.Write(body)
	return err
}

// runStatus prints a terminal's status for a person, or with --json as
// the port gives it (snake_case, units in the names).
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON *bool
	body, err := diagRequest(ctx, "status", "GET", "/api/v1/status", args, stdout, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print the status as JSON (snake_case, units in the names)")
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return indentJSON(stdout, body)
	}
	var st diag.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("the terminal's status is not what this palmctl reads: %w", err)
	}
	return writeStatus(stdout, st)
}

func runSelfTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runAction(ctx, "selftest", "/api/v1/selftest", "self-test result", args, stdout, stderr, writeSelfTest, func(r diag.SelfTest) error {
		if !r.Passed {
			return errors.New("self-test failed")
		}
		return nil
	})
}

// runAction has a terminal do something between presentations (a POST
// without a body) and prints its answer for a person, or with --json as
// the port gives it; verdict turns a failed one into the command's error.
func runAction[T any](ctx context.Context, name, path, what string, args []string, stdout, stderr io.Writer,
	write func(io.Writer, T) error, verdict func(T) error) error {
	var asJSON *bool
	body, err := diagRequest(ctx, name, "POST", path, args, stdout, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print the result as JSON")
	})
	if err != nil {
		return err
	}
	var res T
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("the terminal's %s is not what this palmctl reads: %w", what, err)
	}
	if *asJSON {
		err = indentJSON(stdout, body)
	} else {
		err = write(stdout, res)
	}
	if err != nil {
		return err
	}
	return verdict(res)
}

// runCameraNoise has a terminal measure its camera's temporal noise
// between presentations and prints the model, with the lines of
// palmd.yaml that set it: a terminal model's step before the pilot that
// calibrates its liveness.
func runCameraNoise(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runAction(ctx, "camera-noise", "/api/v1/camera-noise", "noise measurement", args, stdout, stderr, writeCameraNoise, func(r diag.CameraNoise) error {
		if !r.Passed {
			return errors.New("no noise model: " + r.Problem)
		}
		return nil
	})
}

func writeCameraNoise(w io.Writer, r diag.CameraNoise) error {
	settings := make([]string, len(r.ExposuresMS))
	for i, e := range r.ExposuresMS {
		settings[i] = fmt.Sprintf("%g ms", e)
		if i < len(r.IlluminatorLevels) {
			settings[i] += fmt.Sprintf(" at %d %%", r.IlluminatorLevels[i])
		}
	}
	fmt.Fprintf(w, "camera noise at gain %g: %d pairs of frames (%s), %d tiles of grey %.0f–%.0f, %d left out as moving\n",
		r.Gain, r.Pairs, strings.Join(settings, ", "), r.Tiles, r.MinGrey, r.MaxGrey, r.OutlierTiles)
	if !r.Passed {
		_, err := fmt.Fprintf(w, "  problem  %s\n", r.Problem)
		return err
	}
	_, err := fmt.Fprintf(w, "  read     %.4g grey levels at unity gain (±%.1f %%)\n  shot     %.4g per grey level (±%.1f %%)\n  corr     %.3g px\n"+
		"for palmd.yaml (then calibrate liveness on this model's living hands):\nliveness:\n  noise: {read: %.4g, shot: %.4g, corr: %.3g}\n",
		r.ReadGrey, 100*r.ReadRelError, r.Shot, 100*r.ShotRelError, r.CorrPX, r.ReadGrey, r.Shot, r.CorrPX)
	return err
}

// runLivenessCues fetches the liveness cues of the presentations a
// terminal's detector measured lately and writes them as the CSV palmctl
// eval --pad --cues-in reads, every row labelled bona fide: the terminal
// cannot tell a living hand from an attack it let through, so this is for
// a supervised pilot where only living hands were presented — the data a
// terminal model's own liveness calibration is measured from.
func runLivenessCues(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var out *string
	body, err := diagRequest(ctx, "liveness-cues", "GET", "/api/v1/liveness", args, stdout, stderr, func(fs *flag.FlagSet) {
		out = fs.String("out", "", "write the cues as CSV to this file (required; numbers and cue names only)")
	})
	if err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	var log diag.LivenessLog
	if err := json.Unmarshal(body, &log); err != nil {
		return fmt.Errorf("the terminal's liveness log is not what this palmctl reads: %w", err)
	}
	var noise liveness.NoiseModel
	if n := log.Noise; n != nil {
		noise = liveness.NoiseModel{Read: n.Read, Shot: n.Shot, Corr: n.Corr}
		if err := noise.Check(); err != nil {
			return fmt.Errorf("the terminal's liveness log: noise model: %w", err)
		}
	}
	att := make([]eval.PADAttempt, 0, len(log.Presentations))
	for i, p := range log.Presentations {
		if p.InViewToResultMS < 0 || p.StillToResultMS < 0 {
			return fmt.Errorf("the terminal's liveness log: presentation %d has a negative time", i+1)
		}
		att = append(att, eval.PADAttempt{Species: sim.BonaFide, Identity: uint64(i + 1), Outcome: orchestrator.Outcome(p.Outcome),
			Decided: true, Decision: liveness.Decision{Raw: p.Cues}, InViewToResult: time.Duration(p.InViewToResultMS) * time.Millisecond,
			StillToResult: time.Duration(p.StillToResultMS) * time.Millisecond, ExtraBlur: -1, Noise: noise})
	}
	if err := writeFile(*out, func(w io.Writer) error { return eval.WritePADCues(w, att) }); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%d presentations written to %s, labelled bona fide (a supervised pilot's living hands only)\n", len(att), *out)
	return err
}

func indentJSON(w io.Writer, body []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, body, "", "  "); err != nil {
		return fmt.Errorf("the terminal answered with something that is not JSON: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func writeStatus(w io.Writer, st diag.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("terminal", "%s, palmd %s, up %s", st.Device, st.Version, (time.Duration(st.UptimeSeconds) * time.Second).String())
	row("state", "%s", st.State)
	switch {
	case len(st.Degraded) > 0:
		row("health", "DEGRADED: %s", strings.Join(st.Degraded, "; "))
	case st.LockedUntil != nil:
		row("health", "locked after repeated attacks until %s", st.LockedUntil.Local().Format(time.TimeOnly))
	default:
		row("health", "ok")
	}
	if c := st.Camera; c != nil {
		row("camera", "%s, %.1f fps taken now (set to %g), %d frames, %d reopens", c.Format, c.MeasuredFPS, c.ConfiguredFPS, c.FramesTotal, c.ReopensTotal)
	}
	if il := st.Illuminator; il != nil {
		onOff := "off"
		if il.On {
			onOff = "on"
		}
		row("illuminator", "%s, level %d %%, duty %.1f %% of %.0f %% allowed, %.1f s on in all, %d safety cut-offs",
			onOff, il.LevelPercent, 100*il.DutyRatio, 100*il.MaxDutyRatio, il.OnSeconds, il.Cutoffs)
	}
	if b := st.Broker; b != nil {
		link := "connected"
		if !b.Connected {
			link = "NOT connected"
		}
		row("broker", "%s, %d reconnects, outbox %d captures (%d bytes)", link, b.Reconnects, b.OutboxCaptures, b.OutboxBytes)
		row("captures", "%d sent, %d delivered, %d answered, %d expired; %d commands (%d refused)",
			b.Submitted, b.Delivered, b.Answered, b.Expired, b.Commands, b.CommandsRefused)
	}
	row("presentations", "%s", countsText(st.Presentations))
	attacks := map[string]int{}
	for k, v := range st.AttacksRefused {
		attacks[string(k)] = v
	}
	row("attacks refused", "%s", countsText(attacks))
	if st.EnrolmentSamplesLeft > 0 {
		row("enrolment", "%d samples to go", st.EnrolmentSamplesLeft)
	}
	if st.LastError != "" {
		row("last error", "%s", st.LastError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Recent) == 0 {
		_, err := fmt.Fprintln(w, "\nno presentations yet")
		return err
	}
	fmt.Fprintln(w, "\nrecent presentations, newest first:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  time\toutcome\tquality\tin view → result\tstill → result\tliveness\tfailed gates (frames)")
	for i := len(st.Recent) - 1; i >= 0; i-- {
		p := st.Recent[i]
		outcome := p.Outcome
		if p.AttackCue != "" {
			outcome += " (" + p.AttackCue + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d %%\t%d ms\t%d ms\t%.2f\t%s\n", p.At.Local().Format(time.TimeOnly), outcome, p.Quality,
			p.InViewToResultMS, p.StillToResultMS, p.LivenessScore, countsText(p.GateFailures))
	}
	return tw.Flush()
}

func writeSelfTest(w io.Writer, r diag.SelfTest) error {
	verdict := "passed"
	if !r.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "self-test %s\n  illuminator  adds %.1f grey levels (lit %.1f, unlit %.1f)\n  camera       %.1f fps over %d frames, focus %.3f\n",
		verdict, r.IlluminatorDeltaGrey, r.LitMeanGrey, r.UnlitMeanGrey, r.MeasuredFPS, r.Frames, r.Focus)
	switch {
	case r.BrokerError != "":
		fmt.Fprintf(w, "  broker       %s\n", r.BrokerError)
	case r.BrokerRoundTripMS != nil:
		fmt.Fprintf(w, "  broker       round trip %.1f ms\n", *r.BrokerRoundTripMS)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  problem      %s\n", p)
	}
	return nil
}

// countsText writes counts as "a 3 · b 1" (zeros left out), or "none".
func countsText(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "none"
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, " · ")
}
