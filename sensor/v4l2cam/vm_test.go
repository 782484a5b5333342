package v4l2cam

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
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
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("qemu-system-x86_64 is missing on CI: run scripts/bootstrap.sh")
		}
		t.Skip("SKIPPING THE V4L2 VM TEST: qemu-system-x86_64 is not installed (scripts/bootstrap.sh installs it)")
	}
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Fatal("busybox-static is not installed: run scripts/bootstrap.sh")
	}
	cache, err := filepath.Abs(filepath.Join("..", "..", ".cache", "vm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	kdir := ensureKernel(t, cache)
	work := t.TempDir()
	bin := filepath.Join(work, "camtest")
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the static test binary: %v\n%s", err, out)
	}
	initrd := filepath.Join(work, "initrd.cpio")
	if err := buildInitramfs(initrd, kdir, busybox, bin); err != nil {
		t.Fatal(err)
	}
	vmlinuz, _ := filepath.Glob(filepath.Join(kdir, "boot", "vmlinuz-*"))
	if len(vmlinuz) == 0 {
		t.Fatal("no vmlinuz in the kernel package")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "768", "-smp", "1", "-nographic", "-no-reboot",
		"-kernel", vmlinuz[0], "-initrd", initrd, "-append", "console=ttyS0 panic=-1 quiet loglevel=3")
	out, err := cmd.CombinedOutput()
	console := string(out)
	m := regexp.MustCompile(`VMTEST-EXIT=(\d+)`).FindStringSubmatch(console)
	t.Logf("VM ran for %v", time.Since(start).Round(time.Second))
	if m == nil {
		t.Fatalf("the VM did not report (qemu: %v); console:\n%s", err, tail(console, 4000))
	}
	// The in-VM go test output, for the record.
	for _, line := range strings.Split(console, "\n") {
		if strings.Contains(line, "--- ") || strings.Contains(line, "vivid_test.go") || strings.HasPrefix(strings.TrimSpace(line), "ok") || strings.Contains(line, "FAIL") {
			t.Log("vm: " + strings.TrimSpace(line))
		}
	}
	if m[1] != "0" {
		t.Fatalf("in-VM tests failed (exit %s); console:\n%s", m[1], tail(console, 6000))
	}
	if !strings.Contains(console, "--- PASS: TestVividDisconnectAndRecovery") {
		t.Fatalf("the disconnect test did not run; console:\n%s", tail(console, 4000))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// ensureKernel downloads the kernel package linux-image-amd64 depends on,
// once, and unpacks it into the cache.
func ensureKernel(t *testing.T, cache string) string {
	t.Helper()
	if dirs, _ := filepath.Glob(filepath.Join(cache, "linux-image-*", "boot")); len(dirs) > 0 {
		return filepath.Dir(dirs[0])
	}
	dep := func() (string, error) {
		out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
		if err != nil {
			return "", err
		}
		m := regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*)`).FindStringSubmatch(string(out))
		if m == nil {
			return "", fmt.Errorf("no kernel dependency in %q", out)
		}
		return m[1], nil
	}
	pkg, err := dep()
	if err != nil {
		// Package lists missing on a fresh machine: fetch them once.
		if out, uerr := exec.Command("apt-get", "update", "-q").CombinedOutput(); uerr != nil {
			t.Fatalf("apt-get update: %v\n%s", uerr, out)
		}
		if pkg, err = dep(); err != nil {
			t.Fatal(err)
		}
	}
	dl := exec.Command("apt-get", "download", pkg)
	dl.Dir = cache
	if out, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("apt-get download %s: %v\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
	if len(debs) == 0 {
		t.Fatalf("%s.deb not downloaded", pkg)
	}
	dir := filepath.Join(cache, pkg)
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], dir).CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v\n%s", debs[0], err, out)
	}
	_ = os.Remove(debs[0])
	return dir
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

func buildInitramfs(path, kdir, busybox, testBin string) error {
	var w cpioWriter
	w.dir("bin")
	w.dir("lib")
	for _, d := range []string{"proc", "sys", "dev", "tmp"} {
		w.dir(d)
	}
	if err := w.file("bin/busybox", busybox, 0o755); err != nil {
		return err
	}
	if err := w.file("camtest", testBin, 0o755); err != nil {
		return err
	}
	for _, m := range vividModules {
		found, _ := filepath.Glob(filepath.Join(kdir, "lib", "modules", "*", "kernel", "drivers", "*", "*", m+".ko"))
		if len(found) == 0 {
			found, _ = filepath.Glob(filepath.Join(kdir, "lib", "modules", "*", "kernel", "drivers", "*", "*", "*", m+".ko"))
		}
		if len(found) == 0 {
			return fmt.Errorf("module %s not in the kernel package", m)
		}
		if err := w.file("lib/"+m+".ko", found[0], 0o644); err != nil {
			return err
		}
	}
	w.data("init", []byte(fmt.Sprintf(initScript, strings.Join(vividModules, " "))), 0o755)
	return os.WriteFile(path, w.finish(), 0o644)
}

// cpioWriter writes the "newc" cpio format the kernel unpacks as initramfs.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (w *cpioWriter) header(name string, mode uint32, size int) {
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string) { w.header(name, 0o040755, 0) }

func (w *cpioWriter) data(name string, b []byte, perm uint32) {
	w.header(name, 0o100000|perm, len(b))
	w.buf.Write(b)
	w.pad()
}

func (w *cpioWriter) file(name, src string, perm uint32) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	w.data(name, b, perm)
	return nil
}

func (w *cpioWriter) finish() []byte {
	w.header("TRAILER!!!", 0, 0)
	return w.buf.Bytes()
}
