package announce

import (
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/l2"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// The planner is one pure function, Decide: everything the agent knows
// goes in, everything the data planes, the heartbeats and the prober
// should do comes out. It reads no clock and no network, so every
// transition of the ownership model is a table test (plan_test.go).
//
// Ownership of a layer-2 VIP: rank the eligible members (agents with a
// Lease) by rendezvous hash; the owner is the first one this agent cannot
// prove dead. A member is down when it is leaving, or when it is silent
// (heartbeats, or its Lease as a backstop) and a probe for the VIP sent
// after the silence began found nobody answering. Silence alone never
// moves a VIP: the owner's own ARP/NDP answers are the best proof of life.
//
// A silent owner whose node still answers ARP/NDP for its own address is
// given nodeAgent.stalledAgentGrace more: the node is there, so its agent
// is more likely starved of CPU or restarting than dead, and taking over
// from an agent that resumes is two nodes answering. A node that answers
// nothing (link down, power off) is proven down at once.

// Planner constants.
const (
	// Successors is how many next-in-line members exchange heartbeats with
	// a VIP's owner: that many members can fail at once and the VIP still
	// moves within a second; beyond that the Lease backstop moves it.
	Successors = 2
	// ProbeRetry is how long a probe that found the VIP answered stands
	// before a silent owner is probed again.
	ProbeRetry = time.Second
)

// HealthState is this agent's verdict on another agent.
type HealthState int

const (
	// Up: heard on the heartbeat channel within the suspicion window, or,
	// where no heartbeats are exchanged, its Lease is renewed.
	Up HealthState = iota
	// Silent: nothing heard for the suspicion window (or its Lease expired
	// while this agent's view was fresh). Not dead until a probe agrees.
	Silent
	// Leaving: it said it is shutting down (heartbeat flag or Lease
	// annotation) and hands its VIPs over.
	Leaving
)

func (s HealthState) String() string { return [...]string{"Up", "Silent", "Leaving"}[s] }

// PeerHealth is the verdict on one agent.
type PeerHealth struct {
	State HealthState
	// Since is when a Silent agent turned silent; a probe counts as proof
	// of death only if it was sent after that.
	Since time.Time
}

// ProbeResult is the outcome of an ARP/NDP probe for a VIP.
type ProbeResult struct {
	At  time.Time        // when the probe was sent
	MAC net.HardwareAddr // who answered; nil: nobody did
}

// PlanInput is everything the planner reads. Nothing in it is modified.
type PlanInput struct {
	Config *config.Config
	Self   string
	// SelfInfo is what this agent publishes (its MACs, unready pools).
	SelfInfo AgentInfo
	// Leaving: this agent is shutting down and is no candidate.
	Leaving bool
	Links   l2.Links
	Nodes   map[string]NodeView
	VIPs    map[netip.Addr]*VIPView
	// Members are the other agents with a Lease in a pool this agent
	// shares, with what they published.
	Members map[string]AgentInfo
	// Health holds the verdicts on Members; a member missing here is Up.
	Health map[string]PeerHealth
	Probes map[netip.Addr]ProbeResult
	// NodeProbes are probes of silent members' own node addresses, by
	// node: does the node still answer, whatever its agent does?
	NodeProbes map[string]ProbeResult
	// Owned are the layer-2 VIPs the previous plan had this node own (the
	// agent feeds Plan.Owned back), to tell a takeover from a steady state.
	Owned map[netip.Addr]bool
	Now   time.Time
}

// BGPAdvertisement is one VIP this node advertises.
type BGPAdvertisement struct {
	VIP   netip.Addr
	Pool  *config.Pool
	Peers []string // configured peers of the pool that peer with this node
	// LocalEndpoints are this node's ready endpoints for the VIP, for
	// weighting ECMP (pool bgp.weightByEndpoints).
	LocalEndpoints int
	// Local is set when an externalTrafficPolicy: Local Service uses the
	// VIP, so traffic stays on the node it reaches (weights apply).
	Local bool
}

// ProbeRequest asks the agent to probe a VIP on an interface.
type ProbeRequest struct {
	Addr      netip.Addr
	Interface string
}

// NodeProbeRequest asks the agent to probe a silent member's own node
// address on an interface.
type NodeProbeRequest struct {
	Node      string
	Addr      netip.Addr
	Interface string
}

// Takeover is a VIP this node takes from a member proven down.
type Takeover struct {
	VIP  netip.Addr
	From string
}

// Plan is what the agent should make true.
type Plan struct {
	// L2 are the VIPs this node answers for, sorted by address. A VIP
	// that leaves this list is handed over by the layer-2 plane (answered
	// until the new owner announces it), not dropped: no gap.
	L2    []l2.Announcement
	Owned map[netip.Addr]bool
	// BGP are the VIPs this node advertises, sorted by address.
	BGP []BGPAdvertisement
	// Heartbeat are the agents to exchange heartbeats with: the owner and
	// successors of every layer-2 VIP this node is owner or successor of,
	// and silent members ranked above it (to hear them return).
	Heartbeat map[string]netip.Addr
	// Owners is the layer-2 owner, as this agent sees it, of every
	// layer-2 VIP this node is eligible for ("" when no member is
	// eligible). VIPs it cannot serve are not ranked and not listed.
	Owners map[netip.Addr]string
	// Probes to send now.
	Probes []ProbeRequest
	// NodeProbes to send now, one per node.
	NodeProbes []NodeProbeRequest
	// NoInterface are VIPs this node owns but has no interface for.
	NoInterface []*VIPView
	// Takeovers are VIPs this node takes from a member proven down.
	Takeovers []Takeover
	// Next is when the plan changes by itself (a handover times out, a
	// probe is due); zero if never.
	Next time.Time
}

// Decide computes the plan.
func Decide(in PlanInput) Plan {
	p := Plan{
		Owned:     map[netip.Addr]bool{},
		Heartbeat: map[string]netip.Addr{},
		Owners:    map[netip.Addr]string{},
	}
	members := make(map[string]AgentInfo, len(in.Members)+1)
	for n, info := range in.Members {
		if n != in.Self {
			members[n] = info
		}
	}
	if !in.Leaving {
		members[in.Self] = in.SelfInfo
	}
	ips := make([]netip.Addr, 0, len(in.VIPs))
	for ip := range in.VIPs {
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	self, hasSelf := in.Nodes[in.Self]
	for _, ip := range ips {
		v := in.VIPs[ip]
		if v.Pool.Mode == config.ModeBGP {
			if ad, ok := in.bgpAdvertisement(v, self, hasSelf); ok {
				p.BGP = append(p.BGP, ad)
			}
			continue
		}
		in.planL2(&p, v, members)
	}
	slices.SortFunc(p.L2, func(a, b l2.Announcement) int { return a.Addr.Compare(b.Addr) })
	return p
}

// planL2 elects the owner of one layer-2 VIP and records what this node
// does about it. A VIP this node cannot serve is skipped before any
// ranking: it can never be its owner nor a successor, so nothing in the
// plan depends on it (in a cluster of many segments that is most VIPs).
// The others are ranked lazily: only the head of the ranking, down to
// the last successor, is ordered, not every member.
func (in PlanInput) planL2(p *Plan, v *VIPView, members map[string]AgentInfo) {
	if !eligible(*v, in.Self, in.Nodes, in.SelfInfo) {
		return
	}
	ranking := newRanking(v.IP, eligibleCandidates(*v, in.Nodes, members))
	probe, probed := in.Probes[v.IP]
	var (
		owner    string
		ownerIdx = -1
		selfIdx  = -1
		ranked   []Candidate // the head of the ranking, as far as it was read
		skipped  []string    // proven down, ahead of the owner; still watched, to hear them return
		group    []string    // owner and successors
	)
	upSuccessors := 0
	for c, ok := ranking.next(); ok; c, ok = ranking.next() {
		i := len(ranked)
		ranked = append(ranked, c)
		state := Up
		if c.Node == in.Self {
			selfIdx = i
		} else {
			h := in.Health[c.Node]
			state = h.State
			if state == Leaving {
				continue
			}
			if owner == "" && state == Silent && probed && probe.MAC == nil && !probe.At.Before(in.downAfter(c.Node, h)) {
				skipped = append(skipped, c.Node)
				continue
			}
		}
		group = append(group, c.Node)
		if owner == "" {
			owner, ownerIdx = c.Node, i
			continue
		}
		// Silent successors stay in the group (to hear them return) but
		// do not count: the group reaches Successors live members.
		if state == Up {
			upSuccessors++
			if upSuccessors >= Successors {
				break
			}
		}
	}
	p.Owners[v.IP] = owner
	if !slices.Contains(group, in.Self) {
		return
	}
	for _, n := range append(group, skipped...) {
		if n == in.Self {
			continue
		}
		if addr, ok := in.Nodes[n].heartbeatAddr(); ok {
			p.Heartbeat[n] = addr
		}
	}
	// Members ranked between the owner and this node, all silent or
	// leaving: if the owner is silent too, a probe decides.
	if owner != in.Self {
		if in.probeDue(ranked, ownerIdx, selfIdx) {
			if link, ok := in.Links.InterfaceFor(v.IP, v.Pool.Interfaces, in.Nodes[in.Self].InternalIPs); ok {
				silent := ranked[ownerIdx:selfIdx]
				in.askNodes(p, silent)
				since, due := in.latestSilence(silent)
				switch {
				case !probed || probe.At.Before(since):
					p.Probes = append(p.Probes, ProbeRequest{Addr: v.IP, Interface: link.Name})
				case probe.MAC == nil && probe.At.Before(due):
					// Nobody answered, but a node still does: probe
					// again when its grace ends.
					if in.Now.Before(due) {
						p.next(due)
					} else {
						p.Probes = append(p.Probes, ProbeRequest{Addr: v.IP, Interface: link.Name})
					}
				case !in.Now.Before(probe.At.Add(ProbeRetry)):
					p.Probes = append(p.Probes, ProbeRequest{Addr: v.IP, Interface: link.Name})
				default:
					p.next(probe.At.Add(ProbeRetry))
				}
			}
		}
		return
	}
	link, ok := in.Links.InterfaceFor(v.IP, v.Pool.Interfaces, in.Nodes[in.Self].InternalIPs)
	if !ok {
		p.NoInterface = append(p.NoInterface, v)
		return
	}
	if !in.Owned[v.IP] {
		for _, n := range skipped {
			if in.Health[n].State == Silent {
				p.Takeovers = append(p.Takeovers, Takeover{VIP: v.IP, From: n})
				break
			}
		}
	}
	p.Owned[v.IP] = true
	p.L2 = append(p.L2, l2.Announcement{Addr: v.IP, Interface: link.Name})
}

// probeDue reports whether this node (at selfIdx) would own the VIP if
// the owner (at ownerIdx) and every member between them were down, and
// the owner is only silent: then a probe decides.
func (in PlanInput) probeDue(ranked []Candidate, ownerIdx, selfIdx int) bool {
	if ownerIdx < 0 || selfIdx <= ownerIdx {
		return false
	}
	for _, c := range ranked[ownerIdx:selfIdx] {
		if s := in.Health[c.Node].State; s != Silent && s != Leaving {
			return false
		}
	}
	return in.Health[ranked[ownerIdx].Node].State == Silent
}

// latestSilence is when the last of cands turned silent, and when the
// last of them can be proven down (downAfter).
func (in PlanInput) latestSilence(cands []Candidate) (since, due time.Time) {
	for _, c := range cands {
		h := in.Health[c.Node]
		if h.State != Silent {
			continue
		}
		if h.Since.After(since) {
			since = h.Since
		}
		if d := in.downAfter(c.Node, h); d.After(due) {
			due = d
		}
	}
	return since, due
}

// downAfter is when an unanswered probe for a silent member's VIP starts
// to prove it down: at once if its node does not answer for its own
// address either, stalledAgentGrace later if the node answers or has not
// been asked yet. A node this one cannot ask (its address is on none of
// this node's segments) is judged by its silence.
func (in PlanInput) downAfter(node string, h PeerHealth) time.Time {
	grace := in.Config.NodeAgent.StallGrace()
	if grace == 0 {
		return h.Since
	}
	if _, _, ok := in.onLink(node); !ok {
		return h.Since
	}
	if np, ok := in.NodeProbes[node]; ok && np.MAC == nil && !np.At.Before(h.Since) {
		return h.Since
	}
	return h.Since.Add(grace)
}

// onLink returns an address of node on one of this node's segments, and
// the interface on it: where node's kernel answers, whatever its agent does.
func (in PlanInput) onLink(node string) (netip.Addr, string, bool) {
	for _, addr := range in.Nodes[node].InternalIPs {
		for _, l := range in.Links {
			if !l.Up {
				continue
			}
			for _, p := range l.Prefixes {
				if p.Contains(addr) {
					return addr, l.Name, true
				}
			}
		}
	}
	return netip.Addr{}, "", false
}

// askNodes asks for a probe of the own address of every silent member of
// cands whose node was not asked since it turned silent.
func (in PlanInput) askNodes(p *Plan, cands []Candidate) {
	if in.Config.NodeAgent.StallGrace() == 0 {
		return
	}
	for _, c := range cands {
		h := in.Health[c.Node]
		if h.State != Silent {
			continue
		}
		if np, ok := in.NodeProbes[c.Node]; ok && !np.At.Before(h.Since) {
			continue
		}
		addr, iface, ok := in.onLink(c.Node)
		if !ok || slices.ContainsFunc(p.NodeProbes, func(r NodeProbeRequest) bool { return r.Node == c.Node }) {
			continue
		}
		p.NodeProbes = append(p.NodeProbes, NodeProbeRequest{Node: c.Node, Addr: addr, Interface: iface})
	}
}

// bgpAdvertisement says whether this node advertises v: it is a member
// (not leaving), eligible for the pool, not draining, serves the Local
// Services of the address, and peers with at least one of the pool's
// routers.
func (in PlanInput) bgpAdvertisement(v *VIPView, self NodeView, hasSelf bool) (BGPAdvertisement, bool) {
	if in.Leaving || !hasSelf || self.Excluded || self.Draining || !v.Pool.AdmitsNode(self.Labels) {
		return BGPAdvertisement{}, false
	}
	if v.LocalNodes != nil && !v.LocalNodes[in.Self] {
		return BGPAdvertisement{}, false
	}
	var peers []string
	for _, name := range in.Config.PeerNames(v.Pool) {
		if peer, ok := in.Config.Peer(name); ok && peer.AdmitsNode(self.Labels) {
			peers = append(peers, name)
		}
	}
	if len(peers) == 0 {
		return BGPAdvertisement{}, false
	}
	return BGPAdvertisement{VIP: v.IP, Pool: v.Pool, Peers: peers, LocalEndpoints: v.Endpoints[in.Self], Local: v.LocalNodes != nil}, true
}

func (p *Plan) next(t time.Time) {
	if p.Next.IsZero() || t.Before(p.Next) {
		p.Next = t
	}
}
