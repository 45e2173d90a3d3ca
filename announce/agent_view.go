package announce

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/l2"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

func (a *Agent) selfNode() (NodeView, bool) {
	if a.nodes == nil {
		return NodeView{Name: a.node}, false
	}
	obj, ok, err := a.nodes.GetStore().GetByKey(a.node)
	if err != nil || !ok {
		return NodeView{Name: a.node}, false
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
		if svc := obj.(*v1.Service); isOurs(svc) && len(svc.Status.LoadBalancer.Ingress) > 0 {
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
		for n, c := range o.(*EndpointSummary).Ready {
			out[n] += c
		}
	}
	return out
}

// publish computes what this agent tells its peers on its Lease (MACs,
// layer-2 pools it cannot announce, pool labels), renews at once when it
// changed, and watches the Leases of the pools it is eligible for.
func (a *Agent) publish(cfg *config.Config, links l2.Links, self NodeView, hasNode bool) {
	info := AgentInfo{MACs: macStrings(links.MACs())}
	var pools []string
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		if p.Mode != config.ModeLayer2 {
			continue
		}
		if hasNode && !self.Excluded && p.AdmitsNode(self.Labels) {
			pools = append(pools, p.Name)
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
	if hasNode {
		a.pools.set(pools)
	}
	old := a.info.Load()
	oldPools := *a.poolNames.Load()
	if old.equal(info) && (!hasNode || slices.Equal(oldPools, pools)) {
		return
	}
	a.info.Store(&info)
	if hasNode {
		a.poolNames.Store(&pools)
	}
	a.log.V(2).Info("Publishing agent state", "macs", info.MACs, "unreadyPools", info.UnreadyPools, "pools", pools)
	a.requestRenew()
}

func (a *Agent) warnNoInterface(vs []*VIPView) {
	for _, v := range vs {
		if a.noIfaceSeen[v.IP] {
			continue
		}
		a.noIfaceSeen[v.IP] = true
		for _, svc := range v.Services {
			a.recorder.Eventf(svc, v1.EventTypeWarning, apicontract.ReasonNoInterface,
				"Node %s cannot answer for %s: it has none of the interfaces of pool %q (%s), and no interface on the address's subnet or with the node's InternalIP",
				a.node, v.IP, v.Pool.Name, strings.Join(v.Pool.Interfaces, ", "))
		}
	}
}

// shutdown hands every VIP over: it tells its successors on the heartbeat
// channel and on its Lease (either reaches them without the other), keeps
// answering until the new owners announced (or a bound passes), withdraws
// what is left, and deletes its Lease.
func (a *Agent) shutdown(ctx context.Context) {
	a.leaving.Store(true)
	start := a.clock.Now()
	if a.hb != nil {
		a.hb.SetLeaving(true)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	if err := a.lease.renew(rctx, true, *a.info.Load(), *a.poolNames.Load()); err != nil {
		a.log.Error(err, "Marking the agent Lease as leaving failed; the heartbeat channel told the successors")
	}
	cancel()
	if len(a.live.Members()) == 0 || len(a.l2.Announced()) == 0 {
		// Nobody to hand over to: waiting would only delay the exit.
		if err := a.l2.WithdrawAll(); err != nil {
			a.log.Error(err, "Withdrawing layer-2 VIPs failed")
		}
	} else {
		hctx, cancel := context.WithTimeout(ctx, handoverBound+time.Second)
		if err := a.l2.HandOver(hctx); err != nil {
			a.log.Error(err, "Handing layer-2 VIPs over failed")
		}
		cancel()
	}
	if err := a.leaveBGP(ctx); err != nil {
		a.log.Error(err, "Stopping the BGP speaker failed")
	}
	a.bgpApplied = nil
	if err := a.l2.Close(); err != nil {
		a.log.Error(err, "Closing the layer-2 announcer failed")
	}
	a.reportApplied()
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	if err := a.lease.delete(dctx); err != nil {
		a.log.Error(err, "Deleting the agent Lease failed")
	}
	cancel()
	a.log.Info("Handed over and withdrew every VIP", "took", a.clock.Since(start))
}

// poolWatches runs one label-selected Lease informer per layer-2 pool this
// node is eligible for: an agent receives the renewals of the agents it
// could share a VIP with, and of no other.
type poolWatches struct {
	client    kubernetes.Interface
	namespace string
	live      *Liveness
	onChange  func()

	mu      sync.Mutex
	watches map[string]*poolWatch
}

type poolWatch struct {
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	handler  cache.ResourceEventHandlerRegistration
	stop     chan struct{}
}

// unsynced returns the watched pools whose Leases have not all been
// handed to Liveness yet. Until then this agent does not know who else
// could answer for their VIPs, so it must not claim them: a restarted
// owner that planned with only itself as member would answer over the
// node that took its VIPs over, and take the probe's answer for a
// conflict.
func (w *poolWatches) unsynced() []string {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for name, pw := range w.watches {
		if pw.handler == nil || !pw.handler.HasSynced() {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func newPoolWatches(client kubernetes.Interface, namespace string, live *Liveness, onChange func()) *poolWatches {
	return &poolWatches{client: client, namespace: namespace, live: live, onChange: onChange, watches: map[string]*poolWatch{}}
}

// set starts and stops watches so that exactly pools are watched.
func (w *poolWatches) set(pools []string) {
	var stopped []*poolWatch
	w.mu.Lock()
	// Shut down outside the lock: a handler (forget) may be waiting for it.
	defer func() {
		w.mu.Unlock()
		for _, pw := range stopped {
			close(pw.stop)
			pw.factory.Shutdown()
		}
	}()
	for name, pw := range w.watches {
		if !slices.Contains(pools, name) {
			stopped = append(stopped, pw)
			delete(w.watches, name)
		}
	}
	for _, name := range pools {
		if _, ok := w.watches[name]; ok {
			continue
		}
		label := PoolLabel(name)
		f := informers.NewSharedInformerFactoryWithOptions(w.client, 0, informers.WithNamespace(w.namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = label }))
		inf := f.Coordination().V1().Leases().Informer()
		_ = inf.SetTransform(dropManagedFields) // fails only once started
		reg, _ := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    w.observe,
			UpdateFunc: func(_, obj any) { w.observe(obj) },
			DeleteFunc: w.forget,
		})
		pw := &poolWatch{factory: f, informer: inf, handler: reg, stop: make(chan struct{})}
		w.watches[name] = pw
		f.Start(pw.stop)
	}
}

func (w *poolWatches) stopAll() {
	if w == nil {
		return
	}
	w.set(nil)
}

func (w *poolWatches) observe(obj any) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok || !strings.HasPrefix(l.Name, LeasePrefix) {
		return
	}
	leaving, info := leaseInfo(l)
	if w.live.ObserveLease(strings.TrimPrefix(l.Name, LeasePrefix), l.ResourceVersion, leaving, info) {
		w.onChange()
	}
}

// forget drops a member whose Lease left every watched pool.
func (w *poolWatches) forget(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	l, ok := obj.(*coordinationv1.Lease)
	if !ok || !strings.HasPrefix(l.Name, LeasePrefix) {
		return
	}
	w.mu.Lock()
	for _, pw := range w.watches {
		if _, exists, _ := pw.informer.GetStore().GetByKey(l.Namespace + "/" + l.Name); exists {
			w.mu.Unlock()
			return
		}
	}
	w.mu.Unlock()
	w.live.ForgetLease(strings.TrimPrefix(l.Name, LeasePrefix))
	w.onChange()
}
