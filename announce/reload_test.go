package announce

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

func TestConfigReloadTelemetry(t *testing.T) {
	cfg, err := config.Parse([]byte(`pools: [{name: a, addresses: [192.0.2.1/32]}]`))
	if err != nil {
		t.Fatal(err)
	}
	events := record.NewFakeRecorder(4)
	m := NewMetrics()
	a, err := New(Options{Client: fake.NewClientset(), NodeName: "n1", Namespace: "kube-system", Config: cfg, Recorder: events, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}

	a.RejectConfig("/etc/baremetal/cloud-config.yaml", errors.New("pools[0].bogus: unknown field (line 1)"))
	if got := testutil.ToFloat64(m.ReloadFailures); got != 1 {
		t.Errorf("reload failures %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.ReloadSuccess); got != 0 {
		t.Errorf("last reload success %v, want 0", got)
	}
	select {
	case e := <-events.Events:
		if !strings.Contains(e, "Warning "+apicontract.ReasonInvalidConfig) || !strings.Contains(e, "pools[0].bogus") {
			t.Errorf("event %q", e)
		}
	default:
		t.Error("no event for a refused cloud-config")
	}
	if a.cfg.Load() != cfg {
		t.Error("a refused config replaced the one in force")
	}

	next, err := config.Parse([]byte(`pools: [{name: b, addresses: [192.0.2.2/32]}]`))
	if err != nil {
		t.Fatal(err)
	}
	a.SetConfig(next)
	if got := testutil.ToFloat64(m.ReloadSuccess); got != 1 {
		t.Errorf("last reload success %v after a good file, want 1", got)
	}
	if a.cfg.Load() != next {
		t.Error("the valid config was not applied")
	}
}
