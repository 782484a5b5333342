package orchestrator

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palmd/palmd/clock"
	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/matcher"
	"github.com/palmd/palmd/orchestrator/orchestratortest"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sensortest"
	"github.com/palmd/palmd/sensor/sim"
)

// matcherUplink puts the reference matcher behind the Uplink interface,
// in process (orchestratortest.Uplink deciding with matcher.Handle):
// envelopes are opened and decided for real.
type matcherUplink struct {
	orchestratortest.Uplink
	m      *matcher.Matcher
	cmdKey ed25519.PrivateKey
	// sealer is the device's, as setup made it.
	sealer *protocol.Sealer
}

// enrol opens an enrolment session as the cloud does: the signed command
// goes to the matcher (which then accepts the session's samples) and to
// the device.
func (u *matcherUplink) enrol(t *testing.T, session string, samples int) {
	t.Helper()
	c := protocol.Command{Device: "term-t1", ID: "enrol-" + session, Kind: protocol.CommandEnroll, Session: session, Samples: samples,
		Expires: time.Now().Add(time.Minute).UnixMilli(), Boot: strings.Repeat("00", 16)}
	b, err := protocol.SignCommand(u.cmdKey, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.m.HandleCommand(b, "term-t1"); err != nil {
		t.Fatal(err)
	}
	u.Cmds <- c
}

func setup(t *testing.T, scen *sim.Scenario) (*sim.Sensor, *Orchestrator, *matcherUplink) {
	t.Helper()
	s, err := sim.New(sim.Config{Scenario: scen})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Device().Close() })
	pub, priv, _ := ed25519.GenerateKey(nil)
	mk, _ := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	_, resKey, _ := ed25519.GenerateKey(nil)
	cmdPub, cmdKey, _ := ed25519.GenerateKey(nil)
	ref, err := matcher.New(matcher.Config{ResultKey: resKey, CommandKey: cmdPub}, &protocol.Opener{Keys: map[protocol.KeyID]*protocol.MatcherPrivateKey{mk.ID: mk},
		Devices: func(string) (ed25519.PublicKey, bool) { return pub, true }})
	if err != nil {
		t.Fatal(err)
	}
	m := &matcherUplink{m: ref, cmdKey: cmdKey}
	m.Cmds = make(chan protocol.Command, 4)
	m.Decide = func(env []byte) (protocol.Result, error) { _, res, err := ref.Handle(env); return res, err }
	sealer := &protocol.Sealer{DeviceID: "term-t1", DeviceKey: priv, Matcher: mk.Public()}
	m.sealer = sealer
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
		// Not sample 4: it is one of the living hands liveness refuses
		// (fused 3.56 on surface_detail, about 1 in 200 hands score so
		// high), and this test is about the flow.
		present(7, 1, 3, "alice"), empty,
		present(11, 1, 4, "bob"), empty,
		{Kind: sim.StepPartial, Identity: 7, Approach: 6, Hold: 30, Withdraw: 6, Label: "edge"},
		{Kind: sim.StepEmpty, Hold: 150}, // room for the last capture attempt to give up
	}}
	s, o, m := setup(t, scen)
	m.enrol(t, strings.Repeat("ab", 16), 3)
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
	m.Delay = 2500 * time.Millisecond
	// The subject is the watchdog, not liveness, which refuses about one
	// living hand in a hundred by design.
	o.cfg.LivenessOff = true
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
			t.Errorf("outcome %v (liveness %v)", p.Outcome, p.Liveness)
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
		t.Errorf("longest gap between heartbeats %v while the matcher took %v", worst, m.Delay)
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

// TestStopWithCaptureAwaitingResult: a stop request while a sealed capture
// awaits its result neither loses it silently nor cuts the shopper off:
// the result that comes within StopGrace is shown and recorded; one that
// does not leaves an "abandoned" record with the request id, an error log
// line and the error signal.
func TestStopWithCaptureAwaitingResult(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  bool
		outcome Outcome
	}{
		{"result within the grace", true, OutcomeNoMatch},
		{"no result", false, OutcomeAbandoned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scen := &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepPresent, Identity: 3, Approach: 4, Hold: 400}}}
			s, _, m := setup(t, scen)
			m.Stall, m.Sent = make(chan struct{}), make(chan string, 1)
			var logs strings.Builder
			var logMu sync.Mutex
			log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
				logMu.Lock()
				defer logMu.Unlock()
				return logs.Write(p)
			}), nil))
			// The grace runs on a manual clock: the test moves time on
			// instead of waiting it out.
			clk := sensortest.NewClock()
			o, err := New(s.Device(), m.sealer, m,
				Config{Feedback: time.Millisecond, StopGrace: time.Minute, Logger: log, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			var got []Presentation
			o.OnOutcome(func(p Presentation) { got = append(got, p) })
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- o.Run(ctx) }()
			var req string
			select {
			case req = <-m.Sent:
			case <-time.After(30 * time.Second):
				t.Fatal("no capture sent")
			}
			cancel() // SIGTERM while the capture awaits its result
			if tc.answer {
				close(m.Stall) // the result comes within the grace
			}
			var runErr error
		wait:
			for {
				select {
				case runErr = <-done:
					break wait
				case <-time.After(20 * time.Millisecond):
					// Time moves on: without an answer the grace runs
					// out; with one, once it is shown, the feedback ends.
					if !tc.answer || o.State() == StateFeedback {
						clk.Advance(time.Minute)
					}
				}
			}
			if runErr != nil {
				t.Fatal(runErr)
			}
			if len(got) != 1 || got[0].Outcome != tc.outcome || got[0].RequestID != req {
				t.Fatalf("recorded %+v, want one %s presentation for request %s", got, tc.outcome, req)
			}
			hist := s.Indicator.History()
			want := sensor.SignalFailure
			if !tc.answer {
				want = sensor.SignalError
				logMu.Lock()
				defer logMu.Unlock()
				if !strings.Contains(logs.String(), "level=ERROR msg=\"capture abandoned at stop") || !strings.Contains(logs.String(), req) {
					t.Errorf("abandoned capture not logged with its request id:\n%s", logs.String())
				}
			}
			if !slices.Contains(hist, want) {
				t.Errorf("indicator history %v lacks %v", hist, want)
			}
		})
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

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
	mk, _ := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	o, err := New(dev, &protocol.Sealer{DeviceID: "x", DeviceKey: priv, Matcher: mk.Public()}, m, Config{})
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
	var e *protocol.RejectError
	_ = errors.As(nil, &e)
}

// TestClockRefusal: with a clock that was never set, nothing is sealed;
// the presentation says why (outcome clock, the reason in LastError) and
// the shopper sees the error signal.
func TestClockRefusal(t *testing.T) {
	scen := &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 8}, present(7, 0, 0, "x"), {Kind: sim.StepEmpty, Hold: 60}}}
	s, o, m := setup(t, scen)
	m.sealer.Clock = clock.Func(func() time.Time { return time.Unix(0, 0) })
	got := playAll(t, s, o)
	if len(got) != 1 || got[0].Outcome != OutcomeClock {
		t.Fatalf("presentations %+v, want one refused for the clock", got)
	}
	if !strings.Contains(o.LastError(), "clock") {
		t.Errorf("last error %q does not say why", o.LastError())
	}
	if !slices.Contains(s.Indicator.History(), sensor.SignalError) {
		t.Error("the shopper was not shown the error signal")
	}
}

// playAll runs o until the scenario ends and returns every presentation.
func playAll(t *testing.T, s *sim.Sensor, o *Orchestrator) []Presentation {
	t.Helper()
	var got []Presentation
	var mu sync.Mutex
	o.OnOutcome(func(p Presentation) { mu.Lock(); got = append(got, p); mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	for deadline := time.Now().Add(90 * time.Second); !s.Camera.Ended() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(got)
}

// refuseEverything is a liveness calibration under which every hand is an
// attack by the print_texture cue: the refusal path, deterministically.
var refuseEverything = liveness.Config{Calibration: liveness.Calibration{
	liveness.CueTexture: {Median: -1, Spread: 1e-6, High: true}}, Threshold: 1}

// TestAttackRefused: a presentation liveness refuses ends red with the cue
// named and counted; nothing is extracted, sealed or sent.
func TestAttackRefused(t *testing.T) {
	empty := sim.Step{Kind: sim.StepEmpty, Hold: 12}
	scen := &sim.Scenario{Steps: []sim.Step{empty, present(7, 0, 0, "x"), {Kind: sim.StepEmpty, Hold: 40}}}
	s, _, m := setup(t, scen)
	var submitted atomic.Int32
	decide := m.Decide
	m.Decide = func(env []byte) (protocol.Result, error) { submitted.Add(1); return decide(env) }
	o, err := New(s.Device(), m.sealer, m, Config{Feedback: time.Millisecond, Liveness: refuseEverything})
	if err != nil {
		t.Fatal(err)
	}
	var stages []string
	var smu sync.Mutex
	o.cfg.OnStage = func(stage string, _ time.Duration) { smu.Lock(); stages = append(stages, stage); smu.Unlock() }
	got := playAll(t, s, o)
	if len(got) != 1 || got[0].Outcome != OutcomeAttack || got[0].Attack != liveness.CueTexture {
		t.Fatalf("presentations %+v, want one refused as an attack by print_texture", got)
	}
	if n := submitted.Load(); n != 0 {
		t.Errorf("%d captures sent for a refused attack", n)
	}
	smu.Lock()
	defer smu.Unlock()
	if slices.Contains(stages, "extract") || slices.Contains(stages, "seal") {
		t.Errorf("stages %v: a refused attack was extracted or sealed", stages)
	}
	if got[0].RequestID != "" {
		t.Error("a refused attack has a request id: something was sealed")
	}
	if !slices.Contains(s.Indicator.History(), sensor.SignalFailure) {
		t.Error("the attacker was not shown red")
	}
	if n := o.Attacks()[liveness.CueTexture]; n != 1 {
		t.Errorf("attacks by print_texture %d, want 1", n)
	}
	if got[0].InViewToResult <= 0 {
		t.Error("no hand-in-view time for the refused presentation")
	}
}

// TestAttackLockout: more than AttackLimit.Max attacks in the window lock
// the terminal: the next presentation is refused without a capture.
func TestAttackLockout(t *testing.T) {
	empty := sim.Step{Kind: sim.StepEmpty, Hold: 12}
	steps := []sim.Step{empty}
	for k := 0; k < 3; k++ {
		steps = append(steps, present(7, 0, k, "x"), empty)
	}
	steps = append(steps, sim.Step{Kind: sim.StepEmpty, Hold: 40})
	s, _, m := setup(t, &sim.Scenario{Steps: steps})
	o, err := New(s.Device(), m.sealer, m, Config{Feedback: time.Millisecond, Liveness: refuseEverything,
		AttackLimit: AttackLimit{Max: 1, Window: time.Hour, Lockout: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	got := playAll(t, s, o)
	var outcomes []Outcome
	for _, p := range got {
		outcomes = append(outcomes, p.Outcome)
	}
	if want := []Outcome{OutcomeAttack, OutcomeAttack, OutcomeLockedOut}; !slices.Equal(outcomes, want) {
		t.Fatalf("outcomes %v, want %v", outcomes, want)
	}
	if o.LockedUntil().IsZero() {
		t.Error("not locked after repeated attacks")
	}
	if got[2].Gates["ok"] != 0 || len(got[2].Liveness.Z) != 0 {
		t.Error("a locked terminal captured frames")
	}
}

// TestPrintRefusedLivenessOn: the default detector refuses a printed palm
// that the pipeline alone would have sealed, and lets the hand it copies
// through.
func TestPrintRefusedLivenessOn(t *testing.T) {
	empty := sim.Step{Kind: sim.StepEmpty, Hold: 12}
	scen := &sim.Scenario{Steps: []sim.Step{empty, present(7, 1, 3, "hand"), empty,
		{Kind: sim.StepPhoto, Identity: 7, Session: 1, Sample: 5, Approach: 8, Hold: 30, Withdraw: 8, Label: "print"},
		{Kind: sim.StepEmpty, Hold: 40}}}
	s, o, _ := setup(t, scen)
	got := playAll(t, s, o)
	if len(got) != 2 {
		t.Fatalf("%d presentations, want 2", len(got))
	}
	if got[0].Outcome != OutcomeNoMatch || got[0].Liveness.Attack {
		t.Errorf("hand: %s (liveness %v)", got[0].Outcome, got[0].Liveness)
	}
	if got[1].Outcome != OutcomeAttack {
		t.Errorf("print: %s (liveness %v), want refused", got[1].Outcome, got[1].Liveness)
	}
	// Both are in the liveness log, as the detector measured them.
	log := o.LivenessLog()
	if len(log) != 2 {
		t.Fatalf("liveness log of %d, want 2", len(log))
	}
	for i, r := range log {
		if r.Outcome != got[i].Outcome || !maps.Equal(r.Raw, got[i].Liveness.Raw) || r.StillToResult != got[i].StillToResult {
			t.Errorf("log entry %d %+v, want presentation %s's cues %v", i, r, got[i].Outcome, got[i].Liveness.Raw)
		}
	}
}

// TestLivenessLogKeepsTheLast: the log keeps the last LivenessLogEntries
// presentations the detector measured, oldest first, and none it did not
// (a presentation refused before liveness, a locked terminal's).
func TestLivenessLogKeepsTheLast(t *testing.T) {
	_, o, _ := setup(t, &sim.Scenario{Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 1}}})
	total := LivenessLogEntries + 7
	for i := range total {
		o.record(Presentation{Outcome: OutcomeNoMatch, StillToResult: time.Duration(i), Liveness: liveness.Decision{Raw: map[liveness.Cue]float64{liveness.CueTexture: float64(i)}}})
		o.record(Presentation{Outcome: OutcomeLockedOut})
	}
	log := o.LivenessLog()
	if len(log) != LivenessLogEntries {
		t.Fatalf("%d entries, want %d", len(log), LivenessLogEntries)
	}
	for i, r := range log {
		if want := float64(total - LivenessLogEntries + i); r.Raw[liveness.CueTexture] != want || r.Outcome != OutcomeNoMatch {
			t.Fatalf("entry %d: %+v, want presentation %v", i, r, want)
		}
	}
	// What the caller gets is a copy.
	log[0].Outcome = OutcomeAttack
	clear(log[1].Raw)
	if again := o.LivenessLog(); again[0].Outcome != OutcomeNoMatch || len(again[1].Raw) != 1 {
		t.Error("LivenessLog shares its ring with the caller")
	}
}

// TestSheetSeenOnTheApproach: what surrounds the hand is measured on the
// idle checks' lit and unlit frames as it comes in, and reaches the
// presentation's liveness decision: the sheet around a print held whole,
// the empty box around the hand.
func TestSheetSeenOnTheApproach(t *testing.T) {
	empty := sim.Step{Kind: sim.StepEmpty, Hold: 12}
	scen := &sim.Scenario{Steps: []sim.Step{empty, present(5, 0, 2, "hand"), empty,
		// Person 5's print 2 is held whole (liveness's sheet test).
		{Kind: sim.StepPhoto, Identity: 5, Sample: 2, Approach: 8, Hold: 30, Withdraw: 8, Label: "print"},
		{Kind: sim.StepEmpty, Hold: 40}}}
	s, o, _ := setup(t, scen)
	got := playAll(t, s, o)
	if len(got) != 2 {
		t.Fatalf("%d presentations, want 2", len(got))
	}
	hand, print := got[0].Liveness, got[1].Liveness
	if v, ok := hand.Raw[liveness.CueSheet]; !ok || v > 0.05 {
		t.Errorf("hand: sheet %v (measured %v), want the empty box around it", v, ok)
	}
	if v, ok := print.Raw[liveness.CueSheet]; !ok || v < 0.15 {
		t.Errorf("print: sheet %v (measured %v), want its sheet seen", v, ok)
	}
	if got[1].Outcome != OutcomeAttack {
		t.Errorf("print: %s (liveness %v), want refused", got[1].Outcome, print)
	}
}

// TestCommandsAreAcknowledged: every command the device takes is
// answered — an enrolment accepted with its sample count, one with a
// session id it cannot use refused, a self-test accepted with its figures.
func TestCommandsAreAcknowledged(t *testing.T) {
	_, o, m := setup(t, &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 30}}})
	m.Acks = make(chan protocol.CommandAck, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	exp := time.Now().Add(time.Minute).UnixMilli()
	for _, tc := range []struct {
		name   string
		cmd    protocol.Command
		status string
		reason string
		detail string
	}{
		{"enrol", protocol.Command{ID: "e1", Kind: protocol.CommandEnroll, Session: strings.Repeat("ab", 16), Samples: 3, Expires: exp}, protocol.AckAccepted, "", "3 samples"},
		{"enrol with a bad session", protocol.Command{ID: "e2", Kind: protocol.CommandEnroll, Session: "zz", Samples: 3, Expires: exp}, protocol.AckRefused, "bad_session", ""},
		{"self-test", protocol.Command{ID: "s1", Kind: protocol.CommandSelfTest, Expires: exp}, protocol.AckAccepted, "", "illuminator_delta_grey="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.Cmds <- tc.cmd
			select {
			case a := <-m.Acks:
				if a.ID != tc.cmd.ID || a.Status != tc.status || a.Reason != tc.reason || !strings.Contains(a.Detail, tc.detail) {
					t.Errorf("ack %+v, want %s %s %q", a, tc.status, tc.reason, tc.detail)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no ack")
			}
		})
	}
}

// TestDegradedWhenTheLightFails: an illuminator that cannot be switched on
// makes the terminal degraded, in words, for the status it publishes.
func TestDegradedWhenTheLightFails(t *testing.T) {
	s, err := sim.New(sim.Config{Scenario: &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 30}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Device().Close() })
	light, err := sensor.NewGuardedIlluminator(&sensortest.Light{Fail: errors.New("gpio line gone")}, sensor.GuardLimits{})
	if err != nil {
		t.Fatal(err)
	}
	dev := &sensor.Device{Camera: s.Camera, Illuminator: light, Indicator: s.Device().Indicator}
	_, priv, _ := ed25519.GenerateKey(nil)
	mk, _ := protocol.GenerateMatcherKey(protocol.SuiteX25519)
	o, err := New(dev, &protocol.Sealer{DeviceID: "term-t2", DeviceKey: priv, Matcher: mk.Public()}, &orchestratortest.Uplink{}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Degraded()) != 0 {
		t.Fatalf("degraded before running: %v", o.Degraded())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for end := time.Now().Add(10 * time.Second); len(o.Degraded()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("never degraded")
		}
	}
	if why := o.Degraded(); !strings.Contains(why[0], "illuminator") || !strings.Contains(why[0], "gpio line gone") {
		t.Errorf("degraded because %v", why)
	}
}
