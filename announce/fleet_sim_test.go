package announce

import (
	"fmt"
	"maps"
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
	// Probes of silent members' own addresses, by node: a node answers
	// while it is not dead (a dead agent is a dead node here).
	nodeProbes  map[string]ProbeResult
	nodeProbing map[string]time.Time

	dirty      bool
	next       time.Time
	nextResync time.Time
	renewAt    time.Time
	beatAt     time.Time
	dead       bool
	nodeUp     bool // dead is its agent only: its node answers for its own address
	leaving    bool
	noView     bool // started without the API server: silent

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
	byName map[string]*simAgent
	byAddr map[netip.Addr]*simAgent

	// The fake API server.
	versions map[string]int
	watchers map[string][]*simAgent // pool -> agents watching its Leases
	writes   int

	queue []simPacket
	// The segment: who answers ARP/NDP for each VIP.
	answering map[netip.Addr]map[*simAgent]bool

	// Faults: heartbeats dropped between two agents (both ways), agents
	// cut off from the API server (their writes fail, no events reach
	// them).
	dropped map[[2]*simAgent]bool
	apiDown map[*simAgent]bool
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
		byAddr: map[netip.Addr]*simAgent{}, byName: map[string]*simAgent{}, versions: map[string]int{}, watchers: map[string][]*simAgent{},
		answering: map[netip.Addr]map[*simAgent]bool{},
		dropped:   map[[2]*simAgent]bool{}, apiDown: map[*simAgent]bool{},
	}
	cfg := w.cfg
	for i, name := range w.names {
		links := w.links(name)
		mac := links[0].MAC
		a := &simAgent{
			name: name, addr: w.nodes[name].InternalIPs[0], pools: []string{"rack-" + strings.TrimPrefix(w.nodes[name].Labels["rack"], "r")},
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
		f.agents = append(f.agents, a)
		f.byName[a.name] = a
		f.byAddr[a.addr] = a
		for _, p := range a.pools {
			f.watchers[p] = append(f.watchers[p], a)
		}
	}
	// Every Lease exists; every agent starts and lists those of its pools.
	for _, a := range f.agents {
		f.versions[a.name] = 1
	}
	for _, a := range f.agents {
		f.start(a)
	}
	return f
}

// start runs a's agent process: a fresh Liveness and heartbeat socket (a
// new random epoch), nothing answered, and a list of the Leases of its
// pools (a list, not watch events).
func (f *simFleet) start(a *simAgent) {
	a.live = NewLiveness(f.clk, a.name, f.cfg.NodeAgent.LeaseDuration, f.cfg.NodeAgent.Suspect())
	a.hb = heartbeat.New(heartbeat.Options{
		Self: a.name, Conn: simConn{f, a}, Clock: f.clk,
		OnHeard: func(node string, leaving bool) {
			if a.live.Heard(node, leaving) {
				a.dirty = true
			}
		},
	})
	a.hb.SetKeys([]byte("fleet-simulation-heartbeat-key-0"))
	for ip := range a.answers {
		delete(f.answering[ip], a)
	}
	a.answers, a.owned = map[netip.Addr]bool{}, map[netip.Addr]bool{}
	a.probes, a.probing = map[netip.Addr]ProbeResult{}, map[netip.Addr]time.Time{}
	a.nodeProbes, a.nodeProbing = map[string]ProbeResult{}, map[string]time.Time{}
	a.dead, a.nodeUp, a.leaving, a.dirty, a.next = false, false, false, true, time.Time{}
	a.noView = f.apiDown[a]
	if a.noView {
		return // it cannot list: it stays silent (Agent.reconcile)
	}
	for _, p := range a.pools {
		for _, m := range f.watchers[p] {
			if v, ok := f.versions[m.name]; ok {
				a.live.ObserveLease(m.name, fmt.Sprint(v), m.leaving, m.info)
			}
		}
	}
}

// renew is one Lease write; the API server sends it to every watcher of
// the Lease's pools.
func (f *simFleet) renew(a *simAgent) {
	if f.apiDown[a] {
		return
	}
	f.writes++
	f.versions[a.name]++
	v := fmt.Sprint(f.versions[a.name])
	for _, p := range a.pools {
		for _, w := range f.watchers[p] {
			if w.dead || f.apiDown[w] {
				continue
			}
			w.events++
			if w.live.ObserveLease(a.name, v, a.leaving, a.info) {
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
			to, from := f.byAddr[p.to.Addr()], f.byAddr[p.from.Addr()]
			if to == nil || to.dead || from.dead || f.dropped[[2]*simAgent{from, to}] || f.dropped[[2]*simAgent{to, from}] {
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
	verdicts := a.live.Verdicts()
	start := time.Now()
	plan := Decide(PlanInput{
		Config: f.cfg, Self: a.name, SelfInfo: a.info, Leaving: a.leaving, Links: a.links, Nodes: f.nodes, VIPs: f.vips,
		Members: members, Health: verdicts, Probes: a.probes, NodeProbes: a.nodeProbes, Owned: a.owned, Now: now,
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
	next := a.live.NextChange()
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
	for _, p := range plan.NodeProbes {
		if _, ok := a.nodeProbing[p.Node]; !ok {
			a.nodeProbing[p.Node] = now
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
			a.beatAt = a.beatAt.Add(f.cfg.NodeAgent.Heartbeat())
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
			} else if now.Sub(at) < f.cfg.NodeAgent.TakeoverProbe() {
				continue
			}
			delete(a.probing, ip)
			a.probes[ip] = ProbeResult{At: at, MAC: mac}
			a.dirty = true
		}
		for node, at := range a.nodeProbing {
			var mac net.HardwareAddr
			if n := f.byName[node]; n != nil && (!n.dead || n.nodeUp) {
				mac = n.links[0].MAC
			} else if now.Sub(at) < f.cfg.NodeAgent.TakeoverProbe() {
				continue
			}
			delete(a.nodeProbing, node)
			a.nodeProbes[node] = ProbeResult{At: at, MAC: mac}
			a.dirty = true
		}
		if !now.Before(a.nextResync) {
			a.nextResync = a.nextResync.Add(resyncEvery)
			a.dirty = true
		}
		if !a.noView && (a.dirty || (!a.next.IsZero() && !now.Before(a.next))) {
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
			perSecond := float64(time.Second / config.DefaultHeartbeatInterval)
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

// simWatch checks, every step, that no VIP has two live answerers for long
// and how long each had none.
type simWatch struct {
	f       *simFleet
	two     time.Duration // steps with some VIP answered twice
	gap     map[netip.Addr]time.Duration
	longest time.Duration // longest stretch a VIP had no live answerer
	owners  map[netip.Addr]map[string]bool
}

func newSimWatch(f *simFleet) *simWatch {
	return &simWatch{f: f, gap: map[netip.Addr]time.Duration{}, owners: map[netip.Addr]map[string]bool{}}
}

// run steps the fleet for d, checking after each step.
func (w *simWatch) run(d time.Duration) {
	end := w.f.clk.Now().Add(d)
	for w.f.clk.Now().Before(end) {
		w.f.step()
		two := false
		for ip := range w.f.vips {
			ans := w.f.answerers(ip)
			switch len(ans) {
			case 0:
				w.gap[ip] += simStep
				w.longest = max(w.longest, w.gap[ip])
			case 1:
				w.gap[ip] = 0
				if w.owners[ip] == nil {
					w.owners[ip] = map[string]bool{}
				}
				w.owners[ip][ans[0].name] = true
			default:
				w.gap[ip] = 0
				two = true
			}
		}
		if two {
			w.two += simStep
		}
	}
}

// owner returns the single live answerer of ip, or nil.
func (f *simFleet) owner(ip netip.Addr) *simAgent {
	if ans := f.answerers(ip); len(ans) == 1 {
		return ans[0]
	}
	return nil
}

// TestFleetSimulationFaults plays the rows of issue 8's fault table (and
// issue 12's crash at a cut-off site) on ten simulated agents of one
// segment: the real planner, liveness and heartbeats, a fake API server,
// network and clock (docs/agent-model.md).
func TestFleetSimulationFaults(t *testing.T) {
	setup := func(t *testing.T) (*simFleet, netip.Addr, *simAgent, *simWatch) {
		f := newSimFleet(t, 10, simFlat)
		w := newSimWatch(f)
		w.run(simWarmup)
		ip := netip.MustParseAddr("2001:db8:100:0::1")
		o := f.owner(ip)
		if o == nil {
			t.Fatalf("%s has %d answerers after the warm-up, want 1", ip, len(f.answerers(ip)))
		}
		w.two, w.longest, w.owners = 0, 0, map[netip.Addr]map[string]bool{}
		return f, ip, o, w
	}
	expectSingle := func(t *testing.T, f *simFleet) {
		t.Helper()
		for ip := range f.vips {
			if n := len(f.answerers(ip)); n != 1 {
				t.Errorf("%s has %d live answerers, want 1", ip, n)
			}
		}
	}

	t.Run("owner crash: another node answers within a second, never two", func(t *testing.T) {
		f, ip, o, w := setup(t)
		o.dead = true
		w.run(time.Second)
		if n := f.owner(ip); n == nil || n == o {
			t.Fatalf("a second after the crash %s is answered by %v", ip, f.answerers(ip))
		}
		w.run(f.cfg.NodeAgent.LeaseDuration + 5*time.Second) // past the Lease backstop
		expectSingle(t, f)
		if w.two > 0 {
			t.Errorf("two live answerers for %s", w.two)
		}
		if w.longest > time.Second {
			t.Errorf("a VIP went unanswered for %s", w.longest)
		}
		if len(w.owners[ip]) != 1 {
			t.Errorf("%s moved more than once: %v", ip, w.owners[ip])
		}
	})

	t.Run("owner agent killed and restarted: exactly one answerer again, two for at most a second", func(t *testing.T) {
		f, ip, o, w := setup(t)
		o.dead, o.nodeUp = true, true
		w.run(3 * time.Second)
		if n := f.owner(ip); n == nil || n == o {
			t.Fatalf("3s after the kill %s is answered by %v", ip, f.answerers(ip))
		}
		f.start(o)
		f.renew(o)
		w.run(20 * time.Second)
		expectSingle(t, f)
		if w.two > time.Second {
			t.Errorf("two live answerers for %s in all", w.two)
		}
		if f.owner(ip) != o {
			t.Errorf("%s is answered by %v after the restart, want the first in line, %s", ip, f.answerers(ip), o.name)
		}
	})

	t.Run("owner agent stalled with its node up, shorter than suspectAfter + stalledAgentGrace: no takeover", func(t *testing.T) {
		f, ip, o, w := setup(t)
		o.dead, o.nodeUp = true, true // a stalled agent sends and answers nothing
		w.run(f.cfg.NodeAgent.Suspect() + f.cfg.NodeAgent.StallGrace()/2)
		o.dead, o.nodeUp = false, false // it resumes where it stopped
		w.run(5 * time.Second)
		expectSingle(t, f)
		if w.two > 0 {
			t.Errorf("two live answerers for %s", w.two)
		}
		if len(w.owners[ip]) != 1 || f.owner(ip) != o {
			t.Errorf("%s moved during a stall of %s's agent: answered by %v", ip, o.name, slices.Sorted(maps.Keys(w.owners[ip])))
		}
	})

	t.Run("heartbeats between the owner and its successors lost: no takeover, never two", func(t *testing.T) {
		f, ip, o, w := setup(t)
		for _, a := range f.agents {
			if a != o {
				f.dropped[[2]*simAgent{o, a}] = true
			}
		}
		w.run(60 * time.Second)
		if f.owner(ip) != o {
			t.Errorf("%s is answered by %v, want the owner %s throughout", ip, f.answerers(ip), o.name)
		}
		if len(w.owners[ip]) != 1 || w.two > 0 || w.longest > 0 {
			t.Errorf("owners %v, two answering %s, longest gap %s; want one owner, no overlap, no gap", w.owners[ip], w.two, w.longest)
		}
	})

	t.Run("owner cut off from the API server only: it keeps answering, never two", func(t *testing.T) {
		f, ip, o, w := setup(t)
		f.apiDown[o] = true
		// Past the Lease backstop: the others see its Lease expire, but
		// hear its heartbeats and see its answers.
		w.run(f.cfg.NodeAgent.LeaseDuration + 20*time.Second)
		if f.owner(ip) != o || w.two > 0 || w.longest > 0 {
			t.Errorf("%s answered by %v; two answering %s, longest gap %s; want the owner %s alone throughout", ip, f.answerers(ip), w.two, w.longest, o.name)
		}
		delete(f.apiDown, o)
		w.run(20 * time.Second)
		expectSingle(t, f)
		if w.two > time.Second {
			t.Errorf("two answering for %s after the API server returned", w.two)
		}
	})

	t.Run("API server gone for everyone past the Lease backstop: the same owners, then no flap", func(t *testing.T) {
		f, ip, o, w := setup(t)
		before := map[netip.Addr]*simAgent{}
		for v := range f.vips {
			before[v] = f.owner(v)
		}
		for _, a := range f.agents {
			f.apiDown[a] = true
		}
		w.run(2 * f.cfg.NodeAgent.LeaseDuration)
		for _, a := range f.agents {
			delete(f.apiDown, a)
		}
		w.run(30 * time.Second)
		for v, b := range before {
			if f.owner(v) != b {
				t.Errorf("%s moved from %s to %v", v, b.name, f.answerers(v))
			}
		}
		if w.two > 0 || w.longest > 0 || f.owner(ip) != o {
			t.Errorf("two answering %s, longest gap %s", w.two, w.longest)
		}
	})

	t.Run("edge: owner crash with the API server gone for everyone: one answerer within a second", func(t *testing.T) {
		f, ip, o, w := setup(t)
		for _, a := range f.agents {
			f.apiDown[a] = true
		}
		w.run(5 * time.Second)
		o.dead = true
		w.run(time.Second)
		if n := f.owner(ip); n == nil || n == o {
			t.Fatalf("a second after the crash %s is answered by %v", ip, f.answerers(ip))
		}
		w.run(2 * f.cfg.NodeAgent.LeaseDuration)
		for _, a := range f.agents {
			delete(f.apiDown, a)
		}
		w.run(f.cfg.NodeAgent.LeaseDuration)
		expectSingle(t, f)
		// The dead owner before the crash, its successor after: no
		// further move when the API server returns.
		if w.two > 0 || w.longest > time.Second || len(w.owners[ip]) != 2 {
			t.Errorf("two answering %s, longest gap %s, owners %v (want the dead one and one successor)", w.two, w.longest, w.owners[ip])
		}
	})

	t.Run("SIGTERM of the owner: the next in line answers at once, without a probe", func(t *testing.T) {
		f, ip, o, w := setup(t)
		o.leaving = true
		o.hb.SetLeaving(true)
		f.renew(o)
		f.reconcile(o)
		w.run(5 * time.Second)
		n := f.owner(ip)
		if n == nil || n == o {
			t.Fatalf("%s is answered by %v after the owner left", ip, f.answerers(ip))
		}
		if w.longest > 2*simStep || w.two > 0 {
			t.Errorf("longest gap %s (want at most two steps), two answering %s", w.longest, w.two)
		}
		if len(n.probing) > 0 || len(n.probes) > 0 {
			t.Errorf("the new owner probed: %v %v", n.probing, n.probes)
		}
	})
}
