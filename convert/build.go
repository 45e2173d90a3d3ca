package convert

import (
	"bytes"
	"fmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// build assembles the cloud-config from the intermediate model, noting every
// difference from what MetalLB would have done.
func (c *converter) build() *config.Config {
	out := &config.Config{}
	peerNames := c.buildPeers(out)

	// MetalLB tries pools by ascending serviceAllocation.priority, pools
	// without one last; baremetal tries them in file order.
	pools := append([]pool(nil), c.pools...)
	sort.SliceStable(pools, func(i, j int) bool {
		pi, pj := priority(pools[i]), priority(pools[j])
		return pi != nil && (pj == nil || *pi < *pj)
	})
	for _, p := range pools {
		if priority(p) != nil {
			c.note(p.src, "serviceAllocation.priority %d is carried over as the pool's position in the file (baremetal picks the first pool in file order that admits the Service)", *priority(p))
		}
		out.Pools = append(out.Pools, c.buildPool(p, peerNames))
	}
	return out
}

func priority(p pool) *int {
	if p.spec.ServiceAllocation == nil {
		return nil
	}
	return p.spec.ServiceAllocation.Priority
}

// buildPeers converts BGP peers and returns MetalLB peer name → cloud-config
// peer name for the peers that made it.
func (c *converter) buildPeers(out *config.Config) map[string]string {
	names := map[string]string{}
	if len(c.peers) == 0 {
		return names
	}
	bgp := &out.BGP
	routerIDs := map[string]bool{}
	taken := map[string]bool{}
	for _, p := range c.peers {
		s := p.spec
		switch {
		case s.Address == "" && s.Interface != "":
			c.note(p.src, "skipped: unnumbered BGP (interface %q) is not supported; give the peer an address", s.Interface)
			continue
		case s.ASN == 0:
			c.note(p.src, "skipped: a peer ASN is required (dynamicASN %q is not supported)", s.DynamicASN)
			continue
		case s.VRFName != "":
			c.note(p.src, "skipped: sessions in VRF %q are not supported; baremetal peers from the default VRF", s.VRFName)
			continue
		}
		name := uniqueName(dnsLabel(p.name), taken)
		if name != p.name && !p.generated {
			c.note(p.src, "renamed to %q (cloud-config names are DNS-1123 labels)", name)
		}
		names[p.name] = name
		routerIDs[s.RouterID] = true
		op := config.Peer{
			Name: name, Address: s.Address, ASN: s.ASN,
			SourceAddress: s.SrcAddress, GracefulRestart: s.EnableGracefulRestart,
		}
		c.timers(p.src, &op, s.HoldTime, s.KeepaliveTime)
		// The first peer's myASN becomes bgp.asn; a peer with another
		// one keeps it as its localASN (e.g. an ASN per rack).
		if bgp.ASN == 0 {
			bgp.ASN = s.MyASN
		} else if s.MyASN != bgp.ASN {
			op.LocalASN = s.MyASN
		}
		if s.Port != 0 && s.Port != config.DefaultBGPPort {
			op.Port = s.Port
		}
		if s.EBGPMultiHop {
			op.EBGPMultihop = 255 // MetalLB's (and FRR's) multihop TTL
		}
		if s.Password != "" || s.PasswordSecret.Name != "" {
			op.PasswordFile = fmt.Sprintf("%s/%s.password", PasswordDir, name)
			from := "given inline"
			if s.Password == "" {
				from = fmt.Sprintf("in Secret %q, key \"password\"", s.PasswordSecret.Name)
			}
			c.note(p.src, "the TCP MD5 password (%s) is not copied: put it in the agents' password Secret under key %q so it is mounted at %s", from, name+".password", op.PasswordFile)
		}
		op.NodeSelector = c.firstSelector(p.src, "nodeSelectors", "nodes", s.NodeSelectors)
		if s.BFDProfile != "" {
			op.BFD = c.bfd(p.src, s.BFDProfile)
		}
		if s.DisableMP {
			c.note(p.src, "disableMP not carried over: baremetal offers IPv4 and IPv6 routes on every session (multiprotocol BGP) and the router activates what it accepts; to keep the other family off this session, activate only the peer address's family for this neighbor on the router")
		}
		if s.DualStackAddressFamily {
			c.note(p.src, "dualStackAddressFamily needs no setting: baremetal always offers IPv4 and IPv6 routes on every session")
		}
		if s.ConnectTime != "" {
			c.note(p.src, "connectTime %s not carried over: the speaker's retry interval is fixed", s.ConnectTime)
		}
		bgp.Peers = append(bgp.Peers, op)
	}
	if len(routerIDs) == 1 {
		for id := range routerIDs {
			bgp.RouterID = id
		}
		if bgp.RouterID != "" {
			c.note("BGPPeer routerID", "%s is carried over as bgp.routerID, which every node uses, as in MetalLB; remove it to let each node use its own IPv4 InternalIP", bgp.RouterID)
		}
	} else {
		c.note("BGPPeer routerID", "peers use different router IDs; baremetal has one (bgp.routerID) and defaults it to each node's IPv4 InternalIP, which is used instead")
	}
	return names
}

func (c *converter) buildPool(p pool, peerNames map[string]string) config.Pool {
	name := dnsLabel(p.name)
	if name != p.name {
		c.note(p.src, "renamed to %q (cloud-config names are DNS-1123 labels); Services that name the pool in an annotation must be updated", name)
	}
	op := config.Pool{Name: name, AvoidBuggyIPs: p.spec.AvoidBuggyIPs}
	if p.spec.AutoAssign != nil && !*p.spec.AutoAssign {
		op.AutoAssign = p.spec.AutoAssign
	}
	for _, a := range p.spec.Addresses {
		op.Addresses = append(op.Addresses, c.address(p.src, a))
	}
	if sa := p.spec.ServiceAllocation; sa != nil {
		op.Namespaces = sa.Namespaces
		switch {
		case len(sa.NamespaceSelectors) > 0 && len(sa.Namespaces) > 0:
			c.note(p.src, "serviceAllocation.namespaceSelectors not carried over: only the listed namespaces may use the pool; add the namespaces the selectors matched")
		case len(sa.NamespaceSelectors) > 0:
			// Leaving namespaces empty would open the pool to every
			// namespace; fail closed instead.
			op.Namespaces = []string{NamespacePlaceholder}
			c.note(p.src, "serviceAllocation.namespaceSelectors cannot be expressed: the pool's namespaces are the placeholder %q, which `baremetal-config validate` and the binaries refuse until you replace it with the namespaces the selectors matched", NamespacePlaceholder)
		}
		op.ServiceSelector = c.firstSelector(p.src, "serviceAllocation.serviceSelectors", "Services", sa.ServiceSelectors)
	}

	var l2s []l2Ad
	for _, a := range c.l2Ads {
		if c.selects(a.src, a.spec.IPAddressPools, a.spec.IPAddressPoolSelectors, p) {
			l2s = append(l2s, a)
		}
	}
	var bgps []bgpAd
	for _, a := range c.bgpAds {
		if c.selects(a.src, a.spec.IPAddressPools, a.spec.IPAddressPoolSelectors, p) {
			bgps = append(bgps, a)
		}
	}
	switch {
	case len(bgps) > 0:
		op.Mode = config.ModeBGP
		if len(l2s) > 0 {
			c.note(p.src, "advertised by both BGP and layer 2 (%s); a baremetal pool has one mode, so it is announced by BGP only", l2s[0].src)
		}
		c.bgpPool(&op, p, bgps, peerNames)
	case len(l2s) > 0:
		op.Mode = config.ModeLayer2
		c.l2Pool(&op, p, l2s)
	default:
		op.Mode = config.ModeLayer2
		c.note(p.src, "no L2Advertisement or BGPAdvertisement selects this pool, so MetalLB allocated from it without announcing; baremetal announces every pool: converted as layer2")
	}
	return op
}

func (c *converter) l2Pool(op *config.Pool, p pool, ads []l2Ad) {
	var sels []labelSelector
	allNodes, anyInterface := false, false
	ifaces := map[string]bool{}
	for _, a := range ads {
		if len(a.spec.NodeSelectors) == 0 {
			allNodes = true
		}
		sels = append(sels, a.spec.NodeSelectors...)
		if len(a.spec.Interfaces) == 0 {
			anyInterface = true
		}
		for _, i := range a.spec.Interfaces {
			if !ifaces[i] {
				ifaces[i] = true
				op.Interfaces = append(op.Interfaces, i)
			}
		}
	}
	if anyInterface {
		op.Interfaces = nil
	}
	if len(ads) > 1 && len(ifaces) > 0 && !anyInterface {
		c.note(p.src, "the interfaces of %d L2Advertisements are merged into one list for all of the pool's nodes", len(ads))
	}
	if !allNodes {
		op.NodeSelector = c.firstSelector(p.src, "L2Advertisement nodeSelectors", "nodes", sels)
	}
}

func (c *converter) bgpPool(op *config.Pool, p pool, ads []bgpAd, peerNames map[string]string) {
	a := ads[0]
	for _, extra := range ads[1:] {
		c.note(extra.src, "not carried over for pool %q: a baremetal pool has one BGP advertisement, and %s is used", op.Name, a.src)
	}
	b := &config.PoolBGP{}
	for _, name := range a.spec.Peers {
		if n, ok := peerNames[name]; ok {
			b.Peers = append(b.Peers, n)
		} else {
			c.note(a.src, "peer %q is not among the converted BGPPeers and is left out", name)
		}
	}
	if len(a.spec.Peers) > 0 && len(b.Peers) == 0 {
		c.note(a.src, "none of its peers were converted, so pool %q is advertised to all peers", op.Name)
	}
	for _, cm := range a.spec.Communities {
		if v, ok := c.community(a.src, cm); ok {
			b.Communities = append(b.Communities, v)
		}
	}
	if a.spec.LocalPref != 0 {
		lp := a.spec.LocalPref
		b.LocalPref = &lp
	}
	if l := a.spec.AggregationLength; l != nil && *l != 32 {
		b.AggregationLength = l
	}
	if l := a.spec.AggregationLengthV6; l != nil && *l != 128 {
		b.AggregationLengthV6 = l
	}
	if !reflect.ValueOf(*b).IsZero() {
		op.BGP = b
	}
	op.NodeSelector = c.firstSelector(a.src, "nodeSelectors", "nodes", a.spec.NodeSelectors)
}

// community resolves a BGPAdvertisement community: a Community object's
// name, a well-known name or a literal, with MetalLB's "large:" prefix.
func (c *converter) community(src, s string) (string, bool) {
	v := s
	if named, ok := c.communities[s]; ok {
		v = named
	}
	v = strings.TrimPrefix(v, "large:")
	if _, err := config.ParseCommunity(v); err != nil {
		c.note(src, "community %q left out: %v", s, err)
		return "", false
	}
	return v, true
}

// selects reports whether an advertisement applies to pool p: MetalLB
// applies one with neither pool names nor selectors to every pool.
func (c *converter) selects(src string, names []string, sels []labelSelector, p pool) bool {
	if len(names) == 0 && len(sels) == 0 {
		return true
	}
	for _, n := range names {
		if n == p.name {
			return true
		}
	}
	for _, s := range sels {
		sel, err := metav1.LabelSelectorAsSelector(s.meta())
		if err != nil {
			c.note(src, "ipAddressPoolSelectors: %v; the selector matches nothing", err)
			continue
		}
		if sel.Matches(labels.Set(p.labels)) {
			return true
		}
	}
	return false
}

// firstSelector carries over a list of ORed selectors when it has one entry:
// the cloud-config has a single selector per object. With several, the first
// is kept, which narrows what is selected rather than widening it. what
// names the objects selected ("nodes", "Services").
func (c *converter) firstSelector(src, field, what string, sels []labelSelector) *config.Selector {
	if len(sels) == 0 {
		return nil
	}
	if len(sels) > 1 {
		c.note(src, "%s has %d selectors (MetalLB ORs them); a cloud-config has one selector here, so only the first is kept — write one selector that matches all the %s the %d selected", field, len(sels), what, len(sels))
	}
	s := sels[0]
	if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		return nil
	}
	out := &config.Selector{MatchLabels: s.MatchLabels}
	for _, r := range s.MatchExpressions {
		out.MatchExpressions = append(out.MatchExpressions, config.Requirement{Key: r.Key, Operator: r.Operator, Values: r.Values})
	}
	return out
}

// timers carries over a peer's holdTime and keepaliveTime. MetalLB's
// holdTime 0s turns the hold timer and keepalives off, which baremetal
// cannot do: the note says what the session uses instead, and the output
// spells it out rather than leaving the default implicit.
func (c *converter) timers(src string, op *config.Peer, hold, keepalive string) {
	parse := func(field, s string) (time.Duration, bool) {
		if s == "" {
			return 0, false
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			c.note(src, "%s %q is not a duration and is not carried over: the default is used", field, s)
			return 0, false
		}
		return d, true
	}
	if d, ok := parse("holdTime", hold); ok {
		switch {
		case d == 0:
			op.HoldTime = config.DefaultHoldTime
			c.note(src, "holdTime 0s (no hold timer, no keepalives) is not supported: written as holdTime %s; baremetal needs at least 3s", config.FormatDuration(op.HoldTime))
		case d < 3*time.Second:
			op.HoldTime = 3 * time.Second
			c.note(src, "holdTime %s is below BGP's minimum of 3s: written as 3s", hold)
		default:
			op.HoldTime = d
		}
	}
	if d, ok := parse("keepaliveTime", keepalive); ok {
		if d == 0 {
			c.note(src, "keepaliveTime 0s not carried over: keepalives are sent every third of holdTime")
		} else {
			op.KeepaliveTime = d
		}
	}
}

// bfd carries over a BFD profile as the peer's bfd section.
func (c *converter) bfd(src, name string) *config.PeerBFD {
	prof, ok := c.bfdProfiles[name]
	if !ok {
		c.note(src, "bfdProfile %q is not among the inputs, so the peer runs BFD with the defaults (300ms, 300ms, 3); convert with the BFDProfile to carry its timers over", name)
		return &config.PeerBFD{}
	}
	b := &config.PeerBFD{}
	if prof.ReceiveInterval != nil {
		b.ReceiveInterval = time.Duration(*prof.ReceiveInterval) * time.Millisecond
	}
	if prof.TransmitInterval != nil {
		b.TransmitInterval = time.Duration(*prof.TransmitInterval) * time.Millisecond
	}
	if prof.DetectMultiplier != nil {
		b.DetectMultiplier = uint8(min(*prof.DetectMultiplier, 255))
	}
	return b
}

// address normalises one MetalLB address entry. MetalLB reads a CIDR with
// host bits set as its whole network; the cloud-config refuses it as a
// likely typo, so write the network address.
func (c *converter) address(src, a string) string {
	a = strings.TrimSpace(a)
	if first, last, ok := strings.Cut(a, "-"); ok {
		return strings.TrimSpace(first) + "-" + strings.TrimSpace(last)
	}
	if p, err := netip.ParsePrefix(a); err == nil && p.Masked() != p {
		c.note(src, "address %s written as %s (MetalLB ignores host bits; the cloud-config does not)", a, p.Masked())
		return p.Masked().String()
	}
	return a
}

func (s labelSelector) meta() *metav1.LabelSelector {
	ls := &metav1.LabelSelector{MatchLabels: s.MatchLabels}
	for _, r := range s.MatchExpressions {
		ls.MatchExpressions = append(ls.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: r.Key, Operator: metav1.LabelSelectorOperator(r.Operator), Values: r.Values,
		})
	}
	return ls
}

var notLabelChars = regexp.MustCompile(`[^a-z0-9-]+`)

// dnsLabel turns a Kubernetes object name (a DNS-1123 subdomain) or a legacy
// "peer-<address>" into a DNS-1123 label.
func dnsLabel(s string) string {
	l := notLabelChars.ReplaceAllString(strings.ToLower(s), "-")
	if len(l) > 63 {
		l = l[:63]
	}
	return strings.Trim(l, "-")
}

func uniqueName(name string, taken map[string]bool) string {
	n := name
	for i := 2; taken[n]; i++ {
		n = fmt.Sprintf("%s-%d", name, i)
	}
	taken[n] = true
	return n
}

// render writes the cloud-config with the notes as a header comment, so the
// file itself tells a reviewer what changed.
func render(out *config.Config, notes []Note) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# cloud-config converted from MetalLB configuration by `baremetal-config convert`.\n")
	if len(notes) > 0 {
		buf.WriteString("#\n# Review before use; not carried over or changed:\n")
		for _, n := range notes {
			buf.WriteString("#   - " + strings.ReplaceAll(n.String(), "\n", " ") + "\n")
		}
	}
	data, err := config.Marshal(out)
	if err != nil {
		return nil, err
	}
	buf.Write(data)
	return buf.Bytes(), nil
}
