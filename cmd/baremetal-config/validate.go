package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

func newValidateCommand() *cobra.Command {
	var strict bool
	cmd := &cobra.Command{
		Use:   "validate [--strict] FILE...",
		Short: "Check cloud-config files with the loader the binaries use",
		Long: `Check cloud-config files with the loader the binaries use. FILE may be the
cloud-config itself or a ConfigMap manifest holding it in a data key; "-"
reads standard input. Valid files are listed on standard output ("FILE: ok"),
every problem on standard error as FILE:LINE: error|warning: PATH: MESSAGE.

Exit status: 0 every file is valid; 1 some file has errors; 2 bad usage or
an unreadable file; 3 (only with --strict) no errors but warnings.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return validateFiles(cmd, args, strict)
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "exit with status 3 when a file has warnings but no errors")
	return cmd
}

func validateFiles(cmd *cobra.Command, names []string, strict bool) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	status := exitOK
	worse := func(s int) {
		// An unreadable file outranks an invalid one, which outranks warnings.
		rank := map[int]int{exitOK: 0, exitWarnings: 1, exitInvalid: 2, exitUsage: 3}
		if rank[s] > rank[status] {
			status = s
		}
	}
	for _, name := range names {
		data, shown, err := readInput(cmd.InOrStdin(), name)
		if err != nil {
			fmt.Fprintf(stderr, "%s: error: %v\n", shown, err)
			worse(exitUsage)
			continue
		}
		docs, err := cloudConfigs(data)
		if err != nil {
			fmt.Fprintf(stderr, "%s: error: %v\n", shown, err)
			worse(exitInvalid)
			continue
		}
		for _, doc := range docs {
			label := shown + doc.label
			c, err := config.Parse(doc.data)
			var errs config.ValidationErrors
			switch {
			case err == nil:
			case errors.As(err, &errs):
				for _, e := range errs {
					printFinding(stderr, label, doc, "error", e)
				}
			default:
				printFinding(stderr, label, doc, "error", err)
			}
			if err != nil {
				worse(exitInvalid)
				continue
			}
			for _, w := range c.Warnings {
				printFinding(stderr, label, doc, "warning", w)
			}
			switch n := len(c.Warnings); {
			case n == 0:
				fmt.Fprintf(stdout, "%s: ok\n", label)
			default:
				fmt.Fprintf(stdout, "%s: ok, with %d warning(s)\n", label, n)
				if strict {
					worse(exitWarnings)
				}
			}
		}
	}
	if status != exitOK {
		return &exitError{code: status}
	}
	return nil
}

// printFinding writes FILE:LINE: SEVERITY: PATH: MESSAGE, the form editors
// and CI systems link to the line.
func printFinding(w io.Writer, label string, doc document, severity string, err error) {
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		fmt.Fprintf(w, "%s: %s: %v\n", label, severity, err)
		return
	}
	where := label
	if fe.Line > 0 {
		if doc.lineOffset >= 0 {
			where = fmt.Sprintf("%s:%d", doc.file(label), fe.Line+doc.lineOffset)
		} else {
			where = fmt.Sprintf("%s, line %d of the key", label, fe.Line)
		}
	}
	msg := fe.Msg
	if fe.Path != "" {
		msg = fe.Path + ": " + msg
	}
	fmt.Fprintf(w, "%s: %s: %s\n", where, severity, msg)
}

// document is one cloud-config found in an input: the input itself, or a
// data key of a ConfigMap in it.
type document struct {
	data  []byte
	label string // "" for the input itself, else " (ConfigMap x, data.key)"
	// lineOffset maps a line of data to a line of the input; -1 when the
	// value is not a block scalar, so lines do not map.
	lineOffset int
}

func (d document) file(label string) string {
	return strings.TrimSuffix(label, d.label)
}

// A cloud-config has none of these top-level keys; a manifest has both.
var manifestRE = regexp.MustCompile(`(?m)^["']?(apiVersion|kind)["']?\s*:|"(apiVersion|kind)"\s*:`)

// cloudConfigs returns the cloud-configs in data: data itself, or, for a
// manifest, the data key of each ConfigMap that holds one.
func cloudConfigs(data []byte) ([]document, error) {
	if len(manifestRE.FindAll(data, 2)) < 2 {
		return []document{{data: data}}, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []document
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		docs, err := fromManifest(doc.Content[0])
		if err != nil {
			return nil, err
		}
		out = append(out, docs...)
	}
	if len(out) == 0 {
		return []document{{data: data}}, nil
	}
	return out, nil
}

// The keys a cloud-config may have at its top level.
var cloudConfigKeys = map[string]bool{"pools": true, "bgp": true, "nodeAgent": true, "topology": true}

func fromManifest(obj *yaml.Node) ([]document, error) {
	var head struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Items []yaml.Node `yaml:"items"`
	}
	if err := obj.Decode(&head); err != nil {
		return nil, fmt.Errorf("line %d: not a Kubernetes object: %w", obj.Line, err)
	}
	switch head.Kind {
	case "ConfigMap":
	case "List":
		var out []document
		for i := range head.Items {
			docs, err := fromManifest(&head.Items[i])
			if err != nil {
				return nil, err
			}
			out = append(out, docs...)
		}
		return out, nil
	case "":
		return nil, fmt.Errorf("line %d: neither a cloud-config nor a Kubernetes object (apiVersion and kind at the top level)", obj.Line)
	default:
		return nil, fmt.Errorf("line %d: a %s manifest; validate takes a cloud-config or a ConfigMap holding one", obj.Line, head.Kind)
	}
	data := mapValue(obj, "data")
	if data == nil || data.Kind != yaml.MappingNode || len(data.Content) == 0 {
		return nil, fmt.Errorf("ConfigMap %q has no data", head.Metadata.Name)
	}
	var out []document
	var keys []string
	for i := 0; i+1 < len(data.Content); i += 2 {
		k, v := data.Content[i], data.Content[i+1]
		keys = append(keys, k.Value)
		// With one key, that is the cloud-config whatever it holds: an
		// empty one should fail as empty, not as "no cloud-config".
		if len(data.Content) > 2 && !holdsCloudConfig(v.Value) {
			continue
		}
		offset := -1
		if v.Style&(yaml.LiteralStyle) != 0 {
			offset = k.Line // "key: |" then the content from the next line
		}
		out = append(out, document{
			data:       []byte(v.Value),
			label:      fmt.Sprintf(" (ConfigMap %s, data.%s)", head.Metadata.Name, k.Value),
			lineOffset: offset,
		})
	}
	if len(out) == 0 {
		sort.Strings(keys)
		return nil, fmt.Errorf("ConfigMap %q: none of its data keys (%s) holds a cloud-config (a mapping with pools, bgp, nodeAgent or topology)", head.Metadata.Name, strings.Join(keys, ", "))
	}
	return out, nil
}

func holdsCloudConfig(s string) bool {
	var m map[string]yaml.Node
	if yaml.Unmarshal([]byte(s), &m) != nil {
		return false
	}
	for k := range m {
		if cloudConfigKeys[k] {
			return true
		}
	}
	return false
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
