package bgp

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names; see DESIGN.md (prefix baremetal_).
const (
	MetricSessionUp          = "baremetal_bgp_session_up"
	MetricAdvertisedPrefixes = "baremetal_bgp_advertised_prefixes"
)

var (
	sessionUpDesc = prometheus.NewDesc(MetricSessionUp,
		"1 when the BGP session with the peer is established, else 0.",
		[]string{"peer"}, nil)
	advertisedDesc = prometheus.NewDesc(MetricAdvertisedPrefixes,
		"Prefixes this node advertises to the peer over an established session.",
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
	ch <- sessionUpDesc
	ch <- advertisedDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.peers() {
		up := 0.0
		if p.Established() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(sessionUpDesc, prometheus.GaugeValue, up, p.Name)
		ch <- prometheus.MustNewConstMetric(advertisedDesc, prometheus.GaugeValue, float64(p.Advertised), p.Name)
	}
}
