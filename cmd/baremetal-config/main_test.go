package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const metallbDir = "../../test/testdata/metallb"

func TestRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "pools:\n  - name: lan\n    addresses: [192.0.2.240-192.0.2.250]\n")
	bad := write("bad.yaml", "pools:\n  - name: lan\n    addresses: [192.0.2.9-192.0.2.1]\n  - name: Lan2\n    addresses: [192.0.2.0/28]\n")
	unknown := write("unknown.yaml", "pools:\n  - name: lan\n    adresses: [192.0.2.1]\n")
	legacy, err := os.ReadFile(filepath.Join(metallbDir, "legacy-layer2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(dir, "out.yaml")

	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantStatus int
		wantStdout []string // each line expected exactly, in order
		stdoutHas  []string
		stderrHas  []string
	}{
		{name: "no command", wantStatus: 2, stderrHas: []string{"Usage:"}},
		{name: "unknown command", args: []string{"check"}, wantStatus: 2, stderrHas: []string{`unknown command "check"`}},
		{name: "validate needs a file", args: []string{"validate"}, wantStatus: 2},
		{
			name: "validate good file", args: []string{"validate", good},
			wantStdout: []string{good + ": ok"},
		},
		{
			name: "validate prints each problem on its own line", args: []string{"validate", good, bad},
			wantStatus: 1,
			wantStdout: []string{
				good + ": ok",
				bad + `: pools[0].addresses[0]: "192.0.2.9-192.0.2.1": first address is after last`,
				bad + `: pools[1].name: "Lan2" must be a DNS-1123 label (lower-case letters, digits and '-')`,
			},
		},
		{
			name: "validate names an unknown field", args: []string{"validate", unknown},
			wantStatus: 1, stdoutHas: []string{unknown + ": pools[0].adresses: unknown field (line 3)"},
		},
		{
			name: "validate missing file", args: []string{"validate", filepath.Join(dir, "nope.yaml")},
			wantStatus: 1, stdoutHas: []string{"no such file or directory"},
		},
		{
			name: "convert to stdout", args: []string{"convert", filepath.Join(metallbDir, "crd-layer2.yaml")},
			stdoutHas: []string{"name: first-pool", "- eth1"},
			stderrHas: []string{"Not carried over or changed (2)", `IPAddressPool "lab": address 192.168.20.7/24 written as 192.168.20.0/24`},
		},
		{
			name: "convert from stdin", args: []string{"convert", "-"}, stdin: string(legacy),
			stdoutHas: []string{"name: expensive", "autoAssign: false"},
		},
		{
			name: "convert to a file", args: []string{"convert", "-o", outFile, filepath.Join(metallbDir, "crd-bgp.yaml")},
			stderrHas: []string{"Wrote " + outFile, `BGPPeer "spine-vrf": skipped`},
		},
		{
			name: "converted file validates", args: []string{"validate", outFile},
			wantStdout: []string{outFile + ": ok"},
		},
		{
			name: "convert refuses what does not validate",
			args: []string{"convert", "-"}, stdin: "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/24]}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b}\nspec: {addresses: [192.0.2.128/25]}\n",
			wantStatus: 1, stderrHas: []string{"overlaps", "The rejected output was:"},
		},
		{name: "convert needs an input", args: []string{"convert"}, wantStatus: 2},
		{name: "convert bad flag", args: []string{"convert", "-x", "f"}, wantStatus: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := run(tt.args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d\nstdout:\n%s\nstderr:\n%s", status, tt.wantStatus, stdout.String(), stderr.String())
			}
			if tt.wantStdout != nil {
				got := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
				if strings.Join(got, "\n") != strings.Join(tt.wantStdout, "\n") {
					t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), strings.Join(tt.wantStdout, "\n"))
				}
			}
			for _, w := range tt.stdoutHas {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.stderrHas {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
