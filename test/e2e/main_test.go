// Package e2e runs the project's binaries against a real kube-apiserver and
// etcd, with nodes, clients and routers as network namespaces (see test/lab).
// It needs root and the tools hack/install-deps.sh installs; `make test-e2e`
// runs it.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// bins holds the project's programs and the lab's helpers, built once.
var bins *lab.Binaries

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if err := lab.Requirements(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	// Built (or found in the cache) before any test starts its clock.
	if _, err := lab.KubeAPIServer(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "baremetal-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if bins, err = lab.BuildBinaries(ctx, dir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	return m.Run()
}

// startCluster starts etcd and kube-apiserver for one test.
func startCluster(t *testing.T) *lab.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return lab.StartCluster(ctx, t)
}
