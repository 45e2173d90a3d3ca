package bgp

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

func community(t *testing.T, s string) config.Community {
	t.Helper()
	c, err := config.ParseCommunity(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		in      Advertisement
		want    Advertisement
		wantErr string
	}{{
		name: "lists sorted and deduplicated",
		in: Advertisement{
			Prefix:      netip.MustParsePrefix("192.0.2.10/32"),
			Peers:       []string{"tor-b", "tor-a", "tor-b"},
			Communities: []config.Community{community(t, "65000:1:2"), community(t, "65000:200"), community(t, "65000:100"), community(t, "65000:200")},
		},
		want: Advertisement{
			Prefix:      netip.MustParsePrefix("192.0.2.10/32"),
			Peers:       []string{"tor-a", "tor-b"},
			Communities: []config.Community{community(t, "65000:100"), community(t, "65000:200"), community(t, "65000:1:2")},
		},
	}, {
		name: "aggregate is masked",
		in:   Advertisement{Prefix: netip.MustParsePrefix("192.0.2.10/24")},
		want: Advertisement{Prefix: netip.MustParsePrefix("192.0.2.0/24")},
	}, {
		name:    "community in the speaker's reserved space",
		in:      Advertisement{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Communities: []config.Community{community(t, "4294967295:1:0")}},
		wantErr: "reserved ASN 4294967295",
	}, {
		name:    "IPv4-mapped prefix",
		in:      Advertisement{Prefix: netip.MustParsePrefix("::ffff:192.0.2.1/128")},
		wantErr: "IPv4-mapped",
	}, {
		name:    "no prefix",
		in:      Advertisement{},
		wantErr: "no valid prefix",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := normalize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("normalize() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a, b := &pathEntry{ad: got}, &pathEntry{ad: tt.want}
			if !a.equal(b) {
				t.Errorf("normalize() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPathEntryEqual(t *testing.T) {
	lp := func(v uint32) *uint32 { return &v }
	base := Advertisement{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Peers: []string{"a"}, LocalPref: lp(100)}
	tests := []struct {
		name   string
		change func(*Advertisement)
		equal  bool
	}{
		{"same", func(*Advertisement) {}, true},
		{"same local-pref value, other pointer", func(a *Advertisement) { a.LocalPref = lp(100) }, true},
		{"other local-pref", func(a *Advertisement) { a.LocalPref = lp(200) }, false},
		{"no local-pref", func(a *Advertisement) { a.LocalPref = nil }, false},
		{"other peers", func(a *Advertisement) { a.Peers = []string{"a", "b"} }, false},
		{"a community", func(a *Advertisement) { a.Communities = []config.Community{{Value: 1}} }, false},
		{"other prefix", func(a *Advertisement) { a.Prefix = netip.MustParsePrefix("192.0.2.11/32") }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := base
			tt.change(&other)
			a, _ := normalize(base)
			b, _ := normalize(other)
			if got := (&pathEntry{ad: a}).equal(&pathEntry{ad: b}); got != tt.equal {
				t.Errorf("equal = %v, want %v", got, tt.equal)
			}
		})
	}
}

func TestBuildPath(t *testing.T) {
	lp := uint32(250)
	tests := []struct {
		name     string
		ad       Advertisement
		nextHop  string
		markers  []uint32
		wantNH   string
		wantComm []uint32
		wantLC   []string
		wantLP   *uint32
	}{{
		name: "IPv4 with communities, local-pref and markers",
		ad: Advertisement{
			Prefix:      netip.MustParsePrefix("192.0.2.10/32"),
			Communities: []config.Community{community(t, "65000:100"), community(t, "no-export"), community(t, "65000:1:2")},
			LocalPref:   &lp,
		},
		nextHop:  "198.51.100.11",
		markers:  []uint32{1, 3},
		wantNH:   "198.51.100.11",
		wantComm: []uint32{65000<<16 | 100, 0xFFFFFF01},
		wantLC:   []string{"65000:1:2", "4294967295:1:0", "4294967295:3:0"},
		wantLP:   &lp,
	}, {
		name:    "IPv6 next hop travels in MP_REACH_NLRI",
		ad:      Advertisement{Prefix: netip.MustParsePrefix("2001:db8:1::10/128")},
		nextHop: "2001:db8:100::11",
		wantNH:  "2001:db8:100::11",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := buildPath(tt.ad, netip.MustParseAddr(tt.nextHop), tt.markers, testASN)
			if err != nil {
				t.Fatal(err)
			}
			nlri, err := apiutil.GetNativeNlri(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := nlri.String(); got != tt.ad.Prefix.String() {
				t.Errorf("NLRI %s, want %s", got, tt.ad.Prefix)
			}
			attrs, err := apiutil.GetNativePathAttributes(p)
			if err != nil {
				t.Fatal(err)
			}
			var nh string
			var comm []uint32
			var lcs []string
			var localPref *uint32
			for _, a := range attrs {
				switch a := a.(type) {
				case *bgp.PathAttributeNextHop:
					nh = a.Value.String()
				case *bgp.PathAttributeMpReachNLRI:
					nh = a.Nexthop.String()
				case *bgp.PathAttributeCommunities:
					comm = a.Value
				case *bgp.PathAttributeLargeCommunities:
					for _, c := range a.Values {
						lcs = append(lcs, c.String())
					}
				case *bgp.PathAttributeLocalPref:
					v := a.Value
					localPref = &v
				}
			}
			if nh != tt.wantNH {
				t.Errorf("next hop %q, want %q", nh, tt.wantNH)
			}
			if !slices.Equal(comm, tt.wantComm) {
				t.Errorf("communities %v, want %v", comm, tt.wantComm)
			}
			if !slices.Equal(lcs, tt.wantLC) {
				t.Errorf("large communities %v, want %v", lcs, tt.wantLC)
			}
			if (localPref == nil) != (tt.wantLP == nil) || (localPref != nil && *localPref != *tt.wantLP) {
				t.Errorf("local-pref %v, want %v", localPref, tt.wantLP)
			}
		})
	}
}

func TestMarkerRegexps(t *testing.T) {
	one := regexp.MustCompile(markerRegexp(7))
	all := regexp.MustCompile(allMarkersRegexp)
	tests := []struct {
		community  string
		one, isAny bool
	}{
		{markerCommunity(7).String(), true, true},
		{markerCommunity(17).String(), false, true},
		{markerCommunity(70).String(), false, true},
		{"65000:4294967295:0", false, false},
		{"65000:7:0", false, false},
	}
	for _, tt := range tests {
		if got := one.MatchString(tt.community); got != tt.one {
			t.Errorf("marker 7 matches %s: %v, want %v", tt.community, got, tt.one)
		}
		if got := all.MatchString(tt.community); got != tt.isAny {
			t.Errorf("all markers match %s: %v, want %v", tt.community, got, tt.isAny)
		}
	}
}
