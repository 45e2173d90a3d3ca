package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/deploy"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// The binaries run with the identities of deploy/base, not as admin, so
// that every test also proves the manifests' RBAC is enough for what it
// exercises. The names are those of deploy/base/*-rbac.yaml.
const (
	ccmNamespace   = "kube-system"
	ccmAccount     = "baremetal-cloud-controller-manager"
	agentNamespace = "baremetal-system"
	agentAccount   = "baremetal-node-agent"
)

// rbacApplied records the clusters that have deploy/base's RBAC already.
var rbacApplied sync.Map // *lab.Cluster → *sync.Once

// applyRBAC server-side applies the Namespace, ServiceAccounts and RBAC of
// deploy/base to c, once per cluster. (The lab has no kubelet: the
// Deployment and DaemonSet are replaced by processes.)
func applyRBAC(t testing.TB, c *lab.Cluster) {
	t.Helper()
	once, _ := rbacApplied.LoadOrStore(c, new(sync.Once))
	var err error
	once.(*sync.Once).Do(func() {
		var root string
		if root, err = lab.RepoRoot(); err != nil {
			return
		}
		objs, rerr := deploy.Read(filepath.Join(root, "deploy", "base"))
		if rerr != nil {
			err = rerr
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = deploy.Apply(ctx, c.RestConfig, objs, deploy.ApplyOptions{FieldManager: "baremetal-e2e", Kinds: deploy.IdentityKinds})
	})
	if err != nil {
		rbacApplied.Delete(c)
		t.Fatalf("applying the RBAC of deploy/base: %v", err)
	}
}

// ccmKubeconfig is a kubeconfig for the CCM's ServiceAccount, for processes
// in the root namespace.
func ccmKubeconfig(t testing.TB, c *lab.Cluster) string {
	t.Helper()
	applyRBAC(t, c)
	kc, err := c.ServiceAccountKubeconfig(t.Context(), ccmNamespace, ccmAccount)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// agentKubeconfig is a kubeconfig for the agents' ServiceAccount, for an
// agent inside h's namespace.
func agentKubeconfig(t testing.TB, c *lab.Cluster, h *lab.Host) string {
	t.Helper()
	applyRBAC(t, c)
	kc, err := c.ServiceAccountKubeconfigIn(t.Context(), h, agentNamespace, agentAccount)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// checkNotForbidden fails t, when it ends, for every line of p's log that
// says the API server refused a request: the manifests' RBAC is missing a
// rule that the program needs. Call it right after starting p.
func checkNotForbidden(t testing.TB, name string, p *lab.Process) {
	t.Helper()
	t.Cleanup(func() {
		for _, line := range strings.Split(p.Logs(), "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("%s was refused by RBAC (deploy/base/*-rbac.yaml lacks a rule): %s", name, line)
			}
		}
	})
}
