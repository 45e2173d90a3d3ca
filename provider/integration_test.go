package provider

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	cloudproviderapi "k8s.io/cloud-provider/api"
	nodecontroller "k8s.io/cloud-provider/controllers/node"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

const integrationConfig = `
pools:
  - name: lan
    addresses: [192.0.2.10-192.0.2.11]
  - name: reserved
    addresses: [192.0.2.100/31]
    autoAssign: false
topology:
  - cidr: 198.51.100.0/24
    zone: rack-1
    region: dc-1
`

// runControllers runs the framework's real service and cloud-node
// controllers against a fake clientset and our provider.
func runControllers(t *testing.T, client *fake.Clientset) *Cloud {
	t.Helper()
	cfg, err := config.Parse([]byte(integrationConfig))
	if err != nil {
		t.Fatal(err)
	}
	cloud := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())

	factory := informers.NewSharedInformerFactory(client, 0)
	cloud.SetInformers(factory)
	cloud.Initialize(fakeClientBuilder{client}, ctx.Done())

	// As the CCM's main starts it: releases are handed on at once.
	services := NewRequeuingServiceInformer(factory.Core().V1().Services())
	svcCtl, err := servicecontroller.New(cloud, client, services, factory.Core().V1().Nodes(),
		"test", utilfeature.DefaultFeatureGate)
	if err != nil {
		t.Fatal(err)
	}
	cloud.SetRequeue(services.Requeue)
	nodeCtl, err := nodecontroller.NewCloudNodeController(factory.Core().V1().Nodes(), client, cloud, time.Minute, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := controllersmetrics.NewControllerManagerMetrics("test")
	go svcCtl.Run(ctx, 4, m)
	go nodeCtl.RunWithContext(ctx, m)
	factory.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		factory.Shutdown()
	})
	return cloud
}

func lbService(name string, mutate ...func(*v1.Service)) *v1.Service {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name)},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeLoadBalancer,
			Ports:      []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}},
			IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
		},
	}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

func waitIngress(t *testing.T, client *fake.Clientset, name, want string) {
	t.Helper()
	var got string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		got = ""
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			got += ing.IP
			if ing.IPMode == nil || *ing.IPMode != v1.LoadBalancerIPModeVIP {
				got += "(ipMode not VIP)"
			}
		}
		return got == want, nil
	})
	if err != nil {
		t.Fatalf("service %s: ingress %q, want %q: %v", name, got, want, err)
	}
}

func waitEvent(t *testing.T, client *fake.Clientset, reason, substr string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := client.CoreV1().Events("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, e := range evs.Items {
			if e.Reason == reason && strings.Contains(e.Message, substr) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s event containing %q", reason, substr)
	}
}

func TestServiceControllerIntegration(t *testing.T) {
	existing := lbService("old", func(s *v1.Service) {
		s.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour))
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "192.0.2.11"}}
	})
	client := fake.NewClientset(existing)
	runControllers(t, client)
	ctx := context.Background()

	// The seeded Service keeps its address; a new one gets the other.
	waitIngress(t, client, "old", "192.0.2.11")
	if _, err := client.CoreV1().Services("default").Create(ctx, lbService("a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIngress(t, client, "a", "192.0.2.10")

	// Pool exhausted: a Warning event, and an address as soon as one frees.
	if _, err := client.CoreV1().Services("default").Create(ctx, lbService("b"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, client, "SyncLoadBalancerFailed", `pool "lan" has no free IPv4 address`)

	// A bad annotation is an event on that Service only.
	bad := lbService("bad", func(s *v1.Service) { s.Annotations = map[string]string{AnnotationPool: "nope"} })
	if _, err := client.CoreV1().Services("default").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, client, "SyncLoadBalancerFailed", `names pool "nope"`)

	// A requested address from an autoAssign:false pool.
	asked := lbService("asked", func(s *v1.Service) {
		s.Annotations = map[string]string{AnnotationLoadBalancerIPs: "192.0.2.101"}
	})
	if _, err := client.CoreV1().Services("default").Create(ctx, asked, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIngress(t, client, "asked", "192.0.2.101")

	// Changing the type away from LoadBalancer frees the address (the status
	// is gone by then), and the waiting Service takes it.
	a, err := client.CoreV1().Services("default").Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Spec.Type = v1.ServiceTypeClusterIP
	a.Status = v1.ServiceStatus{}
	if _, err := client.CoreV1().Services("default").Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIngress(t, client, "b", "192.0.2.10")
}

// eventCount is how many events (counting repeats) the Service has.
func eventCount(t *testing.T, client *fake.Clientset, name string) int32 {
	t.Helper()
	evs, err := client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == name {
			n += max(e.Count, 1)
		}
	}
	return n
}

func hasEvent(t *testing.T, client *fake.Clientset, name, reason string) bool {
	t.Helper()
	evs, err := client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == name && e.Reason == reason {
			return true
		}
	}
	return false
}

// A freed address goes to the oldest waiting Service at once, and only that
// one is synced again: the others stay quiet.
func TestFreedAddressHandedOnToOldestWaiter(t *testing.T) {
	client := fake.NewClientset()
	runControllers(t, client)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	create := func(name string, age int) {
		t.Helper()
		s := lbService(name, func(s *v1.Service) { s.CreationTimestamp = metav1.NewTime(base.Add(time.Duration(age) * time.Minute)) })
		if _, err := client.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create("a", 0)
	waitIngress(t, client, "a", "192.0.2.10")
	create("c", 1)
	waitIngress(t, client, "c", "192.0.2.11")
	// Created out of order: w-old is the oldest waiter.
	for i, name := range []string{"w-3", "w-1", "w-old", "w-2"} {
		create(name, []int{5, 3, 2, 4}[i])
	}
	for _, name := range []string{"w-old", "w-1", "w-2", "w-3"} {
		if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return hasEvent(t, client, name, "SyncLoadBalancerFailed"), nil // the last of a failed sync's events
		}); err != nil {
			t.Fatalf("%s: no failure event", name)
		}
	}
	before := map[string]int32{}
	for _, name := range []string{"w-1", "w-2", "w-3"} {
		before[name] = eventCount(t, client, name)
	}

	a, err := client.CoreV1().Services("default").Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Spec.Type = v1.ServiceTypeClusterIP
	a.Status = v1.ServiceStatus{}
	freed := time.Now()
	if _, err := client.CoreV1().Services("default").Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIngress(t, client, "w-old", "192.0.2.10")
	// Without the hand-on, the waiter's next retry is the framework's
	// (5 s before, a minute now).
	if took := time.Since(freed); took > 2*time.Second {
		t.Errorf("the freed address reached the waiting Service after %s", took)
	}
	time.Sleep(500 * time.Millisecond) // would a wrongly woken waiter have synced by now
	for name, n := range before {
		if got := eventCount(t, client, name); got != n {
			t.Errorf("%s: %d events after the hand-on, %d before: a waiter that cannot be served was synced", name, got, n)
		}
	}
}

func TestCloudNodeControllerIntegration(t *testing.T) {
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{
			cloudproviderapi.AnnotationAlphaProvidedIPAddr: "198.51.100.7",
		}},
		Spec:   v1.NodeSpec{Taints: []v1.Taint{{Key: cloudproviderapi.TaintExternalCloudProvider, Value: "true", Effect: v1.TaintEffectNoSchedule}}},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
	}
	client := fake.NewClientset(node)
	runControllers(t, client)

	var why string
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		why = nodeNotInitialised(n)
		return why == "", nil
	})
	if err != nil {
		t.Fatalf("node not initialised: %s (%v)", why, err)
	}
}

// fakeClientBuilder hands the provider the test's clientset.
type fakeClientBuilder struct{ c *fake.Clientset }

func (b fakeClientBuilder) Config(string) (*restConfig, error) {
	return nil, fmt.Errorf("not in tests")
}
func (b fakeClientBuilder) ConfigOrDie(string) *restConfig       { return nil }
func (b fakeClientBuilder) Client(string) (kubeInterface, error) { return b.c, nil }
func (b fakeClientBuilder) ClientOrDie(string) kubeInterface     { return b.c }

type (
	restConfig    = rest.Config
	kubeInterface = kubernetes.Interface
)

// nodeNotInitialised says what the cloud-node controller has not done yet.
func nodeNotInitialised(n *v1.Node) string {
	for _, tn := range n.Spec.Taints {
		if tn.Key == cloudproviderapi.TaintExternalCloudProvider {
			return "still tainted"
		}
	}
	if n.Spec.ProviderID != "baremetal://n1" {
		return fmt.Sprintf("providerID %q", n.Spec.ProviderID)
	}
	if n.Labels[v1.LabelTopologyZone] != "rack-1" || n.Labels[v1.LabelTopologyRegion] != "dc-1" {
		return fmt.Sprintf("topology labels %v", n.Labels)
	}
	for _, a := range n.Status.Addresses {
		if a.Type == v1.NodeInternalIP && a.Address == "198.51.100.7" {
			return ""
		}
	}
	return fmt.Sprintf("addresses %v lack the provided node IP", n.Status.Addresses)
}
