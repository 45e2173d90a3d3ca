package provider

import (
	"context"
	"strings"
	"testing"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// A standby replica must not report its empty, unseeded allocator: an alert
// on pool use scraping every replica would see a full pool as empty (and
// "nearly full" ratios from the leader mixed with zeros from standbys).
func TestPoolGaugesOnlyFromTheLeader(t *testing.T) {
	cfg, err := config.Parse([]byte(`pools: [{name: lan, addresses: [192.0.2.10-192.0.2.11]}]`))
	if err != nil {
		t.Fatal(err)
	}
	cloud := New(cfg)
	gauges := func() string {
		mfs, err := legacyregistry.DefaultGatherer.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "baremetal_pool_") || mf.GetName() == "baremetal_services_waiting_for_address" {
				names = append(names, mf.GetName())
			}
		}
		return strings.Join(names, ",")
	}
	if got := gauges(); got != "" {
		t.Fatalf("standby exports %s", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	cloud.SetInformers(informers.NewSharedInformerFactory(client, 0))
	cloud.Initialize(fakeClientBuilder{client}, ctx.Done()) // what winning the lease does
	if got := gauges(); got != "baremetal_pool_addresses_in_use,baremetal_pool_addresses_total,baremetal_services_waiting_for_address" {
		t.Fatalf("leader exports %q, want both pool gauges", got)
	}
}
