package v4l2cam

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/palmd/palmd/internal/vmtest"
)

// TestVM boots Debian's own kernel under qemu (TCG: no KVM needed) with an
// initramfs holding busybox, the vivid module and its dependencies, and
// this package's test binary built statically; inside, the TestVivid*
// tests run against a real V4L2 driver and report on the serial console.
// The kernel package is downloaded once into .cache/vm (never installed).
func TestVM(t *testing.T) {
	if os.Getenv("PALMD_IN_VM") == "1" {
		t.Skip("already inside the VM")
	}
	qemu := vmtest.Qemu(t, "THE V4L2 VM TEST")
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Fatal("busybox-static is not installed: run scripts/bootstrap.sh")
	}
	cache, err := filepath.Abs(filepath.Join("..", "..", ".cache", "vm"))
	if err != nil {
		t.Fatal(err)
	}
	kernel := vmtest.EnsureKernel(t, cache)
	work := t.TempDir()
	bin := filepath.Join(work, "camtest")
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the static test binary: %v\n%s", err, out)
	}
	var w vmtest.Initramfs
	for _, d := range []string{"bin", "lib", "proc", "sys", "dev", "tmp"} {
		w.Dir(d)
	}
	if err := w.File("bin/busybox", busybox, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.File("camtest", bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.Modules(kernel, vividModules...); err != nil {
		t.Fatal(err)
	}
	w.Data("init", []byte(fmt.Sprintf(initScript, strings.Join(vividModules, " "))), 0o755)
	initrd := filepath.Join(work, "initrd.cpio")
	if err := w.Write(initrd); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	console, err := vmtest.Machine{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1 quiet loglevel=3"}.Run(ctx, qemu)
	m := regexp.MustCompile(`VMTEST-EXIT=(\d+)`).FindStringSubmatch(console)
	t.Logf("VM ran for %v", time.Since(start).Round(time.Second))
	if m == nil {
		t.Fatalf("the VM did not report (qemu: %v); console:\n%s", err, vmtest.Tail(console, 4000))
	}
	// The in-VM go test output, for the record.
	for _, line := range strings.Split(console, "\n") {
		if strings.Contains(line, "--- ") || strings.Contains(line, "vivid_test.go") || strings.HasPrefix(strings.TrimSpace(line), "ok") || strings.Contains(line, "FAIL") {
			t.Log("vm: " + strings.TrimSpace(line))
		}
	}
	if m[1] != "0" {
		t.Fatalf("in-VM tests failed (exit %s); console:\n%s", m[1], vmtest.Tail(console, 6000))
	}
	if !strings.Contains(console, "--- PASS: TestVividDisconnectAndRecovery") {
		t.Fatalf("the disconnect test did not run; console:\n%s", vmtest.Tail(console, 4000))
	}
}

// vividModules are vivid and its dependencies, in load order.
var vividModules = []string{"mc", "videodev", "videobuf2-common", "videobuf2-v4l2", "rc-core", "cec",
	"v4l2-dv-timings", "v4l2-tpg", "videobuf2-memops", "videobuf2-dma-contig", "videobuf2-vmalloc", "vivid"}

const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in %s; do /bin/busybox insmod /lib/$m.ko || echo "insmod $m failed"; done
/bin/busybox sleep 1
PALMD_IN_VM=1 /camtest -test.v -test.run 'TestVivid'
echo "VMTEST-EXIT=$?"
/bin/busybox poweroff -f
`
