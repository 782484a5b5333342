// Package nopersist holds the test that proves the biometric path never
// writes a file: it runs the simulated sensor, presence, extraction,
// sealing and opening under strace and fails on any file opened for
// writing, created, renamed or removed (device nodes excepted).
package nopersist

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor/sim"
)

const childEnv = "PALMD_NOPERSIST_CHILD"

// runPipeline is what the traced child does: a scenario with two people,
// every frame through presence, the still ones through extraction, every
// template sealed and opened.
func runPipeline(t *testing.T) {
	scen := &sim.Scenario{Steps: []sim.Step{
		{Kind: sim.StepEmpty, Hold: 6},
		{Kind: sim.StepPresent, Identity: 3, Approach: 6, Hold: 12, Withdraw: 4},
		{Kind: sim.StepPresent, Identity: 4, Session: 1, Approach: 6, Hold: 12, Withdraw: 4},
	}}
	s, err := sim.New(sim.Config{Scenario: scen})
	if err != nil {
		t.Fatal(err)
	}
	dev := s.Device()
	defer dev.Close()
	pres := imaging.NewPresenceDetector(imaging.DefaultPresenceConfig())
	defer pres.Close()
	ext := imaging.NewExtractor(imaging.DefaultConfig())
	defer ext.Close()
	pub, priv, _ := ed25519.GenerateKey(nil)
	mk, err := protocol.GenerateMatcherKey(protocol.SuiteHybrid)
	if err != nil {
		t.Fatal(err)
	}
	sealer := &protocol.Sealer{DeviceID: "trace-dev", DeviceKey: priv, Matcher: mk.Public()}
	opener := &protocol.Opener{
		Keys:    map[protocol.KeyID]*protocol.MatcherPrivateKey{mk.ID: mk},
		Devices: func(string) (ed25519.PublicKey, bool) { return pub, true },
	}
	ctx := context.Background()
	if err := dev.Camera.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sealed := 0
	for i := 0; i+1 < scen.Len(); i += 2 {
		_ = dev.Illuminator.On(100)
		lit, err := dev.Camera.NextFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = dev.Illuminator.Off()
		unlit, _ := dev.Camera.NextFrame(ctx)
		p, err := pres.Check(&lit, &unlit)
		if err != nil {
			t.Fatal(err)
		}
		if p.Present && p.Still {
			if res, err := ext.Extract(&lit, nil); err == nil {
				env, _, err := sealer.Seal(&res.Template, protocol.PurposeIdentify, [16]byte{})
				if err != nil {
					t.Fatal(err)
				}
				tp, _, err := opener.Open(env)
				if err != nil {
					t.Fatal(err)
				}
				tp.Zero()
				sealed++
			}
		}
		lit.Zero()
		unlit.Zero()
	}
	if sealed == 0 {
		t.Fatal("the pipeline sealed nothing: the trace would prove nothing")
	}
	fmt.Printf("NOPERSIST sealed=%d\n", sealed)
}

var (
	syscallLine = regexp.MustCompile(`^(?:\[pid\s+)?(\d+)\]?\s+(\w+)\((.*)\)\s+=\s+(-?\d+)`)
	pathArg     = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
)

func TestNoPersistence(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		runPipeline(t)
		return
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatal("strace is not installed: run scripts/bootstrap.sh (the no-persistence check cannot be skipped)")
	}
	trace := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-o", trace,
		"-e", "trace=open,openat,openat2,creat,rename,renameat,renameat2,unlink,unlinkat,truncate,ftruncate,link,linkat,symlink,symlinkat,mkdir,mkdirat",
		os.Args[0], "-test.run=^TestNoPersistence$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "PTRACE_TRACEME") || strings.Contains(string(out), "Operation not permitted") {
			t.Fatalf("strace cannot trace here (ptrace not permitted): %s", out)
		}
		t.Fatalf("traced pipeline failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "NOPERSIST sealed=") {
		t.Fatalf("traced child did not run the pipeline:\n%s", out)
	}
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bad []string
	opens := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := syscallLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		call, args := m[2], m[3]
		path := ""
		if pm := pathArg.FindStringSubmatch(args); pm != nil {
			path = pm[1]
		}
		switch call {
		case "open", "openat", "openat2":
			opens++
			writes := strings.Contains(args, "O_WRONLY") || strings.Contains(args, "O_RDWR") ||
				strings.Contains(args, "O_CREAT") || strings.Contains(args, "O_TRUNC")
			if writes && !strings.HasPrefix(path, "/dev/") {
				bad = append(bad, line)
			}
		case "ftruncate":
			bad = append(bad, line)
		default: // creat, rename, unlink, truncate, link, symlink, mkdir
			if !strings.HasPrefix(path, "/dev/") {
				bad = append(bad, line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if opens == 0 {
		t.Fatal("the trace shows no open calls at all: strace did not trace the child")
	}
	if len(bad) > 0 {
		t.Fatalf("the biometric pipeline touched the file system for writing:\n%s", strings.Join(bad, "\n"))
	}
	t.Logf("traced %d open calls, none for writing (%s)", opens, strings.TrimSpace(lastLine(string(out), "NOPERSIST")))
}

func lastLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
