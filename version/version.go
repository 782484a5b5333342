// Package version holds the build's version string, set by the Makefile
// from `git describe` through -ldflags.
package version

// Version is the release this binary was built from ("dev" for a plain
// `go build`).
var Version = "dev"
