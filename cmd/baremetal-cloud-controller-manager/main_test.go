package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// buildWithMake builds every binary the way a user does, with `make build`,
// into a temporary directory.
func buildWithMake(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	bin := t.TempDir()
	cmd := exec.Command("make", "-C", "../..", "build", "BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	return bin
}

// TestBinariesFromMake runs what `make build` produced: each binary names
// its own version stamped from git (not the framework's
// v0.0.0-master+$Format:%H$ placeholder), and the CCM's defaults hold
// through the real command line.
func TestBinariesFromMake(t *testing.T) {
	bin := buildWithMake(t)
	commit, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	head := strings.TrimSpace(string(commit))

	t.Run("version", func(t *testing.T) {
		for _, name := range []string{"baremetal-cloud-controller-manager", "baremetal-node-agent", "baremetal-config"} {
			out, err := exec.Command(filepath.Join(bin, name), "--version").CombinedOutput()
			if err != nil {
				t.Errorf("%s --version: %v\n%s", name, err, out)
				continue
			}
			got := strings.TrimSpace(string(out))
			if !strings.HasPrefix(got, name+" ") {
				t.Errorf("%s --version = %q, want it to start with the binary's name", name, got)
			}
			if strings.Contains(got, "master") || strings.Contains(got, "$Format") {
				t.Errorf("%s --version = %q: the unstamped placeholder", name, got)
			}
			if !strings.Contains(got, head) {
				t.Errorf("%s --version = %q, want the commit %s", name, got, head)
			}
		}
	})

	ccm := filepath.Join(bin, "baremetal-cloud-controller-manager")
	t.Run("help shows our defaults", func(t *testing.T) {
		out, err := exec.Command(ccm, "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("--help: %v\n%s", err, out)
		}
		for flag, want := range map[string]string{
			"configure-cloud-routes":   "default true", // must be absent: false is a bool's unshown default
			"concurrent-service-syncs": "(default " + itoa(defaultConcurrentServiceSyncs) + ")",
			"kube-api-qps":             "(default " + itoa(defaultKubeAPIQPS) + ")",
			"kube-api-burst":           "(default " + itoa(defaultKubeAPIBurst) + ")",
		} {
			line := flagLine(string(out), flag)
			if line == "" {
				t.Errorf("--help does not list --%s", flag)
				continue
			}
			if flag == "configure-cloud-routes" {
				if strings.Contains(line, want) {
					t.Errorf("--help: %q", line)
				}
			} else if !strings.Contains(line, want) {
				t.Errorf("--help: %q, want %q", line, want)
			}
		}
	})

	t.Run("effective value at run time", func(t *testing.T) {
		// The CCM logs every flag's value before it needs an API server;
		// with no kubeconfig it then exits.
		cmd := exec.Command(ccm, "--cloud-provider=baremetal", "-v=1", "--kubeconfig="+filepath.Join(t.TempDir(), "missing"))
		cmd.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST=", "KUBERNETES_SERVICE_PORT=")
		out, _ := cmd.CombinedOutput()
		logs := string(out)
		for _, want := range []string{
			`FLAG: --configure-cloud-routes="false"`,
			`FLAG: --concurrent-service-syncs="` + itoa(defaultConcurrentServiceSyncs) + `"`,
		} {
			if !strings.Contains(logs, want) {
				t.Errorf("start-up logs lack %s:\n%s", want, logs)
			}
		}
		if v := regexp.MustCompile(`Version: .*GitVersion:"([^"]*)"`).FindStringSubmatch(logs); v != nil && !strings.Contains(v[1], head) {
			t.Errorf("logged version %q lacks the commit %s", v[1], head)
		}
	})
}

func flagLine(help, flag string) string {
	for _, l := range strings.Split(help, "\n") {
		if strings.Contains(l, "--"+flag+" ") || strings.Contains(l, "--"+flag+"=") {
			return l
		}
	}
	return ""
}

func itoa(v int) string { return strconv.Itoa(v) }
