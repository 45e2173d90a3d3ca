package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// The layer-2 lab: three nodes, a client and (for conflicts) an intruder on
// one segment, a real kube-apiserver, the real CCM in the root namespace and
// one real agent per node namespace.
const l2CloudConfig = `pools:
  - name: lan
    addresses:
      - 192.0.2.128-192.0.2.254
      - 2001:db8::1:0/120
nodeAgent:
  leaseDuration: 3s
  renewInterval: 1s
  garpInterval: 10s
`

var (
	l2Client4 = netip.MustParsePrefix("192.0.2.100/24")
	l2Client6 = netip.MustParsePrefix("2001:db8::100/64")
)

type l2Lab struct {
	t       *testing.T
	c       *lab.Cluster
	seg     *lab.Segment
	client  *lab.Host
	nodes   []*l2Node
	cfgPath string
	ccm     *lab.Process
	proxy   *lab.ServiceProxy
}

type l2Node struct {
	name       string
	host       *lab.Host
	addr4      netip.Addr
	addr6      netip.Addr
	kubeconfig string
	agent      *lab.Process
	starts     int
}

func newL2Lab(t *testing.T, n int) *l2Lab {
	t.Helper()
	return newL2LabWith(t, n, l2CloudConfig)
}

// newL2LabWith is newL2Lab with another cloud-config.
func newL2LabWith(t *testing.T, n int, cloudConfig string) *l2Lab {
	t.Helper()
	// Starting a node takes a few seconds on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+time.Duration(n)*10*time.Second)
	defer cancel()
	l := &l2Lab{t: t, c: startCluster(t), seg: lab.NewSegment(t, "lan")}
	l.cfgPath = filepath.Join(t.TempDir(), "cloud-config.yaml")
	if err := os.WriteFile(l.cfgPath, []byte(cloudConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	l.client = l.seg.AddHost("client", l2Client4, l2Client6)
	for i := 1; i <= n; i++ {
		nd := &l2Node{
			name:  fmt.Sprintf("node-%d", i),
			addr4: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}),
			addr6: netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", 10+i)),
		}
		nd.host = l.seg.AddHost(nd.name, netip.PrefixFrom(nd.addr4, 24), netip.PrefixFrom(nd.addr6, 64))
		if err := l.c.CreateNode(ctx, nd.name, []netip.Addr{nd.addr4, nd.addr6}, nil, false); err != nil {
			t.Fatal(err)
		}
		nd.kubeconfig = agentKubeconfig(t, l.c, nd.host)
		if _, err := nd.host.Start("echo", bins.Path("lab-echo"), "--name", nd.name, "--listen", ":80"); err != nil {
			t.Fatal(err)
		}
		l.nodes = append(l.nodes, nd)
	}
	// Lab nodes have no kube-proxy: the stand-in takes the Services'
	// ports on every node, and the agents only answer ARP/NDP.
	var hosts []*lab.Host
	for _, nd := range l.nodes {
		hosts = append(hosts, nd.host)
	}
	l.proxy = lab.StartServiceProxy(t, l.c.Client, hosts...)
	for _, nd := range l.nodes {
		l.startAgent(nd)
	}
	l.startCCM()
	// Every agent holds its lease before a test starts its clock.
	err := lab.Eventually(ctx, 30*time.Second+time.Duration(n)*2*time.Second, 100*time.Millisecond, func() error {
		leases, err := l.c.Client.CoordinationV1().Leases(agentNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var names []string
		for _, le := range leases.Items {
			if strings.HasPrefix(le.Name, "baremetal-agent-") {
				names = append(names, le.Name)
			}
		}
		if len(names) != n {
			return fmt.Errorf("agent leases %v, want %d", names, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *l2Lab) startAgent(nd *l2Node) {
	l.t.Helper()
	nd.starts++
	args := []string{bins.Path("baremetal-node-agent"),
		"--kubeconfig", nd.kubeconfig, "--node-name", nd.name, "--cloud-config", l.cfgPath,
		"--namespace", agentNamespace, "--metrics-bind-address", ":9101", "--health-bind-address", ":9102", "-v=" + agentVerbosity()}
	if port := os.Getenv("BAREMETAL_E2E_HEARTBEAT_PORT"); port != "" {
		// 0 measures failover by lease expiry alone.
		args = append(args, "--heartbeat-port", port)
	}
	name := fmt.Sprintf("agent-%d", nd.starts)
	p, err := nd.host.Start(name, args...)
	if err != nil {
		l.t.Fatal(err)
	}
	checkNotForbidden(l.t, l.c, nd.name+"'s "+name, p)
	nd.agent = p
}

// agentVerbosity is the agents' -v: 2, or $BAREMETAL_E2E_AGENT_V.
func agentVerbosity() string {
	if v := os.Getenv("BAREMETAL_E2E_AGENT_V"); v != "" {
		return v
	}
	return "2"
}

func (l *l2Lab) startCCM() {
	l.t.Helper()
	l.ccm = lab.StartProcess(l.t, l.t.TempDir(), "ccm", bins.Path("baremetal-cloud-controller-manager"),
		"--cloud-provider=baremetal", "--cloud-config", l.cfgPath, "--kubeconfig", ccmKubeconfig(l.t, l.c),
		"--leader-elect=false", "--secure-port=0", "--controllers=service", "-v=2")
	checkNotForbidden(l.t, l.c, "the CCM", l.ccm)
}

func (l *l2Lab) node(name string) *l2Node {
	for _, nd := range l.nodes {
		if nd.name == name {
			return nd
		}
	}
	l.t.Fatalf("no node %q", name)
	return nil
}

func (l *l2Lab) nodeByMAC(mac string) string {
	for _, nd := range l.nodes {
		if nd.host.MAC.String() == mac {
			return nd.name
		}
	}
	return "unknown MAC " + mac
}

type svcOpt func(*corev1.Service)

func withLocal(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

func withIP(ip string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations["baremetal.cloud-provider.io/load-balancer-ips"] = ip
	}
}

func withIPv6(s *corev1.Service) {
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
	s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
}

// createService creates a LoadBalancer Service and waits for the CCM to
// give it an address and for the service proxy to take its port.
func (l *l2Lab) createService(ctx context.Context, name string, opts ...svcOpt) netip.Addr {
	l.t.Helper()
	l.submitService(ctx, name, opts...)
	ip, err := l.waitIngress(ctx, name, 30*time.Second)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := l.proxy.WaitFor(ctx, ip, 80, 30*time.Second); err != nil {
		l.t.Fatal(err)
	}
	return ip
}

// submitService creates a LoadBalancer Service without waiting for it.
func (l *l2Lab) submitService(ctx context.Context, name string, opts ...svcOpt) {
	l.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(svc)
	}
	if _, err := l.c.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		l.t.Fatal(err)
	}
}

func (l *l2Lab) waitIngress(ctx context.Context, name string, timeout time.Duration) (netip.Addr, error) {
	var ip netip.Addr
	err := lab.Eventually(ctx, timeout, 50*time.Millisecond, func() error {
		s, err := l.c.Client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("service %s has no ingress address yet", name)
		}
		ip, err = netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return err
	})
	return ip, err
}

// setEndpoints makes the Service's only EndpointSlice hold one ready
// endpoint per named node (the lab has no endpoint controller).
func (l *l2Lab) setEndpoints(ctx context.Context, svc string, nodes ...string) {
	l.t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-lab",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(80)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, n := range nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{l.node(n).addr4.String()},
			NodeName:   ptr.To(n),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	slices := l.c.Client.DiscoveryV1().EndpointSlices("default")
	old, err := slices.Get(ctx, es.Name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = old.ResourceVersion
		_, err = slices.Update(ctx, es, metav1.UpdateOptions{})
	} else {
		_, err = slices.Create(ctx, es, metav1.CreateOptions{})
	}
	if err != nil {
		l.t.Fatal(err)
	}
}

// heldOnInterfaces returns, per address, the nodes that hold it on an
// interface (host routes only: addresses with a full-length prefix, which
// the nodes' own addresses are not). The agent binds nothing (DESIGN
// decision 6), so this is empty for VIPs; older agents bound the owner's.
func (l *l2Lab) heldOnInterfaces(ctx context.Context) (map[netip.Addr][]string, error) {
	out := map[netip.Addr][]string{}
	for _, nd := range l.nodes {
		b, err := nd.host.Exec(ctx, "ip", "-j", "addr", "show")
		if err != nil {
			return nil, err
		}
		var links []struct {
			IfName   string `json:"ifname"`
			AddrInfo []struct {
				Local     string `json:"local"`
				PrefixLen int    `json:"prefixlen"`
			} `json:"addr_info"`
		}
		if err := json.Unmarshal(b, &links); err != nil {
			return nil, fmt.Errorf("parsing ip addr of %s: %w", nd.name, err)
		}
		for _, lk := range links {
			for _, a := range lk.AddrInfo {
				ip, err := netip.ParseAddr(a.Local)
				if err != nil || a.PrefixLen != ip.BitLen() || ip.IsLoopback() {
					continue
				}
				out[ip] = append(out[ip], nd.name)
			}
		}
	}
	return out, nil
}

// answering asks from the client who has each of ips and returns, per
// address, the nodes (or unknown MACs) that answered, sorted.
func (l *l2Lab) answering(ips ...netip.Addr) (map[netip.Addr][]string, error) {
	macs, err := l.client.WhoHas(ips, 300*time.Millisecond)
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr][]string{}
	for ip, ms := range macs {
		for _, m := range ms {
			out[ip] = append(out[ip], l.nodeByMAC(m))
		}
		slices.Sort(out[ip])
	}
	return out, nil
}

// waitOwner waits until exactly one node answers ARP/NDP for ip and
// returns it.
func (l *l2Lab) waitOwner(ctx context.Context, ip netip.Addr, timeout time.Duration, want ...string) string {
	l.t.Helper()
	var owner string
	err := lab.Eventually(ctx, timeout, 50*time.Millisecond, func() error {
		a, err := l.answering(ip)
		if err != nil {
			return err
		}
		if len(a[ip]) != 1 {
			return fmt.Errorf("%s is answered for by %v, want exactly one node", ip, a[ip])
		}
		owner = a[ip][0]
		if len(want) > 0 && !slices.Contains(want, owner) {
			return fmt.Errorf("%s is answered for by %s, want one of %v", ip, owner, want)
		}
		return nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
	return owner
}

// vips returns the addresses of every LoadBalancer Service, sorted.
func (l *l2Lab) vips(ctx context.Context) ([]netip.Addr, error) {
	svcs, err := l.c.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, s := range svcs.Items {
		for _, ing := range s.Status.LoadBalancer.Ingress {
			if ip, err := netip.ParseAddr(ing.IP); err == nil {
				out = append(out, ip)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

var arpingReply = regexp.MustCompile(`bytes from ([0-9a-f:]{17}) \(`)

// arping asks for ip from the client and returns the MACs that answered.
func (l *l2Lab) arping(ctx context.Context, ip netip.Addr) []string {
	// -d keeps listening after the first answer, to catch a second MAC.
	out, _ := l.client.Exec(ctx, "arping", "-d", "-c", "2", "-w", "1", "-i", "eth0", ip.String())
	var macs []string
	for _, m := range arpingReply.FindAllStringSubmatch(string(out), -1) {
		if !slices.Contains(macs, m[1]) {
			macs = append(macs, m[1])
		}
	}
	return macs
}

var ndiscReply = regexp.MustCompile(`(?i)Target link-layer address: ([0-9a-f:]{17})`)

// ndisc asks for an IPv6 ip from the client and returns the MACs that answered.
func (l *l2Lab) ndisc(ctx context.Context, ip netip.Addr) []string {
	out, _ := l.client.Exec(ctx, "ndisc6", "-m", "-n", "-r", "1", "-w", "1000", ip.String(), "eth0")
	var macs []string
	for _, m := range ndiscReply.FindAllStringSubmatch(string(out), -1) {
		mac := strings.ToLower(m[1])
		if !slices.Contains(macs, mac) {
			macs = append(macs, mac)
		}
	}
	return macs
}

// curl fetches http://ip/ from the client: the answering node's name.
func (l *l2Lab) curl(ctx context.Context, ip netip.Addr, timeout time.Duration) (string, error) {
	host := ip.String()
	if ip.Is6() {
		host = "[" + host + "]"
	}
	out, err := l.client.Exec(ctx, "curl", "-sS", "--max-time", fmt.Sprint(timeout.Seconds()), "http://"+host+"/")
	if err != nil {
		return "", fmt.Errorf("curl %s: %w: %s", host, err, out)
	}
	return string(out), nil
}

// neighMAC returns the client's neighbour entry for ip.
func (l *l2Lab) neighMAC(ctx context.Context, ip netip.Addr) string {
	out, err := l.client.Exec(ctx, "ip", "-j", "neigh", "show", ip.String(), "dev", "eth0")
	if err != nil {
		return ""
	}
	var ns []struct {
		LLAddr string `json:"lladdr"`
	}
	if json.Unmarshal(out, &ns) != nil || len(ns) == 0 {
		return ""
	}
	return ns[0].LLAddr
}

// events returns the messages of the Service's events with reason.
func (l *l2Lab) events(ctx context.Context, svc, reason string) []string {
	evs, err := l.c.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + svc + ",reason=" + reason,
	})
	if err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for _, e := range evs.Items {
		out = append(out, e.Message)
	}
	return out
}

// arpSeen is one ARP packet seen by a watcher.
type arpSeen struct {
	at       time.Time
	op       arp.Operation
	senderIP netip.Addr
	mac      string
}

// arpWatch records every ARP packet on a host's eth0, timestamped on
// arrival: it is how the client side sees gratuitous ARP.
type arpWatch struct {
	conn *packet.Conn
	mu   sync.Mutex
	seen []arpSeen
}

func watchARP(t testing.TB, h *lab.Host) *arpWatch {
	t.Helper()
	type result struct {
		c   *packet.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread enters the host's namespace and is never unlocked,
		// so it dies with this goroutine instead of serving others.
		runtime.LockOSThread()
		ns, err := netns.GetFromName(h.Netns)
		if err != nil {
			ch <- result{err: fmt.Errorf("opening netns %s: %w", h.Netns, err)}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- result{err: fmt.Errorf("entering netns %s: %w", h.Netns, err)}
			return
		}
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			ch <- result{err: err}
			return
		}
		c, err := packet.Listen(ifi, packet.Raw, 0x0806, nil)
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("watching ARP on %s: %v", h.Name, r.err)
	}
	w := &arpWatch{conn: r.c}
	t.Cleanup(func() { w.conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := w.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			at := time.Now()
			var f ethernet.Frame
			var p arp.Packet
			if f.UnmarshalBinary(buf[:n]) != nil || p.UnmarshalBinary(f.Payload) != nil {
				continue
			}
			ip, _ := netip.AddrFromSlice(p.SenderIP)
			w.mu.Lock()
			w.seen = append(w.seen, arpSeen{at: at, op: p.Operation, senderIP: ip.Unmap(), mac: p.SenderHardwareAddr.String()})
			w.mu.Unlock()
		}
	}()
	return w
}

// firstClaim returns the first packet after since in which a host other
// than notMAC claims ip (a gratuitous ARP or a reply).
func (w *arpWatch) firstClaim(ip netip.Addr, since time.Time, notMAC string) (arpSeen, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.seen {
		if s.at.After(since) && s.senderIP == ip && s.mac != notMAC {
			return s, true
		}
	}
	return arpSeen{}, false
}

func (w *arpWatch) waitClaim(ctx context.Context, ip netip.Addr, since time.Time, notMAC string, timeout time.Duration) (arpSeen, error) {
	var got arpSeen
	err := lab.Eventually(ctx, timeout, 5*time.Millisecond, func() error {
		var ok bool
		if got, ok = w.firstClaim(ip, since, notMAC); !ok {
			return fmt.Errorf("no host other than %s claimed %s", notMAC, ip)
		}
		return nil
	})
	return got, err
}

// prober keeps asking for a VIP from the client and records every gap: a
// period in which nobody answered.
type prober struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	answers map[string]int
	fails   int // no answer: timeouts, refused, unreachable
	resets  int // a connection open while the VIP moved, reset by the new owner
	total   int
	errs    []string // the first failures, with when they happened
}

// probeHTTP curls ip every interval until stopped, counting failures and
// which node answered.
func (l *l2Lab) probeHTTP(ip netip.Addr, interval time.Duration) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{}), answers: map[string]int{}}
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			name, err := l.curl(ctx, ip, time.Second)
			cancel()
			p.mu.Lock()
			p.total++
			switch {
			case err != nil && strings.Contains(err.Error(), "Connection reset by peer"):
				// The MAC moved between this request's SYN and its data:
				// the new owner has no such connection. Inherent to moving
				// a VIP; not a moment in which nobody answers.
				p.resets++
				fallthrough
			case err != nil:
				if !strings.Contains(err.Error(), "Connection reset by peer") {
					p.fails++
				}
				if len(p.errs) < 5 {
					p.errs = append(p.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
			default:
				p.answers[name]++
			}
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// finish stops probing. fails counts requests nobody answered; resets
// (connections cut by the move itself) are in p.resets.
func (p *prober) finish() (answers map[string]int, fails, total int) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.answers, p.fails, p.total
}

// logLines scans a process log for lines containing s.
func logLines(p *lab.Process, s string) []string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			out = append(out, sc.Text())
		}
	}
	return out
}
