package bgp

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	peers := []PeerStatus{
		{Name: "tor-a", State: "established", Advertised: 3},
		{Name: "tor-b", State: "active", LastError: "connecting failed"},
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(func() []PeerStatus { return peers }))
	want := `
# HELP baremetal_bgp_advertised_prefixes Prefixes this node advertises to the peer over an established session.
# TYPE baremetal_bgp_advertised_prefixes gauge
baremetal_bgp_advertised_prefixes{peer="tor-a"} 3
baremetal_bgp_advertised_prefixes{peer="tor-b"} 0
# HELP baremetal_bgp_session_up 1 when the BGP session with the peer is established, else 0.
# TYPE baremetal_bgp_session_up gauge
baremetal_bgp_session_up{peer="tor-a"} 1
baremetal_bgp_session_up{peer="tor-b"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	peers = nil
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("with no speaker: %d series (err %v), want none", n, err)
	}
}
