package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// markdownLink matches the target of an inline link, [text](target).
var markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestLinks: every relative link of the pages names a file of the
// repository, and a #fragment names a heading of the page it points to (as
// GitHub makes anchors), so renaming a heading cannot leave links dangling.
func TestLinks(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md", "../deploy/README.md")
	var checked int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range markdownLink.FindAllStringSubmatch(string(outsideCode(data)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			path, fragment, _ := strings.Cut(target, "#")
			page := f
			if path != "" {
				page = filepath.Join(filepath.Dir(f), path)
				if _, err := os.Stat(page); err != nil {
					t.Errorf("%s: link %s: %v", f, target, err)
					continue
				}
			}
			if fragment == "" || !strings.HasSuffix(page, ".md") {
				continue
			}
			anchors, err := headingAnchors(page)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors[fragment] {
				t.Errorf("%s: link %s: %s has no heading with anchor %q", f, target, page, fragment)
			}
		}
	}
	if checked < 50 {
		t.Errorf("checked only %d links: has the link syntax changed?", checked)
	}
}

// outsideCode returns data with the lines of fenced code blocks blanked.
func outsideCode(data []byte) []byte {
	var out strings.Builder
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			out.WriteString("\n")
			continue
		}
		if !in {
			out.WriteString(line)
		}
		out.WriteString("\n")
	}
	return []byte(out.String())
}

// headingAnchors returns the anchors GitHub gives the headings of a page:
// lower case, punctuation other than '-' and '_' dropped, spaces as '-', a
// repeated anchor suffixed -1, -2, ...
func headingAnchors(page string) (map[string]bool, error) {
	data, err := os.ReadFile(page)
	if err != nil {
		return nil, err
	}
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, line := range strings.Split(string(outsideCode(data)), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var a strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				a.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				a.WriteRune(r)
			}
		}
		anchor := a.String()
		if n := seen[anchor]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", anchor, n)] = true
		} else {
			anchors[anchor] = true
		}
		seen[anchor]++
	}
	return anchors, nil
}

func TestHeadingAnchors(t *testing.T) {
	page := filepath.Join(t.TempDir(), "p.md")
	text := "# Title\n## Weighted ECMP by local endpoints (`weightByEndpoints`)\n```sh\n# not a heading\n```\n## Title\n### 1. LoadBalancer Services first\n"
	if err := os.WriteFile(page, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := headingAnchors(page)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"title": true, "weighted-ecmp-by-local-endpoints-weightbyendpoints": true, "title-1": true, "1-loadbalancer-services-first": true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("anchors %v, want %v", got, want)
	}
}
