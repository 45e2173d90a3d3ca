package provider

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cloud-provider/api"
)

func TestEnsureWaitsForSeeding(t *testing.T) {
	cloud := New(mustConfig(t, requestConfig))
	lb, _ := cloud.LoadBalancer()
	svc := lbService("s")
	var re *api.RetryError
	if _, err := lb.EnsureLoadBalancer(t.Context(), "c", svc, nil); !errors.As(err, &re) {
		t.Fatalf("Ensure before seeding: %v, want a RetryError", err)
	}
	if _, _, err := lb.GetLoadBalancer(t.Context(), "c", svc); !errors.As(err, &re) {
		t.Fatalf("Get before seeding: %v, want a RetryError", err)
	}
	if err := lb.EnsureLoadBalancerDeleted(t.Context(), "c", svc); !errors.As(err, &re) {
		t.Fatalf("Delete before seeding: %v, want a RetryError", err)
	}
}

func TestSeedOldestWinsAndStickiness(t *testing.T) {
	cloud := New(mustConfig(t, requestConfig))
	now := time.Now()
	older := lbService("older", func(s *v1.Service) {
		s.CreationTimestamp = metav1.NewTime(now.Add(-2 * time.Hour))
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.7"}}
	})
	newer := lbService("newer", func(s *v1.Service) {
		s.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.7"}}
	})
	orphan := lbService("orphan", func(s *v1.Service) {
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.200"}}
	})
	cloud.Seed([]*v1.Service{newer, orphan, older}) // order must not matter
	lb, _ := cloud.LoadBalancer()

	st, err := lb.EnsureLoadBalancer(t.Context(), "c", older, nil)
	if err != nil || st.Ingress[0].IP != "192.0.2.7" {
		t.Fatalf("older: %v %v, want 192.0.2.7", st, err)
	}
	st, err = lb.EnsureLoadBalancer(t.Context(), "c", newer, nil)
	if err != nil || st.Ingress[0].IP == "192.0.2.7" {
		t.Fatalf("newer: %v %v, want a different address", st, err)
	}
	// An address outside every pool is kept, not moved.
	st, err = lb.EnsureLoadBalancer(t.Context(), "c", orphan, nil)
	if err != nil || st.Ingress[0].IP != "203.0.113.200" {
		t.Fatalf("orphan: %v %v, want 203.0.113.200 kept", st, err)
	}
	// Get answers from IPAM even once the status is wiped (type change).
	older.Status = v1.ServiceStatus{}
	older.Spec.Type = v1.ServiceTypeClusterIP
	if st, ok, err := lb.GetLoadBalancer(t.Context(), "c", older); err != nil || !ok || st.Ingress[0].IP != "192.0.2.7" {
		t.Fatalf("Get after status wipe: %v %v %v", st, ok, err)
	}
	if err := lb.EnsureLoadBalancerDeleted(t.Context(), "c", older); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := lb.GetLoadBalancer(t.Context(), "c", older); ok {
		t.Fatal("released Service still exists")
	}
}

func TestConcurrentEnsure(t *testing.T) {
	cloud := New(mustConfig(t, `pools: [{name: p, addresses: ["192.0.2.0/24"]}]`))
	cloud.Seed(nil)
	lb, _ := cloud.LoadBalancer()
	var wg sync.WaitGroup
	const n = 50
	for i := range n {
		for r := 0; r < 4; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				svc := lbService(fmt.Sprintf("s%d", i))
				if _, err := lb.EnsureLoadBalancer(t.Context(), "c", svc, nil); err != nil {
					t.Error(err)
					return
				}
				if err := lb.UpdateLoadBalancer(t.Context(), "c", svc, nil); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	seen := map[string]string{}
	for i := range n {
		svc := lbService(fmt.Sprintf("s%d", i))
		st, ok, err := lb.GetLoadBalancer(t.Context(), "c", svc)
		if err != nil || !ok {
			t.Fatalf("s%d: %v %v", i, ok, err)
		}
		ip := st.Ingress[0].IP
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s given to both %s and s%d", ip, other, i)
		}
		seen[ip] = svc.Name
	}
}
