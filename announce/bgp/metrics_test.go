package bgp

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
)

func TestCollector(t *testing.T) {
	peers := []PeerStatus{
		{Name: "tor-a", State: "established", Advertised: 3,
			BFD: &bfd.Status{State: bfd.Up, DetectionTime: 300 * time.Millisecond}},
		{Name: "tor-b", State: "active", LastError: "connecting failed",
			Errors: map[Cause]int{CauseConnectionRefused: 2, CauseNoRoute: 1}},
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(func() []PeerStatus { return peers }))
	want := `
# HELP baremetal_bfd_detection_time_seconds How long the peer may stay silent before BFD declares it down, as negotiated.
# TYPE baremetal_bfd_detection_time_seconds gauge
baremetal_bfd_detection_time_seconds{peer="tor-a"} 0.3
# HELP baremetal_bfd_session_up 1 when the BFD session with the peer is Up, else 0; only for peers with bfd.
# TYPE baremetal_bfd_session_up gauge
baremetal_bfd_session_up{peer="tor-a"} 1
# HELP baremetal_bgp_advertised_prefixes Prefixes this node advertises to the peer over an established session.
# TYPE baremetal_bgp_advertised_prefixes gauge
baremetal_bgp_advertised_prefixes{peer="tor-a"} 3
baremetal_bgp_advertised_prefixes{peer="tor-b"} 0
# HELP baremetal_bgp_session_up 1 when the BGP session with the peer is established, else 0.
# TYPE baremetal_bgp_session_up gauge
baremetal_bgp_session_up{peer="tor-a"} 1
baremetal_bgp_session_up{peer="tor-b"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		MetricSessionUp, MetricAdvertisedPrefixes, MetricBFDSessionUp, MetricBFDDetectionTime); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(NewCollector(func() []PeerStatus { return peers }), MetricPeerErrors); got != 2 {
		t.Errorf("%s series = %d, want one per cause seen (2)", MetricPeerErrors, got)
	}
	peers = nil
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("with no speaker: %d series (err %v), want none", n, err)
	}
}
