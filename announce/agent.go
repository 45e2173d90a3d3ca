// Package announce is the node agent: it keeps this node's Lease
// (membership), exchanges authenticated heartbeats with the agents that
// share VIPs with it (liveness), plans who answers for every VIP with one
// pure function (Decide) and makes the data planes (announce/l2,
// announce/bgp) match. docs/agent-model.md describes the model and the
// faults it survives.
package announce

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
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
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/heartbeat"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/l2"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// Component names the agent in events.
const Component = "baremetal-node-agent"

// Options configure an Agent. Client, NodeName, Namespace and Config are
// required; the rest default to the real thing.
type Options struct {
	Client    kubernetes.Interface
	NodeName  string
	Namespace string
	Config    *config.Config
	// Clock is every timer's source; the real clock if nil.
	Clock clock.WithTicker
	// Recorder records events on Services; default: to the API server.
	Recorder record.EventRecorder
	Metrics  *Metrics
	// HeartbeatPort is the UDP port of the heartbeats between agents
	// (heartbeat.DefaultPort, 7474); 0 turns them off, and failover then
	// waits for the Lease backstop (nodeAgent.leaseDuration).
	HeartbeatPort int
	// HeartbeatKeyFile, if set, holds the heartbeat key instead of the
	// Secret baremetal-node-agent-heartbeat.
	HeartbeatKeyFile string

	// For tests: the data planes, the interfaces, the heartbeat socket
	// and the removal of an older agent's bound VIPs.
	L2            L2Plane
	BGP           BGPPlane
	ReadLinks     func() (l2.Links, error)
	HeartbeatConn heartbeat.PacketConn
	RemoveLegacy  func(ours func(netip.Addr) bool) ([]netip.Addr, error)
}

// Timing of the agent's own loops.
const (
	// handoverBound bounds how long a leaving agent waits for new owners.
	handoverBound = 2 * time.Second
	// resyncEvery re-plans even when nothing was observed (interfaces
	// that changed without a netlink event, say).
	resyncEvery = 30 * time.Second
	// unsyncedLogEvery repeats the "cannot list" log while it lasts.
	unsyncedLogEvery = 30 * time.Second
)

// Agent is one node's agent.
type Agent struct {
	opts      Options
	client    kubernetes.Interface
	node      string
	namespace string
	clock     clock.WithTicker
	log       logr.Logger
	recorder  record.EventRecorder
	metrics   *Metrics

	cfg    atomic.Pointer[config.Config]
	kick   chan struct{}
	report chan struct{}
	renew  chan struct{}

	live  *Liveness
	lease *leaseKeeper
	l2    L2Plane
	bgp   BGPPlane
	hb    *heartbeat.Heartbeats

	services  cache.SharedIndexInformer
	slices    cache.SharedIndexInformer
	nodes     cache.SharedIndexInformer
	synced    atomic.Bool
	factories []informers.SharedInformerFactory
	pools     *poolWatches

	// Published on the Lease; written by the reconcile loop.
	info      atomic.Pointer[AgentInfo]
	poolNames atomic.Pointer[[]string]
	leaving   atomic.Bool

	// Takeover probes: of VIPs, and of silent members' own addresses.
	// One probe per address at a time.
	probeMu    sync.Mutex
	probes     map[netip.Addr]ProbeResult
	nodeProbes map[string]ProbeResult
	probing    map[netip.Addr]bool

	// vipServices is written by the reconcile loop under svcMu and read
	// by the layer-2 plane's callback.
	svcMu       sync.Mutex
	vipServices map[netip.Addr][]*v1.Service

	// Owned by the reconcile loop.
	owned       map[netip.Addr]bool
	applied     map[netip.Addr]applied // as last reported
	bgpWant     []BGPAdvertisement
	bgpApplied  map[netip.Addr][]string
	noIfaceSeen map[netip.Addr]bool
	fenced      bool
	lastBGPErr  string
	started     time.Time
	lastUnsync  time.Time
	followLinks bool // real interfaces: follow netlink
}

// New builds an agent; Run starts it.
func New(opts Options) (*Agent, error) {
	if opts.NodeName == "" {
		return nil, errors.New("the node name is empty: set --node-name or $NODE_NAME")
	}
	if opts.Config == nil {
		return nil, errors.New("no cloud-config given")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	watchLinks := opts.ReadLinks == nil
	if opts.ReadLinks == nil {
		opts.ReadLinks = l2.ReadLinks
	}
	if opts.RemoveLegacy == nil {
		opts.RemoveLegacy = bind.RemoveLegacy
	}
	a := &Agent{
		opts:        opts,
		client:      opts.Client,
		node:        opts.NodeName,
		namespace:   opts.Namespace,
		clock:       opts.Clock,
		metrics:     opts.Metrics,
		recorder:    opts.Recorder,
		kick:        make(chan struct{}, 1),
		report:      make(chan struct{}, 1),
		renew:       make(chan struct{}, 1),
		probes:      map[netip.Addr]ProbeResult{},
		nodeProbes:  map[string]ProbeResult{},
		probing:     map[netip.Addr]bool{},
		owned:       map[netip.Addr]bool{},
		applied:     map[netip.Addr]applied{},
		vipServices: map[netip.Addr][]*v1.Service{},
		bgpApplied:  map[netip.Addr][]string{},
		noIfaceSeen: map[netip.Addr]bool{},
		log:         klog.Background(),
		followLinks: watchLinks,
	}
	a.cfg.Store(opts.Config)
	a.setSilent(SilentNoView) // until its first pass says otherwise
	na := opts.Config.NodeAgent
	a.live = NewLiveness(opts.Clock, a.node, na.LeaseDuration, na.Suspect())
	a.lease = newLeaseKeeper(a.client, a.namespace, a.node, opts.Clock, na.LeaseDuration)
	a.info.Store(&AgentInfo{})
	a.poolNames.Store(&[]string{})
	a.bgp = opts.BGP
	if a.bgp == nil {
		a.bgp = &speakerPlane{opts: func() bgp.Options {
			self, _ := a.selfNode()
			o := speakerOptions(a.cfg.Load(), a.node, self)
			o.Logger = a.log.WithName("bgp")
			o.OnEvent = a.onBGPEvent
			return o
		}}
	}
	a.metrics.Registry.MustRegister(bgp.NewCollector(a.bgp.Peers))
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
		v1.EventTypeWarning, apicontract.ReasonInvalidConfig,
		"The changed cloud-config %s was refused and the previous one stays in force: %v", path, err)
}

// Ready reports why the agent is not announcing, or nil.
func (a *Agent) Ready() error {
	if !a.synced.Load() {
		return errors.New("the agent has not listed Services, EndpointSlices and Nodes from the API server yet; it announces nothing until it has")
	}
	if _, everHeld, _ := a.lease.state(); !everHeld {
		return errors.New("the agent has not written its Lease yet, so its peers do not count it")
	}
	if a.metrics != nil && isFenced(a) {
		return fmt.Errorf("the agent has not heard the API server for longer than nodeAgent.staleViewTimeout (%s) and announces nothing", a.cfg.Load().NodeAgent.StaleView())
	}
	return nil
}

func isFenced(a *Agent) bool {
	t := a.cfg.Load().NodeAgent.StaleView()
	last := a.lease.lastContact()
	return t > 0 && !last.IsZero() && a.clock.Since(last) > t
}

func (a *Agent) trigger() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) requestReport() {
	select {
	case a.report <- struct{}{}:
	default:
	}
}

func (a *Agent) requestRenew() {
	select {
	case a.renew <- struct{}{}:
	default:
	}
}

// Run runs the agent until ctx is cancelled, then hands its VIPs over,
// withdraws them and deletes its lease.
func (a *Agent) Run(ctx context.Context) error {
	a.log = klog.FromContext(ctx).WithValues("node", a.node)
	a.started = a.clock.Now()
	pending := newPendingEvents()
	if a.recorder == nil {
		// Not ctx: the shutdown's events are recorded after ctx is done.
		b := record.NewBroadcaster(record.WithContext(context.Background()))
		b.StartRecordingToSink(countingSink{&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")}, pending})
		a.recorder = countingRecorder{b.NewRecorder(scheme.Scheme, v1.EventSource{Component: Component, Host: a.node}), pending}
		defer func() {
			wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			pending.wait(wctx)
			cancel()
			b.Shutdown()
		}()
	}
	cfg := a.cfg.Load()
	a.l2 = a.opts.L2
	if a.l2 == nil {
		a.l2 = l2.New(l2.Options{
			Logger:          a.log.WithName("l2"),
			Clock:           a.clock,
			GARPInterval:    cfg.NodeAgent.GARP(),
			HandoverTimeout: handoverBound,
			IsAgentMAC:      a.isAgentMAC,
			OnChange:        a.onL2Change,
		})
	}
	// VIPs are no longer bound (DESIGN decision 6): remove what an older
	// agent bound on this node.
	if removed, err := a.opts.RemoveLegacy(func(ip netip.Addr) bool {
		_, ok := a.cfg.Load().PoolFor(ip)
		return ok
	}); err != nil {
		a.log.Error(err, "Removing VIPs an older agent bound failed", "removed", removed)
	} else if len(removed) > 0 {
		a.log.Info("Removed VIPs an older agent bound", "addresses", removed)
	}
	if err := a.startInformers(ctx); err != nil {
		return err
	}

	// The data plane works in a context that outlives ctx, so that the
	// shutdown sequence can still use it.
	runCtx, stop := context.WithCancel(klog.NewContext(context.Background(), a.log))
	defer stop()
	var wg sync.WaitGroup
	// Renewals run on their own goroutine, each bounded, and stop before
	// the shutdown writes the Lease (an in-flight renewal to an
	// unreachable API server is cancelled, not waited for).
	renewCtx, stopRenewing := context.WithCancel(runCtx)
	defer stopRenewing()
	wg.Add(1)
	go func() { defer wg.Done(); a.renewLoop(renewCtx) }()
	if a.followLinks {
		wg.Add(1)
		go func() { defer wg.Done(); a.watchLinks(runCtx) }()
	}
	if err := a.startHeartbeats(runCtx, &wg); err != nil {
		a.log.Error(err, "Heartbeats are off; a crashed owner is replaced when its Lease expires (nodeAgent.leaseDuration)")
	}

	// Publish the MACs before the first renewal, so peers never see this
	// agent without them.
	if links, err := a.opts.ReadLinks(); err == nil {
		a.info.Store(&AgentInfo{MACs: macStrings(links.MACs())})
	}
	a.requestRenew()
	a.loop(ctx)

	stopRenewing()
	a.shutdown(runCtx)
	stop()
	wg.Wait()
	for _, f := range a.factories {
		f.Shutdown()
	}
	a.pools.stopAll()
	return nil
}

// startHeartbeats opens the heartbeat socket and loads the key.
func (a *Agent) startHeartbeats(ctx context.Context, wg *sync.WaitGroup) error {
	conn := a.opts.HeartbeatConn
	if conn == nil {
		if a.opts.HeartbeatPort == 0 {
			return errors.New("--heartbeat-port is 0")
		}
		c, _, err := heartbeat.ListenUDP(a.opts.HeartbeatPort)
		if err != nil {
			return err
		}
		conn = c
	}
	a.hb = heartbeat.New(heartbeat.Options{
		Self: a.node, Conn: conn, PeerPort: a.opts.HeartbeatPort, Clock: a.clock,
		Interval: a.cfg.Load().NodeAgent.Heartbeat(),
		Logger:   a.log.WithName("heartbeat"),
		OnHeard:  a.heard,
		OnDrop:   func(reason string) { a.metrics.HeartbeatDrops.WithLabelValues(reason).Inc() },
	})
	wg.Add(2)
	go func() { defer wg.Done(); a.hb.Run(ctx) }()
	go func() { defer wg.Done(); a.keepHeartbeatKey(ctx) }()
	return nil
}

// keepHeartbeatKey loads the key (retrying while the API server does not
// answer) and follows its rotations.
func (a *Agent) keepHeartbeatKey(ctx context.Context) {
	set := func(k heartbeatKeys, err error) bool {
		if err != nil {
			a.log.Error(err, "The heartbeat key is unusable; keeping the previous one (without one, this agent sends no heartbeats and its peers probe its VIPs instead)")
			return false
		}
		a.hb.SetKeys(k.Sign, k.Accepted...)
		return true
	}
	retry := a.clock.NewTicker(5 * time.Second)
	defer retry.Stop()
	if path := a.opts.HeartbeatKeyFile; path != "" {
		set(readHeartbeatKeyFile(path))
		for {
			select {
			case <-ctx.Done():
				return
			case <-retry.C():
				if k, err := readHeartbeatKeyFile(path); err == nil {
					set(k, nil)
				}
			}
		}
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok := set(ensureHeartbeatSecret(rctx, a.client, a.namespace))
		cancel()
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-retry.C():
		}
	}
	f, err := watchHeartbeatSecret(ctx, a.client, a.namespace, func(k heartbeatKeys, err error) { set(k, err) })
	if err != nil {
		a.log.Error(err, "Watching the heartbeat key failed; a rotation takes effect when the agent restarts")
		return
	}
	<-ctx.Done()
	f.Shutdown()
}

func (a *Agent) startInformers(ctx context.Context) error {
	all := informers.NewSharedInformerFactory(a.client, 0)
	a.factories = []informers.SharedInformerFactory{all}
	a.services = all.Core().V1().Services().Informer()
	a.nodes = all.Core().V1().Nodes().Informer()
	a.slices = all.Discovery().V1().EndpointSlices().Informer()
	for inf, tr := range map[cache.SharedIndexInformer]cache.TransformFunc{
		a.services: transformService, a.nodes: transformNode, a.slices: transformSlice,
	} {
		if err := inf.SetTransform(tr); err != nil {
			return fmt.Errorf("setting up the API watch: %w", err)
		}
	}
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
	a.pools = newPoolWatches(a.client, a.namespace, a.live, a.trigger)
	all.Start(ctx.Done())
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), a.services.HasSynced, a.nodes.HasSynced, a.slices.HasSynced) {
			return
		}
		a.synced.Store(true)
		a.metrics.ViewSynced.Set(1)
		a.log.V(2).Info("Caches synced")
		a.trigger()
	}()
	return nil
}

const serviceIndex = "service"

func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*EndpointSummary)
	if !ok || s.Service == "" {
		return nil, nil
	}
	return []string{s.Service}, nil
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

// renewLoop renews the lease every renewInterval, and at once when asked
// (what the agent publishes changed).
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
		_, everBefore, _ := a.lease.state()
		rctx, cancel := context.WithTimeout(ctx, a.cfg.Load().NodeAgent.RenewInterval)
		err := a.lease.renew(rctx, false, *a.info.Load(), *a.poolNames.Load())
		cancel()
		if err != nil {
			a.metrics.RenewFailures.Inc()
			a.log.Error(err, "Renewing the agent Lease failed")
		}
		if _, ever, _ := a.lease.state(); ever != everBefore {
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

// loop runs reconcile passes until ctx is done: one at once (so an agent
// that cannot reach the API server says so at start), then whenever
// something was observed (a watch event, a heartbeat that changed a
// verdict, a probe's result) and when the last pass said the plan changes
// by itself (a verdict turning Silent with the passing of time). Nothing
// in a pass waits for the API server.
func (a *Agent) loop(ctx context.Context) {
	next := a.clock.NewTimer(time.Hour)
	defer next.Stop()
	periodic := a.clock.NewTicker(resyncEvery)
	defer periodic.Stop()
	for {
		at := a.reconcile(ctx)
		next.Stop()
		if !at.IsZero() {
			// A millisecond late, so the change has surely happened.
			next.Reset(max(at.Sub(a.clock.Now())+time.Millisecond, time.Millisecond))
		}
		if !a.wait(ctx, next, periodic) {
			return
		}
	}
}

// wait blocks until the next pass is due; false when ctx is done.
func (a *Agent) wait(ctx context.Context, next clock.Timer, periodic clock.Ticker) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-a.report:
			a.reportApplied()
			continue
		case <-a.kick:
		case <-next.C():
		case <-periodic.C():
		}
		return true
	}
}

// reconcile is one pass: read one config snapshot and one view, plan, and
// make the data planes match. It returns when the plan next changes by
// itself (zero if never).
func (a *Agent) reconcile(ctx context.Context) time.Time {
	cfg := a.cfg.Load()
	links, err := a.opts.ReadLinks()
	if err != nil {
		a.log.Error(err, "Reading interfaces failed")
		return time.Time{}
	}
	self, hasNode := a.selfNode()
	a.publish(cfg, links, self, hasNode)
	if !a.synced.Load() {
		a.setSilent(SilentNoView)
		if a.lastUnsync.IsZero() || a.clock.Since(a.lastUnsync) >= unsyncedLogEvery {
			a.lastUnsync = a.clock.Now()
			a.log.Info("Not announcing anything: the agent has not listed Services, EndpointSlices and Nodes from the API server yet (an agent restarted while the API server is unreachable has no view to act on; its peers take its VIPs over)", "waiting", a.clock.Since(a.started).Round(time.Second))
		}
		return a.clock.Now().Add(unsyncedLogEvery)
	}
	if _, everHeld, _ := a.lease.state(); !everHeld {
		a.setSilent(SilentNoLease)
		return time.Time{}
	}
	if !hasNode {
		a.setSilent(SilentNoNode)
		return time.Time{}
	}
	if isFenced(a) {
		a.setSilent(SilentStaleView)
		a.fence(ctx, cfg)
		return time.Time{}
	}
	a.setSilent("")
	if a.fenced {
		a.fenced = false
		a.metrics.Fenced.Set(0)
		a.log.Info("The API server answers again; announcing from a fresh view")
	}

	a.live.SetSuspectAfter(cfg.NodeAgent.Suspect())
	if a.hb != nil {
		a.hb.SetInterval(cfg.NodeAgent.Heartbeat())
	}
	members := a.live.Members()
	verdicts := a.live.Verdicts()
	up := 1
	for n := range members {
		if verdicts[n].State == Up {
			up++
		}
	}
	a.metrics.LiveAgents.Set(float64(up))
	vips := BuildVIPs(cfg, a.lbServices(), a.readyEndpoints)
	a.probeMu.Lock()
	probes := maps.Clone(a.probes)
	nodeProbes := maps.Clone(a.nodeProbes)
	a.probeMu.Unlock()
	// A pool whose members are not all known yet is one this node cannot
	// serve for now (to its own planner; peers are not told).
	selfInfo := *a.info.Load()
	unsynced := a.pools.unsynced()
	if len(unsynced) > 0 {
		selfInfo.UnreadyPools = append(slices.Clone(selfInfo.UnreadyPools), unsynced...)
		a.log.V(2).Info("Waiting for the Leases of pools before answering for their VIPs", "pools", unsynced)
	}
	plan := Decide(PlanInput{
		Config: cfg, Self: a.node, SelfInfo: selfInfo, Leaving: a.leaving.Load(),
		Links: links, Nodes: a.nodeViews(), VIPs: vips, Members: members, Health: verdicts,
		Probes: probes, NodeProbes: nodeProbes, Owned: a.owned, Now: a.clock.Now(),
	})
	a.owned = plan.Owned
	svcs := make(map[netip.Addr][]*v1.Service, len(vips))
	for ip, v := range vips {
		svcs[ip] = v.Services
	}
	a.svcMu.Lock()
	a.vipServices = svcs
	a.svcMu.Unlock()
	if a.hb != nil {
		targets := make([]string, 0, len(plan.Heartbeat))
		for n := range plan.Heartbeat {
			targets = append(targets, n)
		}
		a.live.SetTargets(targets)
		a.hb.SetTargets(plan.Heartbeat)
	}
	// After SetTargets: a peer that just became a target and is never heard
	// turns silent suspectAfter from now.
	next := a.live.NextChange()
	if err := a.l2.Set(ctx, plan.L2); err != nil {
		a.log.Error(err, "Answering for some layer-2 VIPs failed; retrying on the next pass")
	}
	a.applyBGP(ctx, cfg, self, plan.BGP)
	if a.hb != nil {
		a.hb.SetAnswering(true)
	}
	for _, t := range plan.Takeovers {
		a.metrics.Failovers.Inc()
		a.log.Info("Taking a VIP over from a member that is silent and does not answer for it", "vip", t.VIP, "from", t.From)
	}
	for _, p := range plan.Probes {
		a.startProbe(ctx, p.Interface, p.Addr, func(r ProbeResult) { a.probes[p.Addr] = r })
	}
	for _, p := range plan.NodeProbes {
		a.startProbe(ctx, p.Interface, p.Addr, func(r ProbeResult) {
			a.nodeProbes[p.Node] = r
			if r.MAC != nil {
				a.metrics.StalledAgents.Inc()
				a.log.Info("A silent member's node still answers for its own address: its agent gets nodeAgent.stalledAgentGrace before its VIPs are taken over",
					"member", p.Node, "address", p.Addr, "mac", r.MAC.String(), "grace", cfg.NodeAgent.StallGrace())
			}
		})
	}
	a.warnNoInterface(plan.NoInterface)
	a.reportApplied()
	if len(unsynced) > 0 {
		// Syncing an empty pool observes nothing: look again soon.
		plan.next(a.clock.Now().Add(100 * time.Millisecond))
	}
	switch {
	case next.IsZero():
		return plan.Next
	case plan.Next.IsZero() || next.Before(plan.Next):
		return next
	}
	return plan.Next
}

// fence stops announcing: the view is too old to trust (a deleted
// Service's address may have been given to another). Heartbeats stop too,
// so peers with a fresh view take the VIPs over.
func (a *Agent) fence(ctx context.Context, cfg *config.Config) {
	if !a.fenced {
		a.fenced = true
		a.metrics.Fenced.Set(1)
		a.log.Info("Not heard from the API server for longer than nodeAgent.staleViewTimeout; withdrawing every VIP until it answers", "staleViewTimeout", cfg.NodeAgent.StaleView(), "lastContact", a.lease.lastContact())
	}
	if a.hb != nil {
		a.hb.SetAnswering(false)
	}
	if err := a.l2.WithdrawAll(); err != nil {
		a.log.Error(err, "Withdrawing layer-2 VIPs failed")
	}
	a.owned = map[netip.Addr]bool{}
	self, _ := a.selfNode()
	a.applyBGP(ctx, cfg, self, nil)
	a.reportApplied()
}

// heard handles an authenticated heartbeat from node: a reconcile only if
// it changes a verdict.
func (a *Agent) heard(node string, leaving bool) {
	if a.live.Heard(node, leaving) {
		a.trigger()
	}
}

// startProbe asks in the background who answers for addr on iface (a
// VIP, or a silent member's own address); store records the result, under
// probeMu, for the next plan. One probe per address at a time.
func (a *Agent) startProbe(ctx context.Context, iface string, addr netip.Addr, store func(ProbeResult)) {
	a.probeMu.Lock()
	if a.probing[addr] {
		a.probeMu.Unlock()
		return
	}
	a.probing[addr] = true
	a.probeMu.Unlock()
	go func() {
		at := a.clock.Now()
		probeWait := a.cfg.Load().NodeAgent.TakeoverProbe()
		pctx, cancel := context.WithTimeout(ctx, probeWait)
		mac, err := a.l2.Probe(pctx, iface, addr)
		cancel()
		a.probeMu.Lock()
		delete(a.probing, addr)
		if err == nil {
			store(ProbeResult{At: at, MAC: mac})
		}
		a.probeMu.Unlock()
		if err != nil {
			// No result: the next pass asks again, after a probe's wait
			// (not when some other change happens to wake the loop).
			a.log.Error(err, "Probing an address before a takeover failed; probing again", "address", addr, "interface", iface)
			select {
			case <-ctx.Done():
			case <-a.clock.After(probeWait):
				a.trigger()
			}
			return
		}
		a.log.V(2).Info("Probed before a takeover", "address", addr, "answeredBy", mac.String())
		a.trigger()
	}()
}

// applyBGP makes the speaker match; failures are logged once until they
// change, and retried on the next pass: BGP trouble must not stop layer 2.
func (a *Agent) applyBGP(ctx context.Context, cfg *config.Config, self NodeView, ads []BGPAdvertisement) {
	var peers []config.Peer
	if len(ads) > 0 || a.bgpWant != nil || len(cfg.BGP.Peers) > 0 {
		if cfg.BGP.ASN != 0 && !a.leaving.Load() {
			peers = peersFor(cfg, self)
		}
	}
	if cfg.BGP.ASN == 0 && len(ads) == 0 && len(a.bgpApplied) == 0 {
		return
	}
	if err := a.bgp.Apply(ctx, peers, ads); err != nil {
		if s := err.Error(); s != a.lastBGPErr {
			a.lastBGPErr = s
			a.log.Error(err, "Applying BGP advertisements failed; retrying on the next pass")
		}
		return
	}
	a.lastBGPErr = ""
	a.bgpWant = ads
	a.bgpApplied = make(map[netip.Addr][]string, len(ads))
	for _, ad := range ads {
		a.bgpApplied[ad.VIP] = ad.Peers
	}
}

// reportApplied diffs what the data planes do now against what was last
// reported, and records events and metrics for the difference.
func (a *Agent) reportApplied() {
	cur := map[netip.Addr]applied{}
	for _, an := range a.l2.Announced() {
		cur[an.Addr] = applied{Mode: config.ModeLayer2, Interface: an.Interface, Services: a.servicesOf(an.Addr)}
	}
	if len(a.bgpApplied) > 0 {
		up := establishedPeers(a.bgp.Peers())
		for ip, peers := range a.bgpApplied {
			if took := carriedBy(peers, up); len(took) > 0 {
				cur[ip] = applied{Mode: config.ModeBGP, Peers: took, Services: a.servicesOf(ip)}
			}
		}
	}
	changes := diffApplied(a.applied, cur)
	if len(changes) == 0 {
		return
	}
	recordChanges(a.recorder, a.node, changes)
	a.applied = cur
	counts := map[config.Mode]int{}
	for _, v := range cur {
		counts[v.Mode]++
	}
	a.metrics.AnnouncedVIPs.WithLabelValues(string(config.ModeLayer2)).Set(float64(counts[config.ModeLayer2]))
	a.metrics.AnnouncedVIPs.WithLabelValues(string(config.ModeBGP)).Set(float64(counts[config.ModeBGP]))
}

// servicesOf returns the Services of ip from the last plan, or from the
// last report when the VIP is gone from the view (its Withdrawn event
// still names them).
func (a *Agent) servicesOf(ip netip.Addr) []*v1.Service {
	if s, ok := a.vipServices[ip]; ok {
		return s
	}
	return a.applied[ip].Services
}

// onL2Change is the layer-2 plane's report of a change that took effect.
// Announced and Withdrawn go through the one diff (reportApplied); a
// conflict is an event of its own.
func (a *Agent) onL2Change(c l2.Change) {
	if c.Kind != l2.Conflict {
		a.requestReport()
		return
	}
	a.metrics.ProbeConflicts.Inc()
	a.svcMu.Lock()
	svcs := a.vipServices[c.Addr]
	a.svcMu.Unlock()
	for _, svc := range svcs {
		a.recorder.Eventf(svc, v1.EventTypeWarning, apicontract.ReasonAnnounceConflict,
			"Node %s does not answer for %s: another host (MAC %s) already answers ARP/NDP for it on %s; remove the address from that host or from the pool (probing again in %s)",
			a.node, c.Addr, c.MAC, c.Interface, l2.DefaultProbeRetry)
	}
}
