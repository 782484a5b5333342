//go:build !goexperiment.runtimesecret

package template

// protectSecrets runs f. Without GOEXPERIMENT=runtimesecret only the
// buffers this package owns are wiped (explicitly, by their callers).
func protectSecrets(f func()) { f() }
