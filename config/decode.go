package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder fills the config types from a YAML tree, guided by their yaml tags.
// Unlike yaml.v3's own decoding it keeps going after a type error and names
// every problem by field path and line, with messages written for people
// ("write 90s") rather than Go types ("!!int `90` into time.Duration").
type decoder struct {
	errs ValidationErrors
	// budget bounds the work aliases can cause: a document of n bytes has
	// fewer than n nodes, so decoding more than a small multiple of that
	// means aliases are multiplying it ("billion laughs").
	budget int
	bomb   *FieldError // set when the budget ran out
}

var durationType = reflect.TypeOf(time.Duration(0))

func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

// decode sets v (addressable) from n. Nodes of the wrong shape leave v at
// its zero value, so validation still runs on everything else.
//
// List items are released from the tree once decoded, so a large file is
// never held twice (as nodes and as config); shared is set below an anchor
// or an alias, whose nodes may be read again.
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value, shared bool) {
	if d.budget--; d.budget < 0 {
		if d.bomb == nil {
			d.bomb = &FieldError{Path: path, Line: n.Line, Msg: "the file expands to too much data through YAML aliases (*name); write the values out"}
		}
		return
	}
	for n.Kind == yaml.AliasNode {
		n, shared = n.Alias, true
	}
	shared = shared || n.Anchor != ""
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // "key:" with no value keeps the default, as yaml.v3 does
	}
	if v.Type() == durationType {
		d.duration(n, path, v)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		d.decode(n, path, elem.Elem(), shared)
		v.Set(elem)
	case reflect.Struct:
		d.mapping(n, path, v, shared)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n, "expected a list, not %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, fmt.Sprintf("%s[%d]", path, i), s.Index(i), shared)
			if !shared {
				n.Content[i] = nil
			}
		}
		v.Set(s)
	case reflect.Map:
		d.stringMap(n, path, v, shared)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(path, n, "expected a string, not %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, ok := scalarBool(n)
		if !ok {
			d.fail(path, n, "expected true or false, not %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := scalarInt(n)
		if !ok {
			d.fail(path, n, "expected a whole number, not %s", describe(n))
			return
		}
		if v.OverflowInt(i) {
			d.fail(path, n, "%s is out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, ok := scalarInt(n)
		if !ok {
			d.fail(path, n, "expected a whole number, not %s", describe(n))
			return
		}
		if i < 0 || v.OverflowUint(uint64(i)) {
			d.fail(path, n, "%s is out of range (0 to %d)", n.Value, uint64(math.MaxUint64)>>(64-v.Type().Bits()))
			return
		}
		v.SetUint(uint64(i))
	default:
		panic(fmt.Sprintf("config: no decoder for %s at %s", v.Type(), path))
	}
}

// mapping decodes a YAML mapping into a struct: unknown keys and keys given
// twice are errors; "<<: *anchor" merges another mapping in first.
func (d *decoder) mapping(n *yaml.Node, path string, v reflect.Value, shared bool) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "expected a mapping (key: value), not %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			d.merge(val, path, v)
			continue
		}
		p := joinPath(path, k.Value)
		if line, dup := seen[k.Value]; dup {
			d.fail(p, k, "given twice (first on line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		idx, ok := fields[k.Value]
		if !ok {
			if near := nearest(k.Value, fields); near != "" {
				d.fail(p, k, "unknown field; did you mean %s?", near)
			} else {
				d.fail(p, k, "unknown field")
			}
			continue
		}
		d.decode(val, p, v.Field(idx), shared)
	}
}

func (d *decoder) merge(n *yaml.Node, path string, v reflect.Value) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			d.merge(c, path, v)
		}
		return
	}
	d.mapping(n, path, v, true)
}

func (d *decoder) stringMap(n *yaml.Node, path string, v reflect.Value, shared bool) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n, "expected a mapping (key: value), not %s", describe(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := joinPath(path, k.Value)
		if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
			d.fail(p, k, "given twice")
			continue
		}
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, p, e, shared)
		m.SetMapIndex(reflect.ValueOf(k.Value), e)
	}
	v.Set(m)
}

// duration reads a Go duration string. A bare number is the usual mistake
// (MetalLB's BFD intervals are numbers), so the message shows the fix.
func (d *decoder) duration(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n, "expected a duration such as 3s, not %s", describe(n))
		return
	}
	if i, isInt := scalarInt(n); isInt && i == 0 {
		v.SetInt(0)
		return
	} else if isInt || n.ShortTag() == "!!float" {
		d.fail(path, n, "%s has no unit: write %ss (or ms, m, h)", n.Value, n.Value)
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.fail(path, n, "%q is not a duration; write a number with a unit, such as 500ms, 3s or 1m30s", n.Value)
		return
	}
	v.SetInt(int64(dur))
}

func scalarBool(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return false, false
	}
	b, err := strconv.ParseBool(strings.ToLower(n.Value))
	return b, err == nil
}

func scalarInt(n *yaml.Node) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, false
	}
	i, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil {
		return 0, false
	}
	return i, true
}

// nearest returns the field name a misspelt key most likely meant: the
// same but for case, or at most two edits away.
func nearest(key string, fields map[string]int) string {
	best, bestDist := "", 3
	for name := range fields {
		dist := editDistance(strings.ToLower(key), strings.ToLower(name))
		if dist < bestDist || dist == bestDist && name < best {
			best, bestDist = name, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe names what a node holds, for "expected X, not Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "this"
}

// fieldsOf maps yaml names to field indexes; fields tagged "-" are not read.
func fieldsOf(t reflect.Type) map[string]int {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]int)
	}
	f := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			f[name] = i
		}
	}
	fieldCache.Store(t, f)
	return f
}

var fieldCache sync.Map // reflect.Type → map[string]int

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || name == "" {
		return ""
	}
	return name
}
