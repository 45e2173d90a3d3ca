package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// A leaf-spine fabric: each rack's nodes speak eBGP with their own
// top-of-rack router, in an AS of the rack's own (localASN), chosen by the
// peers' nodeSelector on the nodes' rack label.
const leafSpineCloudConfig = `pools:
  - name: bgp
    addresses: [192.0.2.64/28]
    mode: bgp
bgp:
  asn: 64512
  peers:
    - name: tor-r1
      address: 198.51.100.1
      asn: 64501
      localASN: 64601
      nodeSelector: {matchLabels: {rack: r1}}
      holdTime: 9s
      keepaliveTime: 3s
    - name: tor-r2
      address: 198.51.100.2
      asn: 64502
      localASN: 64602
      nodeSelector: {matchLabels: {rack: r2}}
      holdTime: 9s
      keepaliveTime: 3s
nodeAgent:
  leaseDuration: 3s
  renewInterval: 1s
`

// torConf is a ToR that takes eBGP sessions from any node on the segment
// and any AS ("remote-as external"): which AS each node uses, and which
// nodes come at all, is the agents' doing.
func torConf(name string, asn uint32, id netip.Addr) string {
	return fmt.Sprintf(`frr defaults datacenter
hostname %s
log stdout informational
debug bgp neighbor-events
!
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor rack peer-group
 neighbor rack remote-as external
 bgp listen range %s peer-group rack
 !
 address-family ipv4 unicast
  maximum-paths 8
  neighbor rack activate
 exit-address-family
!
`, name, asn, id, lan4)
}

// frrSummaryPeer is a peer of FRR's "show bgp summary json".
type frrSummaryPeer struct {
	RemoteAS uint32 `json:"remoteAs"`
	State    string `json:"state"`
}

// bgpSessions returns the router's IPv4 sessions by peer address.
func bgpSessions(ctx context.Context, r *lab.Router) (map[string]frrSummaryPeer, error) {
	var out struct {
		IPv4 struct {
			Peers map[string]frrSummaryPeer `json:"peers"`
		} `json:"ipv4Unicast"`
	}
	if err := r.VtyshJSON(ctx, "show bgp summary json", &out); err != nil {
		return nil, err
	}
	return out.IPv4.Peers, nil
}

// TestBGPLeafSpine: rack r1 (n1, n2) peers with tor1 in AS 64601, rack r2
// (n3) with tor2 in AS 64602; each ToR sees only its rack's nodes, in the
// rack's AS, and routes the Service's address to them only.
func TestBGPLeafSpine(t *testing.T) {
	tor2Addr := netip.MustParseAddr("198.51.100.2")
	l := newBGPAgentLabSpec(t, bgpAgentLabSpec{
		cloudConfig: leafSpineCloudConfig,
		routerConf:  torConf("tor1", 64501, routerLAN4),
		nodeLabels:  []map[string]string{{"rack": "r1"}, {"rack": "r1"}, {"rack": "r2"}},
	})
	tor2Host := l.lan.AddHost("tor2", netip.PrefixFrom(tor2Addr, 24))
	tor2 := lab.StartFRR(t, tor2Host, torConf("tor2", 64502, tor2Addr))
	tor2Lab := *l.bgpLab
	tor2Lab.router = tor2
	n1, n2, n3 := l.nodes[0], l.nodes[1], l.nodes[2]

	racks := []struct {
		tor   string
		r     *lab.Router
		lab   *bgpLab
		asn   uint32
		nodes []*node
	}{
		{"tor1", l.router, l.bgpLab, 64601, []*node{n1, n2}},
		{"tor2", tor2, &tor2Lab, 64602, []*node{n3}},
	}
	start := time.Now()
	for _, rk := range racks {
		want := map[string]frrSummaryPeer{}
		for _, n := range rk.nodes {
			want[n.addr4.String()] = frrSummaryPeer{RemoteAS: rk.asn, State: "Established"}
		}
		var got map[string]frrSummaryPeer
		err := lab.Eventually(t.Context(), 60*time.Second, 200*time.Millisecond, func() error {
			var err error
			if got, err = bgpSessions(t.Context(), rk.r); err != nil {
				return err
			}
			if !maps.Equal(got, want) {
				return fmt.Errorf("%s's sessions %+v, want %+v", rk.tor, got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: sessions %+v, %.1fs after the lab was up", rk.tor, got, time.Since(start).Seconds())
	}

	vip := l.createService(t, "web", false)
	for _, rk := range racks {
		var hops []netip.Addr
		for _, n := range rk.nodes {
			hops = append(hops, n.addr4)
		}
		if err := rk.lab.waitNextHops(vip, 30*time.Second, hops...); err != nil {
			t.Errorf("%s: %v", rk.tor, err)
		}
		paths, err := rk.lab.bgpPaths(vip)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if !slices.Contains(hops, netip.MustParseAddr(p.Peer.PeerID)) {
				t.Errorf("%s has a path to %s from %s, not of its rack", rk.tor, vip, p.Peer.PeerID)
			}
		}
	}
	// The sessions stayed as they were: no node tried the other rack's ToR.
	for _, rk := range racks {
		got, err := bgpSessions(t.Context(), rk.r)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(rk.nodes) {
			t.Errorf("%s's sessions now %+v, want %d", rk.tor, got, len(rk.nodes))
		}
	}

	// Announcing names the one peer each node's path went to.
	for _, n := range l.nodes {
		want := "to peers tor-r1 (bgp)"
		if n == n3 {
			want = "to peers tor-r2 (bgp)"
		}
		err := lab.Eventually(t.Context(), 20*time.Second, 250*time.Millisecond, func() error {
			evs, err := l.c.Client.CoreV1().Events("default").List(t.Context(), metav1.ListOptions{
				FieldSelector: "involvedObject.name=web,reason=Announcing",
			})
			if err != nil {
				return err
			}
			prefix := fmt.Sprintf("Announcing %s from node %s ", vip.Addr(), n.name)
			var mine []string
			for _, e := range evs.Items {
				if strings.HasPrefix(e.Message, prefix) {
					mine = append(mine, e.Message)
				}
			}
			if len(mine) != 1 || !strings.HasSuffix(mine[0], want) {
				return fmt.Errorf("Announcing events of %s: %q, want one ending %q", n.name, mine, want)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
}
