package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fastDetection is the faster failure detection docs/layer2.md suggests
// ("Faster failover"); the bench checks the figures that page gives.
const fastDetection = `
  heartbeatInterval: 30ms
  suspectAfter: 120ms
  probeWait: 60ms
`

// soakGapBound is the longest stretch of unanswered rounds the soak
// accepts.
const soakGapBound = 100 * time.Millisecond

// fastCrashP99 is issue 8's stretch target for crash failover.
const fastCrashP99 = 300 * time.Millisecond

// TestL2FastFailoverBench measures layer-2 failover with fastDetection:
//   - crash: kill -9 of the owner's agent and its link down, to the first
//     ARP reply from another node at the client (BAREMETAL_BENCH_TRIALS,
//     default 20; the stretch target is p99 under 300 ms);
//   - soak: no fault at all for BAREMETAL_BENCH_SOAK (default 2m; issue 8's
//     stretch asks 30m on a loaded machine), with 10 VIPs asked for every
//     20 ms: no false takeover (no agent's baremetal_failovers_total
//     moves, each VIP answered by the one MAC throughout), no round
//     answered by two MACs and no unanswered stretch over soakGapBound.
//
// BAREMETAL_BENCH_STALLS=1 stalls an agent during the soak, as CPU
// starvation does: every stallEvery a random node's agent is stopped
// (SIGSTOP) for 150–400 ms. Gaps are then expected (a stalled owner answers
// nothing) and only reported; takeovers and double answers still fail.
//
// BAREMETAL_BENCH_DETECTION=default runs it at the shipped defaults instead;
// BAREMETAL_BENCH_STALL_GRACE sets nodeAgent.stalledAgentGrace (0 turns
// off the question to a silent owner's node, for an A/B run).
// It runs only with BAREMETAL_BENCH=1 (make bench).
func TestL2FastFailoverBench(t *testing.T) {
	trials := l2BenchTrials(t)
	soak := 2 * time.Minute
	if s := os.Getenv("BAREMETAL_BENCH_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("BAREMETAL_BENCH_SOAK=%q: %v", s, err)
		}
		soak = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), soak+30*time.Minute)
	defer cancel()
	detection := fastDetection
	if os.Getenv("BAREMETAL_BENCH_DETECTION") == "default" {
		// The same soak at the shipped defaults, for comparison.
		detection = ""
	}
	if g := os.Getenv("BAREMETAL_BENCH_STALL_GRACE"); g != "" {
		if detection == "" {
			detection = "\n"
		}
		detection += "  stalledAgentGrace: " + g + "\n"
	}
	t.Logf("nodeAgent settings:%s", strings.ReplaceAll(l2CloudConfig[strings.Index(l2CloudConfig, "nodeAgent:")+len("nodeAgent:"):]+detection, "\n", " "))
	l := newL2LabWith(t, 3, l2CloudConfig+detection)
	var ips []netip.Addr
	for i := range 10 {
		ips = append(ips, l.createService(ctx, fmt.Sprintf("fast-%02d", i)))
	}
	for _, ip := range ips {
		l.waitOwner(ctx, ip, time.Minute)
	}
	p := l.neighborProbe(t, ips...)

	var crash []time.Duration
	for i := range trials {
		took, by := l.crashTrial(ctx, t, ips[0], p)
		t.Logf("crash trial %d: %s answered after %s", i, by, took.Round(time.Millisecond))
		crash = append(crash, took)
	}
	report(t, "fast detection: crash failover (SIGKILL + link down -> first ARP reply from another node)", crash)
	if p99 := rankPercentile(crash, 0.99); len(crash) > 0 && p99 >= fastCrashP99 {
		t.Errorf("crash failover p99 %s with fast detection, want under %s", p99, fastCrashP99)
	}

	// The soak: every VIP settled on its owner, then nothing but time.
	owners := map[netip.Addr]string{}
	for _, ip := range ips {
		owners[ip] = l.settledOwner(ctx, t, ip)
	}
	before := l.failovers(ctx, t)
	stallsBefore := l.agentCounter(ctx, t, "baremetal_stalled_agents_total")
	start := time.Now()
	stalls := os.Getenv("BAREMETAL_BENCH_STALLS") != ""
	t.Logf("soak: %s with no fault (agent stalls: %v), %d VIPs asked for every %s; load %s", soak, stalls, len(ips), probeInterval, loadAverage())
	if stalls {
		n, longest := l.stallAgents(t, start.Add(soak))
		t.Logf("soak: %d agent stalls of 150-400 ms, the longest %s", n, longest.Round(time.Millisecond))
	} else {
		l.observe(start.Add(soak))
	}
	end := time.Now()
	after := l.failovers(ctx, t)
	for name, n := range after {
		if n != before[name] {
			t.Errorf("soak: %s took %v VIPs over with no fault (false takeovers)", name, n-before[name])
		}
	}
	// Not a failure: how often an owner went silent while its node
	// answered, each a takeover the grace stood between.
	for name, n := range l.agentCounter(ctx, t, "baremetal_stalled_agents_total") {
		t.Logf("soak: %s found a silent owner whose node answered %v times", name, n-stallsBefore[name])
	}
	for _, ip := range ips {
		s := p.Summarize(ip, start, end)
		t.Logf("soak %s (owner %s): %s", ip, owners[ip], s)
		// An answer a round late (a busy client or agent) leaves one round
		// unanswered: not a gap a client would notice.
		if len(s.Answered) != 1 || (!stalls && s.LongestGap > soakGapBound) || s.SplitRounds > 0 {
			t.Errorf("soak %s: want one MAC answering, no round answered twice and no gap over %s; got %s", ip, soakGapBound, s)
		}
	}
	t.Logf("soak ended; load %s", loadAverage())
}

// stallEvery is how often the stalled soak stops an agent.
const stallEvery = 3 * time.Second

// stallAgents stops a random node's agent for 150–400 ms every stallEvery
// until the deadline, and returns how many stalls and the longest.
func (l *l2Lab) stallAgents(t *testing.T, until time.Time) (int, time.Duration) {
	t.Helper()
	n, longest := 0, time.Duration(0)
	for time.Now().Add(stallEvery).Before(until) {
		time.Sleep(stallEvery)
		nd := l.nodes[rand.IntN(len(l.nodes))]
		d := 150*time.Millisecond + rand.N(250*time.Millisecond)
		if err := nd.agent.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		time.Sleep(d)
		if err := nd.agent.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		n, longest = n+1, max(longest, time.Since(stopped))
	}
	l.observe(until)
	return n, longest
}

// failovers reads every agent's baremetal_failovers_total.
func (l *l2Lab) failovers(ctx context.Context, t *testing.T) map[string]float64 {
	t.Helper()
	return l.agentCounter(ctx, t, "baremetal_failovers_total")
}

// agentCounter reads an unlabelled counter from every agent's metrics.
func (l *l2Lab) agentCounter(ctx context.Context, t *testing.T, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, nd := range l.nodes {
		raw, err := nd.host.Exec(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:9101/metrics")
		if err != nil {
			t.Fatalf("metrics of %s: %v", nd.name, err)
		}
		found := false
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				var n float64
				if _, err := fmt.Sscan(v, &n); err != nil {
					t.Fatalf("metrics of %s: %q: %v", nd.name, line, err)
				}
				out[nd.name], found = n, true
			}
		}
		if !found {
			t.Fatalf("metrics of %s have no %s", nd.name, name)
		}
	}
	return out
}
