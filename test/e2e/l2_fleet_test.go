package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// Issue 8's fleet: the agents cost the API server what kubelets cost.
const (
	fleetNodes = 20
	fleetVIPs  = 10
	// fleetWindow is the steady state the API server's counters are read
	// over.
	fleetWindow = 30 * time.Second
	// At most this many Lease writes per node per second (a kubelet's
	// node Lease is 0.1), and this many Lease watch events per agent per
	// second per node in the cluster (every agent watching every renewal
	// at that pace would be 0.1 x N).
	fleetWritesPerNode       = 0.12
	fleetEventsPerAgentPerN  = 0.12
	fleetCrashFailoverBudget = time.Second
)

// TestL2Fleet runs 20 real agents on one segment with one layer-2 pool and
// 10 VIPs, and reads the API server's own counters over a steady 30 s:
// Lease writes (apiserver_request_total, resource leases, verb POST, PUT,
// PATCH or APPLY) and Lease watch events sent (apiserver_watch_events_total,
// resource leases). Then a crash of one VIP's owner must still fail over
// within a second.
func TestL2Fleet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// The agents' own defaults: the lab's other tests shorten the Lease
	// for speed, which is not what a fleet runs with.
	l := newL2LabWith(t, fleetNodes, `pools:
  - name: lan
    addresses: [192.0.2.128-192.0.2.254]
`)
	// Agents before issue 8's model renew their Lease every second and
	// watch every agent's: the cost this test bounds.
	l.expectModel(ctx, t, netip.Addr{})
	var ips []netip.Addr
	for i := range fleetVIPs {
		ips = append(ips, l.createService(ctx, fmt.Sprintf("fleet-%02d", i)))
	}
	for _, ip := range ips {
		l.waitOwner(ctx, ip, time.Minute)
	}
	// Let the start-up burst (every agent's first Lease, the Services'
	// announcements) pass before the steady state is measured.
	l.observe(time.Now().Add(10 * time.Second))

	// A read of /metrics takes a while on a loaded machine, and the
	// counters are taken somewhere inside it: the window runs from the
	// middle of the first read to the middle of the second, not from the
	// end of one to the end of the other (which read 0.123 writes per node
	// per second for agents renewing every 10 s once, under load).
	before, start, err := apiCountersAt(ctx, l.c)
	if err != nil {
		t.Fatal(err)
	}
	l.observe(start.Add(fleetWindow))
	after, end, err := apiCountersAt(ctx, l.c)
	if err != nil {
		t.Fatal(err)
	}
	secs := end.Sub(start).Seconds()
	writes := (after.leaseWrites - before.leaseWrites) / fleetNodes / secs
	events := (after.leaseWatchEvents - before.leaseWatchEvents) / fleetNodes / secs
	t.Logf("%d agents, %d VIPs, over %.1fs: %.3f Lease writes per node per second, %.3f Lease watch events per agent per second (%.4f x N)",
		fleetNodes, fleetVIPs, secs, writes, events, events/fleetNodes)
	if writes > fleetWritesPerNode {
		t.Errorf("%.3f Lease writes per node per second, want at most %.2f", writes, fleetWritesPerNode)
	}
	if events > fleetEventsPerAgentPerN*fleetNodes {
		t.Errorf("%.3f Lease watch events per agent per second, want at most %.2f (%.2f x %d nodes)",
			events, fleetEventsPerAgentPerN*fleetNodes, fleetEventsPerAgentPerN, fleetNodes)
	}

	p := l.neighborProbe(t, ips[0])
	took, by := l.crashTrial(ctx, t, ips[0], p)
	t.Logf("crash failover among %d agents: %s answered for %s after %s", fleetNodes, by, ips[0], took.Round(time.Millisecond))
	if took > fleetCrashFailoverBudget {
		t.Errorf("crash failover took %s, want under %s", took, fleetCrashFailoverBudget)
	}
}

// apiCounterValues are the API server's own counters that the fleet's
// cost is read from.
type apiCounterValues struct {
	leaseWrites      float64 // apiserver_request_total{resource="leases",verb=~"POST|PUT|PATCH|APPLY"}
	leaseWatchEvents float64 // apiserver_watch_events_total{resource="leases"}
}

// apiCountersAt reads the counters and returns them with the middle of
// the read, the best estimate of when the API server took them.
func apiCountersAt(ctx context.Context, c *lab.Cluster) (apiCounterValues, time.Time, error) {
	begin := time.Now()
	v, err := apiCounters(ctx, c)
	end := time.Now()
	return v, begin.Add(end.Sub(begin) / 2), err
}

func apiCounters(ctx context.Context, c *lab.Cluster) (apiCounterValues, error) {
	raw, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return apiCounterValues{}, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	return parseAPICounters(string(raw))
}

// parseAPICounters sums the lease samples of the two counters in a
// Prometheus text exposition.
func parseAPICounters(text string) (apiCounterValues, error) {
	var v apiCounterValues
	var seenRequests, seenWatch bool
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, labels, value, ok := splitSample(line)
		if !ok {
			continue
		}
		switch name {
		case "apiserver_request_total":
			seenRequests = true
			// The verb label is the HTTP method (APPLY for a server-side
			// apply PATCH).
			if labels["resource"] == "leases" && slices.Contains([]string{"POST", "PUT", "PATCH", "APPLY"}, labels["verb"]) {
				v.leaseWrites += value
			}
		case "apiserver_watch_events_total":
			seenWatch = true
			if labels["resource"] == "leases" {
				v.leaseWatchEvents += value
			}
		}
	}
	if err := sc.Err(); err != nil {
		return v, err
	}
	if !seenRequests || !seenWatch {
		return v, fmt.Errorf("the API server's /metrics lacks apiserver_request_total (%t) or apiserver_watch_events_total (%t)", seenRequests, seenWatch)
	}
	return v, nil
}

// splitSample parses `name{k="v",...} value` (no escaped quotes inside
// label values, which these counters do not have).
func splitSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	if line == "" || line[0] == '#' {
		return "", nil, 0, false
	}
	sp := strings.LastIndexByte(line, ' ')
	if sp < 0 {
		return "", nil, 0, false
	}
	value, err := strconv.ParseFloat(line[sp+1:], 64)
	if err != nil {
		return "", nil, 0, false
	}
	head := line[:sp]
	labels = map[string]string{}
	if i := strings.IndexByte(head, '{'); i >= 0 {
		name = head[:i]
		for _, kv := range strings.Split(strings.TrimSuffix(head[i+1:], "}"), ",") {
			k, v, found := strings.Cut(kv, "=")
			if found {
				labels[k] = strings.Trim(v, `"`)
			}
		}
	} else {
		name = head
	}
	return name, labels, value, true
}

func TestParseAPICounters(t *testing.T) {
	text := `# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 120
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PATCH",version="v1"} 3
apiserver_request_total{code="409",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="POST",version="v1"} 20
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="namespace",subresource="",verb="LIST",version="v1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="services",scope="resource",subresource="",verb="PUT",version="v1"} 7
apiserver_watch_events_total{group="coordination.k8s.io",resource="leases",version="v1"} 2400
apiserver_watch_events_total{group="",resource="services",version="v1"} 99
`
	got, err := parseAPICounters(text)
	if err != nil {
		t.Fatal(err)
	}
	if want := (apiCounterValues{leaseWrites: 145, leaseWatchEvents: 2400}); got != want {
		t.Errorf("parseAPICounters = %+v, want %+v", got, want)
	}
	if _, err := parseAPICounters("# nothing here\n"); err == nil {
		t.Error("parseAPICounters accepted an exposition without the counters")
	}
}
