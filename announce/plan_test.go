package announce

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/l2"
)

// Rankings used below, from the hand-computed sha256(node#ip) weights
// (TestScoreFormula and `printf 'node-a#192.0.2.10' | sha256sum`):
//
//	192.0.2.10: node-a > node-b > node-c > node-d
//	192.0.2.11: node-b > node-c > node-a > node-d
var (
	vipX = netip.MustParseAddr("192.0.2.10")
	vipY = netip.MustParseAddr("192.0.2.11")
	t0   = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

	macA = net.HardwareAddr{2, 0, 0, 0, 0, 0xa}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 0xb}
)

const planConfig = `
bgp:
  asn: 64512
  peers:
    - {name: tor-a, address: 198.51.100.1, asn: 64500}
    - {name: tor-r2, address: 198.51.100.2, asn: 64500, nodeSelector: {matchLabels: {rack: r2}}}
pools:
  - name: lan
    addresses: [192.0.2.0/25]
  - name: wan
    mode: bgp
    addresses: [203.0.113.0/24]
`

func planNodes() map[string]NodeView {
	out := map[string]NodeView{}
	for i, n := range []string{"node-a", "node-b", "node-c", "node-d"} {
		out[n] = NodeView{Name: n, Labels: map[string]string{"rack": "r1"}, InternalIPs: []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(201 + i)})}}
	}
	return out
}

// basePlan is node self on a four-node segment, everyone up, VIPs x and y.
func basePlan(t *testing.T, self string) PlanInput {
	cfg := mustConfig(t, planConfig)
	lan, _ := cfg.Pool("lan")
	members := map[string]AgentInfo{}
	for _, n := range []string{"node-a", "node-b", "node-c", "node-d"} {
		if n != self {
			members[n] = AgentInfo{}
		}
	}
	return PlanInput{
		Config:  cfg,
		Self:    self,
		Links:   l2.Links{{Name: "eth0", Up: true, MAC: macB, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
		Nodes:   planNodes(),
		VIPs:    map[netip.Addr]*VIPView{vipX: {IP: vipX, Pool: lan}, vipY: {IP: vipY, Pool: lan}},
		Members: members,
		Health:  map[string]PeerHealth{},
		Now:     t0,
	}
}

func announcements(ips ...netip.Addr) []l2.Announcement {
	out := []l2.Announcement{}
	for _, ip := range ips {
		out = append(out, l2.Announcement{Addr: ip, Interface: "eth0"})
	}
	return out
}

func targetNames(p Plan) []string {
	var out []string
	for n := range p.Heartbeat {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func TestDecideLayer2(t *testing.T) {
	silent := func(since time.Time) PeerHealth { return PeerHealth{State: Silent, Since: since} }
	tests := []struct {
		name      string
		self      string
		edit      func(*PlanInput)
		wantL2    []l2.Announcement
		wantOwner string // of x
		wantProbe []netip.Addr
		wantHB    []string
		wantTake  []Takeover
		wantNext  time.Time
		// Nodes whose own address is to be probed.
		wantNodeProbe []string
	}{
		{
			name: "everyone up: the top of the ranking answers, its successors watch it",
			self: "node-a", wantL2: announcements(vipX), wantOwner: "node-a",
			// x: a owns, b and c follow; y: b owns, c then a follow.
			wantHB: []string{"node-b", "node-c"},
		},
		{
			name: "a successor answers nothing and heartbeats the owner and the other successor",
			self: "node-c", edit: func(in *PlanInput) { delete(in.VIPs, vipY) },
			wantL2: announcements(), wantOwner: "node-a", wantHB: []string{"node-a", "node-b"},
		},
		{
			name: "a member outside every group exchanges no heartbeats",
			self: "node-d", wantL2: announcements(), wantOwner: "node-a", wantHB: nil,
		},
		{
			name: "owner silent, not yet probed: the next in line probes and waits",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-time.Second))
			},
			wantL2: announcements(), wantOwner: "node-a", wantProbe: []netip.Addr{vipX},
			wantHB: []string{"node-a", "node-c"}, wantNodeProbe: []string{"node-a"},
		},
		{
			name: "owner silent and nobody answers for the VIP nor for its node: the next in line takes over",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-time.Second))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0.Add(-100 * time.Millisecond)}}
				in.NodeProbes = map[string]ProbeResult{"node-a": {At: t0.Add(-100 * time.Millisecond)}}
			},
			wantL2: announcements(vipX), wantOwner: "node-b", wantTake: []Takeover{{VIP: vipX, From: "node-a"}},
			// Still heartbeats a, to hear it return.
			wantHB: []string{"node-a", "node-c", "node-d"},
		},
		{
			name: "owner silent but it answered the probe: no takeover, probe again a second later",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-time.Second))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0.Add(-400 * time.Millisecond), MAC: macA}}
				in.NodeProbes = map[string]ProbeResult{"node-a": {At: t0.Add(-400 * time.Millisecond), MAC: macA}}
			},
			wantL2: announcements(), wantOwner: "node-a", wantHB: []string{"node-a", "node-c"},
			wantNext: t0.Add(600 * time.Millisecond),
		},
		{
			name: "nobody answers for the VIP but the silent owner's node does: wait out stalledAgentGrace",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-600 * time.Millisecond))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0.Add(-500 * time.Millisecond)}}
				in.NodeProbes = map[string]ProbeResult{"node-a": {At: t0.Add(-500 * time.Millisecond), MAC: macA}}
			},
			wantL2: announcements(), wantOwner: "node-a", wantHB: []string{"node-a", "node-c"},
			wantNext: t0.Add(400 * time.Millisecond), // silent since -600 ms, + 1 s
		},
		{
			name: "the grace is over: the VIP is probed again",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-1500 * time.Millisecond))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0.Add(-1400 * time.Millisecond)}}
				in.NodeProbes = map[string]ProbeResult{"node-a": {At: t0.Add(-1400 * time.Millisecond), MAC: macA}}
			},
			wantL2: announcements(), wantOwner: "node-a", wantProbe: []netip.Addr{vipX},
			wantHB: []string{"node-a", "node-c"},
		},
		{
			name: "the grace is over and nobody answered for the VIP since: the next in line takes over",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-1500 * time.Millisecond))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0.Add(-400 * time.Millisecond)}}
				in.NodeProbes = map[string]ProbeResult{"node-a": {At: t0.Add(-1400 * time.Millisecond), MAC: macA}}
			},
			wantL2: announcements(vipX), wantOwner: "node-b", wantTake: []Takeover{{VIP: vipX, From: "node-a"}},
			wantHB: []string{"node-a", "node-c", "node-d"},
		},
		{
			name: "nobody answered for the VIP and the node was not asked yet: wait for it (or the grace)",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-100 * time.Millisecond))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0.Add(-50 * time.Millisecond)}}
			},
			wantL2: announcements(), wantOwner: "node-a", wantHB: []string{"node-a", "node-c"},
			wantNodeProbe: []string{"node-a"}, wantNext: t0.Add(900 * time.Millisecond),
		},
		{
			name: "the silent owner's address is on none of this node's segments: its silence and the VIP probe decide",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				a := in.Nodes["node-a"]
				a.InternalIPs = []netip.Addr{netip.MustParseAddr("198.51.100.7")}
				in.Nodes["node-a"] = a
				in.Health["node-a"] = silent(t0.Add(-time.Second))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0.Add(-100 * time.Millisecond)}}
			},
			wantL2: announcements(vipX), wantOwner: "node-b", wantTake: []Takeover{{VIP: vipX, From: "node-a"}},
			wantHB: []string{"node-a", "node-c", "node-d"},
		},
		{
			name: "stalledAgentGrace 0: the node is not asked, the VIP probe decides",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Config.NodeAgent.StalledAgentGrace = new(time.Duration)
				in.Health["node-a"] = silent(t0.Add(-time.Second))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0.Add(-100 * time.Millisecond)}}
			},
			wantL2: announcements(vipX), wantOwner: "node-b", wantTake: []Takeover{{VIP: vipX, From: "node-a"}},
			wantHB: []string{"node-a", "node-c", "node-d"},
		},
		{
			name: "an answered probe a second old is repeated",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-3 * time.Second))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0.Add(-time.Second), MAC: macA}}
			},
			wantL2: announcements(), wantOwner: "node-a", wantProbe: []netip.Addr{vipX},
			wantHB: []string{"node-a", "node-c"}, wantNodeProbe: []string{"node-a"},
		},
		{
			name: "a probe sent before the silence began proves nothing",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-time.Second))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0.Add(-2 * time.Second)}}
			},
			wantL2: announcements(), wantOwner: "node-a", wantProbe: []netip.Addr{vipX},
			wantHB: []string{"node-a", "node-c"}, wantNodeProbe: []string{"node-a"},
		},
		{
			name: "owner and first successor both silent: the second successor probes",
			self: "node-c", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-time.Second))
				in.Health["node-b"] = silent(t0.Add(-time.Second))
			},
			wantL2: announcements(), wantOwner: "node-a", wantProbe: []netip.Addr{vipX},
			wantHB: []string{"node-a", "node-b", "node-d"}, wantNodeProbe: []string{"node-a", "node-b"},
		},
		{
			name: "owner and first successor proven down: the second successor takes over",
			self: "node-c", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-time.Second))
				in.Health["node-b"] = silent(t0.Add(-time.Second))
				in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0}}
				in.NodeProbes = map[string]ProbeResult{"node-a": {At: t0}, "node-b": {At: t0}}
			},
			wantL2: announcements(vipX), wantOwner: "node-c", wantTake: []Takeover{{VIP: vipX, From: "node-a"}},
			wantHB: []string{"node-a", "node-b", "node-d"},
		},
		{
			name: "owner silent but the first successor is up: the second successor leaves it to that one",
			self: "node-c", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = silent(t0.Add(-time.Second))
			},
			wantL2: announcements(), wantOwner: "node-a", wantHB: []string{"node-a", "node-b"},
		},
		{
			name: "owner leaving: the next in line takes over at once, without a probe, and no failover is counted",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Health["node-a"] = PeerHealth{State: Leaving}
			},
			wantL2: announcements(vipX), wantOwner: "node-b", wantHB: []string{"node-c", "node-d"},
		},
		{
			name: "sole survivor: silence of every peer never stops an owner",
			self: "node-a", edit: func(in *PlanInput) {
				for _, n := range []string{"node-b", "node-c", "node-d"} {
					in.Health[n] = silent(t0.Add(-time.Hour))
				}
			},
			// y's owner b is silent and a is not next in line after it
			// (c is, and silent too), so a probes y.
			wantL2: announcements(vipX), wantOwner: "node-a", wantProbe: []netip.Addr{vipY},
			wantHB: []string{"node-b", "node-c", "node-d"}, wantNodeProbe: []string{"node-b", "node-c"},
		},
		{
			name: "a member whose Lease is gone is no candidate",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				delete(in.Members, "node-a")
			},
			wantL2: announcements(vipX), wantOwner: "node-b", wantHB: []string{"node-c", "node-d"},
		},
		{
			name: "a member that published the pool unready is no candidate",
			self: "node-b", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Members["node-a"] = AgentInfo{UnreadyPools: []string{"lan"}}
			},
			wantL2: announcements(vipX), wantOwner: "node-b", wantHB: []string{"node-c", "node-d"},
		},
		{
			name: "this node has no interface for the VIP: it owns it but cannot answer",
			self: "node-a", edit: func(in *PlanInput) {
				delete(in.VIPs, vipY)
				in.Links = l2.Links{{Name: "eth9", Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}}
			},
			wantL2: announcements(), wantOwner: "node-a", wantHB: []string{"node-b", "node-c"},
		},
		{
			name: "leaving: this node answers nothing",
			self: "node-a", edit: func(in *PlanInput) { in.Leaving = true },
			wantL2: announcements(), wantOwner: "node-b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := basePlan(t, tt.self)
			if tt.edit != nil {
				tt.edit(&in)
			}
			p := Decide(in)
			if got := append([]l2.Announcement{}, p.L2...); !slices.Equal(got, tt.wantL2) {
				t.Errorf("L2 = %v, want %v", got, tt.wantL2)
			}
			if p.Owners[vipX] != tt.wantOwner {
				t.Errorf("owner of x = %q, want %q", p.Owners[vipX], tt.wantOwner)
			}
			var probes []netip.Addr
			for _, pr := range p.Probes {
				probes = append(probes, pr.Addr)
				if pr.Interface != "eth0" {
					t.Errorf("probe on %q, want eth0", pr.Interface)
				}
			}
			if !slices.Equal(probes, tt.wantProbe) {
				t.Errorf("probes %v, want %v", probes, tt.wantProbe)
			}
			if got := targetNames(p); !slices.Equal(got, tt.wantHB) {
				t.Errorf("heartbeat targets %v, want %v", got, tt.wantHB)
			}
			if !slices.Equal(p.Takeovers, tt.wantTake) {
				t.Errorf("takeovers %v, want %v", p.Takeovers, tt.wantTake)
			}
			if !p.Next.Equal(tt.wantNext) {
				t.Errorf("next %v, want %v", p.Next, tt.wantNext)
			}
			var nodeProbes []string
			for _, pr := range p.NodeProbes {
				nodeProbes = append(nodeProbes, pr.Node)
				if want, _ := in.Nodes[pr.Node].heartbeatAddr(); pr.Addr != want || pr.Interface != "eth0" {
					t.Errorf("node probe of %s for %s on %q, want %s on eth0", pr.Node, pr.Addr, pr.Interface, want)
				}
			}
			if !slices.Equal(nodeProbes, tt.wantNodeProbe) {
				t.Errorf("node probes %v, want %v", nodeProbes, tt.wantNodeProbe)
			}
		})
	}
}

func TestDecideHeartbeatAddresses(t *testing.T) {
	in := basePlan(t, "node-a")
	delete(in.VIPs, vipY)
	p := Decide(in)
	if got, want := p.Heartbeat["node-b"], netip.MustParseAddr("192.0.2.202"); got != want {
		t.Errorf("heartbeat address of node-b %v, want its InternalIP %v", got, want)
	}
}

func TestDecideTakeoverCountedOnce(t *testing.T) {
	in := basePlan(t, "node-b")
	delete(in.VIPs, vipY)
	in.Health["node-a"] = PeerHealth{State: Silent, Since: t0.Add(-time.Second)}
	in.Probes = map[netip.Addr]ProbeResult{vipX: {At: t0}}
	p := Decide(in)
	if len(p.Takeovers) != 1 || !p.Owned[vipX] {
		t.Fatalf("first pass: takeovers %v, owned %v", p.Takeovers, p.Owned)
	}
	in.Owned = p.Owned
	if p := Decide(in); len(p.Takeovers) != 0 {
		t.Errorf("second pass counted the takeover again: %v", p.Takeovers)
	}
	// The owner returns: the VIP leaves this node's list (the layer-2
	// plane hands it over).
	in.Health["node-a"] = PeerHealth{State: Up}
	if p := Decide(in); len(p.L2) != 0 || p.Owners[vipX] != "node-a" {
		t.Errorf("owner returned: L2 %v, owner %s", p.L2, p.Owners[vipX])
	}
}

func TestDecideBGP(t *testing.T) {
	wanIP := netip.MustParseAddr("203.0.113.5")
	tests := []struct {
		name      string
		self      string
		edit      func(*PlanInput, *VIPView)
		wantPeers []string // nil: not advertised
		wantEPs   int
	}{
		{name: "eligible node advertises to the peers it has", self: "node-a", wantPeers: []string{"tor-a"}, wantEPs: 2},
		{name: "a peer's nodeSelector admits the node", self: "node-b", edit: func(in *PlanInput, _ *VIPView) {
			b := in.Nodes["node-b"]
			b.Labels = map[string]string{"rack": "r2"}
			in.Nodes["node-b"] = b
		}, wantPeers: []string{"tor-a", "tor-r2"}},
		{name: "draining node withdraws", self: "node-a", edit: func(in *PlanInput, _ *VIPView) {
			a := in.Nodes["node-a"]
			a.Draining = true
			in.Nodes["node-a"] = a
		}},
		{name: "excluded node withdraws", self: "node-a", edit: func(in *PlanInput, _ *VIPView) {
			a := in.Nodes["node-a"]
			a.Excluded = true
			in.Nodes["node-a"] = a
		}},
		{name: "Local traffic policy: only with a ready local endpoint", self: "node-c", edit: func(_ *PlanInput, v *VIPView) {
			v.LocalNodes = map[string]bool{"node-a": true}
		}},
		{name: "Local traffic policy: the node with endpoints advertises", self: "node-a", edit: func(_ *PlanInput, v *VIPView) {
			v.LocalNodes = map[string]bool{"node-a": true}
		}, wantPeers: []string{"tor-a"}, wantEPs: 2},
		{name: "leaving node withdraws", self: "node-a", edit: func(in *PlanInput, _ *VIPView) { in.Leaving = true }},
		{name: "unknown node advertises nothing", self: "node-z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := basePlan(t, tt.self)
			wan, _ := in.Config.Pool("wan")
			v := &VIPView{IP: wanIP, Pool: wan, Endpoints: map[string]int{"node-a": 2}, Services: []*v1.Service{lbService("w", "", "203.0.113.5")}}
			in.VIPs = map[netip.Addr]*VIPView{wanIP: v}
			if tt.edit != nil {
				tt.edit(&in, v)
			}
			p := Decide(in)
			if tt.wantPeers == nil {
				if len(p.BGP) != 0 {
					t.Fatalf("advertises %+v, want nothing", p.BGP)
				}
				return
			}
			if len(p.BGP) != 1 || p.BGP[0].VIP != wanIP || !slices.Equal(p.BGP[0].Peers, tt.wantPeers) || p.BGP[0].LocalEndpoints != tt.wantEPs {
				t.Fatalf("advertises %+v, want %s to %v with %d endpoints", p.BGP, wanIP, tt.wantPeers, tt.wantEPs)
			}
			if len(p.L2) != 0 || len(p.Owners) != 0 {
				t.Errorf("a bgp VIP got a layer-2 owner: %v %v", p.L2, p.Owners)
			}
		})
	}
}

// Every agent computes the same owners from the same view.
func TestDecideAgentsAgree(t *testing.T) {
	var owners []map[netip.Addr]string
	for _, self := range []string{"node-a", "node-b", "node-c", "node-d"} {
		in := basePlan(t, self)
		for i := 1; i < 100; i++ {
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
			in.VIPs[ip] = &VIPView{IP: ip, Pool: in.VIPs[vipX].Pool}
		}
		owners = append(owners, Decide(in).Owners)
	}
	for i := 1; i < len(owners); i++ {
		for ip, o := range owners[0] {
			if owners[i][ip] != o {
				t.Fatalf("%s: agent 0 elects %s, agent %d elects %s", ip, o, i, owners[i][ip])
			}
		}
	}
}
