//go:build lab

// The install paths against a real API server: server-side apply, then the
// real binaries running with the ServiceAccounts they create, proving the
// RBAC is enough. Needs root, the lab (see test/lab) and make deps (helm and
// kubectl); run with
//
//	go test -tags lab -run TestManifestsInLab ./deploy
package deploy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// installPath is one documented way to install: the objects it creates and
// the namespaces of the CCM and the agents in them.
type installPath struct {
	name           string
	objects        func(t *testing.T) []*unstructured.Unstructured
	ccmNS, agentNS string
}

// TestManifestsInLab installs each documented way in turn (the kustomize
// base, a copy of the example overlay as docs/install.md makes it offline,
// the Helm chart with its namespaces changed) into its own lab cluster with
// server-side apply, then runs the real binaries with the ServiceAccounts
// that install created: a Service gets its address and is announced, the
// node is initialised, the CCM's secure port answers, and nothing is
// refused by RBAC.
func TestManifestsInLab(t *testing.T) {
	bins, err := lab.BuildBinaries(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	paths := []installPath{
		{name: "base", ccmNS: "kube-system", agentNS: agentNS, objects: func(t *testing.T) []*unstructured.Unstructured {
			objs, err := Read("base")
			if err != nil {
				t.Fatal(err)
			}
			return objs
		}},
		{name: "copied-overlay", ccmNS: "kube-system", agentNS: agentNS, objects: func(t *testing.T) []*unstructured.Unstructured {
			tool(t, "kubectl")
			objs, err := Render(offlineCopy(t, "overlays/example"))
			if err != nil {
				t.Fatal(err)
			}
			return objs
		}},
		{name: "helm-chart", ccmNS: "baremetal-ccm", agentNS: "lb-agents", objects: func(t *testing.T) []*unstructured.Unstructured {
			tool(t, "helm")
			objs, err := RenderChart(chartDir, "baremetal", "baremetal-ccm",
				"--set", "ccm.namespace=baremetal-ccm", "--set", "agent.namespace=lb-agents",
				"--set", "bgpPasswords.passwords.tor-a=change-me")
			if err != nil {
				t.Fatal(err)
			}
			// Helm does not create the release namespace; `helm install
			// --create-namespace` would.
			ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace"}}
			ns.SetName("baremetal-ccm")
			return append([]*unstructured.Unstructured{ns}, objs...)
		}},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) { testInstallPath(t, bins, p) })
	}
}

func testInstallPath(t *testing.T, bins *lab.Binaries, p installPath) {
	ctx := context.Background()
	objs := p.objects(t)
	env := lab.NewTestEnv(t)
	c, err := env.StartCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	summary, err := Apply(ctx, c.RestConfig, namespacesFirst(objs), ApplyOptions{FieldManager: "deploy-test"})
	if err != nil {
		t.Fatalf("applying the %s install: %v", p.name, err)
	}
	t.Logf("applied %s: %s", p.name, summary)

	// The binaries read a lab cloud-config (a pool on the lab's segment);
	// what is under test here is the identity and RBAC the install created.
	cloudConfig := "base/cloud-config.yaml"
	ccmConfig, err := c.ServiceAccountKubeconfig(ctx, p.ccmNS, ccmName)
	if err != nil {
		t.Fatal(err)
	}
	ccmArgs := []string{"--kubeconfig=" + ccmConfig, "--authentication-kubeconfig=" + ccmConfig, "--authorization-kubeconfig=" + ccmConfig,
		"--cloud-config=" + cloudConfig, "--leader-elect=true",
		"--bind-address=127.0.0.1", "--secure-port=21258", "-v=2"}
	ccmArgs = append(ccmArgs, containerArgs(t, objs, "Deployment", "--leader-elect-resource-namespace")...)
	ccm, err := env.StartProcess("", "ccm", append([]string{bins.Path("baremetal-cloud-controller-manager")}, ccmArgs...)...)
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
	agentConfig, err := c.ServiceAccountKubeconfigIn(ctx, node, p.agentNS, agentName)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := node.Start("agent", bins.Path("baremetal-node-agent"), "--kubeconfig="+agentConfig,
		"--node-name=n1", "--namespace="+p.agentNS, "--cloud-config="+cloudConfig,
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
	// docs/install.md, "Nodes initialised before the CCM": a Node registered
	// without the uninitialized taint is left alone until the taint is put
	// back, then initialised.
	if err := c.CreateNode(ctx, "n2", []netip.Addr{netip.MustParseAddr("192.0.2.12")}, nil, false); err != nil {
		t.Fatal(err)
	}
	taint := `{"spec":{"taints":[{"key":"node.cloudprovider.kubernetes.io/uninitialized","value":"true","effect":"NoSchedule"}]}}`
	if _, err := c.Client.CoreV1().Nodes().Patch(ctx, "n2", types.StrategicMergePatchType, []byte(taint), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the re-tainted node is initialised", func() error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, "n2", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Spec.ProviderID != "baremetal://n2" || len(n.Spec.Taints) != 0 {
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
	if _, err := c.Client.CoordinationV1().Leases(p.agentNS).Get(ctx, "baremetal-agent-n1", metav1.GetOptions{}); err != nil {
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

// namespacesFirst orders objs so that Namespaces are applied before the
// objects in them (helm template sorts by its own install order, which has
// them first too; kustomize keeps file order).
func namespacesFirst(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := slices.Clone(objs)
	slices.SortStableFunc(out, func(a, b *unstructured.Unstructured) int {
		rank := func(o *unstructured.Unstructured) int {
			if o.GetKind() == "Namespace" {
				return 0
			}
			return 1
		}
		return cmp.Compare(rank(a), rank(b))
	})
	return out
}

// containerArgs returns the arguments named flag (any of them) of the first
// container of the install's kind object, so the lab runs the binaries with
// the flags an install adds for its layout.
func containerArgs(t *testing.T, objs []*unstructured.Unstructured, kind string, flags ...string) []string {
	t.Helper()
	var out []string
	for _, o := range objs {
		if o.GetKind() != kind {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		if len(containers) == 0 {
			t.Fatalf("%s %s has no containers", kind, describe(o))
		}
		args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		for _, a := range args {
			for _, f := range flags {
				if strings.HasPrefix(a, f+"=") {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := lab.Eventually(context.Background(), 90*time.Second, 500*time.Millisecond, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
