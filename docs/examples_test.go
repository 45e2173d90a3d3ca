package docs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// markCloudConfig marks a complete cloud-config example: ```yaml cloud-config.
// Fragments (a pool or a peer shown alone) stay unmarked.
const markCloudConfig = "cloud-config"

// example is one marked YAML block of a page.
type example struct {
	file string
	line int
	text string
}

// cloudConfigExamples returns the ```yaml cloud-config blocks of a page.
func cloudConfigExamples(file string, data []byte) []example {
	var out []example
	var cur *example
	indent := ""
	for n, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if cur != nil {
				out = append(out, *cur)
				cur = nil
				continue
			}
			info := strings.Fields(strings.TrimPrefix(trimmed, "```"))
			if len(info) > 1 && info[0] == "yaml" && slices.Contains(info[1:], markCloudConfig) {
				cur = &example{file: file, line: n + 1}
				indent = line[:len(line)-len(strings.TrimLeft(line, " "))]
			}
			continue
		}
		if cur != nil {
			cur.text += strings.TrimPrefix(line, indent) + "\n"
		}
	}
	return out
}

// TestCloudConfigExamples: every complete cloud-config the pages show loads
// without errors in the binaries' own loader, so an example cannot drift
// from the rules. (Warnings are allowed: an example may show, say, pools
// that only Services asking for them use.)
func TestCloudConfigExamples(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	var total int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range cloudConfigExamples(f, data) {
			total++
			if _, err := config.Parse([]byte(ex.text)); err != nil {
				t.Errorf("%s:%d: the cloud-config example does not load: %v", ex.file, ex.line, err)
			}
		}
	}
	// A floor, so that losing the marks cannot pass silently.
	if total < 4 {
		t.Errorf("found only %d ```yaml %s blocks", total, markCloudConfig)
	}
}
