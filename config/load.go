package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxSize is the largest cloud-config accepted: the most a ConfigMap, where
// clusters keep it, can hold. It bounds the memory of decoding.
const MaxSize = 1 << 20

// Load reads, decodes, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading cloud-config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("cloud-config %s: %w", path, err)
	}
	return c, nil
}

// Read is Load for an already opened file (the framework hands the provider
// an io.Reader).
func Read(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading cloud-config: %w", err)
	}
	return Parse(data)
}

// Parse decodes a cloud-config strictly (unknown fields are errors), sets
// defaults and validates it. Every problem is reported at once: the error is
// a ValidationErrors of *FieldError, each naming the field path and line.
// Warnings (a usable file that is probably not what was meant) are in
// Config.Warnings.
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxSize {
		// Decoding holds a tree of the whole document: bound it.
		return nil, ValidationErrors{&FieldError{Msg: fmt.Sprintf(
			"the cloud-config is %d bytes; at most %d (1 MiB, what a ConfigMap holds) are accepted", len(data), MaxSize)}}
	}
	c := &Config{}
	root, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	d := &decoder{budget: 2*len(data) + 1000}
	d.decode(root, "", reflect.ValueOf(c).Elem(), false)
	// Decoding released the nodes it read; let the rest go too.
	root = nil
	if d.bomb != nil {
		// The other findings would only repeat it.
		return nil, ValidationErrors{d.bomb}
	}

	c.setDefaults()
	errs := c.validate()
	errs = append(d.errs, errs.except(d.errs)...)
	if len(errs) == 0 && len(c.Warnings) == 0 {
		return c, nil
	}
	// Validation knows paths, not lines: read the file again to find
	// them. Only files with findings pay for a second parse.
	if root, err := parseTree(data); err == nil {
		setLines(root, errs)
		setLines(root, c.Warnings)
	}
	sortByLine(c.Warnings)
	if len(errs) > 0 {
		sortByLine(errs)
		return nil, errs
	}
	return c, nil
}

// Default is the configuration of a CCM started without a cloud-config:
// no pools; nodes are still initialised.
func Default() *Config {
	c := &Config{}
	c.setDefaults()
	c.validate()
	return c
}

// parseTree parses the one YAML document of a cloud-config.
func parseTree(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlSyntaxError(err)
	}
	if isEmptyDocument(&root) {
		return nil, ValidationErrors{&FieldError{Msg: ErrEmpty.Error(), Err: ErrEmpty}}
	}
	// A second document would otherwise be ignored without a word.
	var next yaml.Node
	if err := dec.Decode(&next); err == nil && !isEmptyDocument(&next) {
		return nil, ValidationErrors{&FieldError{Line: next.Line, Msg: "a second YAML document (after ---): put all settings in one"}}
	} else if err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlSyntaxError(err)
	}
	return &root, nil
}

// ErrEmpty is the finding for a file without settings: most likely the
// wrong ConfigMap key or a file not yet written, and a CCM started on it
// would hand out nothing.
var ErrEmpty = errors.New("the file is empty or holds only comments; a cloud-config needs at least one pool (see docs/configuration.md)")

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlSyntaxError turns "yaml: line 3: did not find expected key" into a
// finding with a line.
func yamlSyntaxError(err error) error {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return ValidationErrors{&FieldError{Line: line, Msg: "invalid YAML: " + m[2]}}
	}
	return ValidationErrors{&FieldError{Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
}

func isEmptyDocument(n *yaml.Node) bool {
	if n.Kind == 0 {
		return true
	}
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode || c.Tag != "!!null" {
			return false
		}
	}
	return true
}

// ValidationErrors lists every problem found in one file.
type ValidationErrors []error

func (e ValidationErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap lets errors.Is and errors.As look at each finding.
func (e ValidationErrors) Unwrap() []error { return e }

// except drops the findings about a field that already has a decoding
// error, or about a field inside it: "asn: -1" is reported as out of range,
// not also as missing.
func (e ValidationErrors) except(decoding ValidationErrors) ValidationErrors {
	if len(decoding) == 0 {
		return e
	}
	bad := make(map[string]bool, len(decoding))
	for _, err := range decoding {
		if fe, ok := err.(*FieldError); ok && fe.Path != "" {
			bad[fe.Path] = true
		}
	}
	var out ValidationErrors
	for _, err := range e {
		if fe, ok := err.(*FieldError); ok && coveredBy(fe.Path, bad) {
			continue
		}
		out = append(out, err)
	}
	return out
}

func coveredBy(path string, bad map[string]bool) bool {
	for p := path; p != ""; p = parentPath(p) {
		if bad[p] {
			return true
		}
	}
	return false
}

// parentPath is "pools[0]" for "pools[0].name" and "pools" for "pools[0]".
func parentPath(p string) string {
	if i := strings.LastIndexAny(p, ".["); i >= 0 {
		return p[:i]
	}
	return ""
}

// FieldError is one finding, named by the field's path in the file and the
// line it is on (0 when the file is not to blame for one line).
type FieldError struct {
	Path string
	Line int
	Msg  string
	// Err, when set, is a sentinel the finding can be matched with
	// (errors.Is), e.g. ErrEmpty or ErrNamespacePlaceholder.
	Err error
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

func sortByLine[E ~[]T, T any](list E) {
	slices.SortStableFunc(list, func(a, b T) int { return lineOf(a) - lineOf(b) })
}

func lineOf(v any) int {
	if fe, ok := v.(*FieldError); ok {
		return fe.Line
	}
	return 0
}

// setLines fills in the line of findings that have a path but no line.
func setLines[E ~[]T, T any](root *yaml.Node, list E) {
	for _, v := range list {
		if fe, ok := any(v).(*FieldError); ok && fe.Line == 0 && fe.Path != "" {
			fe.Line = lineAt(root, fe.Path)
		}
	}
}

// lineAt returns the line of the field at path ("pools[1].addresses[0]"),
// or of the deepest part of the path that is in the file.
func lineAt(n *yaml.Node, path string) int {
	line := 0
	for n != nil {
		for n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode {
			if n.Kind == yaml.AliasNode {
				n = n.Alias
			} else if len(n.Content) > 0 {
				n = n.Content[0]
			} else {
				return line
			}
		}
		line = n.Line
		if path == "" {
			return line
		}
		var next *yaml.Node
		if path[0] == '[' {
			end := strings.IndexByte(path, ']')
			i, err := strconv.Atoi(path[1:max(end, 1)])
			if end < 0 || err != nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return line
			}
			next, path = n.Content[i], path[end+1:]
		} else {
			path = strings.TrimPrefix(path, ".")
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			key := path[:end]
			path = path[end:]
			if n.Kind != yaml.MappingNode {
				return line
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					if path == "" {
						return n.Content[i].Line // the key, where an editor should go
					}
					next = n.Content[i+1]
					break
				}
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func (c *Config) setDefaults() {
	for i := range c.Pools {
		p := &c.Pools[i]
		if p.Mode == "" {
			p.Mode = ModeLayer2
		}
	}
	for i := range c.BGP.Peers {
		p := &c.BGP.Peers[i]
		if p.Port == 0 {
			p.Port = DefaultBGPPort
		}
		if p.HoldTime == 0 {
			p.HoldTime = DefaultHoldTime
		}
		if p.KeepaliveTime == 0 {
			p.KeepaliveTime = DefaultKeepalive(p.HoldTime)
		}
		if b := p.BFD; b != nil {
			if b.ReceiveInterval == 0 {
				b.ReceiveInterval = DefaultBFDInterval
			}
			if b.TransmitInterval == 0 {
				b.TransmitInterval = DefaultBFDInterval
			}
			if b.DetectMultiplier == 0 {
				b.DetectMultiplier = DefaultBFDMultiplier
			}
		}
	}
	if c.NodeAgent.LeaseDuration == 0 {
		c.NodeAgent.LeaseDuration = DefaultLeaseDuration
	}
	if c.NodeAgent.RenewInterval == 0 {
		c.NodeAgent.RenewInterval = DefaultRenewInterval
	}
}
