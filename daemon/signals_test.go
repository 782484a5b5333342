package daemon

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palmd/palmd/internal/brokertest"
	"github.com/palmd/palmd/sensor/sim"
)

// lockedLog collects a process's log lines for concurrent inspection.
type lockedLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lockedLog) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *lockedLog) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startPalmd runs the palmd binary with cfg, collecting its log; scanned
// is closed when the log ends (the process exited). The process is killed
// at the end of the test if still running.
func startPalmd(t *testing.T, bin, cfg string) (*exec.Cmd, *lockedLog, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(bin, "-config", cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	log := &lockedLog{}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.add(sc.Text())
		}
	}()
	return cmd, log, scanned
}

// TestSignalsStopThroughLightOff: every catchable signal that would end
// palmd ends it through the light-off path, mid-capture with the
// illuminator lit; SIGHUP reloads and palmd goes on.
func TestSignalsStopThroughLightOff(t *testing.T) {
	bin := palmdBinary(t)
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGABRT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			device := fmt.Sprintf("term-sig%d", i)
			w := newWorld(t, device)
			scen := writeScenario(t, w.dir, &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepPresent, Identity: 5, Approach: 10, Hold: 900}}})
			w.config(t, device, scen, true)
			cmd, log, scanned := startPalmd(t, bin, filepath.Join(w.dir, "palmd.yaml"))
			waitFor := func(what string, d time.Duration, ok func() bool) {
				t.Helper()
				for end := time.Now().Add(d); !ok(); time.Sleep(10 * time.Millisecond) {
					if time.Now().After(end) {
						t.Fatalf("%s: not within %v\n%s", what, d, log.String())
					}
				}
			}
			waitFor("capture under way", 30*time.Second, func() bool { return log.has("to=capture") })
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if sig == syscall.SIGHUP {
				waitFor("SIGHUP reloads", 5*time.Second, func() bool { return log.has("configuration reloaded") })
				time.Sleep(300 * time.Millisecond)
				if log.has("palmd stopping") {
					t.Fatalf("SIGHUP stopped palmd\n%s", log.String())
				}
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
			done := make(chan error, 1)
			go func() { <-scanned; done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("palmd exited with %v\n%s", err, log.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("palmd did not stop on %v\n%s", sig, log.String())
			}
			for _, want := range []string{"msg=stopping signal=", "sensor closed, illuminator off"} {
				if !log.has(want) {
					t.Errorf("log lacks %q:\n%s", want, log.String())
				}
			}
		})
	}
}

// TestStopWhileAwaitingResult: SIGTERM while a capture awaits a result
// from a matcher that never answers (the broker is up, no matcher is)
// stops palmd cleanly only after the capture is accounted for: waited for
// within the grace, and recorded with its outcome.
func TestStopWhileAwaitingResult(t *testing.T) {
	const device = "term-pending"
	w := keyWorld(t)
	w.broker = brokertest.Start(t, brokertest.Options{})
	w.brokerURL = w.broker.URL()
	scen := writeScenario(t, w.dir, &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 10}, {Kind: sim.StepPresent, Identity: 5, Approach: 6, Hold: 900}}})
	w.config(t, device, scen, true)
	cmd, log, scanned := startPalmd(t, palmdBinary(t), filepath.Join(w.dir, "palmd.yaml"))
	for end := time.Now().Add(30 * time.Second); !log.has("to=await_result"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no capture sent\n%s", log.String())
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	<-scanned
	if err := cmd.Wait(); err != nil {
		t.Fatalf("palmd exited with %v\n%s", err, log.String())
	}
	for _, want := range []string{"stopping while a capture awaits its result", "msg=presentation outcome=", "sensor closed, illuminator off"} {
		if !log.has(want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

// TestReloadOnHangup: SIGHUP applies what can change safely (log level,
// liveness threshold, attack limit, the diagnostics token read again),
// names what needs a restart, and refuses a broken file without stopping.
func TestReloadOnHangup(t *testing.T) {
	bin := palmdBinary(t)
	w := keyWorld(t)
	scen := writeScenario(t, w.dir, &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepEmpty, Hold: 30}}})
	cfgPath := filepath.Join(w.dir, "palmd.yaml")
	// The file as w.config writes it, with what the test changes.
	write := func(logLevel string, fps int, threshold float64) {
		t.Helper()
		y := fmt.Sprintf(`device_id: term-hup
log_level: %s
sensor: {kind: sim, sim: {scenario: %q, realtime: true, fps: %d}}
liveness: {threshold: %v}
capture: {feedback: 10ms}
keys: {device: %q, matcher: %q, result: %q, command: %q}
mqtt: {brokers: [%q], result_deadline: 3s, telemetry_interval: 200ms}
state_dir: %q
`, logLevel, scen, fps, threshold, filepath.Join(w.dir, "device.key"), filepath.Join(w.dir, "matcher.pub"),
			filepath.Join(w.dir, "result.pub"), filepath.Join(w.dir, "command.pub"), w.brokerURL, w.stateDir())
		if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("debug", 30, 3.4)
	cmd, log, scanned := startPalmd(t, bin, cfgPath)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s: not within 20 s\n%s", what, log.String())
			}
		}
	}
	waitFor("palmd running", func() bool { return log.has("palmd running") })
	count := func(sub string) int {
		return strings.Count(log.String(), sub)
	}

	// A changed threshold and frame rate: one applied, one for a restart.
	write("debug", 15, 4.2)
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor("reload applied", func() bool { return log.has("configuration reloaded") })
	waitFor("restart named", func() bool { return log.has("need a restart") })
	for _, want := range []string{"applied=[liveness.threshold]", "keys=[sensor.sim.fps]"} {
		if !log.has(want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}

	// A broken file is refused; palmd goes on.
	if err := os.WriteFile(cfgPath, []byte("device_id: term-hup\nlog_level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor("broken file refused", func() bool { return log.has("reload refused") })
	if !log.has("log_level") {
		t.Errorf("the refusal does not say why:\n%s", log.String())
	}

	// The log level drops to warn: info lines stop.
	write("warn", 15, 4.2)
	reloads := count("configuration reloaded")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor("third reload", func() bool { return count("configuration reloaded") > reloads })
	infos := count("level=INFO")
	time.Sleep(500 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGHUP) // logged at info, now below the level
	time.Sleep(500 * time.Millisecond)
	if n := count("level=INFO"); n != infos {
		t.Errorf("info lines after the level went to warn:\n%s", log.String())
	}
	if log.has("palmd stopping") {
		t.Fatalf("a reload stopped palmd:\n%s", log.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	<-scanned
	if err := cmd.Wait(); err != nil {
		t.Fatalf("palmd exited with %v\n%s", err, log.String())
	}
}
