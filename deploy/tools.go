package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// HelmVersion is the helm that renders the chart in the tests and the
// doc-test, built with the kubectl it pins by hack/build-helm.sh (make deps)
// from the tools module hack/helm.
const HelmVersion = "v3.22.0"

// ToolPath returns the path of "helm" or "kubectl" as built by
// hack/build-helm.sh into $HOME/.cache/baremetal-lab/helm-VERSION. The
// cached build is preferred to one on PATH so that every machine renders
// with the same versions.
func ToolPath(name string) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(home, ".cache", "baremetal-lab", "helm-"+HelmVersion, name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil && name == "kubectl" {
		return p, nil
	}
	return "", fmt.Errorf("%s is not built: run `make deps` (or hack/build-helm.sh) to build helm %s and kubectl into %s",
		name, HelmVersion, filepath.Dir(p))
}
