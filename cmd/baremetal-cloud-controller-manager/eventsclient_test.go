package main

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// TestEventsApart records an event the way the service controller does
// (a broadcaster writing to client.CoreV1().Events("")) and patches a
// status: the event lands through the events client, the patch through
// the main one.
func TestEventsApart(t *testing.T) {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}}
	main, events := fake.NewClientset(svc), fake.NewClientset()
	client := withEventsFrom(main, events)
	recorded, err := events.CoreV1().Events("default").Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer recorded.Stop()

	b := record.NewBroadcaster()
	defer b.Shutdown()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "service-controller"}).
		Event(svc, v1.EventTypeNormal, "EnsuredLoadBalancer", "Ensured load balancer")
	if _, err := client.CoreV1().Services("default").Patch(context.Background(), "web", "application/merge-patch+json",
		[]byte(`{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.1"}]}}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}

	select {
	case e := <-recorded.ResultChan():
		if ev, ok := e.Object.(*v1.Event); !ok || ev.Reason != "EnsuredLoadBalancer" {
			t.Fatalf("the events client got %v, want the event recorded", e.Object)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event never reached the events client")
	}
	for _, a := range main.Actions() {
		if a.GetResource().Resource == "events" {
			t.Errorf("the main client wrote an event: %v", a)
		}
	}
	for _, a := range events.Actions() {
		if a.GetResource().Resource != "events" {
			t.Errorf("the events client did %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	if got, err := main.CoreV1().Services("default").Get(context.Background(), "web", metav1.GetOptions{}); err != nil || len(got.Status.LoadBalancer.Ingress) != 1 {
		t.Errorf("the status patch did not reach the main client: %v %v", got, err)
	}
}

func TestDropManagedFields(t *testing.T) {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	got, err := dropManagedFields(svc)
	if err != nil || got != svc || svc.ManagedFields != nil || svc.Name != "web" {
		t.Errorf("dropManagedFields(svc) = %v, %v; managedFields %v", got, err, svc.ManagedFields)
	}
	// A tombstone is not an object: passed through as it is.
	tomb := cache.DeletedFinalStateUnknown{Key: "default/web", Obj: svc}
	if got, err := dropManagedFields(tomb); err != nil || got != tomb {
		t.Errorf("dropManagedFields(tombstone) = %v, %v", got, err)
	}
}
