package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// TestL2FailoverBench measures layer-2 failover in the lab, at the default
// settings (leaseDuration 3s, renewInterval 1s):
//   - crash: SIGKILL of the owner's agent and its link going down, to the
//     first gratuitous ARP from the new owner seen in the client namespace;
//   - graceful: SIGTERM of the owner's agent to the new owner's first
//     gratuitous ARP, with HTTP requests every 20ms counting failures;
//   - creation: Service create call to the first gratuitous ARP for its
//     address (the owner sends it right after binding the VIP).
//
// It runs only with BAREMETAL_BENCH=1 (make bench); BAREMETAL_BENCH_TRIALS
// sets the trials per measurement (default 20).
func TestL2FailoverBench(t *testing.T) {
	trials := l2BenchTrials(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	l := newL2Lab(t, 3)
	w := watchARP(t, l.client)
	ip := l.createService(ctx, "bench")
	// The client also asks who has the VIP every probeInterval: the first
	// answer from another node is when a client that lost its neighbour
	// entry gets through again.
	probe := l.neighborProbe(t, ip)

	only := os.Getenv("BAREMETAL_BENCH_ONLY") // crash, graceful or creation
	var crash, graceful, creation, crashAnswer, gracefulAnswer []time.Duration
	var requests, resets int
	for i := range trials {
		if only != "" && only != "crash" {
			break
		}
		owner := l.waitOwner(ctx, ip, 20*time.Second)
		nd := l.node(owner)
		start := time.Now()
		if err := nd.agent.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := nd.host.SetLink(false); err != nil {
			t.Fatal(err)
		}
		claim, err := w.waitClaim(ctx, ip, start, nd.host.MAC.String(), 15*time.Second)
		if err != nil {
			t.Fatalf("crash trial %d: %v", i, err)
		}
		crash = append(crash, claim.at.Sub(start))
		a, err := l.waitAnswer(ctx, probe, ip, start, nd.host.MAC.String(), 15*time.Second)
		if err != nil {
			t.Fatalf("crash trial %d: %v", i, err)
		}
		crashAnswer = append(crashAnswer, a.At.Sub(start))
		t.Logf("crash trial %d: %s answered %s after the crash of %s", i, l.nodeByMAC(a.MAC), a.At.Sub(start).Round(time.Millisecond), owner)
		if err := nd.host.SetLink(true); err != nil {
			t.Fatal(err)
		}
		l.startAgent(nd)
		l.waitOwner(ctx, ip, 20*time.Second, owner)
		time.Sleep(500 * time.Millisecond) // let the handover back settle
	}
	for i := range trials {
		if only != "" && only != "graceful" {
			break
		}
		owner := l.waitOwner(ctx, ip, 20*time.Second)
		nd := l.node(owner)
		p := l.probeHTTP(ip, 20*time.Millisecond)
		time.Sleep(200 * time.Millisecond)
		start := time.Now()
		if err := nd.agent.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		claim, err := w.waitClaim(ctx, ip, start, nd.host.MAC.String(), 10*time.Second)
		if err != nil {
			t.Fatalf("graceful trial %d: %v", i, err)
		}
		graceful = append(graceful, claim.at.Sub(start))
		a, err := l.waitAnswer(ctx, probe, ip, start, nd.host.MAC.String(), 10*time.Second)
		if err != nil {
			t.Fatalf("graceful trial %d: %v", i, err)
		}
		gracefulAnswer = append(gracefulAnswer, a.At.Sub(start))
		if err := nd.agent.Wait(10 * time.Second); err != nil {
			t.Errorf("graceful trial %d: agent exit: %v", i, err)
		}
		time.Sleep(300 * time.Millisecond)
		_, fails, total := p.finish()
		requests += total
		resets += p.resets
		if fails > 0 {
			t.Errorf("graceful trial %d (SIGTERM at %s): %d of %d HTTP requests got no answer: %q",
				i, start.Format("15:04:05.000"), fails, total, p.errs)
		}
		l.startAgent(nd)
		l.waitOwner(ctx, ip, 20*time.Second, owner)
		time.Sleep(500 * time.Millisecond)
	}
	for i := range trials {
		if only != "" && only != "creation" {
			break
		}
		start := time.Now()
		vip := l.createService(ctx, fmt.Sprintf("create-%02d", i))
		claim, err := w.waitClaim(ctx, vip, start, "", 20*time.Second)
		if err != nil {
			t.Fatalf("creation trial %d: %v", i, err)
		}
		creation = append(creation, claim.at.Sub(start))
	}
	report(t, "crash failover (SIGKILL + link down -> first gratuitous ARP)", crash)
	report(t, "crash failover (SIGKILL + link down -> first ARP reply from the new owner)", crashAnswer)
	report(t, "graceful handover (SIGTERM -> first gratuitous ARP)", graceful)
	report(t, "graceful handover (SIGTERM -> first ARP reply from the new owner)", gracefulAnswer)
	// Issue 8's fault table: p99 under 800 ms for a crash, 200 ms for SIGTERM.
	if p := rankPercentile(crash, 0.99); len(crash) > 0 && p >= 800*time.Millisecond {
		t.Errorf("crash failover p99 %s, want under 800ms", p)
	}
	if p := rankPercentile(graceful, 0.99); len(graceful) > 0 && p >= sigtermBudget {
		t.Errorf("graceful handover p99 %s, want under %s", p, sigtermBudget)
	}
	if len(graceful) > 0 {
		t.Logf("HTTP requests every 20ms during the handovers: %d, none unanswered, %d reset by the move (connections open at the switch)", requests, resets)
	}
	report(t, "Service creation -> first gratuitous ARP", creation)
}

// l2BenchTrials skips t unless BAREMETAL_BENCH=1, and returns the trials
// per measurement: 20, or BAREMETAL_BENCH_TRIALS.
func l2BenchTrials(t *testing.T) int {
	t.Helper()
	if os.Getenv("BAREMETAL_BENCH") != "1" {
		t.Skip("set BAREMETAL_BENCH=1 to run the layer-2 benchmarks")
	}
	trials := 20
	if s := os.Getenv("BAREMETAL_BENCH_TRIALS"); s != "" {
		if _, err := fmt.Sscan(s, &trials); err != nil {
			t.Fatalf("BAREMETAL_BENCH_TRIALS=%q: %v", s, err)
		}
	}
	return trials
}

func report(t *testing.T, what string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	t.Logf("%s: n=%d p50=%s p99=%s min=%s max=%s", what, len(s),
		rankPercentile(ds, 0.5).Round(time.Millisecond), rankPercentile(ds, 0.99).Round(time.Millisecond),
		s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

// rankPercentile is the nearest-rank percentile p (0..1) of ds; 0 for none.
func rankPercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// agentRSSTarget is issue 8's memory target for an agent with 1,000 VIPs in
// a cluster that also holds 10,000 other Services and EndpointSlices.
const agentRSSTarget = 40 << 20

// TestL2ScaleBench measures the agents with many VIPs (default 1,000, or
// BAREMETAL_BENCH_VIPS) in a cluster that also holds other Services, each
// with an EndpointSlice (default 10,000, or BAREMETAL_BENCH_OTHER): time
// until every VIP answers NDP, each agent's resident memory (against
// agentRSSTarget), and each agent's API requests per second at steady state
// (from its baremetal_agent_api_requests_total).
func TestL2ScaleBench(t *testing.T) {
	if os.Getenv("BAREMETAL_BENCH") != "1" {
		t.Skip("set BAREMETAL_BENCH=1 to run the layer-2 benchmarks")
	}
	n, other := 1000, 10000
	for env, v := range map[string]*int{"BAREMETAL_BENCH_VIPS": &n, "BAREMETAL_BENCH_OTHER": &other} {
		if s := os.Getenv(env); s != "" {
			if _, err := fmt.Sscan(s, v); err != nil {
				t.Fatalf("%s=%q: %v", env, s, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	// IPv6 VIPs on the segment's /64, so a pool of any size fits.
	l := newL2LabWith(t, 3, `pools:
  - name: lan
    addresses: [2001:db8::1:0/112]
`)
	fillStart := time.Now()
	fillCluster(ctx, t, l, other)
	t.Logf("%d ClusterIP Services with one EndpointSlice each created in %s", other, time.Since(fillStart).Round(time.Millisecond))
	start := time.Now()
	for i := range n {
		l.submitService(ctx, fmt.Sprintf("scale-%04d", i), withIPv6)
	}
	created := time.Since(start)
	err := lab.Eventually(ctx, 10*time.Minute, time.Second, func() error {
		ips, err := l.vips(ctx)
		if err != nil {
			return err
		}
		if len(ips) < n {
			return fmt.Errorf("%d of %d Services have an address", len(ips), n)
		}
		a, err := l.answering(ips...)
		if err != nil {
			return err
		}
		if len(a) < n {
			return fmt.Errorf("%d of %d VIPs answer NDP", len(a), n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d Services created in %s; every VIP answered NDP %s after the first create", n, created.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	requests := func(nd *l2Node) float64 {
		out, err := nd.host.Exec(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:9101/metrics")
		if err != nil {
			t.Fatalf("metrics of %s: %v", nd.name, err)
		}
		var sum float64
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "baremetal_agent_api_requests_total{") {
				var v float64
				if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
					sum += v
				}
			}
		}
		return sum
	}
	time.Sleep(10 * time.Second) // let the event burst of the announcements pass
	const window = 30 * time.Second
	before := map[string]float64{}
	for _, nd := range l.nodes {
		before[nd.name] = requests(nd)
	}
	time.Sleep(window)
	for _, nd := range l.nodes {
		rate := (requests(nd) - before[nd.name]) / window.Seconds()
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", nd.agent.Cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		var rssKiB int64
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				fmt.Sscan(strings.TrimPrefix(line, "VmRSS:"), &rssKiB)
			}
		}
		t.Logf("%s: RSS %.1f MiB with %d VIPs and %d other Services and EndpointSlices (target %d MiB), %.2f API requests/s at steady state",
			nd.name, float64(rssKiB)/1024, n, other, agentRSSTarget>>20, rate)
		if rssKiB<<10 > agentRSSTarget {
			t.Errorf("%s: agent RSS %.1f MiB, over the %d MiB target", nd.name, float64(rssKiB)/1024, agentRSSTarget>>20)
		}
	}
}

// fillCluster creates n ClusterIP Services in namespace "filler", each
// with an EndpointSlice of three ready endpoints (one per lab node): the
// rest of a cluster, which the agents must not pay for.
func fillCluster(ctx context.Context, t *testing.T, l *l2Lab, n int) {
	t.Helper()
	if err := l.c.EnsureNamespace(ctx, "filler"); err != nil {
		t.Fatal(err)
	}
	work := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := createFiller(ctx, l, i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

func createFiller(ctx context.Context, l *l2Lab, i int) error {
	name := fmt.Sprintf("filler-%05d", i)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "filler", Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := l.c.Client.CoreV1().Services("filler").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating filler Service %s: %w", name, err)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "filler", Name: name + "-abcde",
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for j, nd := range l.nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.244.%d.%d", j, i%250+1)},
			NodeName:   ptr.To(nd.name),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	if _, err := l.c.Client.DiscoveryV1().EndpointSlices("filler").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating filler EndpointSlice %s: %w", es.Name, err)
	}
	return nil
}
