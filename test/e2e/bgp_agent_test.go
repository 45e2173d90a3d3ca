package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// The BGP lab with the real programs: a kube-apiserver, the CCM handing out
// addresses from a bgp pool, and baremetal-node-agent on three nodes whose
// embedded speakers peer with the FRR router.
const bgpAgentCloudConfig = `pools:
  - name: bgp
    addresses: [192.0.2.64/28]
    mode: bgp
    bgp:
      communities: ["65000:100", "65000:1:2"]
      localPref: 250
bgp:
  asn: 64512
  peers:
    - name: tor
      address: 198.51.100.1
      asn: 64512
      holdTime: 9s
      keepaliveTime: 3s
nodeAgent:
  leaseDuration: 3s
  renewInterval: 1s
`

type bgpAgentLab struct {
	*bgpLab
	c     *lab.Cluster
	nodes []*node
	proxy *lab.ServiceProxy // the lab's kube-proxy (nothing is bound to a node)
}

func newBGPAgentLab(t *testing.T) *bgpAgentLab {
	t.Helper()
	return newBGPAgentLabConf(t, bgpAgentCloudConfig)
}

// newBGPAgentLabConf is newBGPAgentLab with the cloud-config given.
func newBGPAgentLabConf(t *testing.T, cloudConfig string) *bgpAgentLab {
	t.Helper()
	return newBGPAgentLabSpec(t, bgpAgentLabSpec{cloudConfig: cloudConfig})
}

// bgpAgentLabSpec shapes an agent lab.
type bgpAgentLabSpec struct {
	cloudConfig string
	routerConf  string              // frrConf() when empty
	nodeLabels  []map[string]string // one per node; three unlabelled nodes when nil
	// beforeNodes, if set, runs once the router is up, before the nodes
	// and their agents start (e.g. to add a second router).
	beforeNodes func(l *bgpAgentLab)
}

func newBGPAgentLabSpec(t *testing.T, spec bgpAgentLabSpec) *bgpAgentLab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if spec.routerConf == "" {
		spec.routerConf = frrConf()
	}
	if spec.nodeLabels == nil {
		spec.nodeLabels = make([]map[string]string, 3)
	}
	l := &bgpAgentLab{bgpLab: newBGPLabConf(t, spec.routerConf), c: startCluster(t)}
	cfg := filepath.Join(l.dir, "cloud-config.yaml")
	if err := os.WriteFile(cfg, []byte(spec.cloudConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	if spec.beforeNodes != nil {
		spec.beforeNodes(l)
	}
	for i, labels := range spec.nodeLabels {
		n := l.addNode(t, fmt.Sprintf("n%d", i+1), byte(11+i), "")
		if err := l.c.CreateNode(ctx, n.name, []netip.Addr{n.addr4, n.addr6}, labels, false); err != nil {
			t.Fatal(err)
		}
		n.config = cfg
		n.kubeconfig = agentKubeconfig(t, l.c, n.host)
		l.startAgent(t, n)
		l.nodes = append(l.nodes, n)
	}
	var hosts []*lab.Host
	for _, n := range l.nodes {
		hosts = append(hosts, n.host)
	}
	l.proxy = lab.StartServiceProxy(t, l.c.Client, hosts...)
	ccm := lab.StartProcess(t, t.TempDir(), "ccm", bins.Path("baremetal-cloud-controller-manager"),
		"--cloud-provider=baremetal", "--cloud-config", cfg, "--kubeconfig", ccmKubeconfig(t, l.c),
		"--leader-elect=false", "--secure-port=0", "--controllers=service", "-v=2")
	checkNotForbidden(t, l.c, "the CCM", ccm)
	return l
}

// startAgent starts (or restarts) n's baremetal-node-agent.
func (l *bgpAgentLab) startAgent(t *testing.T, n *node) {
	t.Helper()
	p, err := n.host.Start("agent", bins.Path("baremetal-node-agent"),
		"--kubeconfig", n.kubeconfig, "--node-name", n.name, "--cloud-config", n.config,
		"--namespace", agentNamespace, "--metrics-bind-address", ":9101", "--health-bind-address", ":9102",
		"-v="+agentVerbosity())
	if err != nil {
		t.Fatal(err)
	}
	checkNotForbidden(t, l.c, n.name+"'s agent", p)
	n.speaker = p
}

func (l *bgpAgentLab) createService(t *testing.T, name string, local bool) netip.Prefix {
	t.Helper()
	svc := lbSvc("default", name)
	if local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	createSvc(t, l.c.Client, svc)
	var ip netip.Addr
	err := lab.Eventually(t.Context(), 30*time.Second, 50*time.Millisecond, func() error {
		s, err := l.c.Client.CoreV1().Services("default").Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("service %s has no address yet", name)
		}
		ip, err = netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.proxy.WaitFor(t.Context(), ip, 80, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return netip.PrefixFrom(ip, 32)
}

// setEndpoints gives the Service one ready endpoint on each named node.
func (l *bgpAgentLab) setEndpoints(t *testing.T, svc string, nodes ...*node) {
	t.Helper()
	counts := map[*node]int{}
	for _, n := range nodes {
		counts[n]++
	}
	l.setEndpointCounts(t, svc, counts)
}

// setEndpointCounts gives the Service as many ready endpoints on each node
// as counts says (their addresses stand for pods; only the count matters).
func (l *bgpAgentLab) setEndpointCounts(t *testing.T, svc string, counts map[*node]int) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-lab",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(80)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, n := range l.nodes {
		for i := range counts[n] {
			addr := n.addr4.String()
			if i > 0 {
				addr = fmt.Sprintf("10.244.%d.%d", n.addr4.As4()[3], i)
			}
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{addr},
				NodeName:   ptr.To(n.name),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			})
		}
	}
	api := l.c.Client.DiscoveryV1().EndpointSlices("default")
	old, err := api.Get(t.Context(), es.Name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = old.ResourceVersion
		_, err = api.Update(t.Context(), es, metav1.UpdateOptions{})
	} else {
		_, err = api.Create(t.Context(), es, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestBGPAgent runs the real CCM and agents: a Service's address from a
// bgp pool reaches FRR from every node, an agent stopping withdraws its
// path before closing its session, deleting the Service withdraws it, and
// ETP=Local follows the endpoints.
func TestBGPAgent(t *testing.T) {
	l := newBGPAgentLab(t)
	n1, n2, n3 := l.nodes[0], l.nodes[1], l.nodes[2]

	t.Run("ETP=Cluster: three ECMP next hops with the pool's attributes", func(t *testing.T) {
		vip := l.createService(t, "web", false)
		if err := l.waitNextHops(vip, 30*time.Second, n1.addr4, n2.addr4, n3.addr4); err != nil {
			t.Fatal(err)
		}
		paths, err := l.bgpPaths(vip)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if p.LocPrf == nil || *p.LocPrf != 250 || p.Community == nil || p.Community.String != "65000:100" ||
				p.LargeCommunity == nil || p.LargeCommunity.String != "65000:1:2" {
				t.Errorf("path from %s: local-pref %v, communities %+v, large %+v; want 250, 65000:100, 65000:1:2",
					p.Peer.PeerID, p.LocPrf, p.Community, p.LargeCommunity)
			}
		}
		out, err := l.curl("http://" + vip.Addr().String() + "/")
		if err != nil || !slices.Contains([]string{"n1", "n2", "n3"}, out) {
			t.Errorf("curl %s from the client: %q, %v; want a node name", vip.Addr(), out, err)
		}
		// DESIGN decision 6: no node holds the VIP, so a host service
		// listening on every address (the agent's metrics on :9101) is
		// not reachable through it; only the Service's port is.
		for _, n := range l.nodes {
			if got, err := n.host.AddrsIn(netip.MustParsePrefix("192.0.2.64/28")); err != nil || len(got) != 0 {
				t.Errorf("node %s holds %v (%v) in the pool; want nothing bound", n.name, got, err)
			}
			if out, err := n.host.Exec(t.Context(), "ip", "-br", "link", "show", "dev", "kube-lb0"); err == nil {
				t.Errorf("node %s has kube-lb0: %s", n.name, out)
			}
		}
		if out, err := l.curl("http://" + vip.Addr().String() + ":9101/metrics"); err == nil {
			t.Errorf("the agent's metrics port answered through the VIP %s: %.80q", vip.Addr(), out)
		}

		// SIGTERM: the agent withdraws before its session closes.
		if err := n1.speaker.Stop(10 * time.Second); err != nil {
			t.Fatalf("stopping n1's agent: %v", err)
		}
		if err := l.waitNextHops(vip, 10*time.Second, n2.addr4, n3.addr4); err != nil {
			t.Fatal(err)
		}
		logs := l.router.BGPd.Logs()
		withdrawn := lastLineIndex(logs, n1.addr4.String(), vip.String(), "withdrawn")
		notification := lastLineIndex(logs, n1.addr4.String(), "NOTIFICATION")
		if withdrawn < 0 || notification < 0 || withdrawn > notification {
			t.Errorf("bgpd log: withdrawal at %d, notification at %d; want the withdrawal first:\n%s", withdrawn, notification, tail(logs, 40))
		}

		if err := l.c.Client.CoreV1().Services("default").Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := l.waitNextHops(vip, 30*time.Second); err != nil {
			t.Errorf("after deleting the Service: %v", err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("ETP=Local: one next hop that follows the endpoint", func(t *testing.T) {
		l.setEndpoints(t, "local", n2)
		vip := l.createService(t, "local", true)
		if err := l.waitNextHops(vip, 30*time.Second, n2.addr4); err != nil {
			t.Fatal(err)
		}
		if out, err := l.curl("http://" + vip.Addr().String() + "/"); err != nil || out != "n2" {
			t.Errorf("curl %s: %q, %v; want n2", vip.Addr(), out, err)
		}
		l.setEndpoints(t, "local", n3)
		if err := l.waitNextHops(vip, 30*time.Second, n3.addr4); err != nil {
			t.Fatal(err)
		}
		if out, err := l.curl("http://" + vip.Addr().String() + "/"); err != nil || out != "n3" {
			t.Errorf("curl %s: %q, %v; want n3", vip.Addr(), out, err)
		}
	})
}
