package docs

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// TestReferenceIsComplete: what the binaries export is on the reference
// pages, so a new metric, agent flag or Lease annotation cannot ship
// undocumented. Names are read from the Go sources, not from a list here.
func TestReferenceIsComplete(t *testing.T) {
	metrics := sourceMatches(t, `"(baremetal_[a-z_]+)"`, "..")
	flags := sourceMatches(t, `fs\.[A-Za-z]+Var\(&o\.[A-Za-z]+, "([a-z-]+)"`, "../cmd/baremetal-node-agent")
	annotations := sourceMatches(t, `annotationPrefix \+ "([a-z-]+)"`, "../announce")
	reasons := sourceMatches(t, `\bReason[A-Za-z]+ += "([A-Za-z]+)"`, "../apicontract")
	for _, tt := range []struct {
		what, page, format string
		names              []string
		atLeast            int
	}{
		{"metric", "metrics-and-events.md", "`%s`", metrics, 15},
		{"agent flag", "install.md", "`--%s`", flags, 8},
		{"Lease annotation", "metrics-and-events.md", "`baremetal.cloud-provider.io/%s`", annotations, 3},
		{"event reason", "metrics-and-events.md", "`%s`", reasons, 11},
	} {
		if len(tt.names) < tt.atLeast {
			t.Errorf("found only %d %ss in the sources (%v): has the code moved?", len(tt.names), tt.what, tt.names)
		}
		data, err := os.ReadFile(tt.page)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tt.names {
			if !strings.Contains(string(data), strings.Replace(tt.format, "%s", n, 1)) {
				t.Errorf("%s %s is not documented in docs/%s", tt.what, n, tt.page)
			}
		}
	}
}

// sourceMatches returns the first submatch of pattern over the non-test Go
// files under dir (hack/ and test/ excluded), deduplicated.
func sourceMatches(t *testing.T, pattern, dir string) []string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	seen := map[string]bool{}
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "hack" || d.Name() == "test" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				out = append(out, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConfigurationIsComplete: every field of the cloud-config has a row or
// a mention in configuration.md, read from the loader's own types.
func TestConfigurationIsComplete(t *testing.T) {
	data, err := os.ReadFile("configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		// A Selector is a Kubernetes label selector, documented as one.
		if typ.Kind() != reflect.Struct || typ.PkgPath() != reflect.TypeFor[config.Config]().PkgPath() || typ == reflect.TypeFor[config.Selector]() {
			return
		}
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fields = append(fields, path+name)
			walk(path+name+".", f.Type)
		}
	}
	walk("", reflect.TypeFor[config.Config]())
	if len(fields) < 40 {
		t.Errorf("found only %d cloud-config fields (%v): has the config moved?", len(fields), fields)
	}
	for _, f := range fields {
		// A field is named in backticks, alone or at the end of a path
		// (`holdTime`, `peers[].holdTime`, `bgp.asn`, `pools[]`).
		name := f[strings.LastIndex(f, ".")+1:]
		if !regexp.MustCompile("`([^`\\s]*[.\\]])?" + regexp.QuoteMeta(name) + "(\\[\\])?`").Match(data) {
			t.Errorf("cloud-config field %s is not documented in docs/configuration.md", f)
		}
	}
}

// TestHelmValuesAreDocumented: every value of the chart, to the second
// level (`ccm.resources`, not its requests), is in helm.md's table.
func TestHelmValuesAreDocumented(t *testing.T) {
	raw, err := os.ReadFile("../deploy/helm/cloud-provider-baremetal/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k, v := range values {
		sub, ok := v.(map[string]any)
		if !ok {
			keys = append(keys, k)
			continue
		}
		for s := range sub {
			keys = append(keys, k+"."+s)
		}
	}
	if len(keys) < 20 {
		t.Errorf("found only %d chart values (%v): has the chart moved?", len(keys), keys)
	}
	page, err := os.ReadFile("helm.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.Contains(string(page), "`"+k+"`") {
			t.Errorf("chart value %s is not documented in docs/helm.md", k)
		}
	}
}
