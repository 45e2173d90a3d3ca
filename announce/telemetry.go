package announce

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Event reasons the agent records on Services.
const (
	ReasonAnnouncing      = "Announcing"
	ReasonWithdrawn       = "Withdrawn"
	ReasonAddressConflict = "AddressConflict"
	ReasonNoInterface     = "NoInterface"
	ReasonInvalidConfig   = "InvalidConfig"
)

// Metrics are the agent's Prometheus metrics (prefix baremetal_).
type Metrics struct {
	Registry       *prometheus.Registry
	AnnouncedVIPs  *prometheus.GaugeVec
	Failovers      prometheus.Counter
	ProbeConflicts prometheus.Counter
	RenewFailures  prometheus.Counter
	LiveAgents     prometheus.Gauge
	BGPSessionUp   *prometheus.GaugeVec
	BGPAdvertised  *prometheus.GaugeVec
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
		ProbeConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baremetal_probe_conflicts_total",
			Help: "Probes before announcing that another host answered.",
		}),
		RenewFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "baremetal_lease_renew_failures_total",
			Help: "Failed renewals of this agent's Lease.",
		}),
		LiveAgents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "baremetal_live_agents",
			Help: "Agents this node sees alive, itself included.",
		}),
		BGPSessionUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "baremetal_bgp_session_up",
			Help: "1 when the BGP session with the peer is established, else 0.",
		}, []string{"peer"}),
		BGPAdvertised: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "baremetal_bgp_advertised_prefixes",
			Help: "Prefixes this node advertises to the peer.",
		}, []string{"peer"}),
	}
	m.APIRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "baremetal_agent_api_requests_total",
		Help: "Requests this agent sent to the API server, by HTTP method (watches count once, when opened).",
	}, []string{"method"})
	m.ReloadFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "baremetal_config_reload_failures_total",
		Help: "Cloud-config reloads refused because the new file was invalid.",
	})
	m.ReloadSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "baremetal_config_last_reload_success",
		Help: "1 if the cloud-config file on disk is the one in force, 0 if the last change was refused.",
	})
	m.ReloadSuccess.Set(1)
	m.Registry.MustRegister(m.AnnouncedVIPs, m.Failovers, m.ProbeConflicts, m.RenewFailures, m.LiveAgents,
		m.BGPSessionUp, m.BGPAdvertised, m.APIRequests, m.ReloadFailures, m.ReloadSuccess,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.AnnouncedVIPs.WithLabelValues("layer2")
	m.AnnouncedVIPs.WithLabelValues("bgp")
	return m
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
