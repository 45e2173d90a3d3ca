package config

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Marshal writes c as cloud-config YAML, from the same yaml tags the loader
// reads, so a tool that writes configs (baremetal-config convert) needs no
// schema of its own. Fields at their zero value are left out, so the output
// reads like a hand-written file; a pointer that is set is written even
// when it points to zero (autoAssign: false). Durations are written the
// way the loader reads them ("90s"). Defaults are not filled in: marshal a
// Config that was built, not one that Parse returned, to keep them out.
func Marshal(c *Config) ([]byte, error) {
	n, ok := encodeValue(reflect.ValueOf(c).Elem())
	if !ok {
		n = &yaml.Node{Kind: yaml.MappingNode}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("writing the cloud-config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("writing the cloud-config: %w", err)
	}
	return buf.Bytes(), nil
}

// encodeValue returns the node for v, and false when v is at its zero value
// and should be left out.
func encodeValue(v reflect.Value) (*yaml.Node, bool) {
	if v.Type() == durationType {
		d := time.Duration(v.Int())
		return scalar("!!str", FormatDuration(d)), d != 0
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil, false
		}
		n, ok := encodeValue(v.Elem())
		if !ok { // set, but to zero: written all the same
			n = zeroNode(v.Elem())
		}
		return n, true
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name := yamlName(t.Field(i))
			if name == "" {
				continue
			}
			if n, ok := encodeValue(v.Field(i)); ok {
				m.Content = append(m.Content, stringNode(name), n)
			}
		}
		return m, len(m.Content) > 0
	case reflect.Slice:
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := 0; i < v.Len(); i++ {
			n, ok := encodeValue(v.Index(i))
			if !ok {
				n = zeroNode(v.Index(i))
			}
			s.Content = append(s.Content, n)
		}
		return s, v.Len() > 0
	case reflect.Map:
		m := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			n, ok := encodeValue(v.MapIndex(k))
			if !ok {
				n = zeroNode(v.MapIndex(k))
			}
			m.Content = append(m.Content, stringNode(k.String()), n)
		}
		return m, v.Len() > 0
	case reflect.String:
		return stringNode(v.String()), v.String() != ""
	case reflect.Bool:
		return scalar("!!bool", strconv.FormatBool(v.Bool())), v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return scalar("!!int", strconv.FormatInt(v.Int(), 10)), v.Int() != 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return scalar("!!int", strconv.FormatUint(v.Uint(), 10)), v.Uint() != 0
	}
	panic(fmt.Sprintf("config: no encoder for %s", v.Type()))
}

// zeroNode writes a zero value that must appear: "false", "0", "0s", "",
// or an empty mapping or list.
func zeroNode(v reflect.Value) *yaml.Node {
	switch {
	case v.Type() == durationType:
		return scalar("!!str", "0s")
	case v.Kind() == reflect.Struct || v.Kind() == reflect.Map:
		return &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	case v.Kind() == reflect.Slice:
		return &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	}
	n, _ := encodeValue(v)
	return n
}

// stringNode lets yaml.v3 choose the style, so that strings another YAML
// reader would take for something else ("65000:1", "true") are quoted.
func stringNode(s string) *yaml.Node {
	var n yaml.Node
	if err := n.Encode(s); err != nil {
		return scalar("!!str", s)
	}
	return &n
}

func scalar(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

// FormatDuration writes d as people write it in a cloud-config: "90s"
// rather than "1m30s", "300ms", and Go's form otherwise.
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return d.String()
}
