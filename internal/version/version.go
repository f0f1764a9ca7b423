// Package version holds the build's version and commit.
package version

import "runtime/debug"

// Set at link time: -ldflags "-X github.com/meshbench/meshbench/internal/version.Commit=...".
var (
	// Version is the release version, "dev" for a development build.
	Version = "dev"
	// Commit is the git commit the binary was built from.
	Commit = ""
)

// GetCommit returns Commit, or the VCS revision recorded by the Go
// toolchain, or "unknown".
func GetCommit() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}
