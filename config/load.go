package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

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

// Parse decodes a cloud-config strictly: unknown fields are errors naming
// their path. An empty document is a valid config with no pools.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if len(bytes.TrimSpace(data)) > 0 {
		var root yaml.Node
		if err := yaml.Unmarshal(data, &root); err != nil {
			return nil, cleanYAMLError(err, nil)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, cleanYAMLError(err, &root)
		}
		// A second document would otherwise be ignored without a word.
		var next yaml.Node
		if err := dec.Decode(&next); err == nil && !isEmptyDocument(&next) {
			return nil, errors.New("the cloud-config holds more than one YAML document (---); put all settings in one")
		} else if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
	}
	c.setDefaults()
	if errs := c.validate(); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func isEmptyDocument(n *yaml.Node) bool {
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

// FieldError is a problem with one field, named by its path in the file.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

var (
	unknownFieldRE = regexp.MustCompile(`line (\d+): field (\S+) not found in type`)
	yamlLineRE     = regexp.MustCompile(`line (\d+): (.*)`)
)

// cleanYAMLError rewrites yaml.v3's Go-flavoured messages ("field x not
// found in type config.Pool") into field paths a user can find in the file.
func cleanYAMLError(err error, root *yaml.Node) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || root == nil {
		return fmt.Errorf("invalid YAML: %w", err)
	}
	paths, keys := map[int]string{}, map[int][]keyRef{}
	index(root, "", paths, keys)
	var errs ValidationErrors
	for _, msg := range te.Errors {
		if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			path, ok := takeKey(keys, line, m[2])
			if !ok {
				path = joinPath(parentAt(paths, line), m[2])
			}
			errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf("unknown field (line %d)", line)})
			continue
		}
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			if p, ok := paths[line]; ok {
				errs = append(errs, &FieldError{Path: p, Msg: strings.TrimPrefix(m[2], "cannot unmarshal ") + fmt.Sprintf(" (line %d)", line)})
				continue
			}
		}
		errs = append(errs, errors.New(msg))
	}
	return errs
}

// keyRef is a mapping key and its field path.
type keyRef struct{ name, path string }

// index walks the document once. lines gets, for every line holding a
// mapping key or sequence item, the field path of that node; keys gets
// every mapping key by line, so that an unknown field is named by its own
// path even when several mappings share a line
// ("nodeSelector: {matchLabels: {}, bogus: 1}").
func index(n *yaml.Node, path string, lines map[int]string, keys map[int][]keyRef) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			index(c, path, lines, keys)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			if _, ok := lines[k.Line]; !ok {
				lines[k.Line] = p
			}
			keys[k.Line] = append(keys[k.Line], keyRef{name: k.Value, path: p})
			index(v, p, lines, keys)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if _, ok := lines[c.Line]; !ok || c.Kind != yaml.ScalarNode {
				lines[c.Line] = p
			}
			index(c, p, lines, keys)
		}
	}
}

// takeKey returns the path of the first key called name on line and drops
// it, so that two unknown keys of one name on a line get their own paths.
func takeKey(keys map[int][]keyRef, line int, name string) (string, bool) {
	for i, k := range keys[line] {
		if k.name == name {
			keys[line] = append(keys[line][:i:i], keys[line][i+1:]...)
			return k.path, true
		}
	}
	return "", false
}

// parentAt returns the path of the mapping that holds the key on line.
func parentAt(paths map[int]string, line int) string {
	p, ok := paths[line]
	if !ok {
		return ""
	}
	if i := strings.LastIndexAny(p, ".["); i >= 0 && p[i] == '.' {
		return p[:i]
	}
	if strings.HasSuffix(p, "]") {
		return p // a sequence item that is itself a mapping: "- bogus: 1"
	}
	return ""
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
