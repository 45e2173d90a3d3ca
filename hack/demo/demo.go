package main

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/deploy"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/provider"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// The demo's cloud-config and the router's FRR configuration. They must
// agree on the addresses and AS numbers below.
var (
	//go:embed cloud-config.yaml
	cloudConfigYAML []byte
	//go:embed frr.conf
	frrConf string
)

// The lab's topology: segment "lan" holds the nodes, the client and the
// router; segment "wan" the router and a remote client.
var (
	lanPrefix    = netip.MustParsePrefix("192.0.2.0/24")
	wanPrefix    = netip.MustParsePrefix("198.51.100.0/24")
	routedPrefix = netip.MustParsePrefix("203.0.113.0/24") // the bgp pool's addresses live here
	routerLAN    = netip.MustParsePrefix("192.0.2.1/24")
	routerWAN    = netip.MustParsePrefix("198.51.100.1/24")
	client4      = netip.MustParsePrefix("192.0.2.100/24")
	client6      = netip.MustParsePrefix("2001:db8::100/64")
	remoteClient = netip.MustParsePrefix("198.51.100.100/24")
)

const (
	nodeCount = 3
	routerASN = 64500

	labDirName = "lab"

	// The deploy/ manifests' identities.
	ccmNamespace   = "kube-system"
	ccmAccount     = "baremetal-cloud-controller-manager"
	agentNamespace = "baremetal-system"
	agentAccount   = "baremetal-node-agent"
	ccmLeaderLease = "cloud-controller-manager" // --leader-elect-resource-name's default

	svcNamespace = "default"
	l2Service    = "web-l2"
	bgpService   = "web-bgp"
)

type demo struct {
	out *printer
	dir string // the demo's directory (state, binaries, lab/)

	env     *lab.Env
	bins    *lab.Binaries
	cluster *lab.Cluster
	cfg     *config.Config
	cfgPath string

	router  *lab.Router
	client  *lab.Host
	remote  *lab.Host
	nodes   []*node
	ccm     *lab.Process
	ccmPort int
	proxy   *lab.ServiceProxy
	l2VIP   netip.Addr
	bgpVIP  netip.Addr
	l2Owner *node
}

type node struct {
	name       string
	addr4      netip.Addr
	addr6      netip.Addr
	host       *lab.Host
	kubeconfig string
	agent      *lab.Process
	starts     int
}

// run is the whole demo. Whatever happens, everything it started is gone
// when it returns; on failure the logs stay in the lab directory.
func run(ctx context.Context, o options) (err error) {
	start := time.Now()
	out := newPrinter(os.Stdout)
	out.Raw("cloud-provider-baremetal demo: LoadBalancer Services by layer 2 and by BGP, on this machine.\n")
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root: it creates network namespaces and runs daemons in them; run `sudo make demo`")
	}
	if err := lab.Requirements(); err != nil {
		return err
	}
	if err := claimState(ctx, o.dir, out); err != nil {
		return err
	}
	labDir := filepath.Join(o.dir, labDirName)
	if err := os.RemoveAll(labDir); err != nil {
		return fmt.Errorf("removing the previous run's files: %w", err)
	}
	env, err := lab.New(labDir)
	if err != nil {
		return err
	}
	d := &demo{out: out, dir: o.dir, env: env}
	var buildTime time.Duration
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		d.cleanUp(err)
		if err == nil {
			out.Raw(fmt.Sprintf("\nDemo finished in %s (%s of it building).\n", seconds(time.Since(start)), seconds(buildTime)))
			if !o.keep {
				out.Raw("To explore the lab yourself: go run ./hack/demo --keep. To install on a cluster: docs/install.md.\n")
			}
		}
	}()

	buildStart := time.Now()
	if err := d.build(ctx); err != nil {
		return err
	}
	buildTime = time.Since(buildStart)
	for _, step := range []func(context.Context) error{
		d.startLab, d.startControlPlane, d.createServices, d.reach, d.failover,
	} {
		if err := step(ctx); err != nil {
			return err
		}
		if err := recordProcesses(d.dir, d.env); err != nil {
			return err
		}
	}
	if o.keep {
		return d.stayUp(ctx)
	}
	return nil
}

func (d *demo) build(ctx context.Context) error {
	d.out.Step("Building the binaries")
	start := time.Now()
	kas, err := lab.KubeAPIServer(ctx) // built once, then cached
	if err != nil {
		return err
	}
	dir := filepath.Join(d.dir, "bin")
	if d.bins, err = lab.BuildBinaries(ctx, dir); err != nil {
		return err
	}
	d.out.Say("baremetal-cloud-controller-manager, baremetal-node-agent and lab-echo are in %s (%s).", dir, seconds(time.Since(start)))
	d.out.Say("kube-apiserver %s: %s", lab.KubeAPIServerVersion, kas)
	return nil
}

// startLab starts the cluster while it builds the network, then registers
// the nodes.
func (d *demo) startLab(ctx context.Context) error {
	d.out.Step("Starting the lab: etcd, kube-apiserver, and network namespaces for the nodes, clients and router")
	start := time.Now()
	type started struct {
		c   *lab.Cluster
		err error
	}
	cluster := make(chan started, 1)
	go func() {
		c, err := d.env.StartCluster(ctx)
		cluster <- started{c, err}
	}()
	netErr := d.buildNetwork(ctx)
	// Wait for the cluster even after a network error: its teardown is
	// registered while it starts.
	r := <-cluster
	if err := errors.Join(netErr, r.err); err != nil {
		return err
	}
	d.cluster = r.c
	d.out.Say("etcd and kube-apiserver %s answer on %s (%s).", lab.KubeAPIServerVersion, d.cluster.URL, seconds(time.Since(start)))

	var names []string
	for _, n := range d.nodes {
		if err := d.cluster.CreateNode(ctx, n.name, []netip.Addr{n.addr4, n.addr6}, nil, true); err != nil {
			return err
		}
		names = append(names, n.name)
	}
	d.out.Say("Node objects %s are registered the way a kubelet with --cloud-provider=external does it:", strings.Join(names, ", "))
	d.out.Say("Ready, with taint %s until a cloud provider initialises them.", lab.UninitializedTaint)
	return nil
}

func (d *demo) buildNetwork(ctx context.Context) error {
	lan, err := d.env.NewSegment("lan")
	if err != nil {
		return err
	}
	wan, err := d.env.NewSegment("wan")
	if err != nil {
		return err
	}

	router, err := lan.NewHost("router", routerLAN)
	if err != nil {
		return err
	}
	if err := router.AddInterface(wan, "eth1", routerWAN); err != nil {
		return err
	}
	if err := router.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	if d.router, err = router.StartFRR(frrConf); err != nil {
		return err
	}

	var nodes []string
	for i := 1; i <= nodeCount; i++ {
		n := &node{
			name:  fmt.Sprintf("node-%d", i),
			addr4: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}),
			addr6: netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", 10+i)),
		}
		if n.host, err = lan.NewHost(n.name, netip.PrefixFrom(n.addr4, 24), netip.PrefixFrom(n.addr6, 64)); err != nil {
			return err
		}
		// Answers to the remote client go back through the router.
		if err := n.host.AddRoute(wanPrefix, routerLAN.Addr()); err != nil {
			return err
		}
		// lab-echo stands in for the Service's pods: it
		// answers every request on :80 with the node's name.
		if _, err := n.host.Start("echo", d.bins.Path("lab-echo"), "--name", n.name, "--listen", ":80"); err != nil {
			return err
		}
		d.nodes = append(d.nodes, n)
		nodes = append(nodes, fmt.Sprintf("%s %s", n.name, n.addr4))
	}
	if d.client, err = lan.NewHost("client", client4, client6); err != nil {
		return err
	}
	if d.remote, err = wan.NewHost("remote-client", remoteClient); err != nil {
		return err
	}
	for _, dst := range []netip.Prefix{lanPrefix, routedPrefix} {
		if err := d.remote.AddRoute(dst, routerWAN.Addr()); err != nil {
			return err
		}
	}
	d.out.Say("Segment lan %s: %s, client %s, router %s.", lanPrefix, strings.Join(nodes, ", "), client4.Addr(), routerLAN.Addr())
	d.out.Say("Segment wan %s: router %s, remote-client %s.", wanPrefix, routerWAN.Addr(), remoteClient.Addr())
	d.out.Say("Each node serves its own name on port 80 (a stand-in for the Service's pods); the router runs FRR, AS %d.", routerASN)
	return nil
}

// startControlPlane runs the CCM and the agents with the manifests'
// ServiceAccounts and waits until nodes are initialised, agents are live
// and the router has a BGP session with every node.
func (d *demo) startControlPlane(ctx context.Context) error {
	d.out.Step("Starting the cloud-controller-manager and one node agent per node")
	summary, err := d.applyRBAC(ctx)
	if err != nil {
		return err
	}
	d.out.Say("Applied the RBAC of deploy/base (%s).", summary)
	d.out.Say("The CCM runs as ServiceAccount %s/%s and the agents as %s/%s, not as admin.", ccmNamespace, ccmAccount, agentNamespace, agentAccount)

	d.cfgPath = filepath.Join(d.env.Dir, "cloud-config.yaml")
	if err := os.WriteFile(d.cfgPath, cloudConfigYAML, 0o644); err != nil {
		return fmt.Errorf("writing the cloud-config: %w", err)
	}
	if d.cfg, err = config.Parse(cloudConfigYAML); err != nil {
		return fmt.Errorf("the demo's own cloud-config is invalid: %w", err)
	}
	for _, p := range d.cfg.Pools {
		d.out.Say("cloud-config: pool %-6s %-6s %s", p.Name, p.Mode, strings.Join(p.Addresses, ", "))
	}
	for _, p := range d.cfg.BGP.Peers {
		d.out.Say("cloud-config: nodes speak BGP as AS %d to %s %s (AS %d).", d.cfg.BGP.ASN, p.Name, p.Address, p.ASN)
	}

	if err := d.startProxy(); err != nil {
		return err
	}
	if err := d.startCCM(ctx); err != nil {
		return err
	}
	for _, n := range d.nodes {
		if n.kubeconfig, err = d.cluster.ServiceAccountKubeconfigIn(ctx, n.host, agentNamespace, agentAccount); err != nil {
			return err
		}
		if err := d.startAgent(n); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := d.waitCCM(ctx); err != nil {
		return err
	}
	d.out.Say("The CCM answers https://127.0.0.1:%d/healthz and holds the leader Lease %s/%s.", d.ccmPort, ccmNamespace, ccmLeaderLease)
	if err := d.waitNodesInitialised(ctx); err != nil {
		return err
	}
	d.out.Say("The CCM initialised the nodes (%s):", seconds(time.Since(start)))
	rows := [][]string{{"NODE", "PROVIDER-ID", "ZONE", "REGION", "TAINTS"}}
	for _, n := range d.nodes {
		k, err := d.cluster.Client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		taints := "<none>"
		if len(k.Spec.Taints) > 0 {
			taints = k.Spec.Taints[0].Key
		}
		rows = append(rows, []string{n.name, k.Spec.ProviderID, k.Labels[corev1.LabelTopologyZone], k.Labels[corev1.LabelTopologyRegion], taints})
	}
	d.out.Table(rows)

	if err := d.waitAgentLeases(ctx); err != nil {
		return err
	}
	d.out.Say("Every agent holds its Lease %s<node> in %s (renewed every %s; an agent silent for %s is dead).",
		announce.LeasePrefix, agentNamespace, d.cfg.NodeAgent.RenewInterval, d.cfg.NodeAgent.LeaseDuration)
	established, err := d.waitBGPSessions(ctx)
	if err != nil {
		return err
	}
	d.out.Say("The router has BGP sessions Established with %s.", strings.Join(established, ", "))
	return nil
}

// applyRBAC server-side applies the namespaces, ServiceAccounts and RBAC of
// deploy/base. The Deployment and DaemonSet are left out: the lab has no
// kubelet, so the binaries run as processes instead.
func (d *demo) applyRBAC(ctx context.Context) (string, error) {
	root, err := lab.RepoRoot()
	if err != nil {
		return "", err
	}
	objs, err := deploy.Read(filepath.Join(root, "deploy", "base"))
	if err != nil {
		return "", fmt.Errorf("reading deploy/base: %w", err)
	}
	summary, err := deploy.Apply(ctx, d.cluster.RestConfig, objs, deploy.ApplyOptions{FieldManager: "baremetal-demo", Kinds: deploy.IdentityKinds})
	if err != nil {
		return "", fmt.Errorf("applying the RBAC of deploy/base: %w", err)
	}
	return summary, nil
}

// startProxy starts the lab's stand-in for kube-proxy: the nodes accept a
// LoadBalancer Service's traffic on its ports only, and hold no address
// for it (the agents answer ARP and advertise routes; nothing is bound).
func (d *demo) startProxy() error {
	var hosts []*lab.Host
	for _, n := range d.nodes {
		hosts = append(hosts, n.host)
	}
	var err error
	if d.proxy, err = d.env.StartServiceProxy(d.cluster.Client, hosts...); err != nil {
		return err
	}
	d.out.Say("The nodes have no kube-proxy: the lab plays its iptables mode, taking each LoadBalancer address")
	d.out.Say("on the Service's ports only (`ip rule ... dport 80 lookup %d` and a local route in table %d).", lab.ProxyTable, lab.ProxyTable)
	return nil
}

func (d *demo) startCCM(ctx context.Context) error {
	kubeconfig, err := d.cluster.ServiceAccountKubeconfig(ctx, ccmNamespace, ccmAccount)
	if err != nil {
		return err
	}
	if d.ccmPort, err = freePort(); err != nil {
		return err
	}
	// Short leader-election timings so that a restarted demo CCM takes
	// over at once; leader election itself stays on, as in production.
	d.ccm, err = d.env.StartProcess("", "ccm", d.bins.Path("baremetal-cloud-controller-manager"),
		"--cloud-provider=baremetal", "--cloud-config="+d.cfgPath,
		"--kubeconfig="+kubeconfig, "--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--leader-elect=true", "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(d.ccmPort), "-v=2")
	if err != nil {
		return err
	}
	return recordProcesses(d.dir, d.env)
}

// waitCCM waits until the CCM answers /healthz on its secure port and holds
// the leader Lease. A port taken between choosing and binding it (other
// labs run on this machine too) gets the CCM restarted on another.
func (d *demo) waitCCM(ctx context.Context) error {
	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the CCM's self-signed serving certificate
	}}
	defer insecure.CloseIdleConnections()
	for attempt := 1; ; attempt++ {
		err := lab.Eventually(ctx, 60*time.Second, 100*time.Millisecond, func() error {
			if err := d.exited(d.ccm); err != nil {
				return err
			}
			resp, err := insecure.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", d.ccmPort))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("/healthz: %s", resp.Status)
			}
			l, err := d.cluster.Client.CoordinationV1().Leases(ccmNamespace).Get(ctx, ccmLeaderLease, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("no leader yet: %w", err)
			}
			if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
				return errors.New("no leader yet")
			}
			return nil
		})
		if err == nil {
			return nil
		}
		if attempt == 3 || !d.ccm.Exited() || !strings.Contains(d.ccm.Logs(), "address already in use") {
			return fmt.Errorf("the CCM did not become healthy and leader (log: %s): %w", d.ccm.LogPath, err)
		}
		if err := d.startCCM(ctx); err != nil {
			return err
		}
	}
}

func (d *demo) startAgent(n *node) error {
	n.starts++
	p, err := n.host.Start(fmt.Sprintf("agent-%d", n.starts), d.bins.Path("baremetal-node-agent"),
		"--kubeconfig="+n.kubeconfig, "--node-name="+n.name, "--cloud-config="+d.cfgPath,
		"--namespace="+agentNamespace, "--metrics-bind-address=:9101", "--health-bind-address=:9102", "-v=2")
	if err != nil {
		return err
	}
	n.agent = p
	return recordProcesses(d.dir, d.env)
}

func (d *demo) waitNodesInitialised(ctx context.Context) error {
	err := lab.Eventually(ctx, 60*time.Second, 200*time.Millisecond, func() error {
		if err := d.exited(d.ccm); err != nil {
			return err
		}
		for _, n := range d.nodes {
			k, err := d.cluster.Client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if k.Spec.ProviderID == "" || slices.ContainsFunc(k.Spec.Taints, func(t corev1.Taint) bool { return t.Key == lab.UninitializedTaint }) {
				return fmt.Errorf("node %s is not initialised yet (providerID %q, taints %v)", n.name, k.Spec.ProviderID, k.Spec.Taints)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the CCM did not initialise the nodes (log: %s): %w", d.ccm.LogPath, err)
	}
	return nil
}

func (d *demo) waitAgentLeases(ctx context.Context) error {
	err := lab.Eventually(ctx, 30*time.Second, 100*time.Millisecond, func() error {
		for _, n := range d.nodes {
			if err := d.exited(n.agent); err != nil {
				return err
			}
			if _, err := d.cluster.Client.CoordinationV1().Leases(agentNamespace).Get(ctx, announce.LeaseName(n.name), metav1.GetOptions{}); err != nil {
				return fmt.Errorf("the agent of %s holds no Lease yet (log: %s): %w", n.name, n.agent.LogPath, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the agents did not start: %w", err)
	}
	return nil
}

// waitBGPSessions waits until the router has an Established session with
// every node and returns them by name.
func (d *demo) waitBGPSessions(ctx context.Context) ([]string, error) {
	var names []string
	err := lab.Eventually(ctx, 30*time.Second, 200*time.Millisecond, func() error {
		var summary struct {
			IPv4Unicast struct {
				Peers map[string]struct {
					State string `json:"state"`
				} `json:"peers"`
			} `json:"ipv4Unicast"`
		}
		if err := d.router.VtyshJSON(ctx, "show bgp summary json", &summary); err != nil {
			return err
		}
		names = names[:0]
		for _, n := range d.nodes {
			if summary.IPv4Unicast.Peers[n.addr4.String()].State == "Established" {
				names = append(names, n.name)
			}
		}
		if len(names) != len(d.nodes) {
			return fmt.Errorf("BGP sessions Established with %v only", names)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("the nodes did not all peer with the router (agent logs in %s, FRR in %s): %w", d.env.Dir, d.router.Dir, err)
	}
	return names, nil
}

// createServices creates the two Services and shows their addresses and
// who announces them.
func (d *demo) createServices(ctx context.Context) error {
	d.out.Step("Creating Service %s (pool lan) and Service %s (pool routed), both type LoadBalancer", l2Service, bgpService)
	start := time.Now()
	for name, pool := range map[string]string{l2Service: "lan", bgpService: "routed"} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: svcNamespace, Name: name,
				Annotations: map[string]string{provider.AnnotationPool: pool}},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeLoadBalancer,
				Selector: map[string]string{"app": name},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP}},
			},
		}
		if _, err := d.cluster.Client.CoreV1().Services(svcNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Service %s: %w", name, err)
		}
	}
	var err error
	if d.l2VIP, err = d.waitIngress(ctx, l2Service); err != nil {
		return err
	}
	if d.bgpVIP, err = d.waitIngress(ctx, bgpService); err != nil {
		return err
	}
	for _, ip := range []netip.Addr{d.l2VIP, d.bgpVIP} {
		if err := d.proxy.WaitFor(ctx, ip, 80, 20*time.Second); err != nil {
			return fmt.Errorf("the lab's service proxy: %w", err)
		}
	}
	d.out.Say("The CCM gave both an address within %s. What `kubectl get svc` would show, with pool and mode:", seconds(time.Since(start)))
	rows := [][]string{{"NAMESPACE", "NAME", "TYPE", "EXTERNAL-IP", "POOL", "MODE"}}
	for _, s := range []struct {
		name string
		ip   netip.Addr
	}{{l2Service, d.l2VIP}, {bgpService, d.bgpVIP}} {
		pool, mode := "<none>", "<none>"
		if p, ok := d.cfg.PoolFor(s.ip); ok {
			pool, mode = p.Name, string(p.Mode)
		}
		rows = append(rows, []string{svcNamespace, s.name, string(corev1.ServiceTypeLoadBalancer), s.ip.String(), pool, mode})
	}
	d.out.Table(rows)

	l2, err := d.waitAnnouncers(ctx, l2Service, 1, nil)
	if err != nil {
		return err
	}
	bgp, err := d.waitAnnouncers(ctx, bgpService, len(d.nodes), nil)
	if err != nil {
		return err
	}
	hops, err := d.waitNextHops(ctx, d.bgpVIP, len(d.nodes), nil)
	if err != nil {
		return err
	}
	d.l2Owner = d.nodeNamed(l2[len(l2)-1].node)
	if d.l2Owner == nil {
		return fmt.Errorf("the layer-2 announcement came from an unknown node %q", l2[len(l2)-1].node)
	}
	d.out.Say("Who announces them, from the agents' Announcing events on the Services and the router's routing table:")
	d.out.Table([][]string{
		{"SERVICE", "EXTERNAL-IP", "ANNOUNCED BY", "HOW"},
		{l2Service, d.l2VIP.String(), d.l2Owner.name, "answers ARP for it on the lan segment (one owner, elected by hash)"},
		{bgpService, d.bgpVIP.String(), strings.Join(announcerNames(bgp), ", "), "BGP path to the router; router routes via " + d.hopNames(hops)},
	})
	slices.SortFunc(bgp, func(x, y announcement) int { return strings.Compare(x.node, y.node) })
	for _, a := range append(l2[len(l2)-1:], bgp...) {
		d.out.Say("event on %s from %s: %q", a.service, a.node, a.message)
	}
	return nil
}

func (d *demo) waitIngress(ctx context.Context, name string) (netip.Addr, error) {
	var ip netip.Addr
	err := lab.Eventually(ctx, 30*time.Second, 100*time.Millisecond, func() error {
		if err := d.exited(d.ccm); err != nil {
			return err
		}
		s, err := d.cluster.Client.CoreV1().Services(svcNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("Service %s has no EXTERNAL-IP yet", name)
		}
		ip, err = netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return err
	})
	if err != nil {
		return ip, fmt.Errorf("the CCM gave Service %s no address (log: %s): %w", name, d.ccm.LogPath, err)
	}
	return ip, nil
}

// announcement is one agent's Announcing event on a Service.
type announcement struct {
	service, node, message string
	at                     time.Time
}

// announcers returns the Announcing events on a Service, oldest first, one
// per node (its latest).
func (d *demo) announcers(ctx context.Context, service string) ([]announcement, error) {
	evs, err := d.cluster.Client.CoreV1().Events(svcNamespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + service + ",reason=" + apicontract.ReasonAnnouncing,
	})
	if err != nil {
		return nil, err
	}
	latest := map[string]announcement{}
	for _, e := range evs.Items {
		a := announcement{service: service, node: e.Source.Host, message: e.Message, at: e.LastTimestamp.Time}
		if a.node == "" {
			a.node = e.ReportingInstance
		}
		if e.EventTime.After(a.at) {
			a.at = e.EventTime.Time
		}
		if old, ok := latest[a.node]; !ok || !a.at.Before(old.at) {
			latest[a.node] = a
		}
	}
	var out []announcement
	for _, a := range latest {
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y announcement) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		return strings.Compare(x.node, y.node)
	})
	return out, nil
}

// waitAnnouncers waits until at least n nodes announced service, counting
// only nodes accepted by keep (nil: all).
func (d *demo) waitAnnouncers(ctx context.Context, service string, n int, keep func(announcement) bool) ([]announcement, error) {
	var got []announcement
	err := lab.Eventually(ctx, 20*time.Second, 100*time.Millisecond, func() error {
		all, err := d.announcers(ctx, service)
		if err != nil {
			return err
		}
		got = got[:0]
		for _, a := range all {
			if keep == nil || keep(a) {
				got = append(got, a)
			}
		}
		if len(got) < n {
			return fmt.Errorf("%d of %d nodes announced Service %s", len(got), n, service)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("no announcement seen (agent logs in %s): %w", d.env.Dir, err)
	}
	return got, nil
}

func announcerNames(as []announcement) []string {
	var names []string
	for _, a := range as {
		names = append(names, a.node)
	}
	slices.Sort(names)
	return names
}

// waitNextHops waits until the router's RIB routes vip over exactly n next
// hops that ok accepts (nil: all), and returns them.
func (d *demo) waitNextHops(ctx context.Context, vip netip.Addr, n int, ok func(netip.Addr) bool) ([]netip.Addr, error) {
	var hops []netip.Addr
	err := lab.Eventually(ctx, 20*time.Second, 100*time.Millisecond, func() error {
		var rib map[string][]lab.FRRRoute
		if err := d.router.VtyshJSON(ctx, "show ip route json", &rib); err != nil {
			return err
		}
		hops = bgpNextHops(rib, netip.PrefixFrom(vip, vip.BitLen()))
		if len(hops) != n || (ok != nil && !all(hops, ok)) {
			return fmt.Errorf("the router routes %s via %v", vip, hops)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("the router's route to %s: %w", vip, err)
	}
	return hops, nil
}

func all[T any](xs []T, ok func(T) bool) bool {
	for _, x := range xs {
		if !ok(x) {
			return false
		}
	}
	return true
}

// hopNames describes next hops as "192.0.2.11 (node-1), ...".
func (d *demo) hopNames(hops []netip.Addr) string {
	var parts []string
	for _, h := range hops {
		name := "unknown"
		for _, n := range d.nodes {
			if n.addr4 == h {
				name = n.name
			}
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", h, name))
	}
	return strings.Join(parts, ", ")
}

func (d *demo) nodeNamed(name string) *node {
	for _, n := range d.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func (d *demo) nodeByMAC(mac string) string {
	for _, n := range d.nodes {
		if n.host.MAC.String() == mac {
			return n.name
		}
	}
	return "an unknown host"
}

// exited reports a lab process that is gone, with the end of its log.
func (d *demo) exited(p *lab.Process) error {
	if p == nil || !p.Exited() {
		return nil
	}
	return fmt.Errorf("%s exited (log: %s):\n%s", p.Name, p.LogPath, tail(p.Logs(), 15))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cleanUp stops everything. The agents and the CCM go first, together, so
// the agents withdraw while the API server is still there.
func (d *demo) cleanUp(runErr error) {
	d.out.Step("Cleaning up")
	start := time.Now()
	var wg sync.WaitGroup
	procs := []*lab.Process{d.ccm}
	for _, n := range d.nodes {
		procs = append(procs, n.agent)
	}
	for _, p := range procs {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Stop(5 * time.Second); err != nil {
				d.out.Say("Stopping %s: %v", p.Name, err)
			}
		}()
	}
	wg.Wait()
	d.env.Close()
	labDir := filepath.Join(d.dir, labDirName)
	if runErr != nil {
		d.out.Say("Stopped every process and deleted the network namespaces; the logs stay in %s.", labDir)
	} else if err := os.RemoveAll(labDir); err != nil {
		d.out.Say("Removing %s: %v", labDir, err)
	} else {
		d.out.Say("Stopped every process, deleted the network namespaces and removed %s (%s).", labDir, seconds(time.Since(start)))
	}
	if err := removeState(d.dir); err != nil {
		d.out.Say("%v", err)
	}
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port for the CCM: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
