// Package buildinfo names this binary's build: the version, commit and date
// `make build` stamps from git into k8s.io/component-base/version (see
// hack/version.sh), or, in a build not stamped (`go build`, `go install
// MODULE@VERSION`), what the Go toolchain recorded in the binary.
package buildinfo

import (
	"runtime/debug"
	"time"

	"k8s.io/component-base/version"
)

// unstamped is component-base's version when no -ldflags set it.
const unstamped = "v0.0.0-master+$Format:%H$"

// build is what a binary knows about its build.
type build struct{ version, commit, date string }

// current is this binary's build: stamped, or else read from the toolchain.
var current = func() build {
	v := version.Get()
	b := build{version: v.GitVersion, commit: v.GitCommit, date: v.BuildDate}
	if v.GitVersion != unstamped {
		return b
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b = fromBuildInfo(info, b)
	// component-base accepts another version only with the same
	// major.minor.patch as its placeholder: pseudo-versions fit, and the
	// framework's own logs (the CCM's "Version:") then say it too.
	_ = version.SetDynamicVersion(b.version)
	return b
}()

// fromBuildInfo names an unstamped build by the main module's version the
// Go toolchain recorded: the VERSION of `go install MODULE@VERSION`, or for
// `go build` in a clone the tag or pseudo-version of its commit ("+dirty"
// with uncommitted changes). Without one (-buildvcs=false), a
// pseudo-version of the recorded commit, as hack/version.sh makes. What it
// cannot tell keeps the value of def.
func fromBuildInfo(info *debug.BuildInfo, def build) build {
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	b := def
	rev, when := settings["vcs.revision"], settings["vcs.time"]
	if rev != "" {
		b.commit = rev
	}
	if when != "" {
		b.date = when
	}
	switch t, err := time.Parse(time.RFC3339, when); {
	case info.Main.Version != "" && info.Main.Version != "(devel)":
		b.version = info.Main.Version
	case rev != "" && err == nil:
		b.version = "v0.0.0-" + t.UTC().Format("20060102150405") + "-" + rev[:min(12, len(rev))]
		if settings["vcs.modified"] == "true" {
			b.version += "-dirty"
		}
	}
	return b
}

// Version is the build's version, e.g. "v0.0.0-20261201214129-64e9a0ed3e76".
func Version() string { return current.version }

// Commit is the git commit the build is from.
func Commit() string { return current.commit }

// Date is when the build was stamped (or its commit was made).
func Date() string { return current.date }
