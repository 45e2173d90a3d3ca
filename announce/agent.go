// Package announce is the node agent: it keeps this node's Lease, judges
// which agents are alive, elects the owner of every VIP and makes the data
// plane (announce/l2, announce/bgp) match, one reconcile pass at a time.
//
// Agents learn everything they decide on from the API server: Services
// (status.loadBalancer.ingress), EndpointSlices, Nodes and the agents'
// Leases, so every agent computes the same owners from the same objects.
// The one thing they say to each other directly is a UDP heartbeat from the
// next-in-line node to an owner (see Heartbeats): a crash shows there well
// before the owner's Lease expires, at no cost in API writes.
package announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bgp"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bind"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/l2"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// Component names the agent in events.
const Component = "baremetal-node-agent"

// Options configure an Agent.
type Options struct {
	Client    kubernetes.Interface
	NodeName  string
	Namespace string
	Config    *config.Config
	// Clock defaults to the real clock.
	Clock clock.WithTicker
	// Recorder records events on Services; default: to the API server.
	Recorder record.EventRecorder
	Metrics  *Metrics
	// HeartbeatPort is the UDP port of the direct heartbeats between
	// agents that detect a crashed owner before its lease expires; 0
	// turns them off (failover then takes up to leaseDuration).
	HeartbeatPort int
}

// Heartbeat timing: a peer is suspected after about five missed beats.
const (
	heartbeatInterval = 100 * time.Millisecond
	suspectAfter      = 500 * time.Millisecond
)

// Agent is one node's agent.
type Agent struct {
	client    kubernetes.Interface
	node      string
	namespace string
	clock     clock.WithTicker
	log       logr.Logger
	recorder  record.EventRecorder
	metrics   *Metrics
	broadcast record.EventBroadcaster

	cfg   atomic.Pointer[config.Config]
	kick  chan struct{}
	renew chan struct{}

	live   *Liveness
	lease  *leaseKeeper
	l2     *l2.Announcer
	hb     *Heartbeats
	hbPort int

	services  cache.SharedIndexInformer
	slices    cache.SharedIndexInformer
	nodes     cache.SharedIndexInformer
	leases    cache.SharedIndexInformer
	synced    atomic.Bool
	factories []informers.SharedInformerFactory

	// Owned by the reconcile loop.
	leaving     atomic.Bool
	lastOwner   map[netip.Addr]string
	bgp         *bgp.Speaker
	bgpAds      map[netip.Addr][]string // VIP -> peers, as last applied
	lastBGPErr  string
	info        atomic.Pointer[AgentInfo]
	noIfaceSeen map[netip.Addr]bool

	// Read by the announcer's callbacks.
	vipMu       sync.Mutex
	vipServices map[netip.Addr][]*v1.Service
}

const (
	serviceIndex = "service"
	// handoverBound bounds how long a leaving agent waits for new owners.
	handoverBound = 2 * time.Second
)

// New builds an agent; Run starts it.
func New(opts Options) (*Agent, error) {
	if opts.NodeName == "" {
		return nil, errors.New("the node name is empty: set --node-name or $NODE_NAME")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	a := &Agent{
		client:      opts.Client,
		node:        opts.NodeName,
		namespace:   opts.Namespace,
		clock:       opts.Clock,
		metrics:     opts.Metrics,
		recorder:    opts.Recorder,
		kick:        make(chan struct{}, 1),
		renew:       make(chan struct{}, 1),
		lastOwner:   map[netip.Addr]string{},
		bgpAds:      map[netip.Addr][]string{},
		noIfaceSeen: map[netip.Addr]bool{},
		vipServices: map[netip.Addr][]*v1.Service{},
		hbPort:      opts.HeartbeatPort,
	}
	a.cfg.Store(opts.Config)
	na := opts.Config.NodeAgent
	// The view is fresh while our own renewals come back within two
	// renew intervals (never longer than the lease).
	a.live = NewLiveness(opts.Clock, a.node, na.LeaseDuration, suspectAfter)
	a.lease = &leaseKeeper{client: a.client, namespace: a.namespace, node: a.node, clock: opts.Clock, leaseDuration: na.LeaseDuration}
	a.info.Store(&AgentInfo{})
	return a, nil
}

// SetConfig replaces the configuration; the next pass uses it.
func (a *Agent) SetConfig(c *config.Config) {
	a.cfg.Store(c)
	a.metrics.ReloadSuccess.Set(1)
	a.trigger()
}

// RejectConfig records that a changed cloud-config was refused: the previous
// one stays in force. The Warning event goes on this agent's Node, where an
// operator looking at the node will see it.
func (a *Agent) RejectConfig(path string, err error) {
	a.metrics.ReloadFailures.Inc()
	a.metrics.ReloadSuccess.Set(0)
	a.recorder.Eventf(&v1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: a.node, UID: types.UID(a.node)},
		v1.EventTypeWarning, ReasonInvalidConfig,
		"The changed cloud-config %s was refused and the previous one stays in force: %v", path, err)
}

// Ready reports why the agent is not ready, or nil.
func (a *Agent) Ready() error {
	if !a.synced.Load() {
		return errors.New("informer caches are not synced yet")
	}
	if held, _, _ := a.lease.state(); !held {
		return errors.New("the agent does not hold its lease")
	}
	return nil
}

func (a *Agent) trigger() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Run runs the agent until ctx is cancelled, then hands its VIPs over,
// withdraws them and deletes its lease.
func (a *Agent) Run(ctx context.Context) error {
	a.log = klog.FromContext(ctx).WithValues("node", a.node)
	if a.recorder == nil {
		// Not ctx: the shutdown's events are recorded after ctx is done.
		a.broadcast = record.NewBroadcaster(record.WithContext(context.Background()))
		var pending atomic.Int64
		a.broadcast.StartRecordingToSink(countingSink{&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")}, &pending})
		a.recorder = countingRecorder{a.broadcast.NewRecorder(scheme.Scheme, v1.EventSource{Component: Component, Host: a.node}), &pending}
		defer func() {
			waitEvents(&pending, 2*time.Second)
			a.broadcast.Shutdown()
		}()
	}
	cfg := a.cfg.Load()
	a.l2 = l2.New(l2.Options{
		Logger:          a.log.WithName("l2"),
		GARPInterval:    cfg.NodeAgent.GARP(),
		HandoverTimeout: handoverBound,
		IsAgentMAC:      a.isAgentMAC,
		OnChange:        a.onL2Change,
	})
	// VIPs are no longer bound (DESIGN decision 6): remove what an older
	// agent bound on this node.
	if removed, err := bind.RemoveLegacy(func(ip netip.Addr) bool {
		_, ok := a.cfg.Load().PoolFor(ip)
		return ok
	}); err != nil || len(removed) > 0 {
		a.log.Info("Removed VIPs an older agent bound", "addresses", removed, "err", err)
	}
	if err := a.startInformers(ctx); err != nil {
		return err
	}

	// The data plane works in a context that outlives ctx, so that the
	// shutdown sequence can still use it.
	runCtx, stop := context.WithCancel(klog.NewContext(context.Background(), a.log))
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.renewLoop(runCtx) }()
	go func() { defer wg.Done(); a.watchLinks(runCtx) }()
	if a.hbPort > 0 {
		hb, err := ListenHeartbeats(a.hbPort, heartbeatInterval, suspectAfter, a.trigger, a.log.WithName("heartbeat"))
		if err != nil {
			a.log.Error(err, "Heartbeats are off; a crashed owner is replaced when its lease expires")
		} else {
			a.hb = hb
			wg.Add(1)
			go func() { defer wg.Done(); hb.Run(runCtx) }()
		}
	}

	a.refreshInfo()
	a.requestRenew()
	a.loop(ctx)

	a.shutdown(runCtx)
	stop()
	wg.Wait()
	for _, f := range a.factories {
		f.Shutdown()
	}
	return nil
}

func (a *Agent) startInformers(ctx context.Context) error {
	all := informers.NewSharedInformerFactory(a.client, 0)
	inNS := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithNamespace(a.namespace))
	a.factories = []informers.SharedInformerFactory{all, inNS}
	a.services = all.Core().V1().Services().Informer()
	a.nodes = all.Core().V1().Nodes().Informer()
	a.slices = all.Discovery().V1().EndpointSlices().Informer()
	a.leases = inNS.Coordination().V1().Leases().Informer()
	if err := a.slices.AddIndexers(cache.Indexers{serviceIndex: sliceService}); err != nil {
		return fmt.Errorf("indexing EndpointSlices: %w", err)
	}
	kick := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.trigger() },
		UpdateFunc: func(any, any) { a.trigger() },
		DeleteFunc: func(any) { a.trigger() },
	}
	for _, inf := range []cache.SharedIndexInformer{a.services, a.nodes, a.slices} {
		if _, err := inf.AddEventHandler(kick); err != nil {
			return fmt.Errorf("watching the API: %w", err)
		}
	}
	if _, err := a.leases.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.observeLease,
		UpdateFunc: func(_, obj any) { a.observeLease(obj) },
		DeleteFunc: a.forgetLease,
	}); err != nil {
		return fmt.Errorf("watching leases: %w", err)
	}
	all.Start(ctx.Done())
	inNS.Start(ctx.Done())
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), a.services.HasSynced, a.nodes.HasSynced, a.slices.HasSynced, a.leases.HasSynced) {
			return
		}
		a.synced.Store(true)
		a.log.V(2).Info("Caches synced")
		a.trigger()
	}()
	return nil
}

func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

func (a *Agent) observeLease(obj any) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok || !strings.HasPrefix(l.Name, LeasePrefix) {
		return
	}
	leaving, info := leaseInfo(l)
	if a.live.ObserveLease(strings.TrimPrefix(l.Name, LeasePrefix), l.ResourceVersion, leaving, info) {
		a.trigger()
	}
}

func (a *Agent) forgetLease(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	l, ok := obj.(*coordinationv1.Lease)
	if !ok || !strings.HasPrefix(l.Name, LeasePrefix) {
		return
	}
	a.live.ForgetLease(strings.TrimPrefix(l.Name, LeasePrefix))
	a.trigger()
}

func (a *Agent) isAgentMAC(mac net.HardwareAddr) bool {
	s := mac.String()
	for _, info := range a.live.Known() {
		if slices.Contains(info.MACs, s) {
			return true
		}
	}
	return false
}

func (a *Agent) requestRenew() {
	select {
	case a.renew <- struct{}{}:
	default:
	}
}

// renewLoop renews the lease every renewInterval, and at once when asked
// (the published AgentInfo changed).
func (a *Agent) renewLoop(ctx context.Context) {
	t := a.clock.NewTicker(a.cfg.Load().NodeAgent.RenewInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-a.renew:
		}
		if a.leaving.Load() {
			continue
		}
		heldBefore, _, _ := a.lease.state()
		rctx, cancel := context.WithTimeout(ctx, a.cfg.Load().NodeAgent.RenewInterval)
		err := a.lease.renew(rctx, false, *a.info.Load())
		cancel()
		if err != nil {
			a.metrics.RenewFailures.Inc()
			a.log.Error(err, "Renewing the agent lease failed")
		}
		if held, _, _ := a.lease.state(); held != heldBefore {
			a.log.Info("Agent lease state changed", "held", held)
			a.trigger()
		}
	}
}

// watchLinks reconciles at once when an interface goes up or down, so a
// node whose link fails tells its peers (UnreadyPools) without delay.
func (a *Agent) watchLinks(ctx context.Context) {
	ch := make(chan netlink.LinkUpdate, 16)
	if err := netlink.LinkSubscribe(ch, ctx.Done()); err != nil {
		a.log.Error(err, "Watching interface state failed; link changes are noticed on the next reconcile only")
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			a.trigger()
		}
	}
}

// loop runs reconcile passes until ctx is done.
func (a *Agent) loop(ctx context.Context) {
	expiry := a.clock.NewTimer(time.Hour)
	defer expiry.Stop()
	periodic := a.clock.NewTicker(30 * time.Second)
	defer periodic.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-expiry.C():
		case <-periodic.C():
		}
		next := a.reconcile(ctx)
		if !next.IsZero() {
			expiry.Stop()
			// A millisecond late, so the peer has surely expired.
			expiry.Reset(max(next.Sub(a.clock.Now())+time.Millisecond, time.Millisecond))
		}
	}
}

// reconcile is one pass: read one config snapshot and one view of the
// cluster, elect, and make the data plane match. It returns when the set of
// live agents next changes by itself.
func (a *Agent) reconcile(ctx context.Context) time.Time {
	cfg := a.cfg.Load()
	log := a.log
	links, err := l2.ReadLinks()
	if err != nil {
		log.Error(err, "Reading interfaces failed")
		return time.Time{}
	}
	self, hasNode := a.selfNode()
	a.publishInfo(cfg, links, self)
	if !a.synced.Load() || !hasNode {
		return time.Time{}
	}

	held, everHeld, unreachable := a.lease.state()
	fresh := a.live.Fresh()
	switch {
	case !everHeld:
		// Starting: VIPs bound before a restart stay until this agent
		// knows whether it still owns them.
		return time.Time{}
	case !held && !unreachable:
		// The API server answers but refuses our renewals: peers will
		// take our VIPs over, so stop announcing them (self-fencing).
		log.Info("Not holding the agent lease; withdrawing every VIP")
		a.withdrawAll(ctx)
		return time.Time{}
	case !held || !fresh:
		// The API server is unreachable, or our watch is behind: the view
		// is stale, so keep the status quo rather than act on it. Peers
		// with a fresh view that take a VIP over announce it, and the
		// announcer yields it to them.
		log.V(2).Info("View is stale; keeping the status quo", "leaseHeld", held, "fresh", fresh)
		return time.Time{}
	}

	live, next := a.liveMembers()
	if !a.leaving.Load() {
		live[a.node] = *a.info.Load()
	}
	a.metrics.LiveAgents.Set(float64(len(live)))
	nodes := a.nodeViews()
	vips := BuildVIPs(cfg, a.lbServices(), a.readyEndpoints)
	a.vipMu.Lock()
	a.vipServices = map[netip.Addr][]*v1.Service{}
	for ip, v := range vips {
		a.vipServices[ip] = v.Services
	}
	a.vipMu.Unlock()

	var wantL2 []l2.Announcement
	var wantBGP []*VIPView
	owners := map[netip.Addr]string{}
	suspected := map[string]bool{}
	if a.hb != nil {
		suspected = a.hb.Suspected()
	}
	watch := map[string]netip.Addr{}
	for ip, v := range vips {
		cands := Eligible(*v, nodes, live)
		switch v.Pool.Mode {
		case config.ModeBGP:
			if slices.ContainsFunc(cands, func(c Candidate) bool { return c.Node == a.node && !c.Draining }) {
				wantBGP = append(wantBGP, v)
			}
		default:
			ranked := Rank(ip, cands)
			if len(ranked) >= 2 && ranked[1].Node == a.node {
				if addr, ok := heartbeatAddr(nodes[ranked[0].Node]); ok {
					watch[ranked[0].Node] = addr
				}
			}
			// The owner is the first candidate this agent does not
			// suspect of being dead.
			i := slices.IndexFunc(ranked, func(c Candidate) bool { return c.Node == a.node || !suspected[c.Node] })
			if i < 0 {
				continue
			}
			owner := ranked[i].Node
			owners[ip] = owner
			if owner != a.node {
				continue
			}
			link, ok := links.InterfaceFor(ip, v.Pool.Interfaces, self.InternalIPs)
			if !ok {
				a.warnNoInterface(v)
				continue
			}
			wantL2 = append(wantL2, l2.Announcement{Addr: ip, Interface: link.Name})
			if prev := a.lastOwner[ip]; prev != "" && prev != a.node {
				if _, alive := live[prev]; (!alive || suspected[prev]) && !a.leavingPeer(prev) {
					a.metrics.Failovers.Inc()
					log.V(2).Info("Taking over a VIP from a dead agent", "vip", ip, "from", prev, "suspected", suspected[prev])
				}
			}
		}
	}
	if a.hb != nil {
		a.hb.SetTargets(watch)
	}
	a.lastOwner = owners
	sort.Slice(wantL2, func(i, j int) bool { return wantL2[i].Addr.Less(wantL2[j].Addr) })
	if err := a.l2.Set(ctx, wantL2); err != nil {
		log.Error(err, "Applying layer-2 announcements failed; retrying on the next pass")
	}
	a.metrics.AnnouncedVIPs.WithLabelValues(string(config.ModeLayer2)).Set(float64(len(a.l2.Announced())))
	a.reconcileBGP(ctx, cfg, self, wantBGP)
	return next
}

// heartbeatAddr is where a node's agent answers heartbeats: its first
// IPv4 InternalIP, else its first InternalIP.
func heartbeatAddr(n NodeView) (netip.Addr, bool) {
	for _, ip := range n.InternalIPs {
		if ip.Is4() {
			return ip, true
		}
	}
	if len(n.InternalIPs) > 0 {
		return n.InternalIPs[0], true
	}
	return netip.Addr{}, false
}

func (a *Agent) selfNode() (NodeView, bool) {
	obj, ok, err := a.nodes.GetStore().GetByKey(a.node)
	if err != nil || !ok {
		return NodeView{}, false
	}
	return nodeView(obj.(*v1.Node)), true
}

func (a *Agent) nodeViews() map[string]NodeView {
	out := map[string]NodeView{}
	for _, obj := range a.nodes.GetStore().List() {
		n := nodeView(obj.(*v1.Node))
		out[n.Name] = n
	}
	return out
}

func (a *Agent) lbServices() []*v1.Service {
	var out []*v1.Service
	for _, obj := range a.services.GetStore().List() {
		svc := obj.(*v1.Service)
		if svc.Spec.Type == v1.ServiceTypeLoadBalancer && len(svc.Status.LoadBalancer.Ingress) > 0 {
			out = append(out, svc)
		}
	}
	return out
}

func (a *Agent) readyEndpoints(key string) map[string]int {
	objs, err := a.slices.GetIndexer().ByIndex(serviceIndex, key)
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, o := range objs {
		for n, c := range summarizeSlice(o.(*discoveryv1.EndpointSlice)).Ready {
			out[n] += c
		}
	}
	return out
}

// publishInfo computes what this agent tells its peers (MACs, layer-2
// pools it cannot announce) and renews the lease at once when it changed.
func (a *Agent) publishInfo(cfg *config.Config, links l2.Links, self NodeView) {
	info := AgentInfo{MACs: macStrings(links.MACs())}
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		if p.Mode != config.ModeLayer2 {
			continue
		}
		ready := true
		for _, r := range p.Ranges {
			l, ok := links.InterfaceFor(r.First, p.Interfaces, self.InternalIPs)
			if !ok || !l.Up {
				ready = false
				break
			}
		}
		if !ready {
			info.UnreadyPools = append(info.UnreadyPools, p.Name)
		}
	}
	old := a.info.Load()
	if slices.Equal(old.MACs, info.MACs) && slices.Equal(old.UnreadyPools, info.UnreadyPools) {
		return
	}
	a.info.Store(&info)
	a.log.V(2).Info("Publishing agent state", "macs", info.MACs, "unreadyPools", info.UnreadyPools)
	a.requestRenew()
}

// refreshInfo publishes the MACs before the first renewal, so peers never
// see this agent without them.
func (a *Agent) refreshInfo() {
	links, err := l2.ReadLinks()
	if err != nil {
		return
	}
	a.info.Store(&AgentInfo{MACs: macStrings(links.MACs())})
}

func (a *Agent) warnNoInterface(v *VIPView) {
	if a.noIfaceSeen[v.IP] {
		return
	}
	a.noIfaceSeen[v.IP] = true
	for _, svc := range v.Services {
		a.recorder.Eventf(svc, v1.EventTypeWarning, ReasonNoInterface,
			"Node %s cannot announce %s: it has none of the interfaces of pool %q (%s), and no interface on the address's subnet or with the node's InternalIP",
			a.node, v.IP, v.Pool.Name, strings.Join(v.Pool.Interfaces, ", "))
	}
}

// onL2Change turns a change that took effect into events and metrics.
func (a *Agent) onL2Change(c l2.Change) {
	a.vipMu.Lock()
	svcs := a.vipServices[c.Addr]
	a.vipMu.Unlock()
	for _, svc := range svcs {
		switch c.Kind {
		case l2.Announced:
			a.recorder.Eventf(svc, v1.EventTypeNormal, ReasonAnnouncing,
				"Announcing %s from node %s on interface %s (layer2)", c.Addr, a.node, c.Interface)
		case l2.Withdrawn:
			a.recorder.Eventf(svc, v1.EventTypeNormal, ReasonWithdrawn,
				"Node %s stopped announcing %s on interface %s (layer2)", a.node, c.Addr, c.Interface)
		case l2.Conflict:
			a.recorder.Eventf(svc, v1.EventTypeWarning, ReasonAddressConflict,
				"Not announcing %s from node %s: another host (MAC %s) already answers for it on %s; remove the address from that host or from the pool (retrying in %s)",
				c.Addr, a.node, c.MAC, c.Interface, l2.DefaultProbeRetry)
		}
	}
	if c.Kind == l2.Conflict {
		a.metrics.ProbeConflicts.Inc()
	}
	if c.Kind == l2.Withdrawn {
		delete(a.noIfaceSeen, c.Addr)
	}
}

func (a *Agent) withdrawAll(ctx context.Context) {
	if err := a.l2.WithdrawAll(); err != nil {
		a.log.Error(err, "Withdrawing layer-2 VIPs failed")
	}
	a.metrics.AnnouncedVIPs.WithLabelValues(string(config.ModeLayer2)).Set(float64(len(a.l2.Announced())))
	if a.bgp != nil {
		a.applyBGPAds(ctx, nil, nil)
	}
}

// shutdown hands every VIP over: it marks the lease leaving so peers take
// over at once, waits until they announced (or a bound passes), withdraws
// what is left, and deletes the lease.
func (a *Agent) shutdown(ctx context.Context) {
	a.leaving.Store(true)
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	if err := a.lease.renew(rctx, true, *a.info.Load()); err != nil {
		a.log.Error(err, "Marking the agent lease as leaving failed; peers take over when it expires")
	}
	cancel()
	if live, _ := a.liveMembers(); len(live) == 0 {
		// Nobody to hand over to: waiting would only delay the exit.
		if err := a.l2.WithdrawAll(); err != nil {
			a.log.Error(err, "Withdrawing layer-2 VIPs failed")
		}
	} else if err := a.l2.HandOver(ctx); err != nil {
		a.log.Error(err, "Withdrawing layer-2 VIPs failed")
	}
	if a.bgp != nil {
		if err := a.bgp.Stop(ctx); err != nil {
			a.log.Error(err, "Stopping the BGP speaker failed")
		}
	}
	if err := a.l2.Close(); err != nil {
		a.log.Error(err, "Closing the layer-2 announcer failed")
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	if err := a.lease.delete(dctx); err != nil {
		a.log.Error(err, "Deleting the agent lease failed")
	}
	cancel()
	a.log.Info("Handed over and withdrew every VIP", "took", time.Since(start))
}

// liveMembers is the interim bridge to the v1 loop: members judged Up.
func (a *Agent) liveMembers() (map[string]AgentInfo, time.Time) {
	v, next := a.live.Verdicts()
	live := map[string]AgentInfo{}
	for n, info := range a.live.Members() {
		if v[n].State == Up {
			live[n] = info
		}
	}
	return live, next
}

func (a *Agent) leavingPeer(n string) bool {
	v, _ := a.live.Verdicts()
	return v[n].State == Leaving
}
