// Command baremetal-config checks cloud-config files, converts MetalLB
// configuration into one, and shows what the cluster does with it.
//
//	baremetal-config validate [--strict] FILE...   ("-" reads standard input)
//	baremetal-config convert [-o FILE] INPUT...
//	baremetal-config status [--kubeconfig FILE] [--context C] [-n NS] [-o json]
//
// validate uses the loader of the cloud-controller-manager and the node
// agent, so a file it accepts is a file they accept. It prints "FILE: ok" on
// standard output and each problem on standard error as
// "FILE:LINE: error: PATH: MESSAGE" (or "warning:").
//
// convert reads MetalLB's legacy ConfigMap and/or metallb.io objects (files
// with one or more YAML documents, "-" for standard input), writes the
// equivalent cloud-config to standard output or -o FILE, and lists on
// standard error everything it did not carry over or changed.
//
// status shows every LoadBalancer Service with its pool, mode and the nodes
// that announce it, computed by the agents' planner; it writes nothing.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/internal/buildinfo"
)

// Exit statuses, documented in docs/configuration.md.
const (
	exitOK       = 0
	exitInvalid  = 1 // a file has errors (or convert/status failed)
	exitUsage    = 2 // bad command line, or an input that cannot be read
	exitWarnings = 3 // validate --strict: no errors, but warnings
)

// exitError carries an exit status through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := newRootCommand(stdin, stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", cmd.Name(), ee.err)
		}
		return ee.code
	}
	// cobra's own errors: unknown command or flag, wrong arguments.
	fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for usage.\n", cmd.Name(), err, cmd.Name())
	return exitUsage
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "baremetal-config",
		Short:         "Check, convert and inspect the cloud-config of cloud-provider-baremetal",
		Version:       buildinfo.Version(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(stderr)
			if err := cmd.Help(); err != nil {
				return err
			}
			return &exitError{code: exitUsage}
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newValidateCommand(), newConvertCommand(), newStatusCommand())
	return root
}
