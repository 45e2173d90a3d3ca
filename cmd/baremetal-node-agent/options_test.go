package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	logsapi "k8s.io/component-base/logs/api/v1"
)

// TestCommandLine parses real command lines with the agent's own command and
// checks what the agent would be started with.
func TestCommandLine(t *testing.T) {
	t.Setenv("NODE_NAME", "from-env")
	defaults := options{
		nodeName: "from-env", namespace: "baremetal-system", metricsAddr: ":9101", healthAddr: ":9102",
		reloadInterval: 10 * time.Second, heartbeatPort: 7474,
	}
	tests := []struct {
		name    string
		args    []string
		want    *options // nil: the agent must not start
		wantErr string
	}{
		{name: "defaults", args: nil, want: &defaults},
		{
			name: "every agent flag, as deploy/ and the lab pass them",
			args: []string{
				"--kubeconfig=/k", "--node-name", "n1", "--cloud-config=/etc/baremetal/cloud-config.yaml",
				"--namespace=kube-system", "--metrics-bind-address=127.0.0.1:1", "--health-bind-address=0",
				"--heartbeat-port=0", "--config-reload-interval=1m", "-v=2",
			},
			want: &options{
				kubeconfig: "/k", nodeName: "n1", cloudConfig: "/etc/baremetal/cloud-config.yaml", namespace: "kube-system",
				metricsAddr: "127.0.0.1:1", healthAddr: "0", heartbeatPort: 0, reloadInterval: time.Minute,
			},
		},
		{name: "klog's --v spelling", args: []string{"--v=4", "--vmodule=agent=5"}, want: &defaults},
		{name: "json logs", args: []string{"--logging-format=json"}, want: &defaults},
		{name: "text logs", args: []string{"--logging-format=text", "--log-flush-frequency=2s"}, want: &defaults},
		{name: "unknown log format", args: []string{"--logging-format=xml"}, wantErr: `format: Invalid value: "xml": Unsupported log format`},
		{name: "unknown flag", args: []string{"--bind-vips"}, wantErr: "unknown flag: --bind-vips"},
		{name: "bad duration", args: []string{"--config-reload-interval=10"}, wantErr: `invalid argument "10" for "--config-reload-interval"`},
		{name: "arguments", args: []string{"extra"}, wantErr: `does not take arguments, got ["extra"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(func() {
				if err := logsapi.ResetForTest(nil); err != nil {
					t.Error(err)
				}
			})
			var got *options
			cmd := newCommand(func(o options) error {
				got = &o
				return nil
			})
			cmd.SetArgs(tt.args)
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if got != nil {
					t.Fatal("the agent started on a bad command line")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || *got != *tt.want {
				t.Errorf("options = %+v\nwant      %+v", got, tt.want)
			}
		})
	}
}

// TestBinary runs the built binary: --version, --help and the exit status of
// a start that fails, with JSON logs.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "baremetal-node-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantOut    []string
	}{
		{name: "version", args: []string{"--version"}, wantOut: []string{"baremetal-node-agent v"}},
		{name: "raw version", args: []string{"--version=raw"}, wantOut: []string{"GitVersion:", "GoVersion:"}},
		{
			name: "help lists every flag", args: []string{"--help"},
			wantOut: []string{
				"--kubeconfig", "--node-name", "--cloud-config", "--namespace string", `(default "baremetal-system")`,
				"--metrics-bind-address", "--health-bind-address", "--heartbeat-port", "--config-reload-interval",
				"--logging-format", "-v, --v Level", "--vmodule", "--version",
			},
		},
		{
			name: "json logs of a failed start", args: []string{"--logging-format=json", "--cloud-config=/nonexistent/cloud-config.yaml"},
			wantStatus: 1, wantOut: []string{`"msg":"command failed"`, `"err":"reading cloud-config: open /nonexistent/cloud-config.yaml: no such file or directory"`},
		},
		{name: "missing cloud-config", args: []string{"--node-name=n1"}, wantStatus: 1, wantOut: []string{"--cloud-config is required"}},
		{name: "unknown flag", args: []string{"--nope"}, wantStatus: 1, wantOut: []string{"unknown flag: --nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(bin, tt.args...).CombinedOutput()
			status := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				status = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tt.wantStatus {
				t.Errorf("exit status %d, want %d\n%s", status, tt.wantStatus, out)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
