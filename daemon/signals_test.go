package daemon

import (
	"bufio"
	"fmt"
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
// illuminator lit; SIGHUP is logged and ignored.
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
				waitFor("SIGHUP logged", 5*time.Second, func() bool { return log.has("SIGHUP ignored") })
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
