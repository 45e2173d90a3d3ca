// Package config loads and validates the cloud-config file shared by the
// cloud-controller-manager and the node agent. There is one loader and one
// validation so both binaries agree on what a file means.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/ipam"
)

// Mode says how the node agents make a pool's addresses reachable.
type Mode string

const (
	ModeLayer2 Mode = "layer2"
	ModeBGP    Mode = "bgp"
)

// Defaults for fields a file may leave out.
const (
	// The agent Lease is membership, renewed at kubelet's pace; failover
	// runs on the agents' heartbeats (see docs/agent-model.md).
	DefaultLeaseDuration = 40 * time.Second
	DefaultRenewInterval = 10 * time.Second
	// DefaultStaleViewTimeout is how long an agent that cannot reach the
	// API server keeps announcing from its last view.
	DefaultStaleViewTimeout = 5 * time.Minute
	DefaultGARPInterval     = 10 * time.Second
	// Failure detection between a layer-2 owner and its successors: beats
	// every DefaultHeartbeatInterval, silence after DefaultSuspectAfter
	// (five missed beats), then a takeover probe of DefaultProbeWait.
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultSuspectAfter      = 500 * time.Millisecond
	DefaultProbeWait         = 200 * time.Millisecond
	// DefaultStalledAgentGrace is how much longer a successor waits when
	// the owner's agent is silent but its node still answers ARP/NDP for
	// its own address: an agent starved of CPU for a few hundred
	// milliseconds looks dead on the heartbeat channel, its node does not.
	DefaultStalledAgentGrace = time.Second
	DefaultBGPPort           = 179
	DefaultHoldTime          = 90 * time.Second
)

// BFD defaults are FRR's, so `bfd: {}` on a peer matches the router's side.
const (
	DefaultBFDInterval   = 300 * time.Millisecond
	DefaultBFDMultiplier = 3
)

// DefaultKeepalive is the keepalive time of a peer that sets only holdTime:
// a third of it, as RFC 4271 suggests and routers do.
func DefaultKeepalive(hold time.Duration) time.Duration { return hold / 3 }

// NamespacePlaceholder is what `baremetal-config convert` writes into a
// pool's namespaces for MetalLB's namespaceSelectors, which a cloud-config
// cannot express. It fails validation (ErrNamespacePlaceholder) until a
// person replaces it.
const NamespacePlaceholder = "replace-with-namespaces"

// ErrNamespacePlaceholder matches the finding about NamespacePlaceholder.
var ErrNamespacePlaceholder = errors.New("placeholder namespace left in the cloud-config")

// Config is the whole cloud-config file after defaulting and validation.
type Config struct {
	Pools     []Pool         `yaml:"pools"`
	BGP       BGP            `yaml:"bgp"`
	NodeAgent NodeAgent      `yaml:"nodeAgent"`
	Topology  []TopologyRule `yaml:"topology"`

	// Warnings are findings that do not stop the file from loading (no
	// pools at all, say); the binaries log them, validate prints them.
	Warnings []*FieldError `yaml:"-"`
}

// Pool is a set of addresses handed out to Services.
type Pool struct {
	Name            string    `yaml:"name"`
	Addresses       []string  `yaml:"addresses"`
	Mode            Mode      `yaml:"mode"`
	AutoAssign      *bool     `yaml:"autoAssign"`
	AvoidBuggyIPs   bool      `yaml:"avoidBuggyIPs"`
	Namespaces      []string  `yaml:"namespaces"`
	ServiceSelector *Selector `yaml:"serviceSelector"`
	NodeSelector    *Selector `yaml:"nodeSelector"`
	Interfaces      []string  `yaml:"interfaces"`
	BGP             *PoolBGP  `yaml:"bgp"`

	// Filled in by validation.
	Ranges          []ipam.Range    `yaml:"-"`
	serviceSelector labels.Selector `yaml:"-"`
	nodeSelector    labels.Selector `yaml:"-"`
}

// PoolBGP says how a bgp pool's addresses are advertised.
type PoolBGP struct {
	Peers               []string `yaml:"peers"`
	Communities         []string `yaml:"communities"`
	LocalPref           *uint32  `yaml:"localPref"`
	AggregationLength   *int     `yaml:"aggregationLength"`
	AggregationLengthV6 *int     `yaml:"aggregationLengthV6"`
	// WeightByEndpoints advertises the link-bandwidth extended community
	// in proportion to the node's ready endpoints for the Service.
	WeightByEndpoints bool `yaml:"weightByEndpoints"`
}

// BGP holds the speaker settings shared by all agents.
type BGP struct {
	ASN      uint32 `yaml:"asn"`
	RouterID string `yaml:"routerID"`
	Peers    []Peer `yaml:"peers"`
}

// Peer is a BGP router the agents open sessions to.
type Peer struct {
	Name            string        `yaml:"name"`
	Address         string        `yaml:"address"`
	ASN             uint32        `yaml:"asn"`
	Port            uint16        `yaml:"port"`
	PasswordFile    string        `yaml:"passwordFile"`
	HoldTime        time.Duration `yaml:"holdTime"`
	KeepaliveTime   time.Duration `yaml:"keepaliveTime"`
	EBGPMultihop    uint8         `yaml:"ebgpMultihop"`
	SourceAddress   string        `yaml:"sourceAddress"`
	GracefulRestart bool          `yaml:"gracefulRestart"`
	NodeSelector    *Selector     `yaml:"nodeSelector"`
	// LocalASN overrides bgp.asn on this session (MetalLB's myASN), e.g.
	// an ASN per rack toward its top-of-rack router.
	LocalASN uint32   `yaml:"localASN"`
	BFD      *PeerBFD `yaml:"bfd"` // present: run BFD on this session

	// Filled in by validation.
	Addr         netip.Addr      `yaml:"-"`
	SourceAddr   netip.Addr      `yaml:"-"`
	nodeSelector labels.Selector `yaml:"-"`
}

// PeerBFD are the BFD timers of a session (RFC 5880).
type PeerBFD struct {
	ReceiveInterval  time.Duration `yaml:"receiveInterval"`
	TransmitInterval time.Duration `yaml:"transmitInterval"`
	DetectMultiplier uint8         `yaml:"detectMultiplier"`
}

// NodeAgent tunes the agents' liveness and announcement timing.
type NodeAgent struct {
	LeaseDuration time.Duration  `yaml:"leaseDuration"`
	RenewInterval time.Duration  `yaml:"renewInterval"`
	GARPInterval  *time.Duration `yaml:"garpInterval"`
	// StaleViewTimeout: an agent that has not heard the API server for
	// this long stops announcing (a deleted Service's address may have
	// gone to another). 0 never stops; default DefaultStaleViewTimeout.
	StaleViewTimeout *time.Duration `yaml:"staleViewTimeout"`
	// HeartbeatInterval, SuspectAfter and ProbeWait time crash failover
	// of a layer-2 VIP: about SuspectAfter + ProbeWait after the owner's
	// last heartbeat, its successor answers.
	HeartbeatInterval *time.Duration `yaml:"heartbeatInterval"`
	SuspectAfter      *time.Duration `yaml:"suspectAfter"`
	ProbeWait         *time.Duration `yaml:"probeWait"`
	// StalledAgentGrace is added before a takeover when the silent
	// owner's node still answers for its own address (its agent stalled
	// or restarts; the node is not gone). 0: the node's answer is not
	// asked for, silence and an unanswered VIP probe suffice.
	StalledAgentGrace *time.Duration `yaml:"stalledAgentGrace"`
}

// TopologyRule maps node addresses to a zone and region.
type TopologyRule struct {
	CIDR   string `yaml:"cidr"`
	Zone   string `yaml:"zone"`
	Region string `yaml:"region"`

	Prefix netip.Prefix `yaml:"-"`
}

// Selector is a Kubernetes label selector spelled as in manifests.
type Selector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []Requirement     `yaml:"matchExpressions"`
}

// Requirement is one matchExpressions entry.
type Requirement struct {
	Key      string   `yaml:"key"`
	Operator string   `yaml:"operator"`
	Values   []string `yaml:"values"`
}

func (s *Selector) compile() (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	ls := &metav1.LabelSelector{MatchLabels: s.MatchLabels}
	for _, r := range s.MatchExpressions {
		ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: r.Key, Operator: metav1.LabelSelectorOperator(r.Operator), Values: r.Values,
		})
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// IsAutoAssign reports whether the pool serves Services that did not ask for it.
func (p *Pool) IsAutoAssign() bool { return p.AutoAssign == nil || *p.AutoAssign }

// AdmitsNamespace reports whether Services in ns may draw from the pool.
func (p *Pool) AdmitsNamespace(ns string) bool {
	if len(p.Namespaces) == 0 {
		return true
	}
	for _, n := range p.Namespaces {
		if n == ns {
			return true
		}
	}
	return false
}

// AdmitsService reports whether a Service with these labels in ns may draw from the pool.
func (p *Pool) AdmitsService(ns string, svcLabels map[string]string) bool {
	return p.AdmitsNamespace(ns) && selectorOrAll(p.serviceSelector).Matches(labels.Set(svcLabels))
}

// AdmitsNode reports whether a node with these labels may announce the pool.
func (p *Pool) AdmitsNode(nodeLabels map[string]string) bool {
	return selectorOrAll(p.nodeSelector).Matches(labels.Set(nodeLabels))
}

// Contains reports whether a is one of the pool's addresses.
func (p *Pool) Contains(a netip.Addr) bool {
	for _, r := range p.Ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// IPAMPool is the allocator's view of the pool.
func (p *Pool) IPAMPool() ipam.Pool {
	return ipam.Pool{Name: p.Name, Ranges: p.Ranges, AutoAssign: p.IsAutoAssign(), AvoidBuggyIPs: p.AvoidBuggyIPs}
}

// PeerNames returns the peers a bgp pool advertises to: its own list, else all.
func (c *Config) PeerNames(p *Pool) []string {
	if p.BGP != nil && len(p.BGP.Peers) > 0 {
		return p.BGP.Peers
	}
	names := make([]string, 0, len(c.BGP.Peers))
	for _, peer := range c.BGP.Peers {
		names = append(names, peer.Name)
	}
	return names
}

// AdmitsNode reports whether a node with these labels should peer with p.
func (p *Peer) AdmitsNode(nodeLabels map[string]string) bool {
	return selectorOrAll(p.nodeSelector).Matches(labels.Set(nodeLabels))
}

// Pool returns the pool with the given name.
func (c *Config) Pool(name string) (*Pool, bool) {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i], true
		}
	}
	return nil, false
}

// PoolFor returns the pool that holds address a.
func (c *Config) PoolFor(a netip.Addr) (*Pool, bool) {
	for i := range c.Pools {
		if c.Pools[i].Contains(a) {
			return &c.Pools[i], true
		}
	}
	return nil, false
}

// Peer returns the peer with the given name.
func (c *Config) Peer(name string) (*Peer, bool) {
	for i := range c.BGP.Peers {
		if c.BGP.Peers[i].Name == name {
			return &c.BGP.Peers[i], true
		}
	}
	return nil, false
}

// GARPInterval is the gratuitous ARP/NA refresh period; 0 means off.
func (n NodeAgent) GARP() time.Duration { return durationOr(n.GARPInterval, DefaultGARPInterval) }

// StaleView is the staleViewTimeout in force; 0 means never.
func (n NodeAgent) StaleView() time.Duration {
	return durationOr(n.StaleViewTimeout, DefaultStaleViewTimeout)
}

// Heartbeat is the heartbeatInterval in force.
func (n NodeAgent) Heartbeat() time.Duration {
	return durationOr(n.HeartbeatInterval, DefaultHeartbeatInterval)
}

// Suspect is the suspectAfter in force.
func (n NodeAgent) Suspect() time.Duration { return durationOr(n.SuspectAfter, DefaultSuspectAfter) }

// TakeoverProbe is the probeWait in force.
func (n NodeAgent) TakeoverProbe() time.Duration { return durationOr(n.ProbeWait, DefaultProbeWait) }

// StallGrace is the stalledAgentGrace in force.
func (n NodeAgent) StallGrace() time.Duration {
	return durationOr(n.StalledAgentGrace, DefaultStalledAgentGrace)
}

func durationOr(d *time.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return *d
}

// TopologyFor returns the zone and region of the first rule holding a.
func (c *Config) TopologyFor(a netip.Addr) (zone, region string, ok bool) {
	for _, t := range c.Topology {
		if t.Prefix.Contains(a.Unmap()) {
			return t.Zone, t.Region, true
		}
	}
	return "", "", false
}

// IPAMPools returns every pool in file order as the allocator sees them.
func (c *Config) IPAMPools() []ipam.Pool {
	out := make([]ipam.Pool, 0, len(c.Pools))
	for i := range c.Pools {
		out = append(out, c.Pools[i].IPAMPool())
	}
	return out
}

func selectorOrAll(s labels.Selector) labels.Selector {
	if s == nil {
		return labels.Everything()
	}
	return s
}

func (m Mode) String() string { return string(m) }

var _ fmt.Stringer = ModeLayer2
