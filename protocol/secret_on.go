//go:build goexperiment.runtimesecret

package protocol

import "runtime/secret"

// protectSecrets runs f with runtime/secret, which erases the registers and
// stack f used (and heap allocations it made, once unreachable) when it
// returns: the plaintext template and the HPKE key schedule leave no copies
// behind. Built only with GOEXPERIMENT=runtimesecret (Go 1.26, experimental).
func protectSecrets(f func()) { secret.Do(f) }
