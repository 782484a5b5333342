// Package fleet runs a chain of stores on one machine (make fleet): a
// three-node NATS cluster on loopback (internal/natscluster: TLS, users
// from certificates, each terminal confined to its own topics), palm-matcher
// processes consuming the replicated capture queue with the gallery in a
// replicated key-value bucket, and a thousand simulated terminals —
// real uplink clients (paho, MQTT over TLS, the device's own republish
// and deadline logic) sending real sealed envelopes of templates made
// without rendering — under a steady load, while a broker node and a
// matcher are killed with SIGKILL and restarted.
//
// Every presentation's outcome is checked against ground truth (the
// subject whose palm it is, or a stranger), and every result published
// on the cluster is watched by an auditor connection, so the report can
// say per phase what a shopper lived through and prove that no capture
// vanished without its terminal knowing, no result arrived after its
// capture's expiry, and no capture was decided twice.
package fleet

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/palmd/palmd/internal/natscluster"
	"github.com/palmd/palmd/internal/pki"
	"github.com/palmd/palmd/internal/proc"
	"github.com/palmd/palmd/keyfile"
	"github.com/palmd/palmd/matcher"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/template"
	"github.com/palmd/palmd/template/templatetest"
	"github.com/palmd/palmd/uplink"
)

// Config sizes a run. Zero values take the defaults noted.
type Config struct {
	// Dir holds the cluster's state, keys and logs.
	Dir string
	// MatcherBin is the palm-matcher executable.
	MatcherBin string
	// Terminals, Matchers: 1,000 and 3.
	Terminals, Matchers int
	// Rate of presentations per second over the fleet; 200.
	Rate float64
	// Duration of the load; 100 s. It is cut in five phases: steady, a
	// broker node killed, the node restarted, a matcher killed, the
	// matcher restarted.
	Duration time.Duration
	// Gallery is the number of enrolled subjects; 500.
	Gallery int
	// Genuine is the share of presentations by enrolled subjects; 0.8.
	Genuine float64
	// NoFaults runs every phase without killing anything.
	NoFaults bool
	// Log receives progress lines.
	Log io.Writer
}

func (c *Config) defaults() {
	if c.Terminals == 0 {
		c.Terminals = 1000
	}
	if c.Matchers == 0 {
		c.Matchers = 3
	}
	if c.Rate == 0 {
		c.Rate = 200
	}
	if c.Duration == 0 {
		c.Duration = 100 * time.Second
	}
	if c.Gallery == 0 {
		c.Gallery = 500
	}
	if c.Genuine == 0 {
		c.Genuine = 0.8
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Phase is what happened to the presentations started in one phase.
type Phase struct {
	Name string
	// Presentations started; Answered with a result; Expired: the
	// terminal gave up and told the shopper to try again, Undelivered of
	// them because the capture could not be delivered in time, the others
	// because no result came in time; Refused: the terminal's outbox was
	// full.
	Presentations, Answered, Expired, Undelivered, Refused int
	// Wrong: a result that differs from the ground truth. Vanished: a
	// presentation that neither got a result nor was given up by its
	// terminal by its expiry (plus a grace). Late: a result published
	// after its capture's expiry. Duplicated: a capture decided more than
	// once (two different signed results for one request).
	Wrong, Vanished, Late, Duplicated int
	// AnsweredAgain counts results sent again for republished captures
	// (the same signed bytes): harmless, and the mechanism that covers a
	// result lost with a broker node.
	AnsweredAgain int
	// Length of the phase.
	Length    time.Duration
	latencies []time.Duration
}

// Percentile returns the p-th percentile (0–100) of the time from
// presentation to result of the answered presentations.
func (p *Phase) Percentile(q float64) time.Duration {
	if len(p.latencies) == 0 {
		return 0
	}
	l := slices.Clone(p.latencies)
	slices.Sort(l)
	i := int(q / 100 * float64(len(l)-1))
	return l[i]
}

// Report is a run's outcome.
type Report struct {
	Phases []*Phase
	Config Config
	// Dropped counts the results terminals received and dropped, by
	// reason (uplink.Stats.ResultsDropped): "duplicate" (answered
	// again), "late" (after the terminal gave up on its capture, before
	// the capture's expiry), …
	Dropped map[string]uint64
}

// Failures lists what breaks the fleet's promises; empty when the run
// passed.
func (r *Report) Failures() []string {
	var f []string
	for _, p := range r.Phases {
		for _, c := range []struct {
			n    int
			what string
		}{{p.Vanished, "captures vanished without the terminal knowing"}, {p.Late, "results arrived after their capture's expiry"},
			{p.Wrong, "decisions differ from the ground truth"}, {p.Duplicated, "captures decided twice"}} {
			if c.n > 0 {
				f = append(f, fmt.Sprintf("%s: %d %s", p.Name, c.n, c.what))
			}
		}
	}
	return f
}

// Print writes the per-phase table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "fleet: %d terminals, %d matchers, 3 broker nodes, %.0f presentations/s asked (achieved: in brackets), gallery %d\n\n",
		r.Config.Terminals, r.Config.Matchers, r.Config.Rate, r.Config.Gallery)
	fmt.Fprintln(w, "| phase | presentations (per s) | answered | expired at terminal (undelivered) | outbox full | wrong | vanished | late | decided twice | answered again | p50 | p99 | max |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }
	for _, p := range r.Phases {
		rate := float64(p.Presentations) / max(p.Length.Seconds(), 1e-9)
		fmt.Fprintf(w, "| %s | %d (%.0f) | %d | %d (%d) | %d | %d | %d | %d | %d | %d | %s | %s | %s |\n", p.Name, p.Presentations, rate, p.Answered,
			p.Expired, p.Undelivered, p.Refused, p.Wrong, p.Vanished, p.Late, p.Duplicated, p.AnsweredAgain, ms(p.Percentile(50)), ms(p.Percentile(99)), ms(p.Percentile(100)))
	}
	if len(r.Dropped) > 0 {
		keys := slices.Sorted(maps.Keys(r.Dropped))
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Dropped[k]))
		}
		fmt.Fprintf(w, "\nresults terminals received and dropped: %s\n", strings.Join(parts, ", "))
	}
}

// presentation is one shopper at one terminal.
type presentation struct {
	phase   *Phase
	expiry  time.Time
	want    protocol.Decision
	subject string
}

// run is a fleet in motion.
type run struct {
	cfg       Config
	cluster   *natscluster.Cluster
	ca        *pki.CA
	keys      keys
	terminals []*terminal
	matchers  []*matcherProc
	gallery   []*template.Template
	strangers []*template.Template

	mu      sync.Mutex
	phase   *Phase
	byReq   map[string]*presentation
	results map[string][][]byte // request id → distinct signed results seen
}

type keys struct {
	matcher   *protocol.MatcherPrivateKey
	resultPub ed25519.PublicKey
	dir       string
}

type terminal struct {
	id     string
	client *uplink.Client
	sealer *protocol.Sealer
	busy   atomic.Bool
}

// Run runs the fleet and returns its report (an error only when the
// fleet could not be set up).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	r := &run{cfg: cfg, byReq: map[string]*presentation{}, results: map[string][][]byte{}}
	defer r.stop()
	if err := r.setUp(ctx); err != nil {
		return nil, err
	}
	report := &Report{Config: cfg}
	names := []string{"steady", "broker node killed", "node restarted", "matcher killed", "matcher restarted"}
	step := cfg.Duration / time.Duration(len(names))
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	rng := rand.New(rand.NewPCG(1, 2))
	for i, name := range names {
		p := &Phase{Name: name}
		report.Phases = append(report.Phases, p)
		r.mu.Lock()
		r.phase = p
		r.mu.Unlock()
		if err := r.fault(i); err != nil {
			return nil, err
		}
		fmt.Fprintf(cfg.Log, "fleet: phase %q\n", name)
		begun := time.Now()
		end := time.After(step)
	load:
		for {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-end:
				break load
			case <-tick.C:
				t := r.terminals[rng.IntN(len(r.terminals))]
				if !t.busy.CompareAndSwap(false, true) {
					continue // a shopper is still at that terminal
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer t.busy.Store(false)
					r.present(ctx, t, p, rand.New(rand.NewPCG(rng.Uint64(), 3)))
				}()
			}
		}
		p.Length = time.Since(begun)
		down := 0
		for _, t := range r.terminals {
			if !t.client.Connected() {
				down++
			}
		}
		fmt.Fprintf(cfg.Log, "fleet: end of %q: %d terminals not connected\n", name, down)
	}
	wg.Wait()
	time.Sleep(time.Second) // results still on their way to the auditor
	report.Dropped = map[string]uint64{}
	for _, t := range r.terminals {
		for k, v := range t.client.Stats().ResultsDropped {
			report.Dropped[k] += v
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for req, seen := range r.results {
		p := r.byReq[req]
		if p == nil {
			continue
		}
		if len(seen) > 1 {
			p.phase.Duplicated++
		}
	}
	return report, nil
}

// fault applies the fault that starts phase i.
func (r *run) fault(i int) error {
	if r.cfg.NoFaults {
		return nil
	}
	switch i {
	case 1:
		fmt.Fprintf(r.cfg.Log, "fleet: SIGKILL broker node %s\n", r.cluster.Nodes[1].Name)
		r.cluster.Nodes[1].Kill()
	case 2:
		fmt.Fprintf(r.cfg.Log, "fleet: restarting broker node %s\n", r.cluster.Nodes[1].Name)
		return r.cluster.Nodes[1].Start()
	case 3:
		fmt.Fprintf(r.cfg.Log, "fleet: SIGKILL %s\n", r.matchers[1].name)
		r.matchers[1].kill()
	case 4:
		fmt.Fprintf(r.cfg.Log, "fleet: restarting %s\n", r.matchers[1].name)
		return r.matchers[1].start()
	}
	return nil
}

// present makes one presentation at t and records its outcome.
func (r *run) present(ctx context.Context, t *terminal, phase *Phase, rng *rand.Rand) {
	var probe template.Template
	var want protocol.Decision
	subject := ""
	if rng.Float64() < r.cfg.Genuine {
		i := rng.IntN(len(r.gallery))
		probe, want, subject = *r.gallery[i], protocol.DecisionMatch, subjectName(i)
	} else {
		probe, want = *r.strangers[rng.IntN(len(r.strangers))], protocol.DecisionNoMatch
	}
	flip(&probe, 0.08, rng)
	start := time.Now()
	env, hdr, err := t.sealer.Seal(&probe, protocol.PurposeIdentify, [16]byte{})
	if err != nil {
		fmt.Fprintf(r.cfg.Log, "fleet: seal: %v\n", err)
		return
	}
	req := hex.EncodeToString(hdr.RequestID[:])
	pr := &presentation{phase: phase, expiry: hdr.Expiry, want: want, subject: subject}
	r.mu.Lock()
	r.byReq[req] = pr
	phase.Presentations++
	r.mu.Unlock()
	// Vanished: the terminal neither answered nor gave up by the expiry
	// (its own deadlines are shorter) plus a grace.
	sctx, cancel := context.WithTimeout(ctx, time.Until(hdr.Expiry)+5*time.Second)
	defer cancel()
	res, err := t.client.Submit(sctx, env, hdr)
	took := time.Since(start)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		phase.Answered++
		phase.latencies = append(phase.latencies, took)
		if res.Decision != want || res.Subject != subject {
			phase.Wrong++
		}
	case errors.Is(err, uplink.ErrExpired):
		phase.Expired++
		phase.Undelivered++
	case errors.Is(err, uplink.ErrNoResult):
		phase.Expired++
	case errors.Is(err, uplink.ErrOutboxFull):
		phase.Refused++
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		phase.Vanished++
	}
}

// flip changes fraction p of t's bits: another capture of the same palm.
func flip(t *template.Template, p float64, rng *rand.Rand) {
	for m := range t.Planes {
		for o := range t.Planes[m] {
			for y := range t.Planes[m][o] {
				var mask uint32
				for x := 0; x < template.Grid; x++ {
					if rng.Float64() < p {
						mask |= 1 << uint(x)
					}
				}
				t.Planes[m][o][y] ^= mask
			}
		}
	}
}

func subjectName(i int) string { return fmt.Sprintf("subject-%05d", i) }

func terminalName(i int) string { return fmt.Sprintf("fleet-%04d", i) }

// audit records every result published on the cluster.
func (r *run) audit(msg *nats.Msg) {
	res, err := protocol.VerifyResult(r.keys.resultPub, msg.Data)
	if err != nil {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.byReq[res.RequestID]
	if p == nil {
		return
	}
	if now.After(p.expiry) {
		p.phase.Late++
	}
	seen := r.results[res.RequestID]
	for _, s := range seen {
		if string(s) == string(msg.Data) {
			p.phase.AnsweredAgain++
			return
		}
	}
	r.results[res.RequestID] = append(seen, append([]byte(nil), msg.Data...))
}

// setUp starts the cluster, seeds the gallery, starts the matchers and
// connects the terminals.
func (r *run) setUp(ctx context.Context) error {
	cfg := r.cfg
	var err error
	if r.ca, err = pki.NewCA("palm fleet CA"); err != nil {
		return err
	}
	users := []natscluster.User{{Name: "CN=fleet-auditor", Publish: []string{"$JS.API.>", "$KV.>", "_INBOX.>"}, Subscribe: []string{">"}}}
	for i := range cfg.Matchers {
		users = append(users, natscluster.MatcherUser(fmt.Sprintf("palm-matcher-%d", i+1)))
	}
	for i := range cfg.Terminals {
		users = append(users, natscluster.DeviceUser(terminalName(i)))
	}
	auditorTLS, err := r.ca.ClientTLS(r.ca.Pool, "fleet-auditor")
	if err != nil {
		return err
	}
	start := time.Now()
	if r.cluster, err = natscluster.Start(ctx, natscluster.Config{Dir: cfg.Dir, CA: r.ca, Users: users, MaxPayload: protocol.MaxPacket}, auditorTLS); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Log, "fleet: 3-node cluster up in %v\n", time.Since(start).Round(time.Millisecond))
	if err := r.writeKeys(); err != nil {
		return err
	}
	nc, err := nats.Connect(strings.Join(r.cluster.ClientURLs(), ","), nats.Secure(auditorTLS), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("fleet: auditor: %w", err)
	}
	if _, err := nc.Subscribe("palm.v1.*.result", r.audit); err != nil {
		return fmt.Errorf("fleet: auditor: %w", err)
	}
	if err := r.seed(ctx, nc); err != nil {
		return err
	}
	for i := range cfg.Matchers {
		m := &matcherProc{name: fmt.Sprintf("palm-matcher-%d", i+1), r: r}
		r.matchers = append(r.matchers, m)
		if err := m.start(); err != nil {
			return err
		}
	}
	start = time.Now()
	if err := r.connectTerminals(ctx); err != nil {
		return err
	}
	fmt.Fprintf(cfg.Log, "fleet: %d terminals connected over MQTT/TLS in %v\n", cfg.Terminals, time.Since(start).Round(time.Millisecond))
	return nil
}

func (r *run) writeKeys() error {
	dir := r.cfg.Dir
	r.keys.dir = dir
	mk, err := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	if err != nil {
		return err
	}
	r.keys.matcher = mk
	resPub, resKey, _ := ed25519.GenerateKey(nil)
	r.keys.resultPub = resPub
	mpriv, _, err := keyfile.EncodeMatcher(mk)
	if err != nil {
		return err
	}
	rpriv, _, err := keyfile.EncodeDevice(resKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{"matcher.key": mpriv, "result.key": rpriv, "ca.pem": r.ca.PEM,
		"gallery.key": []byte(hex.EncodeToString(randomKey()) + "\n")}
	for i := range r.cfg.Matchers {
		name := fmt.Sprintf("palm-matcher-%d", i+1)
		cert, key, err := r.ca.Issue(name, false)
		if err != nil {
			return err
		}
		files[name+".pem"], files[name+".key"] = cert, key
	}
	if err := os.MkdirAll(filepath.Join(dir, "devices"), 0o700); err != nil {
		return err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	return nil
}

func randomKey() []byte {
	k := make([]byte, 32)
	_, _ = crand.Read(k) // never fails (crypto/rand)
	return k
}

// seed enrols the gallery straight into the bucket, as enrolments on the
// matchers would have, and makes the strangers.
func (r *run) seed(ctx context.Context, nc *nats.Conn) error {
	for i := range r.cfg.Gallery {
		r.gallery = append(r.gallery, templatetest.Palm(uint64(i+1), 0, 0))
	}
	for i := range 200 {
		r.strangers = append(r.strangers, templatetest.Palm(uint64(1_000_000+i), 0, 0))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	key, err := matcher.ReadGalleryKey(filepath.Join(r.cfg.Dir, "gallery.key"))
	if err != nil {
		return err
	}
	s, err := matcher.OpenKVStore(ctx, js, key, matcher.KVConfig{Timeout: time.Minute})
	if err != nil {
		return err
	}
	defer s.Close()
	start := time.Now()
	err = s.Update(func(c matcher.Change) error { return nil }, func() {}, func() ([]matcher.Change, error) {
		var ch []matcher.Change
		for i, t := range r.gallery {
			c := *t
			ch = append(ch, matcher.Change{Kind: matcher.ChangePut, Subject: subjectName(i), Template: &c})
		}
		return ch, nil
	})
	if err != nil {
		return fmt.Errorf("fleet: seeding the gallery: %w", err)
	}
	fmt.Fprintf(r.cfg.Log, "fleet: %d subjects enrolled in the replicated bucket in %v\n", r.cfg.Gallery, time.Since(start).Round(time.Millisecond))
	return nil
}

func (r *run) connectTerminals(ctx context.Context) error {
	urls := r.cluster.MQTTURLs()
	for i := range r.cfg.Terminals {
		id := terminalName(i)
		_, priv, _ := ed25519.GenerateKey(nil)
		_, pubPEM, err := keyfile.EncodeDevice(priv)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(r.cfg.Dir, "devices", id+".pub"), pubPEM, 0o600); err != nil {
			return err
		}
		tlsCfg, err := r.ca.ClientTLS(r.ca.Pool, id)
		if err != nil {
			return err
		}
		// Each terminal prefers one node and falls back to the others.
		brokers := append(slices.Clone(urls[i%len(urls):]), urls[:i%len(urls)]...)
		c, err := uplink.New(uplink.Config{DeviceID: id, Brokers: brokers, TLS: tlsCfg, ResultKey: r.keys.resultPub,
			TelemetryInterval: -1, Version: "fleet"})
		if err != nil {
			return err
		}
		r.terminals = append(r.terminals, &terminal{id: id, client: c,
			sealer: &protocol.Sealer{DeviceID: id, DeviceKey: priv, Matcher: r.keys.matcher.Public()}})
	}
	for _, t := range r.terminals {
		t.client.Start()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n := 0
		for _, t := range r.terminals {
			if t.client.Connected() {
				n++
			}
		}
		if n == len(r.terminals) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("fleet: %d of %d terminals connected", n, len(r.terminals))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *run) stop() {
	var wg sync.WaitGroup
	for _, t := range r.terminals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			t.client.Close(ctx)
		}()
	}
	wg.Wait()
	for _, m := range r.matchers {
		m.stop()
	}
	if r.cluster != nil {
		r.cluster.Stop()
	}
}

// matcherProc is one palm-matcher process.
type matcherProc struct {
	name string
	r    *run
	proc proc.Process
}

func (m *matcherProc) start() error {
	dir := m.r.cfg.Dir
	args := []string{"-transport", "nats", "-store", "kv", "-client-id", m.name,
		"-ca", filepath.Join(dir, "ca.pem"), "-cert", filepath.Join(dir, m.name+".pem"), "-key", filepath.Join(dir, m.name+".key"),
		"-devices", filepath.Join(dir, "devices"), "-matcher-key", filepath.Join(dir, "matcher.key"),
		"-result-key", filepath.Join(dir, "result.key"), "-gallery-key", filepath.Join(dir, "gallery.key"),
		"-metrics-listen", "", "-log-level", "info"}
	for _, u := range m.r.cluster.ClientURLs() {
		args = append(args, "-broker", u)
	}
	logPath := filepath.Join(dir, m.name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(m.r.cfg.MatcherBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := m.proc.Start(cmd, func() { logf.Close() }); err != nil {
		logf.Close()
		return fmt.Errorf("fleet: %s: %w", m.name, err)
	}
	done := m.proc.Exited()
	start := time.Now()
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "matcher subscribed") {
			fmt.Fprintf(m.r.cfg.Log, "fleet: %s serving (%v)\n", m.name, time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("fleet: %s exited: %s", m.name, b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(start) > time.Minute {
			return fmt.Errorf("fleet: %s not serving after a minute: %s", m.name, b)
		}
	}
}

func (m *matcherProc) kill() { m.proc.Stop(syscall.SIGKILL, 10*time.Second) }

func (m *matcherProc) stop() { m.proc.Stop(syscall.SIGTERM, 10*time.Second) }
