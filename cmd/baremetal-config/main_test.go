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
	const goodYAML = "pools:\n  - name: lan\n    addresses: [192.0.2.240-192.0.2.250]\n"
	good := write("good.yaml", goodYAML)
	bad := write("bad.yaml", "pools:\n  - name: lan\n    addresses: [192.0.2.9-192.0.2.1]\n  - name: Lan2\n    addresses: [192.0.2.0/28]\n")
	unknown := write("unknown.yaml", "pools:\n  - name: lan\n    adresses: [192.0.2.1]\n")
	four := write("four.yaml", `pools:
  - name: lan
    addresses: [192.0.2.0/28]
  - name: lan
    addresses: [192.0.2.8]
  - name: wan_1
    addresses: [198.51.100.1]
nodeAgent:
  leaseDuration: 3
`)
	noPools := write("nopools.yaml", "pools: []\n")
	empty := write("empty.yaml", "# nothing here yet\n")
	cm := write("cm.yaml", `apiVersion: v1
kind: ConfigMap
metadata:
  name: baremetal-cloud-config
  namespace: kube-system
data:
  README: see docs/configuration.md
  cloud-config.yaml: |
    pools:
      - name: lan
        addresses: [127.0.0.0/30]
`)
	cmGood := write("cm-good.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  x.yaml: |\n"+indent(goodYAML, "    "))
	cmNone := write("cm-none.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b, c: d}\n")
	deployment := write("deploy.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n")
	legacy, err := os.ReadFile(filepath.Join(metallbDir, "legacy-layer2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(dir, "out.yaml")
	placeholderOut := filepath.Join(dir, "placeholder.yaml")

	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantStatus int
		wantStdout []string // each line expected exactly, in order
		wantStderr []string // the same for standard error
		stdoutHas  []string
		stderrHas  []string
	}{
		{name: "no command", wantStatus: 2, stderrHas: []string{"Usage:", "validate", "convert"}},
		{name: "unknown command", args: []string{"check"}, wantStatus: 2, stderrHas: []string{`unknown command "check"`}},
		{name: "version", args: []string{"--version"}, stdoutHas: []string{"baremetal-config version v"}},
		{name: "validate needs a file", args: []string{"validate"}, wantStatus: 2, stderrHas: []string{"requires at least 1 arg"}},
		{
			name: "validate good file", args: []string{"validate", good},
			wantStdout: []string{good + ": ok"}, wantStderr: []string{""},
		},
		{
			name: "validate prints each problem with its line on stderr", args: []string{"validate", good, bad},
			wantStatus: 1,
			wantStdout: []string{good + ": ok"},
			wantStderr: []string{
				bad + `:3: error: pools[0].addresses[0]: "192.0.2.9-192.0.2.1": first address is after last`,
				bad + `:4: error: pools[1].name: "Lan2" must be a DNS-1123 label (lower-case letters, digits and '-')`,
			},
		},
		{
			name: "validate reports a type error with everything else", args: []string{"validate", four},
			wantStatus: 1,
			wantStderr: []string{
				four + `:4: error: pools[1].name: "lan" is already the name of pools[0]`,
				four + `:5: error: pools[1].addresses[0]: 192.0.2.8 overlaps pools[0].addresses[0] (192.0.2.0-192.0.2.15, pool "lan")`,
				four + `:6: error: pools[2].name: "wan_1" must be a DNS-1123 label (lower-case letters, digits and '-')`,
				four + `:9: error: nodeAgent.leaseDuration: 3 has no unit: write 3s (or ms, m, h)`,
			},
		},
		{
			name: "validate names an unknown field", args: []string{"validate", unknown},
			wantStatus: 1, wantStderr: []string{
				unknown + ":2: error: pools[0].addresses: required: at least one IP, CIDR or FIRST-LAST range",
				unknown + ":3: error: pools[0].adresses: unknown field; did you mean addresses?",
			},
		},
		{
			name: "warnings do not fail validation", args: []string{"validate", noPools},
			wantStdout: []string{noPools + ": ok, with 1 warning(s)"},
			wantStderr: []string{noPools + ":1: warning: pools: no pools: the CCM hands out no addresses, so LoadBalancer Services stay pending"},
		},
		{
			name: "warnings fail --strict with status 3", args: []string{"validate", "--strict", noPools, good},
			wantStatus: 3, stdoutHas: []string{noPools + ": ok, with 1 warning(s)", good + ": ok"},
		},
		{
			name: "errors outrank warnings", args: []string{"validate", "--strict", noPools, bad},
			wantStatus: 1,
		},
		{
			name: "an empty file is invalid", args: []string{"validate", empty},
			wantStatus: 1, wantStderr: []string{empty + ": error: the file is empty or holds only comments; a cloud-config needs at least one pool (see docs/configuration.md)"},
		},
		{
			name: "validate reads standard input", args: []string{"validate", "-"}, stdin: goodYAML,
			wantStdout: []string{"<stdin>: ok"},
		},
		{
			name: "validate a ConfigMap through its cloud-config key, lines of the manifest", args: []string{"validate", cm},
			wantStatus: 1,
			wantStderr: []string{cm + ":11: error: pools[0].addresses[0]: 127.0.0.0/30 includes 127.0.0.0/8 (loopback); a pool needs unicast addresses that other hosts can reach"},
		},
		{
			name: "a valid ConfigMap from standard input", args: []string{"validate", "-"}, stdin: mustRead(t, cmGood),
			wantStdout: []string{"<stdin> (ConfigMap c, data.x.yaml): ok"},
		},
		{
			name: "a ConfigMap without a cloud-config", args: []string{"validate", cmNone},
			wantStatus: 1, stderrHas: []string{`ConfigMap "c": none of its data keys (a, c) holds a cloud-config`},
		},
		{
			name: "another kind of manifest", args: []string{"validate", deployment},
			wantStatus: 1, stderrHas: []string{"line 1: a Deployment manifest; validate takes a cloud-config or a ConfigMap holding one"},
		},
		{
			name: "validate missing file", args: []string{"validate", filepath.Join(dir, "nope.yaml")},
			wantStatus: 2, stderrHas: []string{"no such file or directory"},
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
			name: "convert to a file", args: []string{"convert", "-o", outFile, filepath.Join(metallbDir, "crd-layer2.yaml")},
			stderrHas: []string{"Wrote " + outFile},
		},
		{
			name: "converted file validates", args: []string{"validate", outFile},
			wantStdout: []string{outFile + ": ok"},
		},
		{
			name: "convert writes the namespace placeholder", args: []string{"convert", "--output", placeholderOut, filepath.Join(metallbDir, "crd-bgp.yaml")},
			stderrHas: []string{"Wrote " + placeholderOut, `BGPPeer "spine-vrf": skipped`, `the placeholder "replace-with-namespaces"`},
		},
		{
			name: "validate says what to replace the placeholder with", args: []string{"validate", placeholderOut},
			wantStatus: 1,
			stderrHas:  []string{"error: pools[2].namespaces[0]: \"replace-with-namespaces\" is the placeholder `baremetal-config convert` writes for MetalLB's namespaceSelectors: replace it with the names of the namespaces those selectors matched"},
		},
		{
			name: "convert refuses what does not validate",
			args: []string{"convert", "-"}, stdin: "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/24]}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b}\nspec: {addresses: [192.0.2.128/25]}\n",
			wantStatus: 1, stderrHas: []string{"overlaps", "The rejected output was:"},
		},
		{name: "convert needs an input", args: []string{"convert"}, wantStatus: 2},
		{name: "convert bad flag", args: []string{"convert", "-x", "f"}, wantStatus: 2, stderrHas: []string{"unknown shorthand flag: 'x'"}},
		{name: "convert missing input", args: []string{"convert", filepath.Join(dir, "nope.yaml")}, wantStatus: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := run(tt.args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d\nstdout:\n%s\nstderr:\n%s", status, tt.wantStatus, stdout.String(), stderr.String())
			}
			wantLines(t, "stdout", stdout.String(), tt.wantStdout)
			wantLines(t, "stderr", stderr.String(), tt.wantStderr)
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

func wantLines(t *testing.T, stream, got string, want []string) {
	t.Helper()
	if want == nil {
		return
	}
	if strings.TrimSuffix(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n%s\nwant:\n%s", stream, got, strings.Join(want, "\n"))
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}
