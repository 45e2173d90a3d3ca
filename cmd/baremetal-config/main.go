// Command baremetal-config checks cloud-config files and converts MetalLB
// configuration into one.
//
//	baremetal-config validate FILE...
//	baremetal-config convert [-o FILE] INPUT...
//
// validate uses the same loader as the cloud-controller-manager and the node
// agent, so a file it accepts is a file they accept. It prints "FILE: ok" or
// one line per problem, and exits 1 if any file has a problem.
//
// convert reads MetalLB's legacy ConfigMap and/or metallb.io objects (files
// with one or more YAML documents, "-" for standard input), writes the
// equivalent cloud-config to standard output or -o FILE, and lists on
// standard error everything it could not carry over.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/convert"
)

const usage = `Usage:
  baremetal-config validate FILE...
      Check cloud-config files with the loader the binaries use.
      Exit status 1 if any file is invalid.
  baremetal-config convert [-o FILE] INPUT...
      Convert MetalLB configuration (legacy ConfigMap or metallb.io objects;
      "-" reads standard input) into a cloud-config. Notes about anything not
      carried over go to standard error.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "convert":
		return convertCmd(args[1:], stdin, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func validate(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprint(stderr, "validate: name at least one file\n\n"+usage)
		return 2
	}
	status := 0
	for _, f := range files {
		_, err := config.Load(f)
		if err == nil {
			fmt.Fprintf(stdout, "%s: ok\n", f)
			continue
		}
		status = 1
		var errs config.ValidationErrors
		if !errors.As(err, &errs) {
			fmt.Fprintf(stdout, "%s: %v\n", f, err)
			continue
		}
		for _, e := range errs {
			fmt.Fprintf(stdout, "%s: %v\n", f, e)
		}
	}
	return status
}

func convertCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the cloud-config to `FILE` instead of standard output")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, "convert: name at least one input file (\"-\" for standard input)\n\n"+usage)
		return 2
	}
	var sources []convert.Source
	for _, name := range fs.Args() {
		var data []byte
		var err error
		if name == "-" {
			name = "<stdin>"
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(name)
		}
		if err != nil {
			fmt.Fprintf(stderr, "convert: %v\n", err)
			return 1
		}
		sources = append(sources, convert.Source{Name: name, Data: data})
	}
	res, err := convert.FromMetalLB(sources...)
	if res != nil && len(res.Notes) > 0 {
		fmt.Fprintf(stderr, "Not carried over or changed (%d); review before use:\n", len(res.Notes))
		for _, n := range res.Notes {
			fmt.Fprintf(stderr, "  - %s\n", n)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "convert: %v\n", err)
		if res != nil {
			fmt.Fprintf(stderr, "The rejected output was:\n%s", res.Config)
		}
		return 1
	}
	if *out == "" {
		if _, err := stdout.Write(res.Config); err != nil {
			fmt.Fprintf(stderr, "convert: %v\n", err)
			return 1
		}
		return 0
	}
	if err := os.WriteFile(*out, res.Config, 0o644); err != nil {
		fmt.Fprintf(stderr, "convert: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "Wrote %s; check it with: baremetal-config validate %s\n", *out, *out)
	return 0
}
