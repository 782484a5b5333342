// Package proc runs the helper processes of the demo, the tests and the
// fleet run (brokers, matchers): each started with SIGKILL as its
// parent-death signal, so that none outlives the process that started it,
// and stopped by a signal with a deadline after which it is killed.
package proc

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is one child process at a time: started, stopped, started
// again. The zero value is ready to use.
type Process struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// ErrRunning is returned by Start while the previous process runs.
var ErrRunning = errors.New("proc: already running")

// Start starts cmd (configured, not started). onExit, when set, runs
// after it exits (to close its log file).
func (p *Process) Start(cmd *exec.Cmd, onExit func()) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return ErrRunning
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("proc: starting %s: %w", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		if onExit != nil {
			onExit()
		}
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// Exited is closed when the process last started exits (nil before the
// first Start).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Stop sends sig (then SIGCONT, so that a paused process can act on it)
// and waits up to wait for the process to exit, then kills it. Nothing
// happens when it is not running.
func (p *Process) Stop(sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-p.done:
	case <-time.After(wait):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// Send delivers sig without waiting (SIGSTOP, SIGCONT).
func (p *Process) Send(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// Forget marks the process as not running after it exited on its own
// (a failed start), so that Start may run it again.
func (p *Process) Forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd = nil
}

// WaitListening waits until something accepts TCP connections on
// 127.0.0.1:port, failing early when exited is closed (the process died)
// and after timeout.
func WaitListening(port int, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("proc: nothing listening on %d after %v", port, timeout)
		}
		select {
		case <-exited:
			return errors.New("proc: the process exited")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
