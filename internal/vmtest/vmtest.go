// Package vmtest boots Debian's own kernel under qemu (TCG, no KVM needed)
// for tests that need a real kernel driver or a real init system: the
// kernel package is downloaded once into a cache folder (never installed),
// an initramfs is written in the kernel's "newc" cpio format, and the
// serial console's output comes back to the test.
package vmtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
)

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	// Dir is where the package was unpacked.
	Dir string
	// Image is the vmlinuz path.
	Image string
	// Modules is lib/modules/<release> inside Dir.
	Modules string
}

// Module returns the path of the module name (without .ko), searching the
// kernel's module tree.
func (k Kernel) Module(name string) (string, error) {
	var found string
	err := filepath.WalkDir(filepath.Join(k.Modules, "kernel"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == name+".ko" {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if found == "" {
		return "", fmt.Errorf("vmtest: module %s not in the kernel package", name)
	}
	return found, nil
}

// Qemu returns the qemu-system-x86_64 path. Without it the test fails on
// CI and is skipped, loudly, elsewhere (what names the skip).
func Qemu(t testing.TB, what string) string {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("qemu-system-x86_64 is missing on CI: run scripts/bootstrap.sh")
		}
		t.Skipf("SKIPPING %s: qemu-system-x86_64 is not installed (scripts/bootstrap.sh installs it)", what)
	}
	return qemu
}

// EnsureKernel downloads the kernel package linux-image-amd64 depends on,
// once, and unpacks it into cache.
func EnsureKernel(t testing.TB, cache string) Kernel {
	t.Helper()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	// Test binaries of several packages run at once and share the cache:
	// one downloads, the others wait.
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("locking the kernel cache: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway
	dir := ""
	if dirs, _ := filepath.Glob(filepath.Join(cache, "linux-image-*", "boot")); len(dirs) > 0 {
		dir = filepath.Dir(dirs[0])
	} else {
		dir = downloadKernel(t, cache)
	}
	k := Kernel{Dir: dir}
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*"))
	if len(images) == 0 || len(mods) == 0 {
		t.Fatalf("no vmlinuz or modules in the kernel package at %s", dir)
	}
	k.Image, k.Modules = images[0], mods[0]
	return k
}

func downloadKernel(t testing.TB, cache string) string {
	t.Helper()
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

// Initramfs writes the "newc" cpio format the kernel unpacks as its first
// root file system. The zero value is an empty archive.
type Initramfs struct {
	buf bytes.Buffer
	ino int
}

func (w *Initramfs) header(name string, mode uint32, size int) {
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
}

func (w *Initramfs) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

// Dir adds a directory (parents are not implied).
func (w *Initramfs) Dir(name string) { w.header(name, 0o040755, 0) }

// Data adds a regular file with contents b.
func (w *Initramfs) Data(name string, b []byte, perm uint32) {
	w.header(name, 0o100000|perm, len(b))
	w.buf.Write(b)
	w.pad()
}

// File adds a copy of the file at src.
func (w *Initramfs) File(name, src string, perm uint32) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	w.Data(name, b, perm)
	return nil
}

// Modules adds the named kernel modules as lib/<name>.ko.
func (w *Initramfs) Modules(k Kernel, names ...string) error {
	for _, m := range names {
		p, err := k.Module(m)
		if err != nil {
			return err
		}
		if err := w.File("lib/"+m+".ko", p, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Write finishes the archive into path.
func (w *Initramfs) Write(path string) error {
	w.header("TRAILER!!!", 0, 0)
	return os.WriteFile(path, w.buf.Bytes(), 0o644)
}

// Machine is one qemu run.
type Machine struct {
	Kernel  Kernel
	Initrd  string
	Cmdline string
	// MemoryMB defaults to 768.
	MemoryMB int
	// Disk, when set, is attached as a virtio disk (/dev/vda), raw format.
	Disk string
	// Console, when set, also receives the console output as it comes
	// (to watch a slow boot).
	Console io.Writer
}

// Run boots the machine and returns everything it printed on its serial
// console, once it powers off or ctx ends.
func (m Machine) Run(ctx context.Context, qemu string) (string, error) {
	mem := m.MemoryMB
	if mem == 0 {
		mem = 768
	}
	args := []string{"-accel", "tcg", "-m", fmt.Sprint(mem), "-smp", "1", "-nographic", "-no-reboot",
		"-kernel", m.Kernel.Image, "-initrd", m.Initrd, "-append", m.Cmdline}
	if m.Disk != "" {
		args = append(args, "-drive", "file="+m.Disk+",if=virtio,format=raw")
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if m.Console != nil {
		cmd.Stdout = io.MultiWriter(&out, m.Console)
		cmd.Stderr = cmd.Stdout
	}
	err := cmd.Run()
	return out.String(), err
}

// Tail returns the last n bytes of s, for failure messages.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
