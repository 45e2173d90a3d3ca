package provider

import (
	"sync"
	"sync/atomic"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

var (
	allocations = metrics.NewCounterVec(&metrics.CounterOpts{
		Name:           "baremetal_allocations_total",
		Help:           "EnsureLoadBalancer outcomes by result (ok, exhausted, invalid, failed).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})

	poolSizeDesc = metrics.NewDesc("baremetal_pool_addresses_total",
		"Addresses in a pool, by family.", []string{"pool", "family"}, nil, metrics.ALPHA, "")
	poolInUseDesc = metrics.NewDesc("baremetal_pool_addresses_in_use",
		"Addresses of a pool held by Services, by family.", []string{"pool", "family"}, nil, metrics.ALPHA, "")

	waitingDesc = metrics.NewDesc("baremetal_services_waiting_for_address",
		"LoadBalancer Services waiting for a release: their pool is full or the address they ask for is held.", nil, nil, metrics.ALPHA, "")

	registerOnce sync.Once
	// metricsCloud is the provider whose pools are reported; the process has one.
	metricsCloud atomic.Pointer[Cloud]
)

// poolCollector reports pool use at scrape time, so the allocator's hot path
// carries no metric bookkeeping.
type poolCollector struct{ metrics.BaseStableCollector }

func (*poolCollector) DescribeWithStability(ch chan<- *metrics.Desc) {
	ch <- poolSizeDesc
	ch <- poolInUseDesc
	ch <- waitingDesc
}

// CollectWithStability reports nothing on a standby replica: its allocator
// is not seeded and would show every pool empty, which a "pool nearly full"
// alert would read as real. Only the leader (Initialize ran) reports.
func (*poolCollector) CollectWithStability(ch chan<- metrics.Metric) {
	c := metricsCloud.Load()
	if c == nil || !c.leading.Load() {
		return
	}
	for _, s := range c.alloc.Stats() {
		fam := s.Family.String()
		ch <- metrics.NewLazyConstMetric(poolSizeDesc, metrics.GaugeValue, s.Size, s.Pool, fam)
		ch <- metrics.NewLazyConstMetric(poolInUseDesc, metrics.GaugeValue, float64(s.InUse), s.Pool, fam)
	}
	ch <- metrics.NewLazyConstMetric(waitingDesc, metrics.GaugeValue, float64(c.waiting.len()))
}

func registerMetrics(c *Cloud) {
	metricsCloud.Store(c)
	registerOnce.Do(func() {
		legacyregistry.MustRegister(allocations)
		legacyregistry.CustomMustRegister(&poolCollector{})
	})
}
