package announce

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bgp"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// speakerOptions configures this node's speaker: its InternalIPs are the
// next hops, the IPv4 one the router ID unless bgp.routerID says otherwise.
func speakerOptions(cfg *config.Config, node string, self NodeView) bgp.Options {
	opts := bgp.Options{NodeName: node, ASN: cfg.BGP.ASN}
	for _, ip := range self.InternalIPs {
		if ip.Is4() && !opts.NextHop4.IsValid() {
			opts.NextHop4 = ip
		}
		if ip.Is6() && !opts.NextHop6.IsValid() {
			opts.NextHop6 = ip
		}
	}
	opts.RouterID = opts.NextHop4
	if id, err := netip.ParseAddr(cfg.BGP.RouterID); err == nil {
		opts.RouterID = id
	}
	return opts
}

// peersFor returns the configured peers that admit this node.
func peersFor(cfg *config.Config, self NodeView) []config.Peer {
	var out []config.Peer
	for _, p := range cfg.BGP.Peers {
		if p.AdmitsNode(self.Labels) {
			out = append(out, p)
		}
	}
	return out
}

// advertisements turns the plan's VIPs into paths: one per prefix after
// aggregation. With the pool's weightByEndpoints, a VIP that an
// externalTrafficPolicy: Local Service uses carries this node's ready
// endpoints as its weight (an aggregate, the sum over its VIPs); Cluster
// VIPs carry none, since the service proxy spreads their traffic over every
// endpoint whichever node it reaches, so equal ECMP is already fair.
func advertisements(vips []BGPAdvertisement) []bgp.Advertisement {
	byPrefix := map[netip.Prefix]int{}
	var out []bgp.Advertisement
	for _, v := range vips {
		bits := v.VIP.BitLen()
		var ad bgp.Advertisement
		if pb := v.Pool.BGP; pb != nil {
			if v.VIP.Is4() && pb.AggregationLength != nil {
				bits = *pb.AggregationLength
			}
			if v.VIP.Is6() && pb.AggregationLengthV6 != nil {
				bits = *pb.AggregationLengthV6
			}
			for _, s := range pb.Communities {
				if c, err := config.ParseCommunity(s); err == nil { // validated at load
					ad.Communities = append(ad.Communities, c)
				}
			}
			ad.LocalPref = pb.LocalPref
			if pb.WeightByEndpoints && v.Local && v.LocalEndpoints > 0 {
				ad.Weight = uint32(v.LocalEndpoints)
			}
		}
		ad.Prefix = netip.PrefixFrom(v.VIP, bits).Masked()
		if i, dup := byPrefix[ad.Prefix]; dup {
			out[i].Weight += ad.Weight
			continue
		}
		ad.Peers = v.Peers
		byPrefix[ad.Prefix] = len(out)
		out = append(out, ad)
	}
	slices.SortFunc(out, func(x, y bgp.Advertisement) int { return x.Prefix.Addr().Compare(y.Prefix.Addr()) })
	return out
}

// onBGPEvent records a peer's change as an event on this agent's Node,
// where an operator looking at the node finds it: Warning for errors and
// downs, naming the peer, its address and the likely cause.
func (a *Agent) onBGPEvent(ev bgp.Event) {
	if ev.Kind == bgp.EventSessionUp || ev.Kind == bgp.EventSessionDown {
		a.requestReport() // the peers that carry each VIP changed
	}
	if a.recorder == nil {
		return
	}
	typ, reason, msg := bgpEventText(ev)
	if reason == "" {
		return
	}
	a.recorder.Event(&v1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: a.node, UID: types.UID(a.node)}, typ, reason, msg)
}

// bgpEventText is the event for ev; an empty reason means none.
func bgpEventText(ev bgp.Event) (typ, reason, msg string) {
	peer := fmt.Sprintf("BGP peer %q (%s)", ev.Peer, ev.Address)
	why := ""
	if ev.Error != nil {
		why = ": " + ev.Error.Message
	}
	switch ev.Kind {
	case bgp.EventSessionUp:
		return v1.EventTypeNormal, apicontract.ReasonBGPSessionUp, fmt.Sprintf("The session with %s is established", peer)
	case bgp.EventSessionDown:
		return v1.EventTypeWarning, apicontract.ReasonBGPSessionDown, fmt.Sprintf("The session with %s went down%s", peer, why)
	case bgp.EventBFDUp:
		msg := fmt.Sprintf("BFD with %s is up", peer)
		if b := ev.BFD; b != nil {
			msg += fmt.Sprintf(" (transmit every %s, detection time %s)", b.TxInterval, b.DetectionTime)
		}
		return v1.EventTypeNormal, apicontract.ReasonBFDUp, msg
	case bgp.EventBFDDown:
		msg := fmt.Sprintf("BFD with %s is down", peer)
		if b := ev.BFD; b != nil {
			msg += fmt.Sprintf(" (%s)", b.Diag)
		}
		return v1.EventTypeWarning, apicontract.ReasonBFDDown, msg + "; its BGP session is shut until BFD is up again or a hold-down (2s, doubling while BFD keeps failing) has passed" + why
	case bgp.EventPeerError:
		if ev.Error == nil {
			return "", "", ""
		}
		return v1.EventTypeWarning, string(ev.Error.Cause), fmt.Sprintf("%s: %s", peer, ev.Error.Message)
	}
	return "", "", ""
}

// bgpRestarts decides, at shutdown, whether this agent is restarting (a
// DaemonSet rollout, a plain SIGTERM: it comes back on this node) or the
// node is leaving (cordoned, drained, tainted ToBeDeletedByClusterAutoscaler,
// excluded from load balancers, or deleted: its Node is gone). A restart
// keeps the paths with graceful-restart peers; a removal withdraws them.
func bgpRestarts(self NodeView, known bool) bool {
	return known && !self.Draining && !self.Excluded
}

// leaveBGP ends this agent's BGP on shutdown, by bgpRestarts's rule.
func (a *Agent) leaveBGP(ctx context.Context) error {
	self, known := a.selfNode()
	if bgpRestarts(self, known) {
		// The watch may lag a cordon made just before the SIGTERM (a
		// drain script cordons, then stops the node): ask the API server,
		// briefly; without an answer the cached view decides.
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		n, err := a.client.CoreV1().Nodes().Get(gctx, a.node, metav1.GetOptions{})
		cancel()
		switch {
		case err == nil:
			self, known = nodeView(n), true
		case apierrors.IsNotFound(err):
			known = false
		}
	}
	if bgpRestarts(self, known) {
		a.log.Info("Restarting, not leaving: keeping the paths with graceful-restart BGP peers")
		return a.bgp.Detach(ctx)
	}
	a.log.Info("The node is leaving (cordoned, drained, excluded or deleted): withdrawing every BGP path")
	return a.bgp.Stop(ctx)
}

// establishedPeers names the peers whose session is up.
func establishedPeers(peers []bgp.PeerStatus) map[string]bool {
	up := map[string]bool{}
	for _, p := range peers {
		if p.Established() {
			up[p.Name] = true
		}
	}
	return up
}

// carriedBy returns the planned peers of a path that carry it now: those
// whose session is up. A path no peer carries is not announced, so the
// Announcing event waits for the first session and names only those up; a
// peer that comes up later brings a new Announcing event naming it too.
func carriedBy(planned []string, up map[string]bool) []string {
	var out []string
	for _, p := range planned {
		if up[p] {
			out = append(out, p)
		}
	}
	return out
}
