// Package docs holds the user documentation. Its test is the doc-test: the
// commands in fenced blocks marked for it run against the code, so the docs
// cannot drift from it.
//
// A block marked ```console doctest runs here, with the repository's
// baremetal-config and the cached helm and kubectl (make deps) on PATH;
// ```console doctest-lab needs an API server and runs in the lab
// (go test -tags lab ./docs, root), after any hidden setup commands above
// it (<!-- doctest-lab setup: COMMAND -->, for what an installed cluster
// has and the lab's does not). In a block, "$ " starts a command
// (a trailing backslash continues it on the next line) and the lines after
// it, if any, are its expected output (stdout and stderr, exactly, trailing
// spaces aside). Every command must succeed, unless the next one is
// "echo $?", whose output is then the exit status the page expects. The blocks of one page run in
// order in one scratch directory where deploy/ and docs/ are the
// repository's, with EDITOR=true.
package docs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/deploy"
)

// Fence info strings of the blocks the doc-test runs.
const (
	markOffline = "doctest"
	markLab     = "doctest-lab"
)

// labSetupPrefix starts an HTML comment, alone on its line, holding a
// command the lab runs before the page's next ones without showing it:
// <!-- doctest-lab setup: kubectl create namespace baremetal-system -->
const labSetupPrefix = "<!-- doctest-lab setup: "

// command is one "$ " line of a block and the output the page shows for it.
type command struct {
	file   string
	line   int
	lab    bool
	text   string
	output string
}

// parse returns the doc-test commands of a Markdown page in order.
func parse(file string, data []byte) ([]command, error) {
	var cmds []command
	sc := bufio.NewScanner(bytes.NewReader(data))
	var in, lab bool
	var cur *command
	continued := false // the previous line was a command ending in a backslash
	indent := ""       // of the fence, which its lines share (list items)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if in {
				in, cur, continued = false, nil, false
				continue
			}
			info := strings.Fields(strings.TrimPrefix(trimmed, "```"))
			for _, w := range info[min(1, len(info)):] {
				if strings.HasPrefix(w, "doctest") && w != markOffline && w != markLab {
					return nil, fmt.Errorf("%s:%d: unknown doc-test mark %q (want %s or %s)", file, n, w, markOffline, markLab)
				}
			}
			indent = line[:len(line)-len(strings.TrimLeft(line, " "))]
			in = slices.Contains(info, markOffline) || slices.Contains(info, markLab)
			lab = slices.Contains(info, markLab)
			if in && info[0] != "console" {
				return nil, fmt.Errorf("%s:%d: a doc-test block must be a console block (```console %s)", file, n, info[1])
			}
			continue
		}
		if !in {
			// A hidden setup command: what the page takes for granted
			// on an installed cluster (a namespace, a file), run in the
			// lab in page order but not shown.
			if rest, ok := strings.CutPrefix(trimmed, labSetupPrefix); ok {
				text, ok := strings.CutSuffix(rest, " -->")
				if !ok {
					return nil, fmt.Errorf("%s:%d: a doc-test setup comment must end with \" -->\" on its line", file, n)
				}
				cmds = append(cmds, command{file: file, line: n, lab: true, text: strings.TrimSpace(text)})
			}
			continue
		}
		text := strings.TrimPrefix(line, indent)
		switch {
		case continued:
			cur.text += "\n" + text
		case strings.HasPrefix(text, "$ "):
			cmds = append(cmds, command{file: file, line: n, lab: lab, text: strings.TrimPrefix(text, "$ ")})
			cur = &cmds[len(cmds)-1]
		case cur == nil:
			return nil, fmt.Errorf("%s:%d: output before the first command of a doc-test block", file, n)
		default:
			cur.output += strings.TrimRight(text, " \t") + "\n"
			continue
		}
		continued = strings.HasSuffix(text, "\\")
	}
	if in {
		return nil, fmt.Errorf("%s: unterminated code block", file)
	}
	return cmds, sc.Err()
}

// pages returns the doc-test commands of every page in docs/ and of the
// repository's README.md, by page.
func pages(t *testing.T) map[string][]command {
	t.Helper()
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md", "../deploy/README.md")
	out := map[string][]command{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cmds, err := parse(f, data)
		if err != nil {
			t.Fatal(err)
		}
		if len(cmds) > 0 {
			out[f] = cmds
		}
	}
	return out
}

// runner runs doc-test commands in a scratch directory.
type runner struct {
	dir string
	env []string
}

// tools returns a directory with baremetal-config (built from this
// checkout), helm and kubectl (cached by make deps). Without helm and kubectl
// the test is skipped, unless BAREMETAL_REQUIRE_TOOLS is set.
func tools(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, tool := range []string{"helm", "kubectl"} {
		p, err := deploy.ToolPath(tool)
		if err != nil {
			if os.Getenv("BAREMETAL_REQUIRE_TOOLS") != "" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/baremetal-config")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building baremetal-config: %v\n%s", err, out)
	}
	return bin
}

// newRunner makes a scratch directory (deploy/ and docs/ linked to the
// repository's) and puts bin first on PATH.
func newRunner(t *testing.T, bin string, extraEnv ...string) *runner {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"deploy", "docs"} {
		if err := os.Symlink(filepath.Join(root, d), filepath.Join(dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "EDITOR=true",
		// Tests stay off the network: kustomize fetches remote bases with
		// git, which then refuses every protocol but local files.
		"GIT_ALLOW_PROTOCOL=file",
		// helm keeps its own files under the scratch directory.
		"HELM_CACHE_HOME="+filepath.Join(dir, ".helm", "cache"), "HELM_CONFIG_HOME="+filepath.Join(dir, ".helm", "config"),
		"HELM_DATA_HOME="+filepath.Join(dir, ".helm", "data"))
	return &runner{dir: dir, env: append(env, extraEnv...)}
}

// statusCommand, right after a command, shows its exit status: the one way
// a page shows a command that fails on purpose (`baremetal-config validate`
// on a bad file). Each command runs in a shell of its own, so the runner
// answers it.
const statusCommand = "echo $?"

// runAll runs cmds in order and reports every failure, or output other
// than the page's.
func (r *runner) runAll(t *testing.T, cmds []command) {
	t.Helper()
	for _, err := range r.check(cmds) {
		t.Error(err)
	}
}

// check runs cmds in order and returns what differs from the pages: a
// command that fails (unless the page shows its status with "echo $?"
// next), or prints other than the page shows.
func (r *runner) check(cmds []command) []error {
	var errs []error
	for i := 0; i < len(cmds); i++ {
		c := cmds[i]
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", c.text)
		cmd.Dir, cmd.Env = r.dir, r.env
		out, err := cmd.CombinedOutput()
		cancel()
		var exit *exec.ExitError
		status := i+1 < len(cmds) && cmds[i+1].text == statusCommand && cmds[i+1].file == c.file
		switch {
		case err != nil && !(status && errors.As(err, &exit)):
			errs = append(errs, fmt.Errorf("%s:%d: `%s` failed: %v\n%s", c.file, c.line, c.text, err, out))
			continue
		case status:
			code := 0
			if exit != nil {
				code = exit.ExitCode()
			}
			if next := cmds[i+1]; next.output != fmt.Sprintf("%d\n", code) {
				errs = append(errs, fmt.Errorf("%s:%d: `%s` exited with status %d; the page shows %q", next.file, next.line, c.text, code, strings.TrimSpace(next.output)))
			}
			i++
		}
		if c.output == "" {
			continue
		}
		var got strings.Builder
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			got.WriteString(strings.TrimRight(l, " \t") + "\n")
		}
		if got.String() != c.output {
			errs = append(errs, fmt.Errorf("%s:%d: `%s` printed\n%s\nthe page shows\n%s", c.file, c.line, c.text, got.String(), c.output))
		}
	}
	return errs
}

// TestDocCommands runs the doctest blocks of every page (the doctest-lab
// blocks run in the lab: doctest_lab_test.go).
func TestDocCommands(t *testing.T) {
	all := pages(t)
	bin := tools(t)
	var total int
	for file, cmds := range all {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r := newRunner(t, bin)
			offline := slices.DeleteFunc(slices.Clone(cmds), func(c command) bool { return c.lab })
			r.runAll(t, offline)
			total += len(offline)
		})
	}
	// A floor, so that losing the marks (or the parser) cannot pass silently.
	if total < 8 {
		t.Errorf("ran only %d doc-test commands", total)
	}
	t.Logf("ran %d commands from %d pages", total, len(all))
}
