package bgp

import (
	"k8s.io/component-base/metrics"
)

// Metric names; see DESIGN.md (prefix baremetal_).
const (
	MetricSessionUp          = "baremetal_bgp_session_up"
	MetricAdvertisedPrefixes = "baremetal_bgp_advertised_prefixes"
)

var (
	sessionUpDesc = metrics.NewDesc(MetricSessionUp,
		"1 when the BGP session with the peer is established, else 0.",
		[]string{"peer"}, nil, metrics.ALPHA, "")
	advertisedDesc = metrics.NewDesc(MetricAdvertisedPrefixes,
		"Prefixes this node advertises to the peer over an established session.",
		[]string{"peer"}, nil, metrics.ALPHA, "")
)

// Collector exports the speaker's per-peer state. The agent registers it,
// e.g. legacyregistry.CustomMustRegister(bgp.NewCollector(speaker.Peers)).
type Collector struct {
	metrics.BaseStableCollector
	peers func() []PeerStatus
}

var _ metrics.StableCollector = (*Collector)(nil)

// NewCollector reports what peers returns at each scrape; pass
// (*Speaker).Peers, or a func that returns nil while no speaker runs.
func NewCollector(peers func() []PeerStatus) *Collector {
	return &Collector{peers: peers}
}

// DescribeWithStability implements metrics.StableCollector.
func (c *Collector) DescribeWithStability(ch chan<- *metrics.Desc) {
	ch <- sessionUpDesc
	ch <- advertisedDesc
}

// CollectWithStability implements metrics.StableCollector.
func (c *Collector) CollectWithStability(ch chan<- metrics.Metric) {
	for _, p := range c.peers() {
		up := 0.0
		if p.Established() {
			up = 1
		}
		ch <- metrics.NewLazyConstMetric(sessionUpDesc, metrics.GaugeValue, up, p.Name)
		ch <- metrics.NewLazyConstMetric(advertisedDesc, metrics.GaugeValue, float64(p.Advertised), p.Name)
	}
}
