package docs

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		page    string
		want    []command
		wantErr string
	}{
		{
			name: "commands, output, continuation; unmarked blocks ignored",
			page: "```console\n$ not run\n```\n" +
				"```console doctest\n$ a \\\n    --b\nout 1  \nout 2\n$ c\n```\n" +
				"1. step\n\n   ```console doctest-lab\n   $ d\n   x \\\n   $ e\n   ```\n",
			want: []command{
				{line: 5, text: "a \\\n    --b", output: "out 1\nout 2\n"},
				{line: 9, text: "c"},
				{line: 14, lab: true, text: "d", output: "x \\\n"},
				{line: 16, lab: true, text: "e"},
			},
		},
		{
			name: "hidden lab setup",
			page: "<!-- doctest-lab setup: kubectl create namespace x -->\n```console doctest-lab\n$ a\n```\n<!-- a comment -->\n",
			want: []command{
				{line: 1, lab: true, text: "kubectl create namespace x"},
				{line: 3, lab: true, text: "a"},
			},
		},
		{name: "setup comment not closed", page: "<!-- doctest-lab setup: a\n-->\n", wantErr: "p.md:1: a doc-test setup comment must end"},
		{name: "misspelt mark", page: "```console doctests\n$ a\n```\n", wantErr: `p.md:1: unknown doc-test mark "doctests"`},
		{name: "not a console block", page: "```sh doctest\na\n```\n", wantErr: "p.md:1: a doc-test block must be a console block"},
		{name: "output first", page: "```console doctest\nout\n```\n", wantErr: "p.md:2: output before the first command"},
		{name: "unterminated", page: "```console doctest\n$ a\n", wantErr: "p.md: unterminated code block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse("p.md", []byte(tt.page))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.want {
				tt.want[i].file = "p.md"
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
