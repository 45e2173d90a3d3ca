package announce

import (
	"net/netip"
	"slices"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bgp"
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
// aggregation.
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
		}
		ad.Prefix = netip.PrefixFrom(v.VIP, bits).Masked()
		if i, dup := byPrefix[ad.Prefix]; dup {
			out[i].Addrs = append(out[i].Addrs, v.VIP)
			continue
		}
		ad.Addrs = []netip.Addr{v.VIP}
		ad.Peers = v.Peers
		byPrefix[ad.Prefix] = len(out)
		out = append(out, ad)
	}
	slices.SortFunc(out, func(x, y bgp.Advertisement) int { return x.Prefix.Addr().Compare(y.Prefix.Addr()) })
	return out
}
