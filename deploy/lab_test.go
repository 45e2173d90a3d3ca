//go:build lab

// The manifests against a real API server: server-side apply, then the real
// binaries running with the manifests' ServiceAccounts, proving the RBAC is
// enough. Needs root and the lab (see test/lab); run with
//
//	go test -tags lab -run TestManifestsInLab ./deploy
package deploy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

func TestManifestsInLab(t *testing.T) {
	ctx := context.Background()
	env := lab.NewTestEnv(t)
	c, err := env.StartCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bins, err := lab.BuildBinaries(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	// The base for real (it creates the agents' namespace), the overlay as a
	// server-side dry run on top.
	apply(t, c, "base", false)
	apply(t, c, "overlays/example", true)

	ccmConfig, err := c.ServiceAccountKubeconfig(ctx, "kube-system", ccmName)
	if err != nil {
		t.Fatal(err)
	}
	ccm, err := env.StartProcess("", "ccm", bins.Path("baremetal-cloud-controller-manager"),
		"--kubeconfig="+ccmConfig, "--authentication-kubeconfig="+ccmConfig, "--authorization-kubeconfig="+ccmConfig,
		"--cloud-config=base/cloud-config.yaml", "--leader-elect=true",
		"--bind-address=127.0.0.1", "--secure-port=21258", "-v=2")
	if err != nil {
		t.Fatal(err)
	}

	lan, err := env.NewSegment("deploylan")
	if err != nil {
		t.Fatal(err)
	}
	node, err := lan.NewHost("n1", netip.MustParsePrefix("192.0.2.11/24"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNode(ctx, "n1", []netip.Addr{netip.MustParseAddr("192.0.2.11")}, nil, true); err != nil {
		t.Fatal(err)
	}
	agentConfig, err := c.ServiceAccountKubeconfigIn(ctx, node, agentNS, agentName)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := node.Start("agent", bins.Path("baremetal-node-agent"), "--kubeconfig="+agentConfig,
		"--node-name=n1", "--namespace="+agentNS, "--cloud-config=base/cloud-config.yaml",
		"--metrics-bind-address=127.0.0.1:19101", "--health-bind-address=127.0.0.1:19102", "-v=2")
	if err != nil {
		t.Fatal(err)
	}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if _, err := c.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node is initialised", func() error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Spec.ProviderID != "baremetal://n1" || len(n.Spec.Taints) != 0 {
			return fmt.Errorf("providerID %q, taints %v", n.Spec.ProviderID, n.Spec.Taints)
		}
		return nil
	})
	eventually(t, "the Service gets an address and the agent announces it", func() error {
		s, err := c.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) != 1 || s.Status.LoadBalancer.Ingress[0].IP != "192.0.2.240" {
			return fmt.Errorf("ingress %v", s.Status.LoadBalancer.Ingress)
		}
		evs, err := c.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "reason=Announcing"})
		if err != nil {
			return err
		}
		if len(evs.Items) == 0 {
			return errors.New("no Announcing event")
		}
		return nil
	})
	if _, err := c.Client.CoordinationV1().Leases(agentNS).Get(ctx, "baremetal-agent-n1", metav1.GetOptions{}); err != nil {
		t.Errorf("agent Lease: %v", err)
	}
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	eventually(t, "the CCM's /healthz answers on the secure port", func() error {
		resp, err := insecure.Get("https://127.0.0.1:21258/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	// Deletion removes the finalizer, which the CCM can only write through
	// services/status.
	if err := c.Client.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted Service is gone", func() error {
		_, err := c.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	for name, p := range map[string]*lab.Process{"CCM": ccm, "agent": agent} {
		for _, line := range strings.Split(p.Logs(), "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("%s was refused by RBAC: %s", name, line)
			}
		}
	}
}

// apply server-side applies dir's objects as the admin, in file order (the
// Namespace comes first), optionally as a dry run.
func apply(t *testing.T, c *lab.Cluster, dir string, dryRun bool) {
	t.Helper()
	objs, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	summary, err := Apply(context.Background(), c.RestConfig, objs, ApplyOptions{FieldManager: "deploy-test", DryRun: dryRun})
	if err != nil {
		t.Fatalf("applying %s: %v", dir, err)
	}
	t.Logf("applied %s (dry run %t): %s", dir, dryRun, summary)
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := lab.Eventually(context.Background(), 90*time.Second, 500*time.Millisecond, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
