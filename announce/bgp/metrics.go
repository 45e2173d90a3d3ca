package bgp

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
)

// Metric names; see DESIGN.md (prefix baremetal_). This file is their one
// definition: the agent registers a Collector rather than its own gauges.
const (
	MetricSessionUp          = "baremetal_bgp_session_up"
	MetricAdvertisedPrefixes = "baremetal_bgp_advertised_prefixes"
	MetricPeerErrors         = "baremetal_bgp_peer_errors_total"
	MetricBFDSessionUp       = "baremetal_bfd_session_up"
	MetricBFDDetectionTime   = "baremetal_bfd_detection_time_seconds"
)

var (
	sessionUpDesc = prometheus.NewDesc(MetricSessionUp,
		"1 when the BGP session with the peer is established, else 0.",
		[]string{"peer"}, nil)
	advertisedDesc = prometheus.NewDesc(MetricAdvertisedPrefixes,
		"Prefixes this node advertises to the peer over an established session.",
		[]string{"peer"}, nil)
	peerErrorsDesc = prometheus.NewDesc(MetricPeerErrors,
		"Times the session with the peer failed, by likely cause (ConnectionRefused, NoRoute, NoAnswer, MD5Mismatch, BadPeerAS, OpenRejected, HoldTimerExpired, AdminShutdown, Notification, Other); a retry with the same cause is not counted again.",
		[]string{"peer", "cause"}, nil)
	bfdUpDesc = prometheus.NewDesc(MetricBFDSessionUp,
		"1 when the BFD session with the peer is Up, else 0; only for peers with bfd.",
		[]string{"peer"}, nil)
	bfdDetectDesc = prometheus.NewDesc(MetricBFDDetectionTime,
		"How long the peer may stay silent before BFD declares it down, as negotiated.",
		[]string{"peer"}, nil)
)

// Collector exports the speaker's per-peer state at each scrape. The agent
// registers one on its registry:
//
//	registry.MustRegister(bgp.NewCollector(func() []bgp.PeerStatus { ... s.Peers() ... }))
type Collector struct {
	peers func() []PeerStatus
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector reports what peers returns at each scrape; pass the running
// speaker's Peers, or a func that returns nil while no speaker runs. peers
// is called from the scraping goroutine.
func NewCollector(peers func() []PeerStatus) *Collector {
	return &Collector{peers: peers}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sessionUpDesc, advertisedDesc, peerErrorsDesc, bfdUpDesc, bfdDetectDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.peers() {
		ch <- prometheus.MustNewConstMetric(sessionUpDesc, prometheus.GaugeValue, boolValue(p.Established()), p.Name)
		ch <- prometheus.MustNewConstMetric(advertisedDesc, prometheus.GaugeValue, float64(p.Advertised), p.Name)
		causes := make([]string, 0, len(p.Errors))
		for cause := range p.Errors {
			causes = append(causes, string(cause))
		}
		sort.Strings(causes)
		for _, cause := range causes {
			ch <- prometheus.MustNewConstMetric(peerErrorsDesc, prometheus.CounterValue, float64(p.Errors[Cause(cause)]), p.Name, cause)
		}
		if p.BFD != nil {
			ch <- prometheus.MustNewConstMetric(bfdUpDesc, prometheus.GaugeValue, boolValue(p.BFD.State == bfd.Up), p.Name)
			ch <- prometheus.MustNewConstMetric(bfdDetectDesc, prometheus.GaugeValue, p.BFD.DetectionTime.Seconds(), p.Name)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
