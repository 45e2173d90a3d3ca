package bgp

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// markerAdmin is the global administrator of the private large communities
// that target a path at peers. 4294967295 is a reserved ASN (RFC 7300), so
// no real community uses it; configured communities may not either.
const markerAdmin = 4294967295

// allMarkersRegexp matches every marker (gobgp prints large communities as A:B:C).
const allMarkersRegexp = "^4294967295:"

func markerRegexp(id uint32) string { return "^" + markerCommunity(id).String() + "$" }

func markerCommunity(id uint32) *bgp.LargeCommunity {
	return &bgp.LargeCommunity{ASN: markerAdmin, LocalData1: id, LocalData2: 0}
}

// pathEntry is one advertised prefix and the gobgp path that carries it.
type pathEntry struct {
	ad   Advertisement // normalised: sorted, without duplicates
	path *api.Path
	sent time.Time // when this path was last sent, for WeightHold
}

func (e *pathEntry) equal(o *pathEntry) bool {
	return e.ad.Weight == o.ad.Weight && e.equalButWeight(o)
}

// equalButWeight reports whether the two differ at most in Weight.
func (e *pathEntry) equalButWeight(o *pathEntry) bool {
	a, b := e.ad, o.ad
	return a.Prefix == b.Prefix &&
		slices.Equal(a.Peers, b.Peers) &&
		slices.Equal(a.Communities, b.Communities) &&
		((a.LocalPref == nil && b.LocalPref == nil) || (a.LocalPref != nil && b.LocalPref != nil && *a.LocalPref == *b.LocalPref))
}

// desiredPath validates and normalises ad and builds its gobgp path.
func (s *Speaker) desiredPath(ad Advertisement) (*pathEntry, error) {
	ad, err := normalize(ad)
	if err != nil {
		return nil, err
	}
	nextHop := s.opts.NextHop4
	if ad.Prefix.Addr().Is6() {
		nextHop = s.opts.NextHop6
	}
	if !nextHop.IsValid() {
		return nil, fmt.Errorf("cannot advertise %s: this node has no %s address to use as next hop", ad.Prefix, family(ad.Prefix))
	}
	markers := make([]uint32, 0, len(ad.Peers))
	for _, p := range ad.Peers {
		markers = append(markers, s.marker(p))
	}
	path, err := buildPath(ad, nextHop, markers, s.opts.ASN)
	if err != nil {
		return nil, err
	}
	return &pathEntry{ad: ad, path: path}, nil
}

// normalize checks ad and puts its lists in a canonical order, so that two
// advertisements that mean the same compare equal.
func normalize(ad Advertisement) (Advertisement, error) {
	if !ad.Prefix.IsValid() {
		return ad, fmt.Errorf("advertisement has no valid prefix (%v)", ad.Prefix)
	}
	ad.Prefix = ad.Prefix.Masked()
	if ad.Prefix.Addr().Is4In6() {
		return ad, fmt.Errorf("prefix %s is an IPv4-mapped IPv6 prefix; advertise the IPv4 prefix instead", ad.Prefix)
	}
	for _, c := range ad.Communities {
		if c.Large && c.Values[0] == markerAdmin {
			return ad, fmt.Errorf("prefix %s: community %s uses the reserved ASN %d, which the speaker uses internally", ad.Prefix, c, uint32(markerAdmin))
		}
	}
	ad.Peers = sortedUnique(ad.Peers, cmp.Compare[string])
	ad.Communities = sortedUnique(ad.Communities, compareCommunities)
	return ad, nil
}

func sortedUnique[T comparable](in []T, cmp func(a, b T) int) []T {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.SortFunc(out, cmp)
	return slices.Compact(out)
}

func compareCommunities(a, b config.Community) int {
	switch {
	case a.Large != b.Large:
		if !a.Large {
			return -1
		}
		return 1
	case !a.Large:
		return cmp.Compare(a.Value, b.Value)
	}
	return slices.Compare(a.Values[:], b.Values[:])
}

// bandwidthUnit is the link bandwidth one unit of Weight stands for: 1
// Mbit/s, in the bytes per second the community carries. Routers use the
// ratio between paths, so the unit only has to be the same on every node.
const bandwidthUnit = 125_000

// asTrans stands for a 4-byte ASN in 2-byte fields (RFC 6793).
const asTrans = 23456

// linkBandwidth is the link-bandwidth extended community for weight
// (draft-ietf-idr-link-bandwidth: non-transitive, AS and an IEEE float of
// bytes per second).
func linkBandwidth(weight, asn uint32) *bgp.LinkBandwidthExtended {
	as := uint16(asTrans)
	if asn <= 0xffff {
		as = uint16(asn)
	}
	return bgp.NewLinkBandwidthExtended(as, float32(weight)*bandwidthUnit)
}

// buildPath makes the gobgp path for ad with the given next hop, carrying
// the markers of the peers it is for.
func buildPath(ad Advertisement, nextHop netip.Addr, markers []uint32, asn uint32) (*api.Path, error) {
	length := uint8(ad.Prefix.Bits())
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	var nlri bgp.AddrPrefixInterface
	if ad.Prefix.Addr().Is4() {
		nlri = bgp.NewIPAddrPrefix(length, ad.Prefix.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeNextHop(nextHop.String()))
	} else {
		nlri = bgp.NewIPv6AddrPrefix(length, ad.Prefix.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI(nextHop.String(), []bgp.AddrPrefixInterface{nlri}))
	}
	if ad.LocalPref != nil {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(*ad.LocalPref))
	}
	standard, large := communityAttrs(ad.Communities)
	for _, id := range markers {
		large = append(large, markerCommunity(id))
	}
	if len(standard) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(standard))
	}
	if len(large) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(large))
	}
	if ad.Weight > 0 {
		attrs = append(attrs, bgp.NewPathAttributeExtendedCommunities([]bgp.ExtendedCommunityInterface{linkBandwidth(ad.Weight, asn)}))
	}
	p, err := apiutil.NewPath(nlri, false, attrs, time.Now())
	if err != nil {
		return nil, fmt.Errorf("building the BGP path for %s: %w", ad.Prefix, err)
	}
	return p, nil
}

// communityAttrs splits communities into standard values and large ones.
func communityAttrs(cs []config.Community) (standard []uint32, large []*bgp.LargeCommunity) {
	for _, c := range cs {
		if c.Large {
			large = append(large, &bgp.LargeCommunity{ASN: c.Values[0], LocalData1: c.Values[1], LocalData2: c.Values[2]})
			continue
		}
		standard = append(standard, c.Value)
	}
	return standard, large
}

func (s *Speaker) advertise(ctx context.Context, e *pathEntry) error {
	if _, err := s.server.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: e.path}); err != nil {
		return fmt.Errorf("advertising %s: %w", e.ad.Prefix, err)
	}
	s.log.V(2).Info("Advertising", "prefix", e.ad.Prefix, "peers", e.ad.Peers)
	return nil
}

func (s *Speaker) withdraw(ctx context.Context, e *pathEntry) error {
	if err := s.server.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: e.path.Family, Path: e.path}); err != nil {
		return fmt.Errorf("withdrawing %s: %w", e.ad.Prefix, err)
	}
	s.log.V(2).Info("Withdrawn", "prefix", e.ad.Prefix, "peers", e.ad.Peers)
	return nil
}

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// String makes an Advertisement readable in logs and test failures.
func (ad Advertisement) String() string {
	s := ad.Prefix.String() + " to " + fmt.Sprint(ad.Peers)
	if len(ad.Communities) > 0 {
		s += " communities " + fmt.Sprint(ad.Communities)
	}
	if ad.LocalPref != nil {
		s += " local-pref " + strconv.FormatUint(uint64(*ad.LocalPref), 10)
	}
	if ad.Weight > 0 {
		s += " weight " + strconv.FormatUint(uint64(ad.Weight), 10)
	}
	return s
}
