package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDebInstall installs the amd64 package for real into a throw-away
// Debian 12 root (debootstrap --variant=minbase, kept as a tarball in
// .cache/chroot; downloaded packages are kept there too), so the maintainer
// scripts run as they do on a terminal or in an image build: apt resolves
// the package's Depends, postinst creates the user, groups and key folder
// and enables the unit offline; the binaries run with only the runtime
// libraries; a changed conffile and an administrator's disable survive a
// reinstall; remove masks the unit and keeps the configuration; purge
// deletes configuration and keys.
func TestDebInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads and installs packages")
	}
	root, archives := debRoot(t, "THE PACKAGE INSTALL TEST")

	run := func(step, script string) string {
		t.Helper()
		out, err := inChroot(root, archives, script)
		if err != nil {
			t.Fatalf("%s: %v\n%s", step, err, out)
		}
		return out
	}
	const wants = "/etc/systemd/system/multi-user.target.wants/palmd.service"

	run("install", "apt-get install -y --no-install-recommends /tmp/palmd.deb")
	for _, c := range []struct{ name, script, want string }{
		{"user and groups", "id -nG palmd | tr ' ' '\\n' | sort | tr '\\n' ' '", "gpio palmd video"},
		{"no login", "getent passwd palmd | cut -d: -f6,7", "/nonexistent:/usr/sbin/nologin"},
		{"key folder", "stat -c %a:%U:%G /etc/palmd/keys", "750:root:palmd"},
		{"enabled offline", "readlink " + wants, "/lib/systemd/system/palmd.service"},
		{"palmd runs on runtime libraries only", "palmd -version | cut -d' ' -f1", "palmd"},
		{"no -dev package pulled in", "dpkg-query -W -f '${Package}\\n' | grep -c -- '-dev$' || true", "0"},
		{"as its own user", "runuser -u palmd -- palmd -version | cut -d' ' -f1", "palmd"},
		// Valid, and -check-config names the files still to provision.
		{"shipped config is valid", "rc=0; out=$(palmd -check-config -config /etc/palmd/palmd.yaml 2>&1) || rc=$?; " +
			"if echo \"$out\" | grep -q 'config: '; then echo \"$out\" | head -3; else echo \"rc=$rc $(echo \"$out\" | grep -c 'keys.device:')\"; fi", "rc=1 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := inChroot(root, archives, c.script)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if got := strings.TrimSpace(out); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}

	// An administrator's edit and disable survive a reinstall (an upgrade
	// runs the same scripts). Without systemd in the root, the disable is
	// what systemctl disable does: the wants link goes.
	run("local changes", "echo '# site edit' >> /etc/palmd/palmd.yaml && rm "+wants)
	run("reinstall", "apt-get install -y --reinstall /tmp/palmd.deb")
	if got := run("after reinstall", "tail -1 /etc/palmd/palmd.yaml; test -e "+wants+" && echo enabled || echo disabled"); got != "# site edit\ndisabled\n" {
		t.Errorf("after reinstall: %q, want the edit kept and the unit still disabled", got)
	}
	run("re-enable", "ln -s /lib/systemd/system/palmd.service "+wants)

	run("remove", "apt-get remove -y palmd")
	if got := run("after remove", "ls /usr/bin/palmd 2>&1 >/dev/null | wc -l; test -f /etc/palmd/palmd.yaml && echo conf-kept; readlink /etc/systemd/system/palmd.service; getent passwd palmd >/dev/null && echo user-kept"); got != "1\nconf-kept\n/dev/null\nuser-kept\n" {
		t.Errorf("after remove: %q, want binaries gone, config kept, unit masked, user kept", got)
	}
	run("purge", "mkdir -p /etc/palmd/keys && touch /etc/palmd/keys/device.key && apt-get purge -y palmd")
	if got := run("after purge", "test -e /etc/palmd && ls -aR /etc/palmd; test -e /etc/systemd/system/palmd.service && echo masked; test -L "+wants+" && echo still-wanted; dpkg-query -W -f '${db:Status-Status}' palmd 2>/dev/null || true; echo"); got != "not-installed\n" && got != "\n" {
		t.Errorf("after purge: %q, want /etc/palmd, keys, mask and enablement gone", got)
	}
}

// debRoot checks that chroots can be made here (else skips the test named
// what, loudly), and returns a fresh Debian 12 root unpacked from the
// cached base with the freshly built package at /tmp/palmd.deb, and the
// shared download folder for inChroot.
func debRoot(t *testing.T, what string) (root, archives string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("SKIPPING %s: chroot needs root", what)
	}
	for _, tool := range []string{"debootstrap", "unshare", "chroot", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (scripts/bootstrap.sh installs it)", tool)
		}
	}
	if out, err := exec.Command("unshare", "--mount", "true").CombinedOutput(); err != nil {
		// A container without CAP_SYS_ADMIN: no chroot with /proc here.
		t.Skipf("SKIPPING %s: no mount namespace (%v: %s)", what, err, out)
	}
	cache, err := filepath.Abs(filepath.Join("..", ".cache", "chroot"))
	if err != nil {
		t.Fatal(err)
	}
	archives = filepath.Join(cache, "archives")
	if err := os.MkdirAll(filepath.Join(archives, "partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := ensureBaseRoot(t, cache)
	debs := buildDebs(t)
	root = filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xpf", base, "-C", root).CombinedOutput(); err != nil {
		t.Fatalf("unpacking the base root: %v\n%s", err, out)
	}
	// Both packages, as /tmp/palmd.deb and /tmp/palm-matcher.deb.
	for name, deb := range debs {
		data, err := os.ReadFile(deb)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "tmp", name+".deb"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, archives
}

// inChroot runs script with sh -e inside root, in a private mount
// namespace (its /proc and the shared package download folder vanish with
// it), and returns its combined output.
func inChroot(root, archives, script string) (string, error) {
	outer := `set -e
mount -t proc proc "$ROOT/proc"
mount --bind "$ARCHIVES" "$ROOT/var/cache/apt/archives"
exec chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 /bin/sh -ec "$SCRIPT"`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", outer)
	cmd.Env = append(os.Environ(), "ROOT="+root, "ARCHIVES="+archives, "SCRIPT="+script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// ensureBaseRoot returns the cached base root tarball, making it with
// debootstrap on first use (about a minute and 60 MB of downloads).
func ensureBaseRoot(t *testing.T, cache string) string {
	t.Helper()
	tarball := filepath.Join(cache, "bookworm-minbase.tar")
	if _, err := os.Stat(tarball); err == nil {
		return tarball
	}
	dir, err := os.MkdirTemp(cache, "build-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	root := filepath.Join(dir, "root")
	mirror := "http://deb.debian.org/debian"
	t.Logf("debootstrap --variant=minbase bookworm (first run only)")
	if out, err := exec.Command("debootstrap", "--variant=minbase", "bookworm", root, mirror).CombinedOutput(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, lastLines(string(out), 20))
	}
	// Package lists, so that apt can resolve the package's Depends; apt's
	// downloads go to the shared archives folder, not into the tarball.
	sources := "deb " + mirror + " bookworm main\ndeb " + mirror + " bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n"
	if err := os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte(sources), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := inChroot(root, filepath.Join(cache, "archives"), "apt-get update -qq"); err != nil {
		t.Fatalf("apt-get update in the base root: %v\n%s", err, out)
	}
	tmp := tarball + ".tmp"
	if out, err := exec.Command("tar", "-cpf", tmp, "-C", root, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, tarball); err != nil {
		t.Fatal(err)
	}
	return tarball
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
