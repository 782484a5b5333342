package systemd

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palmd/palmd/internal/brokertest"
	"github.com/palmd/palmd/internal/vmtest"
	"github.com/palmd/palmd/keyfile"
	"github.com/palmd/palmd/protocol"
)

// TestServiceUnderSystemd boots a Debian 12 root with systemd as PID 1
// under qemu and runs palmd as the packaged, hardened unit would run on a
// terminal: installed from the .deb, provisioned as the README says (keys
// as credentials, mutual TLS to a local mosquitto), with the reference
// matcher answering. It proves what systemd-analyze cannot: that the
// sandbox (system-call filter, device policy, read-only system,
// MemoryDenyWriteExecute, mlockall) lets palmd start, become ready,
// feed the watchdog, identify a hand end to end, and stop cleanly with the
// light off.
func TestServiceUnderSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	qemu := vmtest.Qemu(t, "THE SYSTEMD VM TEST")
	if _, err := exec.LookPath("mke2fs"); err != nil {
		t.Fatal("mke2fs is missing (e2fsprogs)")
	}
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Fatal("busybox-static is not installed: run scripts/bootstrap.sh")
	}
	cacheRoot, err := filepath.Abs(filepath.Join("..", ".cache"))
	if err != nil {
		t.Fatal(err)
	}
	root, archives := debRoot(t, "THE SYSTEMD VM TEST")
	kernel := vmtest.EnsureKernel(t, filepath.Join(cacheRoot, "vm"))
	work := filepath.Dir(root)
	put := func(path string, data []byte, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := inChroot(root, archives, "apt-get install -y --no-install-recommends systemd systemd-sysv mosquitto mosquitto-clients /tmp/palmd.deb /tmp/palm-matcher.deb >/dev/null"+
		" && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc /usr/share/man /usr/share/locale"+
		" && echo root:x | chpasswd"); err != nil {
		t.Fatalf("installing systemd, mosquitto and palmd: %v\n%s", err, vmtest.Tail(out, 3000))
	}

	// Provisioning, as the README tells a technician: keys and the token
	// in /etc/palmd/keys (passed as credentials), certificates and public
	// keys in /etc/palmd.
	const device = "term-vm"
	_, devKey, _ := ed25519.GenerateKey(nil)
	devPriv, devPub, err := keyfile.EncodeDevice(devKey)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := protocol.GenerateMatcherKey(protocol.SuiteHybrid)
	if err != nil {
		t.Fatal(err)
	}
	mPriv, mPub, err := keyfile.EncodeMatcher(mk)
	if err != nil {
		t.Fatal(err)
	}
	_, resKey, _ := ed25519.GenerateKey(nil)
	resPriv, resPub, _ := keyfile.EncodeDevice(resKey)
	ca := brokertest.NewCA(t)
	srvCrt, srvKey := ca.Issue(t, "localhost", true)
	devCrt, devTLS := ca.Issue(t, device, false)
	mCrt, mTLS := ca.Issue(t, "matcher-vm", false)
	put("etc/palmd/keys/device.key", devPriv, 0o600)
	put("etc/palmd/keys/device-tls.key", devTLS, 0o600)
	put("etc/palmd/keys/diag.token", []byte("vm-technician-token-0123456789\n"), 0o600)
	put("etc/palmd/device.crt", devCrt, 0o644)
	put("etc/palmd/ca.pem", ca.PEM, 0o644)
	put("etc/palmd/matcher.pub", mPub, 0o644)
	put("etc/palmd/result.pub", resPub, 0o644)
	put("etc/palmd/vm-scenario.json", []byte(`{"loop": true, "steps": [
  {"kind": "empty", "hold": 8},
  {"kind": "present", "identity": 7, "approach": 6, "hold": 24, "withdraw": 6}
]}`), 0o644)
	put("etc/palmd/palmd.yaml", []byte(fmt.Sprintf(vmConfig, device)), 0o644)
	put("etc/mosquitto/certs/ca.pem", ca.PEM, 0o644)
	put("etc/mosquitto/certs/server.crt", srvCrt, 0o644)
	put("etc/mosquitto/certs/server.key", srvKey, 0o644)
	put("etc/mosquitto/conf.d/palmd.conf", []byte(fmt.Sprintf(mosquittoConf, protocol.MaxPacket)), 0o644)
	put("root/matcher/devices/"+device+".pub", devPub, 0o644)
	put("root/matcher/matcher.key", mPriv, 0o600)
	put("root/matcher/result.key", resPriv, 0o600)
	put("root/matcher/tls.crt", mCrt, 0o644)
	put("root/matcher/tls.key", mTLS, 0o600)
	// Emulation (TCG) runs palmd 10–20 times slower than the board, and
	// the idle scene's frames are rendered in software too: the watchdog
	// interval is scaled to match. Everything else is the packaged unit.
	put("etc/systemd/system/palmd.service.d/tcg.conf", []byte("[Service]\nWatchdogSec=120s\n"), 0o644)
	put("usr/local/bin/vmcheck", []byte(vmCheck), 0o755)
	put("etc/systemd/system/vmcheck.service", []byte(vmCheckUnit), 0o644)
	if err := os.Symlink("/etc/systemd/system/vmcheck.service", filepath.Join(root, "etc/systemd/system/multi-user.target.wants/vmcheck.service")); err != nil {
		t.Fatal(err)
	}

	// The root goes in as an ext4 disk; a small busybox initramfs loads
	// the disk and file system modules and hands over to systemd.
	disk := filepath.Join(work, "root.img")
	if out, err := exec.Command("mke2fs", "-q", "-t", "ext4", "-d", root, "-L", "root", disk, "3G").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	_ = os.RemoveAll(root) // the image holds it now
	var w vmtest.Initramfs
	for _, d := range []string{"bin", "lib", "proc", "sys", "dev", "newroot"} {
		w.Dir(d)
	}
	if err := w.File("bin/busybox", busybox, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.Modules(kernel, diskModules...); err != nil {
		t.Fatal(err)
	}
	w.Data("init", []byte(fmt.Sprintf(switchRootInit, strings.Join(diskModules, " "))), 0o755)
	initrd := filepath.Join(work, "initrd.cpio")
	if err := w.Write(initrd); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	// The console also goes to a file in the cache, to follow a slow boot
	// (it holds service logs and synthetic-scene figures, nothing else).
	consoleLog, err := os.Create(filepath.Join(cacheRoot, "vm", "systemd-vm-console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer consoleLog.Close()
	console, err := vmtest.Machine{Kernel: kernel, Initrd: initrd, Disk: disk, MemoryMB: 1536, Console: consoleLog,
		Cmdline: "console=ttyS0 panic=-1 quiet loglevel=3 systemd.show_status=false"}.Run(ctx, qemu)
	t.Logf("VM ran for %v", time.Since(start).Round(time.Second))
	if !strings.Contains(console, "VMCHECK-DONE") {
		t.Fatalf("the VM did not finish its checks (qemu: %v); console:\n%s", err, vmtest.Tail(console, 8000))
	}
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)VMCHECK-([A-Z-]+)=(.*?)\r?$`).FindAllStringSubmatch(console, -1) {
		got[m[1]] = m[2]
	}
	for _, line := range strings.Split(console, "\n") {
		if strings.Contains(line, "VMCHECK-") && !strings.Contains(line, "VMCHECK-LOG") {
			t.Log("vm: " + strings.TrimSpace(line))
		}
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format+"\nconsole:\n%s", append(args, vmtest.Tail(console, 8000))...)
	}
	if got["STARTED"] != "active" {
		fail("palmd did not become active (READY=1) under systemd: %q", got["STARTED"])
	}
	if !strings.Contains(got["STATUS"], `"state":"online"`) {
		fail("palmd did not publish online over mutual TLS: %q", got["STATUS"])
	}
	if !strings.Contains(got["OUTCOMES"], `"no_match"`) {
		fail("no presentation was identified end to end in the sandbox: %q", got["OUTCOMES"])
	}
	if f := strings.Fields(got["RELOADED"]); len(f) != 3 || f[0] != "active" || f[1] != "same-process" || f[2] == "0" {
		fail("systemctl reload did not reload palmd in place: %q", got["RELOADED"])
	}
	if f := strings.Fields(got["PRIORITIES"]); len(f) != 2 || f[0] == "0" || f[1] != "0" {
		fail("journald did not read the priority prefixes (info lines: %q)", got["PRIORITIES"])
	}
	if got["NRESTARTS"] != "0" {
		fail("palmd restarted %s times (watchdog or crash)", got["NRESTARTS"])
	}
	if got["MEMLOCK"] != "locked" {
		fail("memory not locked under the unit (security.lock_memory): %q", got["MEMLOCK"])
	}
	if got["STOPPED"] != "inactive success" {
		fail("palmd did not stop cleanly: %q", got["STOPPED"])
	}
	if f := strings.Fields(got["KILLED"]); len(f) != 2 || f[0] == f[1] {
		fail("ExecStopPost= did not drive the illuminator off after SIGKILL: %q", got["KILLED"])
	}
	if !strings.HasPrefix(got["SEQUENCE"], "palmd-sequence v1 ") {
		fail("no sequence bound in the unit's StateDirectory: %q", got["SEQUENCE"])
	}
	if !strings.Contains(console, "illuminator off") {
		fail("no \"illuminator off\" in palmd's journal after the stop")
	}
	if e, err := strconv.ParseFloat(got["EXPOSURE"], 64); err != nil || e > 1.5 {
		fail("systemd-analyze security (online, in the VM): exposure %q, want ≤ 1.5", got["EXPOSURE"])
	}
	if strings.Contains(console, "SECCOMP") || strings.Contains(console, "audit: type=1326") {
		fail("a system call was refused by the filter")
	}
}

// diskModules load a virtio disk with ext4 on Debian's kernel, in order.
var diskModules = []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"virtio_blk", "crc16", "crc32c_generic", "mbcache", "jbd2", "ext4"}

const switchRootInit = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in %s; do /bin/busybox insmod /lib/$m.ko || echo "insmod $m failed"; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; /bin/busybox sleep 0.5; done
/bin/busybox mount -t ext4 /dev/vda /newroot || { echo "VMCHECK-DONE=no root disk"; /bin/busybox poweroff -f; }
/bin/busybox umount /proc /sys /dev
exec /bin/busybox switch_root /newroot /lib/systemd/systemd
`

const vmConfig = `device_id: %s
log_level: debug
sensor:
  kind: sim
  sim:
    scenario: /etc/palmd/vm-scenario.json
    realtime: false
keys:
  device: device.key
  matcher: /etc/palmd/matcher.pub
  result: /etc/palmd/result.pub
mqtt:
  brokers: [ssl://127.0.0.1:8883]
  ca: /etc/palmd/ca.pem
  cert: /etc/palmd/device.crt
  key: device-tls.key
diagnostics:
  token_file: diag.token
security:
  lock_memory: true
`

const mosquittoConf = `per_listener_settings true
max_packet_size %d
listener 8883 127.0.0.1
cafile /etc/mosquitto/certs/ca.pem
certfile /etc/mosquitto/certs/server.crt
keyfile /etc/mosquitto/certs/server.key
require_certificate true
use_identity_as_username true
listener 1883 127.0.0.1
allow_anonymous true
`

const vmCheckUnit = `[Unit]
Description=palmd VM checks
After=palmd.service mosquitto.service
Wants=palmd.service mosquitto.service

[Service]
Type=oneshot
ExecStart=/usr/local/bin/vmcheck
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
`

// vmCheck runs inside the VM once palmd's start job is done.
const vmCheck = `#!/bin/sh
say() { echo "VMCHECK-$1=$2"; }
for i in $(seq 1 120); do
  s=$(systemctl show -p ActiveState --value palmd)
  [ "$s" = active ] || [ "$s" = failed ] && break
  sleep 1
done
say STARTED "$(systemctl show -p ActiveState --value palmd)"
/usr/bin/palm-matcher -broker ssl://127.0.0.1:8883 -ca /etc/palmd/ca.pem -cert /root/matcher/tls.crt -key /root/matcher/tls.key \
  -client-id matcher-vm -devices /root/matcher/devices -matcher-key /root/matcher/matcher.key -result-key /root/matcher/result.key \
  -metrics-listen "" >/root/matcher.log 2>&1 &
say STATUS "$(mosquitto_sub -h 127.0.0.1 -p 1883 -t palm/v1/term-vm/status -C 1 -W 60 2>&1)"
out=""
for i in $(seq 1 40); do
  out=$(palmctl status --json --token-file /etc/palmd/keys/diag.token 2>&1)
  echo "$out" | grep -q '"no_match"' && break
  [ $((i % 6)) = 0 ] && echo "VMCHECK-LOG: waiting for a decision: $(echo "$out" | tr -d '\n' | cut -c1-200)" && journalctl -u palmd --no-pager -o cat | grep -E -A3 "^(fatal error|panic|SIG|runtime:|unexpected)|exited|level=ERROR|level=WARN" | tail -12 | sed 's/^/VMCHECK-LOG: palmd: /'
  sleep 3
done
say OUTCOMES "$(echo "$out" | tr -d '\n' | grep -o '"presentations_total":[^}]*}')"
pid=$(systemctl show -p MainPID --value palmd)
grep -q '^VmLck:[[:space:]]*[1-9]' /proc/$pid/status && say MEMLOCK locked || say MEMLOCK "$(grep VmLck /proc/$pid/status)"
say NRESTARTS "$(systemctl show -p NRestarts --value palmd)"
say EXPOSURE "$(systemd-analyze security palmd.service --no-pager 2>/dev/null | sed -n 's/.*Overall exposure level for palmd.service: \([0-9.]*\).*/\1/p')"
# systemctl reload (ExecReload=, SIGHUP): palmd stays, same process, and says so.
systemctl reload palmd
for i in $(seq 1 20); do
  journalctl -u palmd --no-pager -o cat | grep -q 'configuration reloaded' && break
  sleep 0.5
done
say RELOADED "$(systemctl show -p ActiveState --value palmd) $([ "$(systemctl show -p MainPID --value palmd)" = "$pid" ] && echo same-process) $(journalctl -u palmd --no-pager -o cat | grep -c 'configuration reloaded')"
# journald reads the priority prefixes: the start-up line is info, not a warning.
say PRIORITIES "$(journalctl -u palmd --no-pager -o cat -p info | grep -c 'palmd running') $(journalctl -u palmd --no-pager -o cat -p warning | grep -c 'palmd running')"
systemctl stop palmd
say STOPPED "$(systemctl show -p ActiveState --value palmd) $(systemctl show -p Result --value palmd)"
say SEQUENCE "$(cat /var/lib/palmd/sequence 2>&1 | cut -c1-40)"
# SIGKILL skips palmd's own light-off path: ExecStopPost= must run.
systemctl start palmd
before=$(journalctl -u palmd --no-pager -o cat | grep -c 'illuminator off: simulated sensor')
systemctl kill -s KILL palmd
for i in $(seq 1 20); do
  after=$(journalctl -u palmd --no-pager -o cat | grep -c 'illuminator off: simulated sensor')
  [ "$after" -gt "$before" ] && break
  sleep 0.5
done
say KILLED "$before $after"
systemctl stop palmd
journalctl -u palmd --no-pager -o cat | tail -40 | sed 's/^/VMCHECK-LOG: /'
sed 's/^/VMCHECK-LOG: matcher: /' /root/matcher.log | tail -10
echo VMCHECK-DONE
systemctl poweroff
`
