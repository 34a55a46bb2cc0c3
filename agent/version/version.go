// Package version holds the build's version, commit and date, stamped in by
// the Makefile through -ldflags -X, and the target it was built for.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by -ldflags "-X linkguard.dev/linkguard/agent/version.Version=…".
var (
	Version = "dev"
	Commit  = "unknown"
	Date    = "unknown"
)

// Arch names the target as the bundles do: arm (with GOARM), arm64, mipsle, mips, amd64.
func Arch() string {
	arch := runtime.GOARCH
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" && arch == "arm" {
				arch += "v" + s.Value
			}
		}
	}
	return arch
}

// String is the one-line version report of both binaries.
func String(prog string) string {
	return fmt.Sprintf("%s %s (commit %s, built %s, %s/%s, %s)", prog, Version, Commit, Date, runtime.GOOS, Arch(), runtime.Version())
}
