//go:build !goexperiment.runtimesecret

package protocol

// protectSecrets runs f. Without GOEXPERIMENT=runtimesecret only the
// buffers this package owns are wiped (explicitly, by their callers).
func protectSecrets(f func()) { f() }
