package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/internal/leaderlease"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/provider"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// ccm is one cloud-controller-manager process in the root namespace.
type ccm struct {
	proc *lab.Process
	port int
}

// startCCM runs the real CCM binary against the lab apiserver as the
// manifests' ServiceAccount, also for the delegated authentication and
// authorization of its secure port. Leader election timings are shortened
// so failover tests take seconds.
func startCCM(t *testing.T, c *lab.Cluster, cfgPath, name string, extra ...string) *ccm {
	t.Helper()
	return startCCMIn(t, c, cfgPath, name, nil, extra...)
}

// inPod is the environment the manifests give the CCM through the downward
// API: the UID, name and namespace of its pod. Two processes started with
// the same pod are two containers of one pod, one after the other (a
// restart); never run them at once.
func inPod(uid, name string) []string {
	return []string{"POD_UID=" + uid, "POD_NAME=" + name, "POD_NAMESPACE=" + ccmNamespace}
}

// startCCMIn is startCCM with env added to the CCM's environment.
func startCCMIn(t *testing.T, c *lab.Cluster, cfgPath, name string, env []string, extra ...string) *ccm {
	t.Helper()
	port := ccmFreePort(t)
	kc := ccmKubeconfig(t, c)
	// env(1) execs the CCM: the process (and its pid) is the CCM's.
	args := append(append([]string{"env"}, env...),
		bins.Path("baremetal-cloud-controller-manager"),
		"--cloud-provider=baremetal", "--cloud-config="+cfgPath,
		"--kubeconfig="+kc, "--authentication-kubeconfig="+kc, "--authorization-kubeconfig="+kc,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--leader-elect=true", "--leader-elect-lease-duration=4s",
		"--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms",
		"-v=2",
	)
	args = append(args, extra...)
	p := lab.StartProcess(t, c.Dir, name, args...)
	checkNotForbidden(t, c, name, p)
	return &ccm{proc: p, port: port}
}

func ccmFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeCloudConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cloud-config.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fastClient is an admin client without client-side throttling, for
// creating hundreds of Services.
func fastClient(t *testing.T, c *lab.Cluster) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(c.RestConfig)
	cfg.QPS, cfg.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

type svcMut func(*corev1.Service)

func lbSvc(ns, name string, muts ...svcMut) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, m := range muts {
		m(s)
	}
	return s
}

func annotate(k, v string) svcMut {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func labelled(k, v string) svcMut {
	return func(s *corev1.Service) { s.Labels = map[string]string{k: v} }
}

func port(p int32) svcMut {
	return func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "p", Port: p, Protocol: corev1.ProtocolTCP}}
	}
}

func requireDualStack(s *corev1.Service) {
	p := corev1.IPFamilyPolicyRequireDualStack
	s.Spec.IPFamilyPolicy = &p
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
}

func createSvc(t *testing.T, cs kubernetes.Interface, s *corev1.Service) {
	t.Helper()
	if _, err := cs.CoreV1().Services(s.Namespace).Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating %s/%s: %v", s.Namespace, s.Name, err)
	}
}

func ingressOf(s *corev1.Service) string {
	var ips []string
	for _, ing := range s.Status.LoadBalancer.Ingress {
		ips = append(ips, ing.IP)
	}
	return strings.Join(ips, ",")
}

// waitIngressIs waits until ns/name's EXTERNAL-IP equals want (comma-joined).
func waitIngressIs(t *testing.T, cs kubernetes.Interface, ns, name, want string) {
	t.Helper()
	var got string
	err := lab.Eventually(t.Context(), 30*time.Second, 100*time.Millisecond, func() error {
		s, err := cs.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got = ingressOf(s)
		for _, ing := range s.Status.LoadBalancer.Ingress {
			if ing.IPMode == nil || *ing.IPMode != corev1.LoadBalancerIPModeVIP {
				return fmt.Errorf("ingress %s has ipMode %v, want VIP", ing.IP, ing.IPMode)
			}
		}
		if got != want {
			return fmt.Errorf("EXTERNAL-IP %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s/%s: want EXTERNAL-IP %q: %v", ns, name, want, err)
	}
}

// waitIngressIn waits for an address inside prefix and returns it.
func waitIngressIn(t *testing.T, cs kubernetes.Interface, ns, name string, prefixes ...netip.Prefix) string {
	t.Helper()
	var got string
	err := lab.Eventually(t.Context(), 30*time.Second, 100*time.Millisecond, func() error {
		s, err := cs.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got = ingressOf(s)
		ips := strings.Split(got, ",")
		if got == "" || len(ips) != len(prefixes) {
			return fmt.Errorf("EXTERNAL-IP %q", got)
		}
		for i, p := range prefixes {
			a, err := netip.ParseAddr(ips[i])
			if err != nil || !p.Contains(a) {
				return fmt.Errorf("EXTERNAL-IP %q not in %v", got, prefixes)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s/%s: %v", ns, name, err)
	}
	return got
}

// waitWarning waits for a Warning event on the Service whose message holds substr.
func waitWarning(t *testing.T, cs kubernetes.Interface, ns, name, substr string) {
	t.Helper()
	var seen []string
	err := lab.Eventually(t.Context(), 30*time.Second, 200*time.Millisecond, func() error {
		evs, err := cs.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Service,involvedObject.name=" + name,
		})
		if err != nil {
			return err
		}
		seen = seen[:0]
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, substr) {
				return nil
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return fmt.Errorf("no such event")
	})
	if err != nil {
		t.Fatalf("%s/%s: no Warning event containing %q; events: %q", ns, name, substr, seen)
	}
}

const ccmAllocationConfig = `
pools:
  - name: small
    addresses: [192.0.2.10-192.0.2.12]
    serviceSelector: {matchLabels: {pool: small}}
  - name: team
    addresses: [192.0.2.32/29]
    namespaces: [team-a]
  - name: general
    addresses: [198.51.100.0/28]
  - name: dual
    addresses: [192.0.2.64/28, "2001:db8:5::/124"]
  - name: reserved
    addresses: [192.0.2.100-192.0.2.101]
    autoAssign: false
topology:
  - cidr: 203.0.113.0/24
    zone: rack-1
    region: dc-1
`

func TestCCMInitialisesNodes(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context()
	startCCM(t, c, writeCloudConfig(t, ccmAllocationConfig), "ccm")
	for i, name := range []string{"n1", "n2"} {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)})
		if err := c.CreateNode(ctx, name, nil, nil, true); err != nil {
			t.Fatal(err)
		}
		// What a kubelet started with --node-ip and --cloud-provider=external records.
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"alpha.kubernetes.io/provided-node-ip":%q}}}`, ip)
		if _, err := c.Client.CoreV1().Nodes().Patch(ctx, name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"n1", "n2"} {
		want := fmt.Sprintf("203.0.113.%d", 10+i)
		err := lab.Eventually(ctx, 30*time.Second, 200*time.Millisecond, func() error {
			n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, tn := range n.Spec.Taints {
				if tn.Key == lab.UninitializedTaint {
					return fmt.Errorf("still tainted")
				}
			}
			if n.Spec.ProviderID != "baremetal://"+name {
				return fmt.Errorf("providerID %q", n.Spec.ProviderID)
			}
			if n.Labels[corev1.LabelTopologyZone] != "rack-1" || n.Labels[corev1.LabelTopologyRegion] != "dc-1" {
				return fmt.Errorf("topology labels %v", n.Labels)
			}
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP && a.Address == want {
					return nil
				}
			}
			return fmt.Errorf("addresses %v", n.Status.Addresses)
		})
		if err != nil {
			t.Fatalf("node %s not initialised: %v", name, err)
		}
	}
}

func TestCCMAllocatesAddresses(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context()
	cs := fastClient(t, c)
	if err := c.EnsureNamespace(ctx, "team-a"); err != nil {
		t.Fatal(err)
	}
	startCCM(t, c, writeCloudConfig(t, ccmAllocationConfig), "ccm")

	// Auto: the first auto-assign pool that admits the Service.
	createSvc(t, cs, lbSvc("default", "auto"))
	waitIngressIs(t, cs, "default", "auto", "198.51.100.0")
	// Selector- and namespace-restricted pools.
	createSvc(t, cs, lbSvc("default", "labelled", labelled("pool", "small")))
	waitIngressIs(t, cs, "default", "labelled", "192.0.2.10")
	createSvc(t, cs, lbSvc("team-a", "team"))
	waitIngressIn(t, cs, "team-a", "team", netip.MustParsePrefix("192.0.2.32/29"))
	// By pool, including an autoAssign:false pool.
	createSvc(t, cs, lbSvc("default", "reserved", annotate(provider.AnnotationPool, "reserved")))
	waitIngressIs(t, cs, "default", "reserved", "192.0.2.100")
	// By requested IP: our annotation, spec.loadBalancerIP and MetalLB's annotation.
	createSvc(t, cs, lbSvc("default", "asked", annotate(provider.AnnotationLoadBalancerIPs, "198.51.100.5")))
	waitIngressIs(t, cs, "default", "asked", "198.51.100.5")
	createSvc(t, cs, lbSvc("default", "spec-ip", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.6" }))
	waitIngressIs(t, cs, "default", "spec-ip", "198.51.100.6")
	createSvc(t, cs, lbSvc("default", "metallb", annotate("metallb.universe.tf/loadBalancerIPs", "192.0.2.101")))
	waitIngressIs(t, cs, "default", "metallb", "192.0.2.101")
	// Shared: same key, different ports.
	createSvc(t, cs, lbSvc("default", "share-a", port(80), annotate(provider.AnnotationLoadBalancerIPs, "198.51.100.9"), annotate(provider.AnnotationAllowSharedIP, "k")))
	createSvc(t, cs, lbSvc("default", "share-b", port(443), annotate(provider.AnnotationLoadBalancerIPs, "198.51.100.9"), annotate(provider.AnnotationAllowSharedIP, "k")))
	waitIngressIs(t, cs, "default", "share-a", "198.51.100.9")
	waitIngressIs(t, cs, "default", "share-b", "198.51.100.9")
	// Dual-stack from the one pool that has both families.
	createSvc(t, cs, lbSvc("default", "dual", requireDualStack))
	waitIngressIn(t, cs, "default", "dual", netip.MustParsePrefix("192.0.2.64/28"), netip.MustParsePrefix("2001:db8:5::/124"))

	// Bad inputs: a Warning event naming the cause, nobody else disturbed.
	createSvc(t, cs, lbSvc("default", "unknown-pool", annotate(provider.AnnotationPool, "nope")))
	waitWarning(t, cs, "default", "unknown-pool", `pool "nope"`)
	createSvc(t, cs, lbSvc("default", "outside", annotate(provider.AnnotationLoadBalancerIPs, "203.0.113.99")))
	waitWarning(t, cs, "default", "outside", "203.0.113.99")
	createSvc(t, cs, lbSvc("default", "taken", port(8080), annotate(provider.AnnotationLoadBalancerIPs, "198.51.100.5")))
	waitWarning(t, cs, "default", "taken", "default/asked")
	createSvc(t, cs, lbSvc("default", "share-clash", port(80), annotate(provider.AnnotationLoadBalancerIPs, "198.51.100.9"), annotate(provider.AnnotationAllowSharedIP, "k")))
	waitWarning(t, cs, "default", "share-clash", "198.51.100.9")
	// Exhaustion: small has three addresses.
	for _, n := range []string{"small-1", "small-2"} {
		createSvc(t, cs, lbSvc("default", n, labelled("pool", "small"), annotate(provider.AnnotationPool, "small")))
	}
	waitIngressIs(t, cs, "default", "small-1", "192.0.2.11")
	waitIngressIs(t, cs, "default", "small-2", "192.0.2.12")
	createSvc(t, cs, lbSvc("default", "small-3", labelled("pool", "small"), annotate(provider.AnnotationPool, "small")))
	waitWarning(t, cs, "default", "small-3", `pool "small" has no free IPv4 address`)
	for name, want := range map[string]string{"auto": "198.51.100.0", "labelled": "192.0.2.10", "asked": "198.51.100.5", "share-b": "198.51.100.9"} {
		waitIngressIs(t, cs, "default", name, want)
	}
	for _, name := range []string{"unknown-pool", "outside", "taken", "share-clash", "small-3"} {
		if s, err := cs.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{}); err != nil || ingressOf(s) != "" {
			t.Errorf("%s: EXTERNAL-IP %q (%v), want none", name, ingressOf(s), err)
		}
	}

	// Deleting a Service frees its address: the waiting one takes it.
	if err := cs.CoreV1().Services("default").Delete(ctx, "small-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIngressIs(t, cs, "default", "small-3", "192.0.2.11")

	// Changing the type frees it too (the API server wipes the status first).
	s, err := cs.CoreV1().Services("default").Get(ctx, "asked", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Type = corev1.ServiceTypeClusterIP
	s.Spec.Ports[0].NodePort = 0
	if _, err := cs.CoreV1().Services("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// "taken" was refused 198.51.100.5; now it is free the retry gives it.
	waitIngressIs(t, cs, "default", "taken", "198.51.100.5")
}

// addresses returns every LoadBalancer Service's EXTERNAL-IP by name.
func addresses(t *testing.T, cs kubernetes.Interface, ns string) map[string]string {
	t.Helper()
	list, err := cs.CoreV1().Services(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range list.Items {
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			out[s.Name] = ingressOf(&s)
		}
	}
	return out
}

// createMany creates n Services concurrently and waits until all have an address.
func createMany(t *testing.T, cs kubernetes.Interface, prefix string, n int) map[string]string {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := lbSvc("default", fmt.Sprintf("%s-%03d", prefix, i))
			if _, err := cs.CoreV1().Services("default").Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var got map[string]string
	err := lab.Eventually(t.Context(), 2*time.Minute, 500*time.Millisecond, func() error {
		got = addresses(t, cs, "default")
		missing := 0
		for _, ip := range got {
			if ip == "" {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d Services still without an address", missing)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func assertDistinct(t *testing.T, addrs map[string]string) {
	t.Helper()
	owner := map[string]string{}
	for name, ip := range addrs {
		if other, dup := owner[ip]; dup {
			t.Errorf("%s given to both %s and %s", ip, other, name)
		}
		owner[ip] = name
	}
}

func assertUnchanged(t *testing.T, before, after map[string]string) {
	t.Helper()
	for name, ip := range before {
		if after[name] != ip {
			t.Errorf("%s: address changed from %q to %q", name, ip, after[name])
		}
	}
}

const manyConfig = `
pools:
  - name: lan
    addresses: [198.51.100.0/24]
`

// TestCCMRestartKeepsAddresses: a kill -9 of the CCM and a new container in
// the same pod (what the kubelet does), at the framework's leader-election
// timings (15 s Lease). The new one keeps every address, hands out only
// what is truly free, and serves a new Service within 10 s of its start:
// it releases the Lease its dead predecessor in the pod still held
// (internal/leaderlease) rather than wait 15 s for it to expire.
func TestCCMRestartKeepsAddresses(t *testing.T) {
	const serving = 10 * time.Second
	c := startCluster(t)
	cs := fastClient(t, c)
	cfg := writeCloudConfig(t, manyConfig)
	pod := inPod("0b6e2f9c-5d1a-4c3e-9f7b-2a8d4e6c1f30", "baremetal-cloud-controller-manager-7d9f8-x2k4q")
	first := startCCMIn(t, c, cfg, "ccm-1", pod, userLeaderElection...)
	waitHolderPod(t, c, pod)
	before := createMany(t, cs, "svc", 200)
	assertDistinct(t, before)

	if err := first.proc.Kill(); err != nil { // kill -9: no chance to clean up
		t.Fatal(err)
	}
	// Release one address while the CCM is down, so the restarted CCM must
	// both keep the other 199 and hand out only what is truly free.
	if err := cs.CoreV1().Services("default").Delete(t.Context(), "svc-000", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	second := startCCMIn(t, c, cfg, "ccm-2", pod, userLeaderElection...)
	createSvc(t, cs, lbSvc("default", "after-restart"))
	// svc-000's address, or another free one if the new CCM handles the
	// new Service before the deleted one: never one the others hold.
	got := waitIngressIn(t, cs, "default", "after-restart", netip.MustParsePrefix("198.51.100.0/24"))
	took := time.Since(restart)
	for name, ip := range before {
		if name != "svc-000" && ip == got {
			t.Errorf("after-restart was given %s, which %s still holds", got, name)
		}
	}
	t.Logf("restarted CCM served a new Service %s after its start; load %s", took.Round(time.Millisecond), loadAverage())
	if took > serving {
		t.Errorf("the restarted CCM served a new Service %s after its start, want within %s (the Lease lasts 15 s)", took.Round(time.Millisecond), serving)
	}
	if !strings.Contains(second.proc.Logs(), "Released the leader Lease held by an earlier container of this pod") {
		t.Error("the restarted CCM did not log releasing its predecessor's Lease")
	}
	if err := lab.Eventually(t.Context(), 30*time.Second, 200*time.Millisecond, func() error {
		if _, err := cs.CoreV1().Services("default").Get(t.Context(), "svc-000", metav1.GetOptions{}); err == nil {
			return fmt.Errorf("svc-000 still exists (finalizer)")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The restarted CCM has been through Ensure for all 199 and the new one.
	waitLogCount(t, second, "Load balancer ensured", 200, time.Minute)
	after := addresses(t, cs, "default")
	delete(before, "svc-000")
	assertUnchanged(t, before, after)
	assertDistinct(t, after)
	if strings.Contains(second.proc.Logs(), "address changed") {
		t.Error("restarted CCM logged an address change")
	}
}

// waitLogCount waits until p's log holds substr at least n times.
func waitLogCount(t *testing.T, p *ccm, substr string, n int, timeout time.Duration) {
	t.Helper()
	err := lab.Eventually(t.Context(), timeout, 500*time.Millisecond, func() error {
		if got := strings.Count(p.proc.Logs(), substr); got < n {
			return fmt.Errorf("%q logged %d times, want %d", substr, got, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCCMKeepsPace creates 200 Services as fast as 16 clients can against
// the CCM at its shipped defaults: all are addressed within their creation
// time plus a bound generous enough for a loaded 2-core machine. The
// figures that matter are TestCCMBenchBurst's; this catches a default or a
// limiter that no longer keeps pace.
func TestCCMKeepsPace(t *testing.T) {
	const n, bound = 200, 10 * time.Second
	c := startCluster(t)
	cs := fastClient(t, c)
	startCCM(t, c, writeCloudConfig(t, manyConfig), "ccm")
	waitLeader(t, c, "")
	ac := watchAddresses(t, cs)
	start := time.Now()
	created := burst{n: n, prefix: "pace"}.create(t, cs, ac, start)
	ac.await(t.Context(), created+bound, func() bool { return len(ac.assigned) >= n })
	r := ac.result(n, start, created)
	t.Logf("%s; load %s", r, loadAverage())
	if r.addressed < n || r.allDone > created+bound {
		t.Fatalf("%s; want all addressed within creation + %s", r, bound)
	}
	assertDistinct(t, addresses(t, cs, "default"))
}

func TestCCMLeaderFailover(t *testing.T) {
	c := startCluster(t)
	cs := fastClient(t, c)
	cfg := writeCloudConfig(t, manyConfig)
	// Two replicas are two pods, on one host here as with hostNetwork on
	// one node: b must not take a's Lease for its own predecessor's.
	podA := inPod("5c1d7a2e-8b4f-4e6a-a3d9-0f2b6c8e4a17", "baremetal-cloud-controller-manager-7d9f8-a")
	a := startCCMIn(t, c, cfg, "ccm-a", podA)
	waitLeader(t, c, "")
	waitHolderPod(t, c, podA)
	b := startCCMIn(t, c, cfg, "ccm-b", inPod("9e4b2c7d-1f3a-4d8e-b6c5-3a7f0d2e9b84", "baremetal-cloud-controller-manager-7d9f8-b"))
	before := createMany(t, cs, "svc", 50)
	assertDistinct(t, before)
	// Only the leader allocates: the standby has not ensured anything.
	if strings.Contains(b.proc.Logs(), "Load balancer ensured") {
		t.Fatal("the standby replica allocated addresses")
	}
	if !strings.Contains(a.proc.Logs(), "Load balancer ensured") {
		t.Fatal("the leader did not log its allocations")
	}
	holder := waitLeader(t, c, "")
	if err := a.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, c, holder)
	more := createMany(t, cs, "after", 10)
	assertUnchanged(t, before, more)
	assertDistinct(t, more)
	if !strings.Contains(b.proc.Logs(), "Load balancer ensured") {
		t.Error("the new leader did not allocate")
	}
	if strings.Contains(b.proc.Logs(), "Released the leader Lease") {
		t.Error("the standby released the Lease of a leader in another pod")
	}
}

// waitHolderPod waits until the leader has recorded on its Lease that it
// runs in pod (inPod's environment): a restart in that pod can then take
// the Lease at once.
func waitHolderPod(t *testing.T, c *lab.Cluster, pod []string) {
	t.Helper()
	uid := strings.TrimPrefix(pod[0], "POD_UID=")
	err := lab.Eventually(t.Context(), 30*time.Second, 100*time.Millisecond, func() error {
		l, err := c.Client.CoordinationV1().Leases(ccmNamespace).Get(t.Context(), "cloud-controller-manager", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if v := l.Annotations[leaderlease.HolderPodAnnotation]; !strings.Contains(v, `"podUID":"`+uid+`"`) {
			return fmt.Errorf("%s is %q", leaderlease.HolderPodAnnotation, v)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the leader did not record its pod on the Lease: %v", err)
	}
}

// waitLeader waits until the CCM lease is held by someone other than notHolder
// and returns the holder.
func waitLeader(t *testing.T, c *lab.Cluster, notHolder string) string {
	t.Helper()
	return waitLeaderWithin(t, c, notHolder, 30*time.Second)
}

func waitLeaderWithin(t *testing.T, c *lab.Cluster, notHolder string, timeout time.Duration) string {
	t.Helper()
	var holder string
	err := lab.Eventually(t.Context(), timeout, 200*time.Millisecond, func() error {
		l, err := c.Client.CoordinationV1().Leases(ccmNamespace).Get(t.Context(), "cloud-controller-manager", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" || *l.Spec.HolderIdentity == notHolder {
			return fmt.Errorf("lease held by %v", l.Spec.HolderIdentity)
		}
		holder = *l.Spec.HolderIdentity
		return nil
	})
	if err != nil {
		t.Fatalf("no new leader: %v", err)
	}
	return holder
}

func TestCCMRefusesBadConfig(t *testing.T) {
	c := startCluster(t)
	cfg := writeCloudConfig(t, `
pools:
  - name: a
    addresses: ["192.0.2.9-192.0.2.1"]
  - name: b
    addresses: [192.0.2.0/24]
    mode: bgp
    bogus: true
`)
	p := startCCM(t, c, cfg, "ccm")
	err := p.proc.Wait(30 * time.Second)
	if !p.proc.Exited() {
		t.Fatalf("the CCM kept running with a bad cloud-config: %v", err)
	}
	if err == nil {
		t.Fatal("the CCM exited zero on a bad cloud-config")
	}
	logs := p.proc.Logs()
	for _, want := range []string{`pools[1].bogus: unknown field`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}
