// Package mosquitto runs the system's Mosquitto broker on a free loopback
// port, for the demo and (through internal/brokertest) the tests: a
// configuration written to a folder, start and wait until it listens,
// stop, kill, pause and resume, and the broker's own log.
package mosquitto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/palmd/palmd/internal/proc"
)

// ErrNotInstalled is returned when there is no mosquitto to run.
var ErrNotInstalled = errors.New("mosquitto is not installed: run make bootstrap (scripts/bootstrap.sh)")

// Broker is a mosquitto process (running or stopped) with its
// configuration.
type Broker struct {
	conf string
	port int
	log  io.Writer

	proc proc.Process
	mu   sync.Mutex
	out  *bytes.Buffer
}

// New writes a configuration into dir — a loopback listener on a free
// port, no persistence, errors and warnings logged, packets over
// maxPacket refused (0: no limit), then extra (mosquitto.conf lines) —
// and returns the broker, not yet started. log, when set, receives the
// broker's output too.
func New(dir string, maxPacket int, extra string, log io.Writer) (*Broker, error) {
	if _, err := exec.LookPath("mosquitto"); err != nil {
		return nil, ErrNotInstalled
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	var conf bytes.Buffer
	if os.Geteuid() == 0 {
		conf.WriteString("user root\n") // mosquitto drops to "mosquitto" otherwise
	}
	fmt.Fprintf(&conf, "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlistener %d 127.0.0.1\n", port)
	if maxPacket > 0 {
		fmt.Fprintf(&conf, "max_packet_size %d\n", maxPacket)
	}
	conf.WriteString(extra)
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, conf.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	return &Broker{conf: path, port: port, log: log}, nil
}

// Port is the broker's loopback port.
func (b *Broker) Port() int { return b.port }

// Start starts the broker (again, after Stop or Kill) on its port and
// waits until it accepts connections; a running broker is left alone.
func (b *Broker) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := &bytes.Buffer{}
	var w io.Writer = out
	if b.log != nil {
		w = io.MultiWriter(out, b.log)
	}
	cmd := exec.Command("mosquitto", "-c", b.conf)
	cmd.Stdout, cmd.Stderr = w, w
	if err := b.proc.Start(cmd, nil); errors.Is(err, proc.ErrRunning) {
		return nil
	} else if err != nil {
		return fmt.Errorf("mosquitto: %w", err)
	}
	b.out = out
	if err := proc.WaitListening(b.port, b.proc.Exited(), 5*time.Second); err != nil {
		return fmt.Errorf("mosquitto did not start listening on %d: %w:\n%s", b.port, err, out.String())
	}
	return nil
}

// Kill stops the broker abruptly (SIGKILL), as a crash or power cut would.
func (b *Broker) Kill() { b.proc.Stop(syscall.SIGKILL, 3*time.Second) }

// Stop stops the broker cleanly.
func (b *Broker) Stop() { b.proc.Stop(syscall.SIGTERM, 3*time.Second) }

// Pause freezes the broker (SIGSTOP): its sockets stay open and nothing
// answers, as with a hung broker or a silent network path.
func (b *Broker) Pause() { b.proc.Send(syscall.SIGSTOP) }

// Resume thaws a paused broker (SIGCONT).
func (b *Broker) Resume() { b.proc.Send(syscall.SIGCONT) }

// Log returns what the broker printed since it last started.
func (b *Broker) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.out == nil {
		return ""
	}
	return b.out.String()
}
