package announce

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/heartbeat"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/l2"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// The fleet simulation runs many agents in one process: each has the real
// Liveness, the real heartbeat.Heartbeats (signing, verifying, replay
// guard) and plans with the real Decide, as Agent.reconcile does. What is
// fake: the API server (a Lease store that counts writes and delivers each
// renewal, as a watch event, to the agents watching one of the Lease's
// pool labels, as poolWatches does), the network (heartbeat datagrams
// handed from one agent's socket to another's in memory, within one step),
// the segment (who answers ARP/NDP for a VIP: the agents whose plan has
// it) and the clock (one fake clock, advanced in steps of simStep, so a
// simulated minute takes what the CPU needs, and the result does not
// depend on the machine's load).
//
// Each run: every agent starts with every member's Lease listed (a fleet
// in its steady state), runs simWarmup, is measured over simWindow, then
// the owner of the first VIP dies (link down and kill -9: it sends,
// answers and renews nothing) and the run goes on past the dead agent's
// Lease expiry, checking at every step that no VIP has two live answerers
// and timing how long each of the dead node's VIPs had none.

const (
	simStep   = 10 * time.Millisecond
	simWarmup = 10 * time.Second
	simWindow = 30 * time.Second
	// simRackSize is the number of nodes of one segment in the segmented
	// layout (one layer-2 pool per rack, selected by a rack label).
	simRackSize = 50
	// simVIPsPerPool layer-2 VIPs in every pool.
	simVIPsPerPool = 10
)

type simLayout int

const (
	// simFlat: every node on one segment, in one layer-2 pool (the worst
	// case: every agent could share a VIP with every other).
	simFlat simLayout = iota
	// simRacks: a segment and a pool per rack of simRackSize nodes.
	simRacks
)

func (l simLayout) String() string { return [...]string{"one segment", "racks of 50"}[l] }

type simAgent struct {
	name  string
	addr  netip.Addr
	pools []string
	live  *Liveness
	hb    *heartbeat.Heartbeats
	links l2.Links
	info  AgentInfo

	owned   map[netip.Addr]bool
	answers map[netip.Addr]bool // what its layer-2 plane answers for
	probes  map[netip.Addr]ProbeResult
	probing map[netip.Addr]time.Time // VIP -> when the probe was sent

	dirty      bool
	next       time.Time
	nextResync time.Time
	renewAt    time.Time
	beatAt     time.Time
	dead       bool

	events      int // Lease watch events delivered to it
	sent        int // heartbeat datagrams it sent
	reconciles  int
	decideNanos int64
}

type simPacket struct {
	b    []byte
	from netip.AddrPort
	to   netip.AddrPort
}

// simConn is an agent's heartbeat socket on the fake network.
type simConn struct {
	f    *simFleet
	from *simAgent
}

func (c simConn) ReadFrom([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed // Receive is called directly
}

func (c simConn) WriteTo(b []byte, to netip.AddrPort) error {
	c.from.sent++
	c.f.queue = append(c.f.queue, simPacket{b: slices.Clone(b), from: netip.AddrPortFrom(c.from.addr, heartbeat.DefaultPort), to: to})
	return nil
}

func (c simConn) Close() error { return nil }

type simFleet struct {
	t      testing.TB
	clk    *clocktesting.FakeClock
	cfg    *config.Config
	nodes  map[string]NodeView
	vips   map[netip.Addr]*VIPView
	agents []*simAgent
	byAddr map[netip.Addr]*simAgent

	// The fake API server.
	versions map[string]int
	watchers map[string][]*simAgent // pool -> agents watching its Leases
	writes   int

	queue []simPacket
	// The segment: who answers ARP/NDP for each VIP.
	answering map[netip.Addr]map[*simAgent]bool
}

// simWorld is what the API server holds: the config, the Nodes and the
// VIPs.
type simWorld struct {
	cfg   *config.Config
	names []string
	nodes map[string]NodeView
	vips  map[netip.Addr]*VIPView
}

func newSimWorld(t testing.TB, n int, layout simLayout) simWorld {
	w := simWorld{nodes: map[string]NodeView{}, vips: map[netip.Addr]*VIPView{}}
	racks := 1
	if layout == simRacks {
		racks = (n + simRackSize - 1) / simRackSize
	}
	var y strings.Builder
	y.WriteString("pools:\n")
	for r := range racks {
		fmt.Fprintf(&y, "  - name: rack-%d\n    addresses: [2001:db8:100:%x::/120]\n", r, r)
		if layout == simRacks {
			fmt.Fprintf(&y, "    nodeSelector: {matchLabels: {rack: r%d}}\n", r)
		}
	}
	cfg, err := config.Parse([]byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	w.cfg = cfg
	for r := range racks {
		pool, _ := cfg.Pool(fmt.Sprintf("rack-%d", r))
		for i := range simVIPsPerPool {
			ip := netip.MustParseAddr(fmt.Sprintf("2001:db8:100:%x::%x", r, i+1))
			w.vips[ip] = &VIPView{IP: ip, Pool: pool}
		}
	}
	for i := range n {
		name := fmt.Sprintf("node-%04d", i)
		rack := 0
		if layout == simRacks {
			rack = i / simRackSize
		}
		addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 14: byte(i >> 8), 15: byte(i)})
		w.names = append(w.names, name)
		w.nodes[name] = NodeView{Name: name, Labels: map[string]string{"rack": fmt.Sprintf("r%d", rack)}, InternalIPs: []netip.Addr{addr}}
	}
	return w
}

// links are the interfaces of node: one, on the segment of every VIP.
func (w simWorld) links(node string) l2.Links {
	ip := w.nodes[node].InternalIPs[0].As16()
	mac := net.HardwareAddr{2, 0, 0, 0, ip[14], ip[15]}
	return l2.Links{{Name: "eth0", Up: true, MAC: mac, Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}}}
}

func newSimFleet(t testing.TB, n int, layout simLayout) *simFleet {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := newSimWorld(t, n, layout)
	f := &simFleet{
		t: t, clk: clocktesting.NewFakeClock(start), cfg: w.cfg, nodes: w.nodes, vips: w.vips,
		byAddr: map[netip.Addr]*simAgent{}, versions: map[string]int{}, watchers: map[string][]*simAgent{},
		answering: map[netip.Addr]map[*simAgent]bool{},
	}
	cfg := w.cfg
	key := []byte("fleet-simulation-heartbeat-key-0")
	for i, name := range w.names {
		links := w.links(name)
		mac := links[0].MAC
		a := &simAgent{
			name: name, addr: w.nodes[name].InternalIPs[0], pools: []string{"rack-" + strings.TrimPrefix(w.nodes[name].Labels["rack"], "r")},
			live:    NewLiveness(f.clk, name, cfg.NodeAgent.LeaseDuration, heartbeat.DefaultSuspectAfter),
			links:   links,
			info:    AgentInfo{MACs: []string{mac.String()}},
			owned:   map[netip.Addr]bool{},
			answers: map[netip.Addr]bool{},
			probes:  map[netip.Addr]ProbeResult{},
			probing: map[netip.Addr]time.Time{},
			dirty:   true,
			// Spread the renewals and the beats as independent agents
			// would have them.
			renewAt:    start.Add(time.Duration(i) * cfg.NodeAgent.RenewInterval / time.Duration(n)),
			beatAt:     start.Add(time.Duration(i%10) * simStep),
			nextResync: start.Add(time.Duration(i) * resyncEvery / time.Duration(n)),
		}
		a.hb = heartbeat.New(heartbeat.Options{
			Self: name, Conn: simConn{f, a}, Clock: f.clk,
			OnHeard: func(node string, leaving bool) {
				if a.live.Heard(node, leaving) {
					a.dirty = true
				}
			},
		})
		a.hb.SetKeys(key)
		f.agents = append(f.agents, a)
		f.byAddr[a.addr] = a
		for _, p := range a.pools {
			f.watchers[p] = append(f.watchers[p], a)
		}
	}
	// Every Lease exists and every agent has listed those of its pools (a
	// list, not watch events).
	for _, a := range f.agents {
		f.versions[a.name] = 1
		for _, p := range a.pools {
			for _, w := range f.watchers[p] {
				w.live.ObserveLease(a.name, "1", false, a.info)
			}
		}
	}
	return f
}

// renew is one Lease write; the API server sends it to every watcher of
// the Lease's pools.
func (f *simFleet) renew(a *simAgent) {
	f.writes++
	f.versions[a.name]++
	v := fmt.Sprint(f.versions[a.name])
	for _, p := range a.pools {
		for _, w := range f.watchers[p] {
			if w.dead {
				continue
			}
			w.events++
			if w.live.ObserveLease(a.name, v, false, a.info) {
				w.dirty = true
			}
		}
	}
}

// deliver hands every queued datagram to its receiver (and the replies
// those cause), dropping those to or from a dead agent.
func (f *simFleet) deliver() {
	for len(f.queue) > 0 {
		q := f.queue
		f.queue = nil
		for _, p := range q {
			to := f.byAddr[p.to.Addr()]
			if to == nil || to.dead || f.byAddr[p.from.Addr()].dead {
				continue
			}
			to.hb.Receive(p.b, p.from)
		}
	}
}

// reconcile is Agent.reconcile's planning and applying, with the fake
// data plane.
func (f *simFleet) reconcile(a *simAgent) {
	now := f.clk.Now()
	members := a.live.Members()
	verdicts, next := a.live.Verdicts()
	start := time.Now()
	plan := Decide(PlanInput{
		Config: f.cfg, Self: a.name, SelfInfo: a.info, Links: a.links, Nodes: f.nodes, VIPs: f.vips,
		Members: members, Health: verdicts, Probes: a.probes, Owned: a.owned, Now: now,
	})
	a.decideNanos += time.Since(start).Nanoseconds()
	a.reconciles++
	a.owned = plan.Owned
	targets := make([]string, 0, len(plan.Heartbeat))
	for n := range plan.Heartbeat {
		targets = append(targets, n)
	}
	a.live.SetTargets(targets)
	a.hb.SetTargets(plan.Heartbeat)
	a.hb.SetAnswering(true)
	for ip := range a.answers {
		delete(f.answering[ip], a)
	}
	a.answers = map[netip.Addr]bool{}
	for _, an := range plan.L2 {
		a.answers[an.Addr] = true
		if f.answering[an.Addr] == nil {
			f.answering[an.Addr] = map[*simAgent]bool{}
		}
		f.answering[an.Addr][a] = true
	}
	for _, p := range plan.Probes {
		if _, ok := a.probing[p.Addr]; !ok {
			a.probing[p.Addr] = now
		}
	}
	a.next = plan.Next
	if !next.IsZero() && (a.next.IsZero() || next.Before(a.next)) {
		a.next = next
	}
	a.dirty = false
}

// answerers returns the live agents answering ip.
func (f *simFleet) answerers(ip netip.Addr) []*simAgent {
	var out []*simAgent
	for a := range f.answering[ip] {
		if !a.dead {
			out = append(out, a)
		}
	}
	return out
}

// step advances the fleet by simStep.
func (f *simFleet) step() {
	f.clk.Step(simStep)
	now := f.clk.Now()
	renewEvery := f.cfg.NodeAgent.RenewInterval
	for _, a := range f.agents {
		if a.dead {
			continue
		}
		if !now.Before(a.renewAt) {
			a.renewAt = a.renewAt.Add(renewEvery)
			f.renew(a)
		}
		if !now.Before(a.beatAt) {
			a.beatAt = a.beatAt.Add(heartbeat.DefaultInterval)
			a.hb.Tick()
		}
	}
	f.deliver()
	for _, a := range f.agents {
		if a.dead {
			continue
		}
		// A probe returns when someone answers, or after probeWait.
		for ip, at := range a.probing {
			var mac net.HardwareAddr
			if ans := f.answerers(ip); len(ans) > 0 {
				mac = ans[0].links[0].MAC
			} else if now.Sub(at) < probeWait {
				continue
			}
			delete(a.probing, ip)
			a.probes[ip] = ProbeResult{At: at, MAC: mac}
			a.dirty = true
		}
		if !now.Before(a.nextResync) {
			a.nextResync = a.nextResync.Add(resyncEvery)
			a.dirty = true
		}
		if a.dirty || (!a.next.IsZero() && !now.Before(a.next)) {
			f.reconcile(a)
		}
	}
	f.deliver()
}

type simResult struct {
	nodes, vips              int
	writesPerNode            float64 // Lease writes per node per second
	eventsPerAgent           float64 // Lease watch events delivered per agent per second
	eventsMaxAgent           float64
	packetsPerNode           float64 // heartbeat datagrams sent per node per second
	packetsMaxNode           float64
	packetsFleet             float64 // heartbeat datagrams per second, whole fleet
	reconcilesPerAgent       float64 // planner runs per agent per second, steady
	decideMicros             float64 // mean planner run, microseconds
	singleOwner              time.Duration
	doubleAnswer             time.Duration // total time any VIP had two live answerers
	expiryReconciles         int           // planner runs in the second after the dead Lease expired
	deadVIPs                 int
	ownersAtStart, ownersEnd int // VIPs with exactly one live answerer
	wall                     time.Duration
	heapMiB                  float64
}

func runFleetSim(t testing.TB, n int, layout simLayout) simResult {
	wallStart := time.Now()
	f := newSimFleet(t, n, layout)
	r := simResult{nodes: n, vips: len(f.vips)}
	for f.clk.Now().Before(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(simWarmup)) {
		f.step()
	}
	for ip := range f.vips {
		if len(f.answerers(ip)) == 1 {
			r.ownersAtStart++
		}
	}
	type counts struct{ writes, events, sent, reconciles int }
	snap := func() (c counts, perAgent []int) {
		c.writes = f.writes
		for _, a := range f.agents {
			c.events += a.events
			c.sent += a.sent
			c.reconciles += a.reconciles
		}
		return c, nil
	}
	before, _ := snap()
	evBefore := make([]int, n)
	sentBefore := make([]int, n)
	var decideBefore int64
	for i, a := range f.agents {
		evBefore[i], sentBefore[i] = a.events, a.sent
		decideBefore += a.decideNanos
	}
	windowEnd := f.clk.Now().Add(simWindow)
	for f.clk.Now().Before(windowEnd) {
		f.step()
	}
	after, _ := snap()
	secs := simWindow.Seconds()
	r.writesPerNode = float64(after.writes-before.writes) / float64(n) / secs
	r.eventsPerAgent = float64(after.events-before.events) / float64(n) / secs
	r.packetsFleet = float64(after.sent-before.sent) / secs
	r.packetsPerNode = r.packetsFleet / float64(n)
	r.reconcilesPerAgent = float64(after.reconciles-before.reconciles) / float64(n) / secs
	var decideAfter int64
	for i, a := range f.agents {
		r.eventsMaxAgent = max(r.eventsMaxAgent, float64(a.events-evBefore[i])/secs)
		r.packetsMaxNode = max(r.packetsMaxNode, float64(a.sent-sentBefore[i])/secs)
		decideAfter += a.decideNanos
	}
	if d := after.reconciles - before.reconciles; d > 0 {
		r.decideMicros = float64(decideAfter-decideBefore) / float64(d) / 1e3
	}

	// The owner of the first VIP dies: link down and kill -9.
	ips := make([]netip.Addr, 0, len(f.vips))
	for ip := range f.vips {
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	owners := f.answerers(ips[0])
	if len(owners) != 1 {
		t.Fatalf("%s has %d answerers before the death, want 1", ips[0], len(owners))
	}
	dead := owners[0]
	var deadVIPs []netip.Addr
	for _, ip := range ips {
		if dead.answers[ip] {
			deadVIPs = append(deadVIPs, ip)
		}
	}
	r.deadVIPs = len(deadVIPs)
	dead.dead = true
	died := f.clk.Now()
	lastRenew := dead.renewAt.Add(-f.cfg.NodeAgent.RenewInterval)
	expiry := lastRenew.Add(f.cfg.NodeAgent.LeaseDuration)
	end := expiry.Add(5 * time.Second)
	settled := map[netip.Addr]time.Duration{}
	var expiryStart int
	for f.clk.Now().Before(end) {
		f.step()
		now := f.clk.Now()
		if !now.Before(expiry) && expiryStart == 0 {
			for _, a := range f.agents {
				expiryStart += a.reconciles
			}
			expiryStart++ // not zero even if nobody reconciled yet
		}
		if expiryStart > 0 && now.Sub(expiry) < time.Second+simStep && now.Sub(expiry) >= time.Second {
			for _, a := range f.agents {
				r.expiryReconciles += a.reconciles
			}
			r.expiryReconciles -= expiryStart - 1
		}
		two := false
		for _, ip := range ips {
			ans := f.answerers(ip)
			if len(ans) > 1 {
				two = true
				f.t.Errorf("at +%s after the death, %s is answered by %d live agents", now.Sub(died), ip, len(ans))
			}
			if _, ok := settled[ip]; !ok && slices.Contains(deadVIPs, ip) && len(ans) == 1 {
				settled[ip] = now.Sub(died)
			}
		}
		if two {
			r.doubleAnswer += simStep
		}
	}
	for _, ip := range deadVIPs {
		d, ok := settled[ip]
		if !ok {
			t.Errorf("%s (owned by the dead %s) has no single live answerer %s after the death", ip, dead.name, end.Sub(died))
			continue
		}
		r.singleOwner = max(r.singleOwner, d)
	}
	for _, ip := range ips {
		if len(f.answerers(ip)) == 1 {
			r.ownersEnd++
		}
	}
	r.wall = time.Since(wallStart)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.heapMiB = float64(ms.HeapInuse) / (1 << 20)
	return r
}

func (r simResult) String() string {
	return fmt.Sprintf("%5d nodes, %4d VIPs: Lease writes %.3f/s per node; watch events %.2f/s per agent (max %.2f); "+
		"heartbeats %.2f/s per node (max %.1f, fleet %.0f/s); planner %.3f runs/s per agent, %.0f µs each; "+
		"single owner %s after the death of the owner of %d VIP(s); two answerers %s; planner runs in the second after the dead Lease expired: %d; "+
		"wall %s, heap %.0f MiB",
		r.nodes, r.vips, r.writesPerNode, r.eventsPerAgent, r.eventsMaxAgent,
		r.packetsPerNode, r.packetsMaxNode, r.packetsFleet, r.reconcilesPerAgent, r.decideMicros,
		r.singleOwner, r.deadVIPs, r.doubleAnswer, r.expiryReconciles, r.wall.Round(time.Millisecond), r.heapMiB)
}

// TestFleetSimulation runs 50 agents (one segment; one rack) in `make
// test`, and with BAREMETAL_BENCH=1 1,000 agents on one segment and 1,000
// and 5,000 in racks of 50 (docs/benchmarks.md, "Agent fleet
// simulation").
func TestFleetSimulation(t *testing.T) {
	type run struct {
		n      int
		layout simLayout
	}
	runs := []run{{50, simFlat}, {50, simRacks}}
	if os.Getenv("BAREMETAL_BENCH") == "1" {
		// 5,000 agents on one segment would hold 25 million Lease
		// observations in this one process (every agent knows every
		// member: about 4.5 GB); BenchmarkDecide measures its planner.
		runs = append(runs, run{1000, simFlat}, run{1000, simRacks}, run{5000, simRacks})
	}
	for _, rn := range runs {
		t.Run(fmt.Sprintf("%d-%s", rn.n, strings.ReplaceAll(rn.layout.String(), " ", "-")), func(t *testing.T) {
			r := runFleetSim(t, rn.n, rn.layout)
			t.Log(r)
			// The API server's cost is a kubelet's: one write per node
			// per renewInterval (10 s).
			if r.writesPerNode > 0.12 {
				t.Errorf("%.3f Lease writes per node per second, want at most 0.12", r.writesPerNode)
			}
			// Renewals reach only the agents of the same pool: at most
			// 0.12 x (members of the pool) per agent.
			poolSize := rn.n
			if rn.layout == simRacks {
				poolSize = min(rn.n, simRackSize)
			}
			if bound := 0.12 * float64(poolSize); r.eventsMaxAgent > bound {
				t.Errorf("an agent got %.2f Lease watch events per second, want at most %.2f (0.12 x %d members of its pool)", r.eventsMaxAgent, bound, poolSize)
			}
			// Heartbeats grow with the VIPs, not the nodes: each of a
			// VIP's owner and successors beats the others of its group
			// every interval, and each beat is answered.
			group := Successors + 1
			perSecond := float64(time.Second / heartbeat.DefaultInterval)
			if bound := float64(r.vips*group*(group-1)) * perSecond * 2; r.packetsFleet > bound {
				t.Errorf("%.0f heartbeat datagrams per second in the fleet, want at most %.0f (2 x %d VIPs x %d x %d per second)", r.packetsFleet, bound, r.vips, group*(group-1), int(perSecond))
			}
			if r.ownersAtStart != r.vips {
				t.Errorf("%d of %d VIPs had exactly one answerer before the death", r.ownersAtStart, r.vips)
			}
			if r.ownersEnd != r.vips {
				t.Errorf("%d of %d VIPs have exactly one answerer at the end", r.ownersEnd, r.vips)
			}
			// Simulated time: suspicion (500 ms) plus a probe that
			// nobody answers (200 ms) plus a few steps.
			if r.singleOwner > time.Second {
				t.Errorf("a single owner %s after the death, want at most 1s", r.singleOwner)
			}
			if r.doubleAnswer > 0 {
				t.Errorf("two live answerers for %s", r.doubleAnswer)
			}
		})
	}
}

// BenchmarkDecide measures one planner run of one agent of the simulated
// fleets: on one segment (every member a candidate for every VIP) and in
// racks (the agent's members are its rack, the VIPs are the cluster's).
// Only the planner's input is built, not the fleet's Liveness.
func BenchmarkDecide(b *testing.B) {
	for _, bc := range []struct {
		n      int
		layout simLayout
	}{{1000, simFlat}, {5000, simFlat}, {1000, simRacks}, {5000, simRacks}} {
		b.Run(fmt.Sprintf("%d-%s", bc.n, strings.ReplaceAll(bc.layout.String(), " ", "-")), func(b *testing.B) {
			w := newSimWorld(b, bc.n, bc.layout)
			self := w.names[bc.n/2]
			members := map[string]AgentInfo{}
			for _, n := range w.names {
				if w.nodes[n].Labels["rack"] == w.nodes[self].Labels["rack"] {
					members[n] = AgentInfo{}
				}
			}
			in := PlanInput{
				Config: w.cfg, Self: self, Links: w.links(self), Nodes: w.nodes, VIPs: w.vips,
				Members: members, Health: map[string]PeerHealth{}, Now: time.Now(),
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				Decide(in)
			}
		})
	}
}
