package e2e

import (
	"fmt"
	"os"
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

const benchServices = 1000

// addressClock records, per Service, when it was created and when an
// EXTERNAL-IP was first seen.
type addressClock struct {
	mu       sync.Mutex
	created  map[string]time.Time
	assigned map[string]time.Time
	all      chan struct{}
	n        int
}

func watchAddresses(t *testing.T, cs kubernetes.Interface, n int) *addressClock {
	ac := &addressClock{created: map[string]time.Time{}, assigned: map[string]time.Time{}, all: make(chan struct{}), n: n}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("default"))
	inf := f.Core().V1().Services().Informer()
	seen := func(obj any) {
		s, ok := obj.(*corev1.Service)
		if !ok || len(s.Status.LoadBalancer.Ingress) == 0 {
			return
		}
		ac.mu.Lock()
		defer ac.mu.Unlock()
		if _, done := ac.assigned[s.Name]; !done {
			ac.assigned[s.Name] = time.Now()
			if len(ac.assigned) == ac.n {
				close(ac.all)
			}
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

// createForBench creates n Services from 20 goroutines, recording each
// creation time.
func createForBench(t *testing.T, cs kubernetes.Interface, ac *addressClock, n int) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := fmt.Sprintf("bench-%04d", i)
				if _, err := cs.CoreV1().Services("default").Create(t.Context(), lbSvc("default", name), metav1.CreateOptions{}); err != nil {
					t.Error(err)
					continue
				}
				if ac != nil {
					ac.mu.Lock()
					ac.created[name] = time.Now()
					ac.mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// latencies returns per-Service creation→address latencies, sorted.
func (ac *addressClock) latencies() []time.Duration {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	var ds []time.Duration
	for name, at := range ac.assigned {
		if c, ok := ac.created[name]; ok {
			ds = append(ds, at.Sub(c))
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[int(float64(len(ds)-1)*p)]
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

// TestCCMBench1000Services measures how long 1,000 new Services take to get
// an EXTERNAL-IP with the framework's stock settings and with our shipped
// defaults, beside the floor: a plain client patching 1,000 statuses.
// Run with BAREMETAL_BENCH=1 (make bench).
func TestCCMBench1000Services(t *testing.T) {
	if os.Getenv("BAREMETAL_BENCH") == "" {
		t.Skip("benchmark; set BAREMETAL_BENCH=1")
	}
	cfg := `pools: [{name: lan, addresses: ["198.51.100.0/22"]}]`

	// The floor: statuses patched straight from a client, 20 at a time.
	func() {
		c := startCluster(t)
		cs := fastClient(t, c)
		created := time.Now()
		createForBench(t, cs, nil, benchServices)
		t.Logf("reference: creating %d Services (20 in flight, no CCM): %s", benchServices, time.Since(created).Round(time.Millisecond))
		start := time.Now()
		var wg sync.WaitGroup
		next := make(chan int)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					patch := fmt.Sprintf(`{"status":{"loadBalancer":{"ingress":[{"ip":"198.51.%d.%d","ipMode":"VIP"}]}}}`, 100+i/256, i%256)
					if _, err := cs.CoreV1().Services("default").Patch(t.Context(), fmt.Sprintf("bench-%04d", i),
						types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		for i := range benchServices {
			next <- i
		}
		close(next)
		wg.Wait()
		t.Logf("floor: a client patching %d Service statuses (20 in flight): %s", benchServices, time.Since(start).Round(time.Millisecond))
		c.Stop()
	}()

	for _, run := range []struct {
		name  string
		flags []string
		limit time.Duration
	}{
		{"framework stock (--concurrent-service-syncs=1, QPS 20/burst 30)", []string{"--concurrent-service-syncs=1", "--kube-api-qps=20", "--kube-api-burst=30"}, 4 * time.Minute},
		{"shipped defaults (10 syncs, QPS 200/burst 400)", nil, 4 * time.Minute},
		{"more (20 syncs, QPS 500/burst 1000)", []string{"--concurrent-service-syncs=20", "--kube-api-qps=500", "--kube-api-burst=1000"}, 4 * time.Minute},
	} {
		c := startCluster(t)
		cs := fastClient(t, c)
		m := startCCM(t, c, writeCloudConfig(t, cfg), "ccm", run.flags...)
		waitLeader(t, c, "")
		ac := watchAddresses(t, cs, benchServices)
		start := time.Now()
		createForBench(t, cs, ac, benchServices)
		select {
		case <-ac.all:
		case <-time.After(run.limit):
		}
		total := time.Since(start)
		ds := ac.latencies()
		t.Logf("%s: %d/%d Services addressed in %s; creation→EXTERNAL-IP p50 %s p99 %s; CCM peak RSS %.0f MiB",
			run.name, len(ds), benchServices, total.Round(time.Millisecond), pct(ds, 0.5).Round(time.Millisecond),
			pct(ds, 0.99).Round(time.Millisecond), peakRSS(m.proc.Cmd.Process.Pid))
		if err := m.proc.Kill(); err != nil {
			t.Error(err)
		}
		c.Stop()
	}
}
