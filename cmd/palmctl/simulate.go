package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/orchestrator/orchestratortest"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/template"
)

// runSimulate plays a scenario on the simulated sensor through the daemon's
// own state machine (orchestrator: presence, capture with guidance,
// liveness, extraction, sealing), without a broker: an in-process stand-in
// for the matcher opens each sealed capture (to compare the templates) and
// answers "no match". It prints one row per presentation — the scene, what
// the terminal showed, the outcome, the attack cue when liveness refused it
// — then the attacks refused by cue and how the captured templates compare.
func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("scenario", "", "scenario JSON file (required)")
	realtime := fs.Bool("realtime", false, "pace frames at the camera's frame rate")
	seed := fs.Uint64("seed", 1, "terminal seed (background, stray light)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *path == "" {
		return usagef("--scenario is required")
	}
	f, err := os.Open(*path)
	if err != nil {
		return err
	}
	scen, err := sim.ParseScenario(f)
	f.Close()
	if err != nil {
		return err
	}
	s, err := sim.New(sim.Config{Scenario: scen, Realtime: *realtime, Seed: *seed})
	if err != nil {
		return err
	}
	dev := s.Device()
	defer dev.Close()
	stand, err := newCaptureOpener()
	if err != nil {
		return err
	}
	defer stand.zero()
	orch, err := orchestrator.New(dev, stand.sealer, stand.uplink(), orchestrator.Config{Feedback: time.Millisecond,
		Scene: func() string { _, m := s.Camera.Truth(); return sceneName(scen, m.Step) }})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var rows []simRow
	orch.OnOutcome(func(p orchestrator.Presentation) {
		mu.Lock()
		defer mu.Unlock()
		rows = append(rows, simRow{p: p, shown: s.Indicator.Current()})
	})
	fmt.Fprintf(stdout, "simulated camera %s, %d frames in %d steps; liveness on\n\n", dev.Camera.Format(), scen.Len(), len(scen.Steps))
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- orch.Run(rctx) }()
	for !s.Camera.Ended() {
		select {
		case err := <-done:
			return fmt.Errorf("simulate: the state machine stopped: %w", err)
		case <-ctx.Done():
			cancel()
			<-done
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	printRows(stdout, rows)
	printAttacks(stdout, orch.Attacks())
	printDistances(stdout, scen, rows, stand)
	st := dev.Illuminator.State()
	_, err = fmt.Fprintf(stdout, "\nilluminator on for %v in total, %d safety cut-offs\n", st.TotalOn.Round(1e6), st.Cutoffs)
	return err
}

// sceneName names scenario step i (its label, else its kind).
func sceneName(scen *sim.Scenario, i int) string {
	if i < 0 || i >= len(scen.Steps) {
		return "-"
	}
	st := scen.Steps[i]
	if st.Label != "" {
		return fmt.Sprintf("%d:%s", i+1, st.Label)
	}
	return fmt.Sprintf("%d:%s", i+1, st.Kind)
}

// simRow is one presentation and what the indicator showed at its end.
type simRow struct {
	p     orchestrator.Presentation
	shown sensor.Signal
}

func printRows(w io.Writer, rows []simRow) {
	fmt.Fprintf(w, "%-18s %-10s %-8s %5s %8s %8s  %-20s %s\n", "scene", "outcome", "shown", "q", "in view", "still", "liveness", "gate failures (frames)")
	for _, r := range rows {
		p := r.p
		live := "-"
		switch {
		case p.Outcome == orchestrator.OutcomeAttack:
			live = "ATTACK " + string(p.Attack)
		case len(p.Liveness.Z) > 0:
			live = fmt.Sprintf("live (%.1f)", p.Liveness.Score)
		}
		var gates []string
		for g, n := range p.Gates {
			gates = append(gates, fmt.Sprintf("%s %d", g, n))
		}
		sort.Strings(gates)
		scene := p.Scene
		if scene == "" {
			scene = "-"
		}
		fmt.Fprintf(w, "%-18s %-10s %-8s %5d %6dms %6dms  %-20s %s\n", scene, p.Outcome, r.shown, p.Quality,
			p.InViewToResult.Milliseconds(), p.StillToResult.Milliseconds(), live, strings.Join(gates, ", "))
	}
}

func printAttacks(w io.Writer, by map[liveness.Cue]int) {
	var parts []string
	total := 0
	for _, c := range liveness.AllCues() {
		if n := by[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c, n))
			total += n
		}
	}
	if total == 0 {
		fmt.Fprintf(w, "\nattacks refused: none\n")
		return
	}
	fmt.Fprintf(w, "\nattacks refused: %d (%s); nothing of theirs was extracted, sealed or sent\n", total, strings.Join(parts, ", "))
}

// printDistances prints how the sealed presentations compare (opened by
// the in-process stand-in): the same person close, others far.
func printDistances(w io.Writer, scen *sim.Scenario, rows []simRow, c *captureOpener) {
	type sealed struct {
		scene string
		id    uint64
		t     *template.Template
	}
	var got []sealed
	for _, r := range rows {
		t := c.templates[r.p.RequestID]
		if r.p.RequestID == "" || t == nil {
			continue
		}
		var id uint64
		var step int
		if _, err := fmt.Sscanf(r.p.Scene, "%d:", &step); err == nil && step >= 1 && step <= len(scen.Steps) {
			id = scen.Steps[step-1].Identity
		}
		got = append(got, sealed{r.p.Scene, id, t})
	}
	fmt.Fprintf(w, "\ntemplate distances between sealed presentations (0 = identical, ≈0.34 = unrelated):\n")
	for a := 0; a < len(got); a++ {
		for b := a + 1; b < len(got); b++ {
			d, err := template.Compare(got[a].t, got[b].t)
			if err != nil {
				continue
			}
			same := "different people"
			if got[a].id == got[b].id {
				same = "same person"
			}
			fmt.Fprintf(w, "  %-18s ↔ %-18s %.3f  (%s)\n", got[a].scene, got[b].scene, d, same)
		}
	}
}

// captureOpener stands in for the matcher: it holds a matcher key pair
// made for this run, opens every capture sealed to it and keeps the
// template in memory (for the distances), answering "no match".
type captureOpener struct {
	sealer    *protocol.Sealer
	opener    *protocol.Opener
	mu        sync.Mutex
	templates map[string]*template.Template
}

func newCaptureOpener() (*captureOpener, error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	mk, err := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	if err != nil {
		return nil, err
	}
	return &captureOpener{
		sealer: &protocol.Sealer{DeviceID: "term-sim", DeviceKey: priv, Matcher: mk.Public()},
		opener: &protocol.Opener{Keys: map[protocol.KeyID]*protocol.MatcherPrivateKey{mk.ID: mk},
			Devices: func(string) (ed25519.PublicKey, bool) { return pub, true }},
		templates: map[string]*template.Template{},
	}, nil
}

func (c *captureOpener) uplink() *orchestratortest.Uplink {
	return &orchestratortest.Uplink{Decide: func(env []byte) (protocol.Result, error) {
		t, h, err := c.opener.Open(env)
		if err != nil {
			return protocol.Result{}, err
		}
		c.mu.Lock()
		c.templates[hex.EncodeToString(h.RequestID[:])] = t
		c.mu.Unlock()
		return protocol.Result{RequestID: hex.EncodeToString(h.RequestID[:]), Decision: protocol.DecisionNoMatch}, nil
	}}
}

func (c *captureOpener) zero() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.templates {
		t.Zero()
	}
}
