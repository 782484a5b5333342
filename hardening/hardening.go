// Package hardening applies the process-level protections palmd needs
// because it handles biometric data: no core dumps (a crash must not write
// a frame or template to disk), and optionally memory locked in RAM (so it
// is never written to swap).
package hardening

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DisableCoreDumps marks the process non-dumpable (prctl PR_SET_DUMPABLE 0:
// no core file, and no ptrace attach by other processes of the same user)
// and sets the core size limit to zero.
func DisableCoreDumps() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("hardening: prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	// Under systemd (LimitCORE=0) the limit is already zero, and the
	// unit's system-call filter may refuse setrlimit: only set it if needed.
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &cur); err == nil && cur.Cur == 0 && cur.Max == 0 {
		return nil
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("hardening: setrlimit(RLIMIT_CORE, 0): %w", err)
	}
	return nil
}

// Dumpable reports whether the process may currently dump core.
func Dumpable() (bool, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		return false, fmt.Errorf("hardening: prctl(PR_GET_DUMPABLE): %w", err)
	}
	return v != 0, nil
}

// LockMemory locks all current and future pages in RAM (mlockall). It needs
// CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK (systemd: LimitMEMLOCK=).
func LockMemory() error {
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE); err != nil {
		return fmt.Errorf("hardening: mlockall: %w (raise LimitMEMLOCK= or grant CAP_IPC_LOCK)", err)
	}
	return nil
}
