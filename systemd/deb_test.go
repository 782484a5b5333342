package systemd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildDebs builds the binaries and the amd64 packages from them, as make
// deb does, into a temporary folder, and returns the packages' paths by
// name (palmd, palm-matcher).
func buildDebs(t *testing.T) map[string]string {
	t.Helper()
	for _, tool := range []string{"dpkg-deb", "objdump", "strip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (scripts/bootstrap.sh)", tool)
		}
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	// As make build does (PIE, full RELRO, immediate binding, only the
	// OpenCV modules each binary calls).
	build := exec.Command("scripts/build.sh", bin)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command("../scripts/mkdeb.sh", "amd64", bin, filepath.Join(tmp, "out")).Output()
	if err != nil {
		t.Fatalf("mkdeb: %v\n%s", err, out)
	}
	debs := map[string]string{}
	for _, p := range strings.Fields(string(out)) {
		name, _, _ := strings.Cut(filepath.Base(p), "_")
		debs[name] = p
	}
	if debs["palmd"] == "" || debs["palm-matcher"] == "" {
		t.Fatalf("mkdeb made %v, want palmd and palm-matcher", debs)
	}
	return debs
}

// buildDeb is the terminal's package (palmd).
func buildDeb(t *testing.T) string { return buildDebs(t)["palmd"] }

// unpack extracts deb's files and control files into fresh folders.
func unpack(t *testing.T, deb string) (root, ctrl string) {
	t.Helper()
	tmp := t.TempDir()
	root, ctrl = filepath.Join(tmp, "root"), filepath.Join(tmp, "ctrl")
	for _, args := range [][]string{{"-x", deb, root}, {"-e", deb, ctrl}} {
		if out, err := exec.Command("dpkg-deb", args...).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb %v: %v\n%s", args, err, out)
		}
	}
	return root, ctrl
}

// TestDebPackage builds the amd64 .deb from freshly built binaries,
// unpacks it into a throw-away root and checks its files, permissions,
// conffile, unit, dependencies and maintainer scripts.
func TestDebPackage(t *testing.T) {
	debs := buildDebs(t)
	root, ctrl := unpack(t, debs["palmd"])
	for path, mode := range map[string]os.FileMode{
		"usr/bin/palmd": 0o755, "usr/bin/palmctl": 0o755,
		"lib/systemd/system/palmd.service": 0o644, "etc/palmd/palmd.yaml": 0o644,
		"lib/udev/rules.d/60-palmd.rules": 0o644, "usr/share/doc/palmd/copyright": 0o644,
		"usr/share/man/man8/palmd.8.gz": 0o644, "usr/share/man/man1/palmctl.1.gz": 0o644, "usr/share/man/man5/palmd.yaml.5.gz": 0o644,
	} {
		st, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("%s missing: %v", path, err)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(root, "lib/systemd/system/palmd.service"))
	want, _ := os.ReadFile("palmd.service")
	if !bytes.Equal(unit, want) {
		t.Error("packaged unit differs from systemd/palmd.service")
	}
	conf, _ := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if strings.TrimSpace(string(conf)) != "/etc/palmd/palmd.yaml" {
		t.Errorf("conffiles %q", conf)
	}
	control, _ := os.ReadFile(filepath.Join(ctrl, "control"))
	// Versioned Depends, from dpkg-shlibdeps.
	for _, w := range []string{"Package: palmd", "Architecture: amd64", "libopencv-core406 (>= 4.6", "libopencv-imgproc406 (>= 4.6", "libc6 (>= 2.", "adduser", "procps"} {
		if !strings.Contains(string(control), w) {
			t.Errorf("control lacks %q:\n%s", w, control)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/palm-matcher")); err == nil {
		t.Error("the terminal's package ships palm-matcher")
	}
	rules, _ := os.ReadFile(filepath.Join(root, "lib/udev/rules.d/60-palmd.rules"))
	if !strings.Contains(string(rules), `SUBSYSTEM=="pwm"`) {
		t.Errorf("udev rules lack the PWM rule:\n%s", rules)
	}

	// The matcher's package: the matcher alone, no unit, no udev rules,
	// no user.
	mroot, mctrl := unpack(t, debs["palm-matcher"])
	for _, p := range []string{"usr/bin/palm-matcher", "usr/share/man/man8/palm-matcher.8.gz", "usr/share/doc/palm-matcher/copyright"} {
		if _, err := os.Stat(filepath.Join(mroot, p)); err != nil {
			t.Errorf("palm-matcher package lacks %s", p)
		}
	}
	for _, p := range []string{"usr/bin/palmd", "lib/systemd/system/palmd.service", "lib/udev", "etc/palmd"} {
		if _, err := os.Stat(filepath.Join(mroot, p)); err == nil {
			t.Errorf("palm-matcher package ships %s", p)
		}
	}
	mcontrol, _ := os.ReadFile(filepath.Join(mctrl, "control"))
	if !strings.Contains(string(mcontrol), "Package: palm-matcher") || !strings.Contains(string(mcontrol), "libc6 (>= 2.") {
		t.Errorf("palm-matcher control:\n%s", mcontrol)
	}
	if strings.Contains(string(control), "-dev") || strings.Contains(string(control), "-cross") {
		t.Errorf("control depends on -dev or -cross packages:\n%s", control)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		p := filepath.Join(ctrl, s)
		if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
	}
	post, _ := os.ReadFile(filepath.Join(ctrl, "postinst"))
	for _, w := range []string{"adduser --system", "adduser palmd video", "adduser palmd gpio", "deb-systemd-helper enable", "keys/device.key", "udevadm trigger"} {
		if !strings.Contains(string(post), w) {
			t.Errorf("postinst lacks %q", w)
		}
	}
	// Hardened binaries: position-independent, immediate binding (with
	// RELRO, so the GOT is read-only after start-up).
	for _, b := range []string{"palmd", "palmctl", "palm-matcher"} {
		dir := root
		if b == "palm-matcher" {
			dir = mroot
		}
		dyn, err := exec.Command("readelf", "-d", "-l", filepath.Join(dir, "usr/bin", b)).CombinedOutput()
		if err != nil {
			t.Fatalf("readelf %s: %v\n%s", b, err, dyn)
		}
		for _, w := range []string{"PIE", "BIND_NOW", "GNU_RELRO"} {
			if !strings.Contains(string(dyn), w) {
				t.Errorf("%s lacks %s", b, w)
			}
		}
	}
	// palmd links only the OpenCV modules it calls: the rest of Debian's
	// OpenCV (and the Qt, GDAL, FFmpeg… behind it) would cost tens of MB
	// of resident memory on a 1 GB board (internal/memreport).
	dyn, _ := exec.Command("readelf", "-d", filepath.Join(root, "usr/bin/palmd")).CombinedOutput()
	for _, line := range strings.Split(string(dyn), "\n") {
		if strings.Contains(line, "NEEDED") && strings.Contains(line, "opencv") &&
			!strings.Contains(line, "libopencv_core.") && !strings.Contains(line, "libopencv_imgproc.") {
			t.Errorf("palmd needs more of OpenCV than core and imgproc: %s", strings.TrimSpace(line))
		}
	}
	// palmd in the package runs.
	if out, err := exec.Command(filepath.Join(root, "usr/bin/palmd"), "-version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "palmd ") {
		t.Errorf("packaged palmd -version: %v %s", err, out)
	}
}
