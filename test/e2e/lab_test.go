package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// These tests check the lab itself, so failures elsewhere can be trusted to
// be about the code under test.

func TestLabClusterCreatesNodes(t *testing.T) {
	start := time.Now()
	c := startCluster(t)
	t.Logf("cluster ready in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()

	addr := netip.MustParseAddr("192.0.2.11")
	if err := c.CreateNode(ctx, "n1", []netip.Addr{addr}, map[string]string{"rack": "r1"}, true); err != nil {
		t.Fatal(err)
	}
	n, err := c.Client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Labels["rack"]; got != "r1" {
		t.Errorf("label rack = %q, want r1", got)
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != lab.UninitializedTaint {
		t.Errorf("taints = %v, want only %s", n.Spec.Taints, lab.UninitializedTaint)
	}
	var ready bool
	for _, cond := range n.Status.Conditions {
		ready = ready || (cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue)
	}
	if !ready {
		t.Errorf("node conditions %v lack Ready=True", n.Status.Conditions)
	}
	if len(n.Status.Addresses) == 0 || n.Status.Addresses[0] != (corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.0.2.11"}) {
		t.Errorf("addresses = %v, want InternalIP 192.0.2.11 first", n.Status.Addresses)
	}

	// A service account kubeconfig authenticates as the service account, and
	// RBAC (not system:masters) applies to it.
	kc, err := c.ServiceAccountKubeconfig(ctx, "kube-system", "lab-smoke")
	if err != nil {
		t.Fatal(err)
	}
	out, err := whoAmI(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:kube-system:lab-smoke"; out != want {
		t.Errorf("service account kubeconfig authenticates as %q, want %q", out, want)
	}
}

func TestLabSegmentConnectsHosts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seg := lab.NewSegment(t, "lan")
	a := seg.AddHost("a", netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64"))
	b := seg.AddHost("b", netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64"))
	if len(a.MAC) != 6 || a.MAC.String() == b.MAC.String() {
		t.Fatalf("MACs %v and %v: want two distinct Ethernet addresses", a.MAC, b.MAC)
	}
	for _, dst := range []string{"192.0.2.2", "2001:db8::2"} {
		if out, err := a.Exec(ctx, "ping", "-c1", "-W2", dst); err != nil {
			t.Errorf("ping %s from a: %v\n%s", dst, err, out)
		}
	}

	if _, err := b.Start("echo", bins.Path("lab-echo"), "--name", "node-b", "--listen", ":80"); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{"http://192.0.2.2/", "http://[2001:db8::2]/"} {
		err := lab.Eventually(ctx, 10*time.Second, 100*time.Millisecond, func() error {
			out, err := a.Exec(ctx, "curl", "-sS", "--max-time", "2", url)
			if err != nil {
				return err
			}
			if string(out) != "node-b" {
				return fmt.Errorf("curl %s answered %q, want node-b", url, out)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}

	// A pulled cable: no answer while down, answers again once up.
	if err := b.SetLink(false); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Exec(ctx, "ping", "-c1", "-W1", "192.0.2.2"); err == nil {
		t.Errorf("ping 192.0.2.2 succeeded with b's link down:\n%s", out)
	}
	if err := b.SetLink(true); err != nil {
		t.Fatal(err)
	}
	err := lab.Eventually(ctx, 10*time.Second, 200*time.Millisecond, func() error {
		_, err := a.Exec(ctx, "ping", "-c1", "-W1", "192.0.2.2")
		return err
	})
	if err != nil {
		t.Errorf("b unreachable after link up: %v", err)
	}
}

func TestLabForwarderSurvivesAPIServerRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t)
	seg := lab.NewSegment(t, "lan")
	h := seg.AddHost("n1", netip.MustParsePrefix("192.0.2.11/24"))
	kc, err := c.KubeconfigIn(h)
	if err != nil {
		t.Fatal(err)
	}
	// The apiserver from inside the host namespace, through the forwarder.
	readyz := func() error {
		out, err := h.Exec(ctx, "curl", "-sS", "--max-time", "3", "--cacert", c.Dir+"/serving.crt",
			"-H", "Authorization: Bearer "+adminToken(t, kc), "https://127.0.0.1:6443/readyz")
		if err != nil {
			return err
		}
		if string(out) != "ok" {
			return fmt.Errorf("readyz answered %q", out)
		}
		return nil
	}
	if err := readyz(); err != nil {
		t.Fatalf("apiserver through the forwarder: %v", err)
	}
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := readyz(); err == nil {
		t.Fatal("readyz answered with the apiserver stopped")
	}
	start := time.Now()
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("apiserver restarted in %s", time.Since(start).Round(time.Millisecond))
	if err := readyz(); err != nil {
		t.Fatalf("apiserver through the forwarder after restart: %v", err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("root-namespace client after restart: %v", err)
	}
}

func TestLabFRRAnswersJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seg := lab.NewSegment(t, "lan")
	h := seg.AddHost("tor", netip.MustParsePrefix("198.51.100.1/24"))
	start := time.Now()
	r := lab.StartFRR(t, h, `frr defaults datacenter
hostname tor
log stdout
router bgp 64500
 bgp router-id 198.51.100.1
 no bgp ebgp-requires-policy
 neighbor 198.51.100.10 remote-as 64512
`)
	t.Logf("FRR ready in %s", time.Since(start).Round(time.Millisecond))
	var sum struct {
		IPv4Unicast struct {
			RouterID string `json:"routerId"`
			AS       int    `json:"as"`
			Peers    map[string]struct {
				RemoteAS int    `json:"remoteAs"`
				State    string `json:"state"`
			} `json:"peers"`
		} `json:"ipv4Unicast"`
	}
	if err := r.VtyshJSON(ctx, "show bgp summary json", &sum); err != nil {
		t.Fatal(err)
	}
	if sum.IPv4Unicast.RouterID != "198.51.100.1" || sum.IPv4Unicast.AS != 64500 {
		t.Errorf("router id %q AS %d, want 198.51.100.1 AS 64500", sum.IPv4Unicast.RouterID, sum.IPv4Unicast.AS)
	}
	p, ok := sum.IPv4Unicast.Peers["198.51.100.10"]
	if !ok || p.RemoteAS != 64512 || p.State == "Established" {
		t.Errorf("peer 198.51.100.10 = %+v (present %v), want remote AS 64512 and not established", p, ok)
	}
	r.Stop()
	if _, err := r.Vtysh(ctx, "show bgp summary json"); err == nil {
		t.Error("vtysh still answers after Stop")
	}
}

// whoAmI asks the apiserver who a kubeconfig authenticates as.
func whoAmI(ctx context.Context, kubeconfig string) (string, error) {
	client, err := lab.ClientFromKubeconfig(kubeconfig)
	if err != nil {
		return "", err
	}
	r, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return r.Status.UserInfo.Username, nil
}

func adminToken(t *testing.T, kubeconfig string) string {
	t.Helper()
	cfg, err := lab.RestConfigFromKubeconfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.Host, "https://127.0.0.1:6443") {
		t.Fatalf("kubeconfig for the host points at %s, want https://127.0.0.1:6443", cfg.Host)
	}
	return cfg.BearerToken
}

// TestLabServiceProxy checks the lab's stand-in for kube-proxy on this
// kernel: a node takes a LoadBalancer Service's address on the Service's
// ports only, holds no address for it and does not answer ARP/NDP for it,
// and the rules go when the Service does.
func TestLabServiceProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t)
	seg := lab.NewSegment(t, "lan")
	node := seg.AddHost("node-1", netip.MustParsePrefix("192.0.2.11/24"), netip.MustParsePrefix("2001:db8::11/64"))
	client := seg.AddHost("client", netip.MustParsePrefix("192.0.2.100/24"), netip.MustParsePrefix("2001:db8::100/64"))
	for _, listen := range []string{":80", ":2222"} {
		if _, err := node.Start("echo"+listen[1:], bins.Path("lab-echo"), "--name", "node-1", "--listen", listen); err != nil {
			t.Fatal(err)
		}
	}
	proxy := lab.StartServiceProxy(t, c.Client, node)
	vips := []netip.Addr{netip.MustParseAddr("192.0.2.200"), netip.MustParseAddr("2001:db8::200")}
	for _, vip := range vips {
		// The client reaches the VIP at the node's MAC, as if an agent
		// had answered its ARP/NDP.
		if out, err := client.Exec(ctx, "ip", "neigh", "replace", vip.String(), "lladdr", node.MAC.String(), "dev", "eth0", "nud", "permanent"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "proxied"},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			IPFamilies:     []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack),
			Ports:          []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	created, err := c.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: vips[0].String()}, {IP: vips[1].String()}}
	if _, err := c.Client.CoreV1().Services("default").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, vip := range vips {
		if err := proxy.WaitFor(ctx, vip, 80, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	for _, vip := range vips {
		if local, err := node.RouteGetLocal(ctx, vip, 80); err != nil || !local {
			t.Errorf("ip route get %s ipproto tcp dport 80: local %t, %v; want local", vip, local, err)
		}
		if local, err := node.RouteGetLocal(ctx, vip, 2222); err != nil || local {
			t.Errorf("ip route get %s ipproto tcp dport 2222: local %t, %v; want not local", vip, local, err)
		}
		host := vip.String()
		if vip.Is6() {
			host = "[" + host + "]"
		}
		if out, err := client.Exec(ctx, "curl", "-sS", "--max-time", "3", "http://"+host+"/"); err != nil || string(out) != "node-1" {
			t.Errorf("curl %s:80 from the client: %q, %v; want node-1", host, out, err)
		}
		if out, err := client.Exec(ctx, "curl", "-sS", "--max-time", "2", "http://"+host+":2222/"); err == nil {
			t.Errorf("curl %s:2222 from the client answered %q: a port the Service does not have reached the node", host, out)
		}
	}
	if out, err := node.Exec(ctx, "ip", "-j", "addr"); err != nil || strings.Contains(string(out), "192.0.2.200") || strings.Contains(string(out), "2001:db8::200") {
		t.Errorf("the node holds a VIP on an interface (%v):\n%s", err, out)
	}
	if out, _ := client.Exec(ctx, "arping", "-c", "2", "-w", "2", "-i", "eth0", vips[0].String()); strings.Contains(string(out), "bytes from") {
		t.Errorf("the node's kernel answered ARP for %s:\n%s", vips[0], out)
	}
	if out, _ := client.Exec(ctx, "ndisc6", "-n", "-r", "2", "-w", "500", vips[1].String(), "eth0"); strings.Contains(strings.ToLower(string(out)), "target link-layer address") {
		t.Errorf("the node's kernel answered NDP for %s:\n%s", vips[1], out)
	}

	if err := c.Client.CoreV1().Services("default").Delete(ctx, "proxied", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = lab.Eventually(ctx, 10*time.Second, 50*time.Millisecond, func() error {
		for _, vip := range vips {
			if local, err := node.RouteGetLocal(ctx, vip, 80); err != nil || local {
				return fmt.Errorf("ip route get %s ipproto tcp dport 80: local %t, %v after the Service went", vip, local, err)
			}
		}
		out, err := node.Exec(ctx, "ip", "rule")
		if err != nil || strings.Contains(string(out), "192.0.2.200") {
			return fmt.Errorf("rules left after the Service went (%v):\n%s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestLabNeighborProbe checks the client-side probe the failover tests time
// answers with: it sees who answers ARP and NDP, and nothing for an address
// nobody has.
func TestLabNeighborProbe(t *testing.T) {
	seg := lab.NewSegment(t, "lan")
	a := seg.AddHost("a", netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64"))
	b := seg.AddHost("b", netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64"))
	ips := []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2"),
		netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8::3")}
	got, err := a.WhoHas(ips, 400*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr][]string{ips[0]: {b.MAC.String()}, ips[1]: {b.MAC.String()}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("WhoHas = %v, want %v", got, want)
	}
}
