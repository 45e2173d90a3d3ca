// Package version is how every binary of the project names its build: the
// version `make build` stamps from git into k8s.io/component-base/version
// (see hack/version.sh), printed by --version under the binary's own name and
// logged at start; a build not stamped names itself from what the Go
// toolchain recorded (package buildinfo).
package version

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/component-base/version"
	"k8s.io/component-base/version/verflag"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/internal/buildinfo"
)

// String is the build's version, e.g. "v0.0.0-20261201214129-64e9a0ed3e76".
func String() string { return buildinfo.Version() }

// Line is what --version prints: program, version, commit, build date, Go.
func Line(program string) string {
	v := version.Get()
	return fmt.Sprintf("%s %s (commit %s, built %s, %s %s)", program, buildinfo.Version(), buildinfo.Commit(), buildinfo.Date(), v.GoVersion, v.Platform)
}

// PrintAndExitIfRequested replaces verflag's: --version prints Line(program)
// (verflag would say "Kubernetes"); --version=raw and --version=vX.Y.Z keep
// verflag's meaning.
func PrintAndExitIfRequested(program string) {
	printAndExit(pflag.CommandLine, program, os.Stdout, os.Exit)
}

func printAndExit(fs *pflag.FlagSet, program string, out io.Writer, exit func(int)) {
	if f := fs.Lookup("version"); f != nil && f.Value.String() == "true" {
		fmt.Fprintln(out, Line(program))
		exit(0)
		return
	}
	verflag.PrintAndExitIfRequested()
}
