package provider

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/record"
	"k8s.io/component-base/metrics/testutil"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
)

func TestConfigReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cloud-config.yaml")
	write := func(s string) {
		t.Helper()
		// Replace atomically, as the kubelet does for ConfigMap volumes.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(`pools: [{name: a, addresses: [192.0.2.1/32]}]`)
	cloud := New(mustConfig(t, `pools: [{name: a, addresses: [192.0.2.1/32]}]`))
	events := record.NewFakeRecorder(10)
	cloud.recorder = events
	cloud.Seed(nil)
	cloud.WatchConfigFile(path)
	stop := make(chan struct{})
	defer close(stop)
	go cloud.watchConfig(stop)
	lb, _ := cloud.LoadBalancer()

	first, err := lb.EnsureLoadBalancer(t.Context(), "c", lbService("first"), nil)
	if err != nil || first.Ingress[0].IP != "192.0.2.1" {
		t.Fatalf("first: %v %v", first, err)
	}
	if _, err := lb.EnsureLoadBalancer(t.Context(), "c", lbService("second"), nil); err == nil {
		t.Fatal("second Service got an address from a full pool")
	}

	// An invalid file is refused: event, metric, old config in force.
	failuresBefore, _ := testutil.GetCounterMetricValue(reloadFailures)
	write(`pools: [{name: a, addresses: [192.0.2.1/32], bogus: 1}]`)
	select {
	case e := <-events.Events:
		if !strings.Contains(e, apicontract.ReasonInvalidConfig) || !strings.Contains(e, "pools[0].bogus: unknown field") {
			t.Fatalf("event %q", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event for an invalid cloud-config")
	}
	if v, _ := testutil.GetCounterMetricValue(reloadFailures); v != failuresBefore+1 {
		t.Errorf("reload failures %v, want %v", v, failuresBefore+1)
	}
	if v, _ := testutil.GetGaugeMetricValue(reloadSuccess); v != 0 {
		t.Errorf("last reload success %v, want 0", v)
	}
	if len(cloud.Config().Pools[0].Addresses) != 1 {
		t.Fatal("the invalid config replaced the good one")
	}

	// A valid change applies without a restart; addresses in use stay.
	write(`pools: [{name: b, addresses: [198.51.100.0/30]}]`)
	if err := waitFor(10*time.Second, func() bool { return cloud.Config().Pools[0].Name == "b" }); err != nil {
		t.Fatal("the valid config was not applied")
	}
	second, err := lb.EnsureLoadBalancer(t.Context(), "c", lbService("second"), nil)
	if err != nil || second.Ingress[0].IP != "198.51.100.0" {
		t.Fatalf("second after reload: %v %v", second, err)
	}
	again, err := lb.EnsureLoadBalancer(t.Context(), "c", lbService("first"), nil)
	if err != nil || again.Ingress[0].IP != "192.0.2.1" {
		t.Fatalf("first after its pool left: %v %v, want 192.0.2.1 kept", again, err)
	}
	if v, _ := testutil.GetGaugeMetricValue(reloadSuccess); v != 1 {
		t.Errorf("last reload success %v, want 1", v)
	}
}

func waitFor(d time.Duration, f func() bool) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return os.ErrDeadlineExceeded
}
