package announce

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

func TestAdvertisements(t *testing.T) {
	cfg := mustConfig(t, `
bgp:
  asn: 64512
  peers:
    - {name: tor-a, address: 198.51.100.1, asn: 64500}
    - {name: tor-b, address: 198.51.100.2, asn: 64500}
pools:
  - name: plain
    mode: bgp
    addresses: [192.0.2.0/28]
  - name: tuned
    mode: bgp
    addresses: [192.0.2.64/26, 2001:db8:1::/120]
    bgp:
      peers: [tor-b]
      communities: ["65000:100", "65000:1:2"]
      localPref: 200
      aggregationLength: 30
      aggregationLengthV6: 124
`)
	vip := func(s string) BGPAdvertisement {
		ip := netip.MustParseAddr(s)
		p, ok := cfg.PoolFor(ip)
		if !ok {
			t.Fatalf("%s is in no pool", ip)
		}
		return BGPAdvertisement{VIP: ip, Pool: p, Peers: cfg.PeerNames(p)}
	}
	ads := advertisements([]BGPAdvertisement{
		vip("192.0.2.65"), vip("192.0.2.66"), // one /30 aggregate
		vip("192.0.2.3"),
		vip("2001:db8:1::11"),
	})
	var got []string
	for _, a := range ads {
		got = append(got, a.Prefix.String())
	}
	want := []string{"192.0.2.3/32", "192.0.2.64/30", "2001:db8:1::10/124"}
	if !slices.Equal(got, want) {
		t.Fatalf("prefixes %v, want %v", got, want)
	}
	plain, tuned := ads[0], ads[1]
	wantBound := []netip.Addr{netip.MustParseAddr("192.0.2.65"), netip.MustParseAddr("192.0.2.66")}
	if !slices.Equal(tuned.Addrs, wantBound) {
		t.Errorf("aggregate binds %v, want every VIP inside it: %v", tuned.Addrs, wantBound)
	}
	if !slices.Equal(plain.Peers, []string{"tor-a", "tor-b"}) || plain.LocalPref != nil || len(plain.Communities) != 0 {
		t.Errorf("plain pool advertisement %+v: want every peer, no attributes", plain)
	}
	wantComms := []config.Community{{Value: 65000<<16 | 100}, {Large: true, Values: [3]uint32{65000, 1, 2}}}
	if !slices.Equal(tuned.Peers, []string{"tor-b"}) || tuned.LocalPref == nil || *tuned.LocalPref != 200 || !slices.Equal(tuned.Communities, wantComms) {
		t.Errorf("tuned pool advertisement %+v: want tor-b, local-pref 200, %v", tuned, wantComms)
	}
}
