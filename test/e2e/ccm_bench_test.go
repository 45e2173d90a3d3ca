package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// addressClock watches Services the way a user's `kubectl get svc -w`
// would and records, per Service, when its creation returned to the client
// and when an EXTERNAL-IP was first seen; it also counts any Service whose
// EXTERNAL-IP changed once set.
type addressClock struct {
	mu       sync.Mutex
	created  map[string]time.Time
	assigned map[string]time.Time
	ingress  map[string]string
	changed  []string
	tick     chan struct{} // closed and replaced on every change
	// createTook is each Create's round trip as its client saw it: with
	// a fixed number of clients, what bounds the creation rate.
	createTook []time.Duration
}

func watchAddresses(t *testing.T, cs kubernetes.Interface) *addressClock {
	t.Helper()
	ac := &addressClock{created: map[string]time.Time{}, assigned: map[string]time.Time{},
		ingress: map[string]string{}, tick: make(chan struct{})}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("default"))
	inf := f.Core().V1().Services().Informer()
	seen := func(obj any) {
		now := time.Now()
		s, ok := obj.(*corev1.Service)
		if !ok || len(s.Status.LoadBalancer.Ingress) == 0 {
			return
		}
		ip := ingressOf(s)
		ac.mu.Lock()
		defer ac.mu.Unlock()
		if old, had := ac.ingress[s.Name]; had && old != ip {
			ac.changed = append(ac.changed, fmt.Sprintf("%s: %s → %s", s.Name, old, ip))
		}
		ac.ingress[s.Name] = ip
		if _, done := ac.assigned[s.Name]; !done {
			ac.assigned[s.Name] = now
			close(ac.tick)
			ac.tick = make(chan struct{})
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    seen,
		UpdateFunc: func(_, obj any) { seen(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	f.Start(t.Context().Done())
	f.WaitForCacheSync(t.Context().Done())
	t.Cleanup(f.Shutdown)
	return ac
}

func (ac *addressClock) markCreated(name string, at time.Time, took time.Duration) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	ac.created[name] = at
	ac.createTook = append(ac.createTook, took)
}

// await waits until cond (called under the lock) holds; false on timeout.
func (ac *addressClock) await(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.After(timeout)
	for {
		ac.mu.Lock()
		ok, tick := cond(), ac.tick
		ac.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-tick:
		case <-deadline:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// addressedCount is the number of Services seen with an address.
func (ac *addressClock) addressedCount() int {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	return len(ac.assigned)
}

// burstResult is what one burst of Services met.
type burstResult struct {
	n          int
	created    time.Duration // first Create sent → last Create returned
	addressed  int
	allDone    time.Duration // first Create sent → last EXTERNAL-IP seen
	p50, p99   time.Duration // per Service: Create returned → EXTERNAL-IP seen
	latencies  []time.Duration
	changed    []string
	peakRSSMiB float64
	// The Create round trip: p50 and mean. workers / mean is the most
	// the clients could create per second.
	createP50, createMean time.Duration
	workers               int
}

func (r burstResult) String() string {
	return fmt.Sprintf("%d/%d addressed; created in %s (%.0f/s), all addressed at %s (creation + %s); p50 %s, p99 %s",
		r.addressed, r.n, r.created.Round(time.Millisecond), r.achievedRate(), r.allDone.Round(time.Millisecond),
		(r.allDone - r.created).Round(time.Millisecond), r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond))
}

// achievedRate is the creation rate the clients reached, which a loaded
// machine holds below the one asked for.
func (r burstResult) achievedRate() float64 { return float64(r.n) / r.created.Seconds() }

// result summarises the Services named in ac.created, timed from start.
func (ac *addressClock) result(n int, start time.Time, created time.Duration) burstResult {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	r := burstResult{n: n, created: created, changed: append([]string(nil), ac.changed...)}
	for name, c := range ac.created {
		at, ok := ac.assigned[name]
		if !ok {
			continue
		}
		r.addressed++
		r.latencies = append(r.latencies, max(at.Sub(c), 0))
		r.allDone = max(r.allDone, at.Sub(start))
	}
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	r.p50, r.p99 = pct(r.latencies, 0.5), pct(r.latencies, 0.99)
	took := slices.Clone(ac.createTook)
	slices.Sort(took)
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	if len(took) > 0 {
		r.createP50, r.createMean = pct(took, 0.5), sum/time.Duration(len(took))
	}
	return r
}

// clientBound says what the Create round trips allowed the clients: with
// w clients each waiting for its Create, at most w / mean round trip per
// second (the floor's clients also wait for their status patch).
func (r burstResult) clientBound() string {
	if r.createMean == 0 || r.workers == 0 {
		return ""
	}
	return fmt.Sprintf("Create round trip p50 %s, mean %s: %d clients allow at most %.0f/s",
		r.createP50.Round(time.Millisecond), r.createMean.Round(time.Millisecond), r.workers, float64(r.workers)/r.createMean.Seconds())
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[int(float64(len(ds)-1)*p)]
}

// burst is how a benchmark creates its Services.
type burst struct {
	n       int
	prefix  string
	rate    float64 // Services per second; 0: as fast as the workers can
	workers int     // concurrent clients, 16 unless set
	mutate  func(*corev1.Service)
	// then runs in the creating worker right after each Create returned
	// (the floor writes the status itself here).
	then func(i int, name string) error
}

// create creates b.n Services, paced at b.rate, and records each creation
// in ac. It returns the time from the first Create sent to the last one
// returned.
func (b burst) create(t *testing.T, cs kubernetes.Interface, ac *addressClock, start time.Time) time.Duration {
	t.Helper()
	workers := b.workers
	if workers == 0 {
		workers = 16
	}
	var (
		wg       sync.WaitGroup
		lastMu   sync.Mutex
		last     time.Time
		next     = make(chan int)
		failures = make(chan error, workers)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := fmt.Sprintf("%s-%05d", b.prefix, i)
				s := lbSvc("default", name)
				if b.mutate != nil {
					b.mutate(s)
				}
				sent := time.Now()
				if _, err := cs.CoreV1().Services("default").Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
					select {
					case failures <- fmt.Errorf("creating %s: %w", name, err):
					default:
					}
					continue
				}
				now := time.Now()
				ac.markCreated(name, now, now.Sub(sent))
				lastMu.Lock()
				if now.After(last) {
					last = now
				}
				lastMu.Unlock()
				if b.then != nil {
					if err := b.then(i, name); err != nil {
						select {
						case failures <- err:
						default:
						}
					}
				}
			}
		}()
	}
	for i := range b.n {
		if b.rate > 0 { // pacing: Service i is due at start + i/rate
			time.Sleep(time.Until(start.Add(time.Duration(float64(i) / b.rate * float64(time.Second)))))
		}
		next <- i
	}
	close(next)
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	return last.Sub(start)
}

// peakRSS reads a process's high-water resident set size in MiB.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return float64(kb) / 1024
		}
	}
	return -1
}

// loadAverage is the 1-minute load average, to note beside a figure.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func rateName(rate float64) string {
	if rate == 0 {
		return "unpaced"
	}
	return fmt.Sprintf("%g/s", rate)
}

// benchRates are the creation rates of TestCCMBenchBurst;
// BAREMETAL_BENCH_RATES (e.g. "200" or "50,200,0") overrides them, 0 meaning
// as fast as the clients can.
func benchRates(t *testing.T) []float64 {
	env := os.Getenv("BAREMETAL_BENCH_RATES")
	if env == "" {
		return []float64{50, 200, 0}
	}
	var rates []float64
	for _, f := range strings.Split(env, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r < 0 {
			t.Fatalf("BAREMETAL_BENCH_RATES: %q is not a rate", f)
		}
		rates = append(rates, r)
	}
	return rates
}

// benchWorkers is the number of concurrent creating clients of
// TestCCMBenchBurst: 16, or BAREMETAL_BENCH_WORKERS.
func benchWorkers(t *testing.T) int {
	env := os.Getenv("BAREMETAL_BENCH_WORKERS")
	if env == "" {
		return 16
	}
	w, err := strconv.Atoi(env)
	if err != nil || w < 1 {
		t.Fatalf("BAREMETAL_BENCH_WORKERS: %q is not a number of clients", env)
	}
	return w
}

// userLeaderElection restores the framework's leader-election timings
// (15 s, 10 s, 2 s) over startCCM's short lab ones: a benchmark measures what
// users meet, and a 3 s renew deadline on a loaded machine would end the CCM.
var userLeaderElection = []string{"--leader-elect-lease-duration=15s", "--leader-elect-renew-deadline=10s", "--leader-elect-retry-period=2s"}

// ccmExited fails t if m ended during a benchmark, with the end of its log.
func ccmExited(t *testing.T, m *ccm) {
	t.Helper()
	if m.proc.Exited() {
		lines := strings.Split(strings.TrimSpace(m.proc.Logs()), "\n")
		t.Errorf("the CCM exited during the benchmark; its log ends:\n%s", strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
}

// stockFlags are the framework's own defaults, which we do not ship.
var stockFlags = []string{"--concurrent-service-syncs=1", "--kube-api-qps=20", "--kube-api-burst=30"}

// TestCCMBenchBurst measures what a user creating 1,000 LoadBalancer
// Services meets: per Service, the time from its creation returning to its
// EXTERNAL-IP appearing, and when the last is addressed against when the
// last was created. For each creation rate, in one run and on a fresh lab
// cluster each: the floor (the creating client writes each status itself
// right after the create: no controller can be faster) and the CCM at its
// shipped defaults; the framework's stock settings once, at 200/s (they
// are bound by their 20 QPS at any rate). BAREMETAL_BENCH_CCM_FLAGS adds a
// row with those CCM flags at each rate, to try other settings. Run with
// BAREMETAL_BENCH=1 (make bench).
func TestCCMBenchBurst(t *testing.T) {
	if os.Getenv("BAREMETAL_BENCH") == "" {
		t.Skip("benchmark; set BAREMETAL_BENCH=1")
	}
	const n = 1000
	cfg := `pools: [{name: lan, addresses: ["198.51.100.0/22"]}]`
	type row struct {
		rate float64
		what string
		r    burstResult
		load string
		ccm  bool
	}
	var rows []row
	run := func(rate float64, what string, withCCM bool, flags ...string) burstResult {
		c := startCluster(t)
		defer c.Stop()
		cs := fastClient(t, c)
		var m *ccm
		b := burst{n: n, prefix: "bench", rate: rate, workers: benchWorkers(t)}
		if withCCM {
			m = startCCM(t, c, writeCloudConfig(t, cfg), "ccm", append(userLeaderElection, flags...)...)
			waitLeader(t, c, "")
		} else {
			b.then = func(i int, name string) error {
				patch := fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":"198.51.%d.%d","ipMode":"VIP"}]}}}`, 100+i/256, i%256)
				_, err := cs.CoreV1().Services("default").Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
				return err
			}
		}
		ac := watchAddresses(t, cs)
		start := time.Now()
		created := b.create(t, cs, ac, start)
		limit := created + 5*time.Minute // stock: about 5 Services/s
		ac.await(t.Context(), limit, func() bool { return len(ac.assigned) >= n })
		r := ac.result(n, start, created)
		r.workers = b.workers
		if m != nil {
			ccmExited(t, m)
			r.peakRSSMiB = peakRSS(m.proc.Cmd.Process.Pid)
			if err := m.proc.Kill(); err != nil {
				t.Error(err)
			}
		}
		rows = append(rows, row{rate: rate, what: what, r: r, load: loadAverage(), ccm: withCCM})
		t.Logf("%s, created %s: %s; %s; load %s", what, rateName(rate), r, r.clientBound(), rows[len(rows)-1].load)
		return r
	}
	for _, rate := range benchRates(t) {
		run(rate, "floor: the client writes each status itself", false)
		d := run(rate, "shipped defaults", true)
		if extra := strings.Fields(os.Getenv("BAREMETAL_BENCH_CCM_FLAGS")); len(extra) > 0 {
			run(rate, strings.Join(extra, " "), true, extra...)
		}
		if rate == 200 {
			// The targets of the shipped defaults (DESIGN decision 9).
			if d.achievedRate() < 180 {
				t.Logf("the clients reached only %.0f creates/s: the 200/s targets below are checked at that rate", d.achievedRate())
			}
			if d.addressed < n || d.allDone-d.created > time.Second || d.p50 > 150*time.Millisecond || d.p99 > time.Second {
				t.Errorf("shipped defaults at 200/s: %s; want all addressed within creation + 1 s, p50 ≤ 150 ms, p99 ≤ 1 s", d)
			}
			run(rate, "framework stock: "+strings.Join(stockFlags, " "), true, stockFlags...)
		}
	}
	var sb strings.Builder
	sb.WriteString("\n| creation asked (reached) | configuration | created in | all addressed at | per Service p50 | p99 | CCM peak RSS | load |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		rss := ""
		if r.ccm {
			rss = fmt.Sprintf("%.0f MiB", r.r.peakRSSMiB)
		}
		fmt.Fprintf(&sb, "| %s (%.0f/s) | %s | %s | %s (+%s) | %s | %s | %s | %s |\n", rateName(r.rate), r.r.achievedRate(), r.what,
			r.r.created.Round(100*time.Millisecond), r.r.allDone.Round(100*time.Millisecond),
			(r.r.allDone - r.r.created).Round(10*time.Millisecond), r.r.p50.Round(time.Millisecond),
			r.r.p99.Round(time.Millisecond), rss, r.load)
	}
	t.Log(sb.String())
}

// TestCCMBench10000Services: 10,000 LoadBalancer Services, created as fast as
// 16 clients can, all addressed by the CCM at its shipped defaults, its peak
// RSS within 150 MiB; then a kill -9 of the CCM and a new one started: it
// re-seeds from the 10,000 statuses, changes none of them, and addresses a
// Service created at its start. The Services set
// allocateLoadBalancerNodePorts: false (the default NodePort range holds
// only 2,768) and are IPv6, the one documentation range large enough
// (2001:db8::/32). Run with BAREMETAL_BENCH=1 (make bench).
func TestCCMBench10000Services(t *testing.T) {
	if os.Getenv("BAREMETAL_BENCH") == "" {
		t.Skip("benchmark; set BAREMETAL_BENCH=1")
	}
	const n = 10000
	pool := netip.MustParsePrefix("2001:db8:100::/112")
	cfg := writeCloudConfig(t, fmt.Sprintf(`pools: [{name: lan, addresses: [%q]}]`, pool))
	c := startCluster(t)
	cs := fastClient(t, c)
	// The CCM runs as a pod's container, restarted in the same pod below
	// (what the kubelet does after a kill -9).
	pod := inPod("3f8a1c6e-2b7d-4e9a-8c5f-1d0b7e3a6c92", "baremetal-cloud-controller-manager-7d9f8-x2k4q")
	first := startCCMIn(t, c, cfg, "ccm-1", pod, userLeaderElection...)
	holder := waitLeader(t, c, "")
	waitHolderPod(t, c, pod)
	ac := watchAddresses(t, cs)
	b := burst{n: n, prefix: "svc", mutate: func(s *corev1.Service) {
		single := corev1.IPFamilyPolicySingleStack
		s.Spec.IPFamilyPolicy = &single
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
		s.Spec.AllocateLoadBalancerNodePorts = new(bool)
	}}
	start := time.Now()
	created := b.create(t, cs, ac, start)
	ac.await(t.Context(), created+5*time.Minute, func() bool { return len(ac.assigned) >= n })
	r := ac.result(n, start, created)
	ccmExited(t, first)
	r.peakRSSMiB = peakRSS(first.proc.Cmd.Process.Pid)
	t.Logf("10,000 Services, created as fast as 16 clients can: %s; CCM peak RSS %.0f MiB; load %s", r, r.peakRSSMiB, loadAverage())
	if r.addressed < n {
		t.Fatalf("only %d of %d Services addressed", r.addressed, n)
	}
	if r.peakRSSMiB > 150 {
		t.Errorf("CCM peak RSS %.0f MiB with 10,000 Services, want ≤ 150 MiB", r.peakRSSMiB)
	}
	before := addresses(t, cs, "default")
	for name, ip := range before {
		if a, err := netip.ParseAddr(ip); err != nil || !pool.Contains(a) {
			t.Fatalf("%s has EXTERNAL-IP %q, outside %s", name, ip, pool)
		}
	}
	assertDistinct(t, before)

	// kill -9 and a new container in the same pod, with a Service created
	// the moment it starts.
	if err := first.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	restart := time.Now()
	second := startCCMIn(t, c, cfg, "ccm-2", pod, userLeaderElection...)
	b = burst{n: 1, prefix: "after-restart", mutate: b.mutate}
	b.create(t, cs, ac, restart)
	waitLeaderWithin(t, c, holder, time.Minute)
	leading := time.Since(restart)
	if !ac.await(t.Context(), 2*time.Minute, func() bool { _, ok := ac.assigned["after-restart-00000"]; return ok }) {
		ccmExited(t, second)
		t.Fatal("the Service created at the restart was never addressed")
	}
	ac.mu.Lock()
	firstNew := ac.assigned["after-restart-00000"].Sub(restart)
	ac.mu.Unlock()
	// A kill -9 leaves the Lease held by the dead process; the new
	// container of the same pod releases it rather than wait out
	// --leader-elect-lease-duration (15 s), then re-seeds from 10,000
	// statuses and addresses the new Service.
	serving := firstNew - leading
	released := strings.Contains(second.proc.Logs(), "Released the leader Lease held by an earlier container of this pod")
	t.Logf("restart with 10,000 Services: leader %s after the new CCM started (predecessor's Lease released: %v); first new address %s after start, %s after leading; load %s",
		leading.Round(time.Millisecond), released, firstNew.Round(time.Millisecond), serving.Round(time.Millisecond), loadAverage())
	if !released {
		t.Error("the restarted CCM did not release its predecessor's Lease")
	}
	if firstNew > 10*time.Second {
		t.Errorf("first new address %s after the restart, want ≤ 10 s", firstNew.Round(time.Millisecond))
	}
	// Every Service has been through the new CCM's Ensure before comparing.
	resynced := time.Now()
	waitLogCount(t, second, "Load balancer ensured", n+1, 5*time.Minute)
	after := addresses(t, cs, "default")
	delete(after, "after-restart-00000")
	assertUnchanged(t, before, after)
	changed := 0
	for name, ip := range before {
		if after[name] != ip {
			changed++
		}
	}
	ac.mu.Lock()
	seenChanges := append([]string(nil), ac.changed...)
	ac.mu.Unlock()
	if len(seenChanges) > 0 {
		t.Errorf("EXTERNAL-IPs changed across the restart: %q", seenChanges)
	}
	t.Logf("restart: all %d Services re-ensured %s after the first new address; %d addresses changed (watch saw %d changes); restarted CCM peak RSS %.0f MiB",
		n, time.Since(resynced).Round(time.Millisecond), changed, len(seenChanges), peakRSS(second.proc.Cmd.Process.Pid))
}
