package hardening

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDisableCoreDumps runs in a child process so that the test binary
// itself keeps its settings.
func TestDisableCoreDumps(t *testing.T) {
	if os.Getenv("PALMD_HARDENING_CHILD") == "1" {
		if err := DisableCoreDumps(); err != nil {
			t.Fatal(err)
		}
		if d, err := Dumpable(); err != nil || d {
			t.Fatalf("still dumpable (%v)", err)
		}
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_CORE, &lim); err != nil || lim.Cur != 0 || lim.Max != 0 {
			t.Fatalf("core limit %+v (%v)", lim, err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=TestDisableCoreDumps", "-test.v")
	cmd.Env = append(os.Environ(), "PALMD_HARDENING_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestLockMemory(t *testing.T) {
	if os.Getenv("PALMD_HARDENING_CHILD") == "2" {
		if err := LockMemory(); err != nil {
			t.Skipf("mlockall not permitted here: %v", err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=TestLockMemory", "-test.v")
	cmd.Env = append(os.Environ(), "PALMD_HARDENING_CHILD=2")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
