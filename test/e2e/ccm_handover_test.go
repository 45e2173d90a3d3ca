package e2e

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// waiterEvents sums the events (repeats counted) on each named Service.
func waiterEvents(t *testing.T, cs kubernetes.Interface, names []string) map[string]int32 {
	t.Helper()
	evs, err := cs.CoreV1().Events("default").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.kind=Service"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int32{}
	for _, n := range names {
		out[n] = 0
	}
	for _, e := range evs.Items {
		if _, ok := out[e.InvolvedObject.Name]; ok {
			n := max(e.Count, 1)
			if e.Series != nil && e.Series.Count > n {
				n = e.Series.Count
			}
			out[e.InvolvedObject.Name] += n
		}
	}
	return out
}

// TestCCMFreedAddressHandedOn: Services wait on a full pool; deleting the
// Service that holds an address hands it to the oldest waiter within about
// a second (it took 5 s when waiters were retried on a timer), and while
// they wait the waiters cost the API server almost nothing.
func TestCCMFreedAddressHandedOn(t *testing.T) {
	c := startCluster(t)
	cs := fastClient(t, c)
	startCCM(t, c, writeCloudConfig(t, `pools: [{name: tiny, addresses: [192.0.2.20-192.0.2.21]}]`), "ccm")
	createSvc(t, cs, lbSvc("default", "holder-a"))
	waitIngressIs(t, cs, "default", "holder-a", "192.0.2.20")
	createSvc(t, cs, lbSvc("default", "holder-b"))
	waitIngressIs(t, cs, "default", "holder-b", "192.0.2.21")

	const waiters = 20
	var names []string
	for i := range waiters {
		name := fmt.Sprintf("waiter-%02d", i) // key order is creation order
		names = append(names, name)
		createSvc(t, cs, lbSvc("default", name))
	}
	for _, n := range names {
		waitWarning(t, cs, "default", n, `pool "tiny" has no free IPv4 address`)
	}
	// Writes while they wait: the framework turns every failed sync into
	// two events; retried every 5 s that was 24 events a minute each.
	const window = 12 * time.Second
	before := waiterEvents(t, cs, names)
	time.Sleep(window)
	after := waiterEvents(t, cs, names)
	var total int32
	for _, n := range names {
		d := after[n] - before[n]
		total += d
		if d > 2 {
			t.Errorf("%s: %d events in %s of waiting", n, d, window)
		}
	}
	t.Logf("%d waiting Services: %d events in %s (%d in all since creation)", waiters, total, window, sum(after))

	deleted := time.Now()
	if err := cs.CoreV1().Services("default").Delete(t.Context(), "holder-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var got string
	err := lab.Eventually(t.Context(), 30*time.Second, 10*time.Millisecond, func() error {
		s, err := cs.CoreV1().Services("default").Get(t.Context(), "waiter-00", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got = ingressOf(s); got == "" {
			return fmt.Errorf("no EXTERNAL-IP yet")
		}
		return nil
	})
	took := time.Since(deleted)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("delete → the oldest waiter's EXTERNAL-IP: %s", took.Round(time.Millisecond))
	if got != "192.0.2.20" {
		t.Errorf("waiter-00 got %q, want the freed 192.0.2.20", got)
	}
	// Generous for a loaded 2-core machine; a timer-driven retry takes 5 s.
	if took > 3*time.Second {
		t.Errorf("the freed address reached the oldest waiter %s after the delete", took)
	}
	// Nobody else got an address; the rest keep waiting.
	for _, n := range names[1:] {
		s, err := cs.CoreV1().Services("default").Get(t.Context(), n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ip := ingressOf(s); ip != "" || s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			t.Errorf("%s has EXTERNAL-IP %q", n, ip)
		}
	}
}

func sum(m map[string]int32) int32 {
	var s int32
	for _, v := range m {
		s += v
	}
	return s
}
