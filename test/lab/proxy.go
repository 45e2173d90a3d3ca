package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// ProxyTable is the routing table holding the proxy's local routes, and
// ProxyRulePref the priority of its policy rules (after the kernel's "lookup
// local" at 0, before "lookup main" at 32766).
const (
	ProxyTable    = 4242
	ProxyRulePref = 4242
)

// ServicePort is one load-balancer address and port the proxy takes.
type ServicePort struct {
	IP       netip.Addr
	Protocol corev1.Protocol // TCP, UDP or SCTP
	Port     int32
}

func (p ServicePort) String() string {
	return fmt.Sprintf("%s %s/%d", p.IP, strings.ToLower(string(p.Protocol)), p.Port)
}

// ServiceProxy plays kube-proxy in iptables mode on the lab's nodes, which
// have none: for every address in a LoadBalancer Service's
// status.loadBalancer.ingress and every port of the Service, each host gets
//
//	ip rule add to VIP ipproto PROTO dport PORT lookup ProxyTable pref ProxyRulePref
//	ip route add local VIP dev lo table ProxyTable
//
// so that it accepts traffic for the VIP on the Service's ports only, holds
// no address for it, and its kernel never answers ARP/NDP for it: only the
// node agents do. Like kube-proxy it keeps its rules while the API server is
// away, and removes them when a Service, port or address goes.
//
// Linux delivers such a packet to a local socket, but validates an IPv4
// source address only against the "local" table when it routes the answer,
// so the listening socket must be allowed to send from any address
// (IP_TRANSPARENT, as lab-echo sets it). kube-proxy has no such need: its
// DNAT hands the connection to a pod address.
type ServiceProxy struct {
	stop   chan struct{}
	done   chan struct{}
	wake   chan struct{}
	lister func() ([]*corev1.Service, error)

	mu      sync.Mutex
	hosts   []*Host
	applied map[*Host]map[ServicePort]bool
	vips    map[*Host]map[netip.Addr]bool
	lastErr error
	synced  bool
	stopped bool
}

// StartServiceProxy watches client's Services and keeps every host's rules
// in line with them until Stop (or Close). More hosts join with AddHost.
func (e *Env) StartServiceProxy(client kubernetes.Interface, hosts ...*Host) (*ServiceProxy, error) {
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Core().V1().Services()
	p := &ServiceProxy{
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		lister:  func() ([]*corev1.Service, error) { return inf.Lister().List(labels.Everything()) },
		hosts:   slices.Clone(hosts),
		applied: map[*Host]map[ServicePort]bool{},
		vips:    map[*Host]map[netip.Addr]bool{},
	}
	poke := func(any) { p.poke() }
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    poke,
		UpdateFunc: func(_, _ any) { p.poke() },
		DeleteFunc: poke,
	}); err != nil {
		return nil, fmt.Errorf("service proxy: %w", err)
	}
	factory.Start(p.stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		close(p.stop)
		factory.Shutdown()
		return nil, fmt.Errorf("service proxy: the Service informer did not sync within a minute")
	}
	e.onClose(p.Stop)
	go func() {
		defer close(p.done)
		defer factory.Shutdown()
		p.loop()
	}()
	p.poke()
	return p, nil
}

func (p *ServiceProxy) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *ServiceProxy) loop() {
	// A failed apply (a host being torn down, say) is retried.
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.wake:
		case <-retry.C:
			p.mu.Lock()
			failed := p.lastErr != nil
			p.mu.Unlock()
			if !failed {
				continue
			}
		}
		err := p.sync()
		p.mu.Lock()
		p.lastErr = err
		p.synced = true
		p.mu.Unlock()
	}
}

// AddHost gives h the rules of every current Service as well.
func (p *ServiceProxy) AddHost(h *Host) {
	p.mu.Lock()
	p.hosts = append(p.hosts, h)
	p.mu.Unlock()
	p.poke()
}

// Stop ends the watch and removes every rule and route the proxy added.
func (p *ServiceProxy) Stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hosts {
		// Best effort: the host may be gone already, taking its rules along.
		_ = p.applyLocked(h, nil)
	}
}

// desired computes the ports from the informer's Services.
func (p *ServiceProxy) desired() (map[ServicePort]bool, error) {
	svcs, err := p.lister()
	if err != nil {
		return nil, err
	}
	out := map[ServicePort]bool{}
	for _, s := range svcs {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		for _, ing := range s.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(ing.IP)
			if err != nil {
				continue
			}
			for _, sp := range s.Spec.Ports {
				proto := sp.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				out[ServicePort{IP: ip.Unmap(), Protocol: proto, Port: sp.Port}] = true
			}
		}
	}
	return out, nil
}

func (p *ServiceProxy) sync() error {
	want, err := p.desired()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []string
	for _, h := range p.hosts {
		if err := p.applyLocked(h, want); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("service proxy: %s", strings.Join(errs, "; "))
	}
	return nil
}

// applyLocked brings h's rules and routes to want in one `ip -batch`:
// removals first, then additions. It records what it applied only on
// success, so a failed batch is retried whole (deletions of what is
// already gone and additions of what exists are tolerated by -force).
func (p *ServiceProxy) applyLocked(h *Host, want map[ServicePort]bool) error {
	have := p.applied[h]
	haveVIPs := p.vips[h]
	wantVIPs := map[netip.Addr]bool{}
	for sp := range want {
		wantVIPs[sp.IP] = true
	}
	// One batch per family: `ip rule` needs -4 or -6, and batch lines
	// take no options.
	cmds := map[string][]string{}
	fam := func(ip netip.Addr) string {
		if ip.Is4() {
			return "-4"
		}
		return "-6"
	}
	for sp := range have {
		if !want[sp] {
			cmds[fam(sp.IP)] = append(cmds[fam(sp.IP)], "rule del "+ruleSpec(sp))
		}
	}
	for ip := range haveVIPs {
		if !wantVIPs[ip] {
			cmds[fam(ip)] = append(cmds[fam(ip)], "route del "+routeSpec(ip))
		}
	}
	for ip := range wantVIPs {
		if !haveVIPs[ip] {
			cmds[fam(ip)] = append(cmds[fam(ip)], "route replace "+routeSpec(ip))
		}
	}
	for sp := range want {
		if !have[sp] {
			cmds[fam(sp.IP)] = append(cmds[fam(sp.IP)], "rule add "+ruleSpec(sp))
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	for family, lines := range cmds {
		if err := ipBatch(h.Netns, family, lines); err != nil {
			return fmt.Errorf("host %q: %w", h.Name, err)
		}
	}
	p.applied[h] = want
	p.vips[h] = wantVIPs
	return nil
}

func ruleSpec(sp ServicePort) string {
	return fmt.Sprintf("to %s ipproto %s dport %d lookup %d pref %d",
		sp.IP, strings.ToLower(string(sp.Protocol)), sp.Port, ProxyTable, ProxyRulePref)
}

func routeSpec(ip netip.Addr) string {
	return fmt.Sprintf("local %s dev lo table %d", ip, ProxyTable)
}

// ipBatch runs commands through one `ip -n NETNS FAMILY -force -batch -`.
// With -force ip goes on after a failed line and exits non-zero; lines that
// failed only because the state is already there (EEXIST, ENOENT) are
// not errors.
func ipBatch(netns, family string, cmds []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := runStdin(ctx, strings.Join(cmds, "\n")+"\n", "ip", "-n", netns, family, "-force", "-batch", "-")
	if err == nil {
		return nil
	}
	var real []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.Contains(line, "File exists") || strings.Contains(line, "No such file or directory") ||
			strings.HasPrefix(line, "Command failed") {
			continue
		}
		real = append(real, line)
	}
	if len(real) == 0 {
		return nil
	}
	return fmt.Errorf("ip -batch: %s", strings.Join(real, "; "))
}

// Synced reports whether the proxy applied the Services it has seen, and
// the last error if that failed.
func (p *ServiceProxy) Synced() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.synced && p.lastErr == nil, p.lastErr
}

// Has reports whether every host has the rule for sp.
func (p *ServiceProxy) Has(sp ServicePort) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hosts {
		if !p.applied[h][sp] {
			return false
		}
	}
	return len(p.hosts) > 0
}

// Ports returns, sorted, what the proxy applied on h.
func (p *ServiceProxy) Ports(h *Host) []ServicePort {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ServicePort
	for sp := range p.applied[h] {
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b ServicePort) int {
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		if c := strings.Compare(string(a.Protocol), string(b.Protocol)); c != 0 {
			return c
		}
		return int(a.Port - b.Port)
	})
	return out
}

// WaitFor waits until every host has the rules for ip and port (TCP).
func (p *ServiceProxy) WaitFor(ctx context.Context, ip netip.Addr, port int32, timeout time.Duration) error {
	sp := ServicePort{IP: ip.Unmap(), Protocol: corev1.ProtocolTCP, Port: port}
	return Eventually(ctx, timeout, 20*time.Millisecond, func() error {
		if p.Has(sp) {
			return nil
		}
		if _, err := p.Synced(); err != nil {
			return err
		}
		return fmt.Errorf("the service proxy has not applied %s on every host yet", sp)
	})
}

// RouteGetLocal reports whether h's kernel delivers a TCP packet to ip:port
// locally (`ip route get IP ipproto tcp dport PORT` says "local").
func (h *Host) RouteGetLocal(ctx context.Context, ip netip.Addr, port int) (bool, error) {
	out, err := run(ctx, "ip", "-n", h.Netns, "route", "get", ip.String(), "ipproto", "tcp", "dport", strconv.Itoa(port))
	if err != nil {
		// An unreachable destination is an answer, not a failure.
		if strings.Contains(string(out), "unreachable") {
			return false, nil
		}
		return false, err
	}
	return strings.HasPrefix(strings.TrimSpace(string(out)), "local "), nil
}
