package announce

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bgp"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// reconcileBGP makes the speaker's peers and paths match want, the VIPs of
// bgp pools this node is eligible for. Failures are logged and retried on
// the next pass: BGP trouble must not stop layer-2 announcements.
func (a *Agent) reconcileBGP(ctx context.Context, cfg *config.Config, self NodeView, want []*VIPView) {
	if a.bgp == nil {
		if cfg.BGP.ASN == 0 || (len(want) == 0 && len(cfg.BGP.Peers) == 0) {
			return
		}
		s, err := bgp.New(ctx, speakerOptions(cfg, self, a))
		if err != nil {
			a.bgpError(err, "Starting the BGP speaker failed; retrying on the next pass")
			return
		}
		a.bgp = s
	}
	var peers []config.Peer
	for _, p := range cfg.BGP.Peers {
		if p.AdmitsNode(self.Labels) {
			peers = append(peers, p)
		}
	}
	if err := a.bgp.SetPeers(ctx, peers); err != nil {
		a.bgpError(err, "Configuring BGP peers failed")
	}
	a.applyBGPAds(ctx, advertisements(cfg, want), want)
	a.recordBGPPeers()
}

// recordBGPPeers exports every session's state and advertised prefixes.
func (a *Agent) recordBGPPeers() {
	a.metrics.BGPSessionUp.Reset()
	a.metrics.BGPAdvertised.Reset()
	for _, p := range a.bgp.Peers() {
		up := 0.0
		if p.Established() {
			up = 1
		}
		a.metrics.BGPSessionUp.WithLabelValues(p.Name).Set(up)
		a.metrics.BGPAdvertised.WithLabelValues(p.Name).Set(float64(p.Advertised))
	}
}

func speakerOptions(cfg *config.Config, self NodeView, a *Agent) bgp.Options {
	opts := bgp.Options{NodeName: a.node, ASN: cfg.BGP.ASN, Logger: a.log.WithName("bgp")}
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

// advertisements turns VIPs into paths: one per prefix after aggregation.
func advertisements(cfg *config.Config, vips []*VIPView) []bgp.Advertisement {
	byPrefix := map[netip.Prefix]int{}
	var out []bgp.Advertisement
	for _, v := range vips {
		bits := v.IP.BitLen()
		var ad bgp.Advertisement
		if pb := v.Pool.BGP; pb != nil {
			if v.IP.Is4() && pb.AggregationLength != nil {
				bits = *pb.AggregationLength
			}
			if v.IP.Is6() && pb.AggregationLengthV6 != nil {
				bits = *pb.AggregationLengthV6
			}
			for _, s := range pb.Communities {
				if c, err := config.ParseCommunity(s); err == nil { // validated at load
					ad.Communities = append(ad.Communities, c)
				}
			}
			ad.LocalPref = pb.LocalPref
		}
		ad.Prefix = netip.PrefixFrom(v.IP, bits).Masked()
		// Every VIP inside an aggregate is bound on kube-lb0, not only the first.
		if i, dup := byPrefix[ad.Prefix]; dup {
			out[i].Addrs = append(out[i].Addrs, v.IP)
			continue
		}
		ad.Addrs = []netip.Addr{v.IP}
		ad.Peers = cfg.PeerNames(v.Pool)
		byPrefix[ad.Prefix] = len(out)
		out = append(out, ad)
	}
	slices.SortFunc(out, func(x, y bgp.Advertisement) int { return x.Prefix.Addr().Compare(y.Prefix.Addr()) })
	return out
}

// applyBGPAds applies ads and, once the speaker took them, records events
// for the VIPs whose advertisement changed.
func (a *Agent) applyBGPAds(ctx context.Context, ads []bgp.Advertisement, vips []*VIPView) {
	if err := a.bgp.SetAdvertisements(ctx, ads); err != nil {
		a.bgpError(err, "Advertising BGP paths failed; retrying on the next pass")
		return
	}
	a.lastBGPErr = ""
	now := map[netip.Addr][]string{}
	for _, v := range vips {
		peers := a.cfg.Load().PeerNames(v.Pool)
		now[v.IP] = peers
		if old, ok := a.bgpAds[v.IP]; ok && slices.Equal(old, peers) {
			continue
		}
		for _, svc := range v.Services {
			a.recorder.Eventf(svc, v1.EventTypeNormal, ReasonAnnouncing,
				"Announcing %s from node %s to peers %s (bgp)", v.IP, a.node, strings.Join(peers, ", "))
		}
	}
	a.vipMu.Lock()
	for ip, peers := range a.bgpAds {
		if _, ok := now[ip]; ok {
			continue
		}
		for _, svc := range a.vipServices[ip] {
			a.recorder.Eventf(svc, v1.EventTypeNormal, ReasonWithdrawn,
				"Node %s stopped announcing %s to peers %s (bgp)", a.node, ip, strings.Join(peers, ", "))
		}
	}
	a.vipMu.Unlock()
	a.bgpAds = now
	a.metrics.AnnouncedVIPs.WithLabelValues(string(config.ModeBGP)).Set(float64(len(now)))
}

// bgpError logs a BGP failure once until it changes, so a speaker that is
// down does not flood the log every pass.
func (a *Agent) bgpError(err error, msg string) {
	if s := err.Error(); s != a.lastBGPErr {
		a.lastBGPErr = s
		a.log.Error(err, msg)
	}
}
