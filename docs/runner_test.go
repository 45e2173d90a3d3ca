package docs

import (
	"strings"
	"testing"
)

// TestRunnerStatus: a failing command is a doc-test failure unless the page
// shows its exit status with "echo $?" right after it, and then the status
// must be the one shown.
func TestRunnerStatus(t *testing.T) {
	r := &runner{dir: t.TempDir()}
	cmd := func(line int, text, output string) command {
		return command{file: "p.md", line: line, text: text, output: output}
	}
	tests := []struct {
		name string
		cmds []command
		want []string // substrings, one per expected error
	}{
		{name: "success", cmds: []command{cmd(1, "echo hi", "hi\n")}},
		{name: "failure", cmds: []command{cmd(1, "exit 1", "")}, want: []string{"p.md:1: `exit 1` failed"}},
		{name: "failure shown", cmds: []command{cmd(1, "echo oops >&2; exit 1", "oops\n"), cmd(2, statusCommand, "1\n")}},
		{name: "other status", cmds: []command{cmd(1, "exit 2", ""), cmd(2, statusCommand, "1\n")}, want: []string{"p.md:2: `exit 2` exited with status 2; the page shows \"1\""}},
		{name: "success shown", cmds: []command{cmd(1, "true", ""), cmd(2, statusCommand, "0\n")}},
		{name: "output differs", cmds: []command{cmd(1, "echo a; exit 3", "b\n"), cmd(2, statusCommand, "3\n")}, want: []string{"printed\na\n\nthe page shows\nb"}},
		{name: "status of another page", cmds: []command{cmd(1, "exit 1", ""), {file: "q.md", line: 1, text: statusCommand, output: "1\n"}}, want: []string{"p.md:1: `exit 1` failed", "q.md:1: `echo $?` printed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := r.check(tt.cmds)
			if len(errs) != len(tt.want) {
				t.Fatalf("errors %v, want %d", errs, len(tt.want))
			}
			for i, err := range errs {
				if !strings.Contains(err.Error(), tt.want[i]) {
					t.Errorf("error %q, want it to contain %q", err, tt.want[i])
				}
			}
		})
	}
}
