package announce

import (
	"maps"
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
	if !slices.Equal(plain.Peers, []string{"tor-a", "tor-b"}) || plain.LocalPref != nil || len(plain.Communities) != 0 {
		t.Errorf("plain pool advertisement %+v: want every peer, no attributes", plain)
	}
	wantComms := []config.Community{{Value: 65000<<16 | 100}, {Large: true, Values: [3]uint32{65000, 1, 2}}}
	if !slices.Equal(tuned.Peers, []string{"tor-b"}) || tuned.LocalPref == nil || *tuned.LocalPref != 200 || !slices.Equal(tuned.Communities, wantComms) {
		t.Errorf("tuned pool advertisement %+v: want tor-b, local-pref 200, %v", tuned, wantComms)
	}
}

func TestAdvertisementsWeightByEndpoints(t *testing.T) {
	cfg := mustConfig(t, `
bgp:
  asn: 64512
  peers:
    - {name: tor, address: 198.51.100.1, asn: 64500}
pools:
  - name: weighted
    mode: bgp
    addresses: [192.0.2.0/28]
    bgp: {weightByEndpoints: true}
  - name: aggregated
    mode: bgp
    addresses: [192.0.2.64/28]
    bgp: {weightByEndpoints: true, aggregationLength: 28}
  - name: plain
    mode: bgp
    addresses: [192.0.2.128/28]
`)
	ad := func(s string, local bool, eps int) BGPAdvertisement {
		ip := netip.MustParseAddr(s)
		p, _ := cfg.PoolFor(ip)
		return BGPAdvertisement{VIP: ip, Pool: p, Peers: []string{"tor"}, Local: local, LocalEndpoints: eps}
	}
	tests := []struct {
		name string
		in   []BGPAdvertisement
		want map[string]uint32 // prefix -> weight
	}{
		{"Local VIP weighs its endpoints", []BGPAdvertisement{ad("192.0.2.1", true, 3)}, map[string]uint32{"192.0.2.1/32": 3}},
		{"Cluster VIP carries no weight", []BGPAdvertisement{ad("192.0.2.2", false, 3)}, map[string]uint32{"192.0.2.2/32": 0}},
		{"pool without weightByEndpoints carries none", []BGPAdvertisement{ad("192.0.2.129", true, 3)}, map[string]uint32{"192.0.2.129/32": 0}},
		{"aggregate sums its VIPs", []BGPAdvertisement{ad("192.0.2.65", true, 2), ad("192.0.2.66", true, 5), ad("192.0.2.67", false, 9)},
			map[string]uint32{"192.0.2.64/28": 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]uint32{}
			for _, a := range advertisements(tt.in) {
				got[a.Prefix.String()] = a.Weight
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("weights %v, want %v", got, tt.want)
			}
		})
	}
}
