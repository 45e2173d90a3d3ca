package announce

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// Metrics are the agent's Prometheus metrics (prefix baremetal_).
type Metrics struct {
	Registry       *prometheus.Registry
	AnnouncedVIPs  *prometheus.GaugeVec
	Failovers      prometheus.Counter
	StalledAgents  prometheus.Counter
	ProbeConflicts prometheus.Counter
	RenewFailures  prometheus.Counter
	LiveAgents     prometheus.Gauge
	HeartbeatDrops *prometheus.CounterVec
	ViewSynced     prometheus.Gauge
	Fenced         prometheus.Gauge
	Silent         *prometheus.GaugeVec
	APIRequests    *prometheus.CounterVec
	ReloadFailures prometheus.Counter
	ReloadSuccess  prometheus.Gauge
}

// NewMetrics registers the agent's metrics on a new registry, with the Go
// and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		AnnouncedVIPs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "baremetal_announced_vips",
			Help: "VIPs this node announces, by mode (layer2, bgp).",
		}, []string{"mode"}),
		Failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baremetal_failovers_total",
			Help: "Layer-2 VIPs this node took over from an agent that died.",
		}),
		StalledAgents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baremetal_stalled_agents_total",
			Help: "Silent members found with their node still answering for its own address (a stalled, paused or restarting agent): each got nodeAgent.stalledAgentGrace before a takeover.",
		}),
		ProbeConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baremetal_probe_conflicts_total",
			Help: "Announcements refused because another host (not an agent) answers ARP/NDP for the VIP.",
		}),
		RenewFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baremetal_lease_renew_failures_total",
			Help: "Failed renewals of this agent's Lease.",
		}),
		LiveAgents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "baremetal_live_agents",
			Help: "Agents with a Lease in this node's layer-2 pools that it judges up, itself included.",
		}),
		HeartbeatDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "baremetal_heartbeat_dropped_total",
			Help: "Heartbeats dropped, by reason (signature, replay, stale, misdirected, malformed). Signature or replay drops mean a forged or replayed message, or a key mismatch; stale ones, clocks out of sync.",
		}, []string{"reason"}),
		ViewSynced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "baremetal_agent_view_synced",
			Help: "1 once this agent listed Services, EndpointSlices, Nodes and Leases from the API server; until then it announces nothing.",
		}),
		Fenced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "baremetal_agent_stale_view_fenced",
			Help: "1 while this agent announces nothing because it has not heard the API server for longer than nodeAgent.staleViewTimeout.",
		}),
	}
	m.Silent = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "baremetal_agent_silent",
		Help: "1 for the reason this agent announces nothing and sends no heartbeats (no-view: it has not listed from the API server since it started; no-lease: it has not written its Lease; no-node: its Node is missing; stale-view: nodeAgent.staleViewTimeout passed without the API server), 0 for the others; all 0 while it announces.",
	}, []string{"reason"})
	for _, r := range silentReasons {
		m.Silent.WithLabelValues(r)
	}
	m.APIRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baremetal_agent_api_requests_total",
		Help: "Requests this agent sent to the API server, by HTTP method (watches count once, when opened).",
	}, []string{"method"})
	m.ReloadFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: config.MetricReloadFailures,
		Help: "Cloud-config reloads refused because the new file was invalid.",
	})
	m.ReloadSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: config.MetricReloadSuccess,
		Help: "1 if the cloud-config file on disk is the one in force, 0 if the last change was refused.",
	})
	m.ReloadSuccess.Set(1)
	m.Registry.MustRegister(m.AnnouncedVIPs, m.Failovers, m.StalledAgents, m.ProbeConflicts, m.RenewFailures, m.LiveAgents,
		m.HeartbeatDrops, m.ViewSynced, m.Fenced, m.Silent, m.APIRequests, m.ReloadFailures, m.ReloadSuccess,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.AnnouncedVIPs.WithLabelValues("layer2")
	m.AnnouncedVIPs.WithLabelValues("bgp")
	return m
}

// Why an agent announces nothing: the reason label of baremetal_agent_silent.
const (
	SilentNoView    = "no-view"
	SilentNoLease   = "no-lease"
	SilentNoNode    = "no-node"
	SilentStaleView = "stale-view"
)

var silentReasons = []string{SilentNoView, SilentNoLease, SilentNoNode, SilentStaleView}

// setSilent sets baremetal_agent_silent to reason ("": announcing).
func (a *Agent) setSilent(reason string) {
	for _, r := range silentReasons {
		v := 0.0
		if r == reason {
			v = 1
		}
		a.metrics.Silent.WithLabelValues(r).Set(v)
	}
}

// CountRequests wraps a client transport (rest.Config.Wrap) to count the
// agent's API requests.
func (m *Metrics) CountRequests(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		m.APIRequests.WithLabelValues(r.Method).Inc()
		return rt.RoundTrip(r)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// HealthHandler answers /healthz and /readyz: 200 once the caches are
// synced and the agent holds its lease, 503 with the reason otherwise.
func (a *Agent) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	check := func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
	mux.HandleFunc("/healthz", check)
	mux.HandleFunc("/readyz", check)
	return mux
}
