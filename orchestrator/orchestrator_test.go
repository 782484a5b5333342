package orchestrator

import (
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palmd/palmd/matcher"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/template"
	"github.com/palmd/palmd/uplink"
)

// matcherUplink puts the reference matcher behind the Uplink interface,
// in process: envelopes are opened and decided for real.
type matcherUplink struct {
	m     *matcher.Matcher
	cmds  chan uplink.Command
	delay time.Duration // a slow network or matcher
}

func (u *matcherUplink) Commands() <-chan uplink.Command { return u.cmds }

func (u *matcherUplink) Submit(_ context.Context, env []byte, _ template.Header) (uplink.Result, error) {
	time.Sleep(u.delay)
	_, res, err := u.m.Handle(env)
	return res, err
}

func setup(t *testing.T, scen *sim.Scenario) (*sim.Sensor, *Orchestrator, *matcherUplink) {
	t.Helper()
	s, err := sim.New(sim.Config{Scenario: scen})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Device().Close() })
	pub, priv, _ := ed25519.GenerateKey(nil)
	mk, _ := template.GenerateMatcherKey(template.SuiteX25519)
	_, resKey, _ := ed25519.GenerateKey(nil)
	ref, err := matcher.New(matcher.Config{ResultKey: resKey}, &template.Opener{Keys: map[template.KeyID]*template.MatcherPrivateKey{mk.ID: mk},
		Devices: func(string) (ed25519.PublicKey, bool) { return pub, true }})
	if err != nil {
		t.Fatal(err)
	}
	m := &matcherUplink{m: ref, cmds: make(chan uplink.Command, 4)}
	sealer := &template.Sealer{DeviceID: "term-t1", DeviceKey: priv, Matcher: mk.Public()}
	o, err := New(s.Device(), sealer, m, Config{Feedback: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s, o, m
}

func present(id uint64, session, sample int, label string) sim.Step {
	return sim.Step{Kind: sim.StepPresent, Identity: id, Session: session, Sample: sample, Approach: 8, Hold: 30, Withdraw: 8, Label: label}
}

func TestScriptedScenario(t *testing.T) {
	empty := sim.Step{Kind: sim.StepEmpty, Hold: 12}
	scen := &sim.Scenario{Steps: []sim.Step{
		empty,
		present(7, 0, 0, "enrol-1"), empty,
		present(7, 0, 1, "enrol-2"), empty,
		present(7, 0, 2, "enrol-3"), empty,
		present(7, 1, 4, "alice"), empty,
		present(11, 1, 4, "bob"), empty,
		{Kind: sim.StepPartial, Identity: 7, Approach: 6, Hold: 30, Withdraw: 6, Label: "edge"},
		{Kind: sim.StepEmpty, Hold: 150}, // room for the last capture attempt to give up
	}}
	s, o, m := setup(t, scen)
	m.cmds <- uplink.Command{Kind: uplink.CommandEnroll, Session: strings.Repeat("ab", 16), Samples: 3}
	var mu sync.Mutex
	var got []Presentation
	o.OnOutcome(func(p Presentation) { mu.Lock(); got = append(got, p); mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	deadline := time.After(90 * time.Second)
	for !s.Camera.Ended() {
		select {
		case err := <-done:
			t.Fatalf("Run ended early: %v", err)
		case <-deadline:
			t.Fatal("scenario did not finish")
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, p := range got {
		outcomes = append(outcomes, string(p.Outcome))
	}
	want := []string{"retry", "retry", "enrolled", "match", "no_match", "no_capture"}
	if strings.Join(outcomes, ",") != strings.Join(want, ",") {
		t.Fatalf("outcomes %v, want %v", outcomes, want)
	}
	if got[5].Gates["off_centre"] == 0 {
		t.Errorf("partial hand failed gates %v, want off_centre guidance", got[5].Gates)
	}
	hist := s.Indicator.History()
	var seen = map[sensor.Signal]bool{}
	for _, sg := range hist {
		seen[sg] = true
	}
	for _, sg := range []sensor.Signal{sensor.SignalIdle, sensor.SignalScanning, sensor.SignalSuccess, sensor.SignalFailure, sensor.SignalCenter, sensor.SignalRetry} {
		if !seen[sg] {
			t.Errorf("indicator never showed %v (history %v)", sg, hist)
		}
	}
	if st := s.Illuminator.State(); st.On {
		t.Error("illuminator left on")
	}
	if o.State() != StateStopped {
		t.Errorf("state %v after Run", o.State())
	}
}

// TestHeartbeatWhileAwaitingResult: the watchdog keeps being fed while
// the loop waits (boundedly) for a slow matcher, so a legitimate wait
// longer than the watchdog interval does not get palmd killed.
func TestHeartbeatWhileAwaitingResult(t *testing.T) {
	scen := &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 6}, present(7, 0, 0, "slow"), {Kind: sim.StepEmpty, Hold: 40}}}
	s, o, m := setup(t, scen)
	m.delay = 2500 * time.Millisecond
	var mu sync.Mutex
	var beats []time.Time
	o.cfg.Heartbeat = func() { mu.Lock(); beats = append(beats, time.Now()); mu.Unlock() }
	outcome := make(chan Presentation, 4)
	o.OnOutcome(func(p Presentation) { outcome <- p })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	select {
	case p := <-outcome:
		if p.Outcome != OutcomeNoMatch {
			t.Errorf("outcome %v", p.Outcome)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no outcome")
	}
	cancel()
	<-done
	_ = s
	mu.Lock()
	defer mu.Unlock()
	var worst time.Duration
	for i := 1; i < len(beats); i++ {
		worst = max(worst, beats[i].Sub(beats[i-1]))
	}
	if worst >= 1900*time.Millisecond {
		t.Errorf("longest gap between heartbeats %v while the matcher took %v", worst, m.delay)
	}
}

func TestStopMidPresentationSwitchesLightOff(t *testing.T) {
	scen := &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepPresent, Identity: 3, Approach: 4, Hold: 400}}}
	s, o, _ := setup(t, scen)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for o.State() != StateCapture && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel() // as on SIGTERM
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.Light.Level() != 0 || s.Illuminator.State().On {
		t.Fatal("illuminator on after stopping mid-presentation")
	}
}

// panicCamera panics on the third frame, standing in for a bug anywhere
// in the capture path.
type panicCamera struct {
	sensor.Camera
	n int
}

func (p *panicCamera) NextFrame(ctx context.Context) (sensor.Frame, error) {
	if p.n++; p.n == 3 {
		panic("driver bug")
	}
	return p.Camera.NextFrame(ctx)
}

func TestPanicSwitchesLightOff(t *testing.T) {
	s, _, m := setup(t, &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 5}}})
	dev := s.Device()
	dev.Camera = &panicCamera{Camera: s.Camera}
	_, priv, _ := ed25519.GenerateKey(nil)
	mk, _ := template.GenerateMatcherKey(template.SuiteX25519)
	o, err := New(dev, &template.Sealer{DeviceID: "x", DeviceKey: priv, Matcher: mk.Public()}, m, Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = o.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("Run after a panic: %v", err)
	}
	if s.Light.Level() != 0 {
		t.Fatal("illuminator on after a panic")
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(&sensor.Device{}, nil, nil, Config{}); err == nil {
		t.Error("empty device accepted")
	}
	s, _, m := setup(t, &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 1}}})
	if _, err := New(s.Device(), nil, m, Config{}); err == nil {
		t.Error("missing sealer accepted")
	}
	var e *template.RejectError
	_ = errors.As(nil, &e)
}
