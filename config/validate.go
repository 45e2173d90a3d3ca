package config

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/ipam"
)

type validator struct {
	errs     ValidationErrors
	warnings []*FieldError
}

func (v *validator) addf(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(path, format string, args ...any) {
	v.warnings = append(v.warnings, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// uniqueName checks the name of list[i] at path: required, a DNS-1123
// label, and not already used by an earlier entry (recorded in seen).
func (v *validator) uniqueName(path, list, name string, i int, seen map[string]int) {
	switch {
	case name == "":
		v.addf(path+".name", "required")
	case len(validation.IsDNS1123Label(name)) > 0:
		v.addf(path+".name", "%q must be a DNS-1123 label (lower-case letters, digits and '-')", name)
	default:
		if j, dup := seen[name]; dup {
			v.addf(path+".name", "%q is already the name of %s[%d]", name, list, j)
		}
		seen[name] = i
	}
}

func (c *Config) validate() ValidationErrors {
	v := &validator{}
	c.validatePools(v)
	c.warnUnused(v)
	c.validateBGP(v)
	c.validateNodeAgent(v)
	c.validateTopology(v)
	c.Warnings = v.warnings
	return v.errs
}

type placedRange struct {
	ipam.Range
	path string
	pool string
}

func (c *Config) validatePools(v *validator) {
	names := map[string]int{}
	var all []placedRange
	for i := range c.Pools {
		p := &c.Pools[i]
		path := fmt.Sprintf("pools[%d]", i)
		v.uniqueName(path, "pools", p.Name, i, names)
		if len(p.Addresses) == 0 {
			v.addf(path+".addresses", "required: at least one IP, CIDR or FIRST-LAST range")
		}
		p.Ranges = p.Ranges[:0]
		for j, s := range p.Addresses {
			r, err := ipam.ParseRange(s)
			if err != nil {
				v.addf(fmt.Sprintf("%s.addresses[%d]", path, j), "%v", err)
				continue
			}
			if why, bad := unusable(r); bad {
				v.addf(fmt.Sprintf("%s.addresses[%d]", path, j), "%s includes %s; a pool needs unicast addresses that other hosts can reach", s, why)
				continue
			}
			p.Ranges = append(p.Ranges, r)
			all = append(all, placedRange{Range: r, path: fmt.Sprintf("%s.addresses[%d]", path, j), pool: p.Name})
		}
		switch p.Mode {
		case ModeLayer2:
			if p.BGP != nil {
				v.addf(path+".bgp", "only allowed when mode is bgp")
			}
		case ModeBGP:
			if len(p.Interfaces) > 0 {
				v.addf(path+".interfaces", "only allowed when mode is layer2 (bgp pools are announced as routes, not on an interface)")
			}
			if c.BGP.ASN == 0 {
				v.addf(path+".mode", "bgp pools need bgp.asn to be set")
			} else if len(c.BGP.Peers) == 0 {
				v.addf(path+".mode", "bgp pool but bgp.peers is empty: its addresses would be handed out and never announced; add a peer or use mode: layer2")
			}
			c.validatePoolBGP(v, path+".bgp", p)
		default:
			v.addf(path+".mode", "%q is not a mode; use layer2 or bgp", p.Mode)
		}
		for j, ns := range p.Namespaces {
			if ns == NamespacePlaceholder {
				v.errs = append(v.errs, &FieldError{Path: fmt.Sprintf("%s.namespaces[%d]", path, j), Err: ErrNamespacePlaceholder,
					Msg: fmt.Sprintf("%q is the placeholder `baremetal-config convert` writes for MetalLB's namespaceSelectors: replace it with the names of the namespaces those selectors matched", ns)})
			} else if len(validation.IsDNS1123Label(ns)) > 0 {
				v.addf(fmt.Sprintf("%s.namespaces[%d]", path, j), "%q is not a valid namespace name", ns)
			}
		}
		var err error
		if p.serviceSelector, err = p.ServiceSelector.compile(); err != nil {
			v.addf(path+".serviceSelector", "%v", err)
		}
		if p.nodeSelector, err = p.NodeSelector.compile(); err != nil {
			v.addf(path+".nodeSelector", "%v", err)
		}
		for j, name := range p.Interfaces {
			if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t") {
				v.addf(fmt.Sprintf("%s.interfaces[%d]", path, j), "%q is not a valid interface name", name)
			}
		}
	}
	// Sort once and compare neighbours: O(n log n) however many ranges.
	sort.Slice(all, func(i, j int) bool {
		if all[i].Is4() != all[j].Is4() {
			return all[i].Is4()
		}
		return all[i].First.Less(all[j].First)
	})
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.Overlaps(b.Range) {
			first, second := a, b
			if second.path < first.path {
				first, second = second, first
			}
			v.addf(second.path, "%s overlaps %s (%s, pool %q)", second.Range, first.path, first.Range, first.pool)
		}
	}
}

// The address blocks a pool must not touch, with what they are for. A
// Service address in them either never leaves the node or is never answered.
var unusableBlocks = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "0.0.0.0/8 (\"this network\", with the unspecified address 0.0.0.0)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "127.0.0.0/8 (loopback)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "169.254.0.0/16 (link-local)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "224.0.0.0/4 (multicast)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "240.0.0.0/4 (reserved, with the broadcast address 255.255.255.255)"},
	{netip.MustParsePrefix("::/128"), ":: (the unspecified address)"},
	{netip.MustParsePrefix("::1/128"), "::1 (loopback)"},
	{netip.MustParsePrefix("fe80::/10"), "fe80::/10 (link-local)"},
	{netip.MustParsePrefix("ff00::/8"), "ff00::/8 (multicast)"},
}

// unusable says which special block r touches, if any.
func unusable(r ipam.Range) (string, bool) {
	for _, b := range unusableBlocks {
		if r.Overlaps(prefixRange(b.prefix)) {
			return b.what, true
		}
	}
	return "", false
}

func prefixRange(p netip.Prefix) ipam.Range {
	last := p.Addr().AsSlice()
	for i := range last {
		bits := p.Bits() - 8*i
		switch {
		case bits <= 0:
			last[i] = 0xff
		case bits < 8:
			last[i] |= 0xff >> bits
		}
	}
	l, _ := netip.AddrFromSlice(last)
	return ipam.Range{First: p.Addr(), Last: l}
}

func (c *Config) validatePoolBGP(v *validator, path string, p *Pool) {
	if p.BGP == nil {
		return
	}
	for j, name := range p.BGP.Peers {
		if _, ok := c.Peer(name); !ok {
			v.addf(fmt.Sprintf("%s.peers[%d]", path, j), "no peer named %q in bgp.peers", name)
		}
	}
	for j, s := range p.BGP.Communities {
		if _, err := ParseCommunity(s); err != nil {
			v.addf(fmt.Sprintf("%s.communities[%d]", path, j), "%v", err)
		}
	}
	if l := p.BGP.AggregationLength; l != nil && (*l < 0 || *l > 32) {
		v.addf(path+".aggregationLength", "%d is not between 0 and 32", *l)
	}
	if l := p.BGP.AggregationLengthV6; l != nil && (*l < 0 || *l > 128) {
		v.addf(path+".aggregationLengthV6", "%d is not between 0 and 128", *l)
	}
}

func (c *Config) validateBGP(v *validator) {
	if c.BGP.RouterID != "" {
		if a, err := netip.ParseAddr(c.BGP.RouterID); err != nil || !a.Is4() {
			v.addf("bgp.routerID", "%q is not an IPv4 address", c.BGP.RouterID)
		}
	}
	if len(c.BGP.Peers) > 0 && c.BGP.ASN == 0 {
		v.addf("bgp.asn", "required when bgp.peers are set")
	}
	names := map[string]int{}
	for i := range c.BGP.Peers {
		p := &c.BGP.Peers[i]
		path := fmt.Sprintf("bgp.peers[%d]", i)
		v.uniqueName(path, "bgp.peers", p.Name, i, names)
		a, err := netip.ParseAddr(p.Address)
		if err != nil || a.Zone() != "" {
			v.addf(path+".address", "%q is not an IP address", p.Address)
		}
		p.Addr = a
		if p.ASN == 0 {
			v.addf(path+".asn", "required")
		}
		if p.HoldTime < 3*time.Second {
			v.addf(path+".holdTime", "%s is too short; BGP needs at least 3s", p.HoldTime)
		}
		if p.KeepaliveTime <= 0 || p.KeepaliveTime >= p.HoldTime {
			v.addf(path+".keepaliveTime", "%s must be positive and shorter than holdTime (%s)", p.KeepaliveTime, p.HoldTime)
		}
		if p.SourceAddress != "" {
			s, err := netip.ParseAddr(p.SourceAddress)
			if err != nil {
				v.addf(path+".sourceAddress", "%q is not an IP address", p.SourceAddress)
			} else if s.Is4() != a.Is4() {
				v.addf(path+".sourceAddress", "%s is not of the same family as address %s", s, a)
			}
			p.SourceAddr = s
		}
		if p.nodeSelector, err = p.NodeSelector.compile(); err != nil {
			v.addf(path+".nodeSelector", "%v", err)
		}
		if b := p.BFD; b != nil {
			for _, f := range []struct {
				name string
				d    time.Duration
			}{{"receiveInterval", b.ReceiveInterval}, {"transmitInterval", b.TransmitInterval}} {
				if f.d < minBFDInterval || f.d > maxBFDInterval {
					v.addf(path+".bfd."+f.name, "%s is not between %s and %s", f.d, minBFDInterval, maxBFDInterval)
				}
			}
		}
	}
}

// BFD intervals the routers accept (FRR: 10ms to 60s).
const (
	minBFDInterval = 10 * time.Millisecond
	maxBFDInterval = 60 * time.Second
)

// warnUnused reports files that load but leave LoadBalancer Services
// without an address or sessions without a route.
func (c *Config) warnUnused(v *validator) {
	if len(c.Pools) == 0 {
		v.warnf("pools", "no pools: the CCM hands out no addresses, so LoadBalancer Services stay pending")
		return
	}
	auto, bgp := false, false
	for i := range c.Pools {
		auto = auto || c.Pools[i].IsAutoAssign()
		bgp = bgp || c.Pools[i].Mode == ModeBGP
	}
	if !auto {
		v.warnf("pools", "every pool has autoAssign: false, so only Services that name a pool or an address get one")
	}
	if !bgp && len(c.BGP.Peers) > 0 {
		v.warnf("bgp.peers", "no pool has mode: bgp, so the sessions to these peers announce nothing")
	}
}

func (c *Config) validateNodeAgent(v *validator) {
	n := c.NodeAgent
	if n.LeaseDuration < 0 {
		v.addf("nodeAgent.leaseDuration", "%s must be positive", n.LeaseDuration)
	}
	if n.RenewInterval <= 0 || n.RenewInterval >= n.LeaseDuration {
		v.addf("nodeAgent.renewInterval", "%s must be positive and shorter than leaseDuration (%s)", n.RenewInterval, n.LeaseDuration)
	}
	if n.GARPInterval != nil && *n.GARPInterval < 0 {
		v.addf("nodeAgent.garpInterval", "%s must not be negative (0 turns the refresh off)", *n.GARPInterval)
	}
	if n.StaleViewTimeout != nil && *n.StaleViewTimeout < 0 {
		v.addf("nodeAgent.staleViewTimeout", "%s must not be negative (0 never stops announcing)", *n.StaleViewTimeout)
	}
	if d := n.Heartbeat(); d < minHeartbeatInterval || d > maxHeartbeatInterval {
		v.addf("nodeAgent.heartbeatInterval", "%s must be between %s and %s", d, minHeartbeatInterval, maxHeartbeatInterval)
	}
	// Three beats at least: one or two lost datagrams are no silence.
	if d, beats := n.Suspect(), 3*n.Heartbeat(); d < beats {
		v.addf("nodeAgent.suspectAfter", "%s must be at least three heartbeatIntervals (%s)", d, beats)
	}
	if d := n.TakeoverProbe(); d < minProbeWait || d > maxProbeWait {
		v.addf("nodeAgent.probeWait", "%s must be between %s and %s", d, minProbeWait, maxProbeWait)
	}
	if d := n.StallGrace(); d < 0 || d > maxStalledAgentGrace {
		v.addf("nodeAgent.stalledAgentGrace", "%s must be between 0 and %s", d, maxStalledAgentGrace)
	}
}

// Bounds of the failure-detection settings. Below 10 ms a beat or a
// probe answer is within scheduling noise of a busy node; above the
// upper bounds failover would be slower than the Lease it backs up.
const (
	minHeartbeatInterval = 10 * time.Millisecond
	maxHeartbeatInterval = 10 * time.Second
	minProbeWait         = 10 * time.Millisecond
	maxProbeWait         = 5 * time.Second
	maxStalledAgentGrace = 10 * time.Second
)

func (c *Config) validateTopology(v *validator) {
	for i := range c.Topology {
		t := &c.Topology[i]
		path := fmt.Sprintf("topology[%d]", i)
		p, err := netip.ParsePrefix(t.CIDR)
		if err != nil {
			v.addf(path+".cidr", "%q is not a CIDR", t.CIDR)
		}
		t.Prefix = p.Masked()
		if t.Zone == "" && t.Region == "" {
			v.addf(path, "needs a zone, a region or both")
		}
		// They become the values of the topology.kubernetes.io labels.
		for _, f := range [2][2]string{{"zone", t.Zone}, {"region", t.Region}} {
			field, val := f[0], f[1]
			if msgs := validation.IsValidLabelValue(val); len(msgs) > 0 {
				v.addf(path+"."+field, "%q is not a valid label value: %s", val, strings.Join(msgs, "; "))
			}
		}
	}
}

// Community is a BGP standard (RFC 1997) or large (RFC 8092) community.
type Community struct {
	Large  bool
	Value  uint32    // standard: ASN<<16 | value
	Values [3]uint32 // large: global admin, local 1, local 2
}

var wellKnownCommunities = map[string]uint32{
	"no-export":    0xFFFFFF01,
	"no-advertise": 0xFFFFFF02,
	"local-as":     0xFFFFFF03,
	"no-peer":      0xFFFFFF04,
	"blackhole":    0xFFFF029A,
}

// ParseCommunity parses "ASN:VALUE" (16-bit each), "A:B:C" (32-bit each)
// or a well-known name such as "no-export".
func ParseCommunity(s string) (Community, error) {
	if v, ok := wellKnownCommunities[strings.ToLower(s)]; ok {
		return Community{Value: v}, nil
	}
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 2:
		hi, err1 := strconv.ParseUint(parts[0], 10, 16)
		lo, err2 := strconv.ParseUint(parts[1], 10, 16)
		if err1 != nil || err2 != nil {
			return Community{}, fmt.Errorf("%q: a standard community is two numbers 0-65535 as ASN:VALUE", s)
		}
		return Community{Value: uint32(hi)<<16 | uint32(lo)}, nil
	case 3:
		var c Community
		c.Large = true
		for i, p := range parts {
			n, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return Community{}, fmt.Errorf("%q: a large community is three numbers 0-4294967295 as A:B:C", s)
			}
			c.Values[i] = uint32(n)
		}
		return c, nil
	}
	return Community{}, fmt.Errorf("%q is not a community; use ASN:VALUE, A:B:C or a well-known name", s)
}

func (c Community) String() string {
	if c.Large {
		return fmt.Sprintf("%d:%d:%d", c.Values[0], c.Values[1], c.Values[2])
	}
	return fmt.Sprintf("%d:%d", c.Value>>16, c.Value&0xFFFF)
}
