package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/convert"
)

func newConvertCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "convert [-o FILE] INPUT...",
		Short: "Convert MetalLB configuration into a cloud-config",
		Long: `Convert MetalLB configuration (the legacy ConfigMap or metallb.io objects;
"-" reads standard input) into a cloud-config. Everything not carried over
or changed is listed on standard error and in the output's header; review
it before use.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return convertFiles(cmd, args, out)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the cloud-config to `FILE` instead of standard output")
	return cmd
}

func convertFiles(cmd *cobra.Command, names []string, out string) error {
	stderr := cmd.ErrOrStderr()
	var sources []convert.Source
	for _, name := range names {
		data, shown, err := readInput(cmd.InOrStdin(), name)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		sources = append(sources, convert.Source{Name: shown, Data: data})
	}
	res, err := convert.FromMetalLB(sources...)
	if res != nil && len(res.Notes) > 0 {
		fmt.Fprintf(stderr, "Not carried over or changed (%d); review before use:\n", len(res.Notes))
		for _, n := range res.Notes {
			fmt.Fprintf(stderr, "  - %s\n", n)
		}
	}
	if err != nil {
		if res != nil {
			fmt.Fprintf(stderr, "The rejected output was:\n%s", res.Config)
		}
		return &exitError{code: exitInvalid, err: err}
	}
	if out == "" {
		if _, err := cmd.OutOrStdout().Write(res.Config); err != nil {
			return &exitError{code: exitInvalid, err: err}
		}
		return nil
	}
	if err := os.WriteFile(out, res.Config, 0o644); err != nil {
		return &exitError{code: exitInvalid, err: err}
	}
	fmt.Fprintf(stderr, "Wrote %s; check it with: baremetal-config validate %s\n", out, out)
	return nil
}

// readInput reads a named file, or standard input for "-".
func readInput(stdin io.Reader, name string) (data []byte, shown string, err error) {
	if name == "-" {
		data, err = io.ReadAll(stdin)
		if err != nil {
			return nil, "", fmt.Errorf("reading standard input: %w", err)
		}
		return data, "<stdin>", nil
	}
	data, err = os.ReadFile(name)
	return data, name, err
}
