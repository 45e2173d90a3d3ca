package leaderlease

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
)

const (
	ns   = "kube-system"
	name = "cloud-controller-manager"
)

func lease(holder string, mark *HolderPod) *coordinationv1.Lease {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if holder != "" {
		l.Spec.HolderIdentity = &holder
	}
	d := int32(15)
	l.Spec.LeaseDurationSeconds = &d
	if mark != nil {
		v, _ := json.Marshal(mark)
		l.Annotations = map[string]string{HolderPodAnnotation: string(v)}
	}
	return l
}

func TestDecide(t *testing.T) {
	const (
		a = "node-1_0f6a3c1e-3c53-4b44-9d3e-5f4f1b7e2a10"
		b = "node-1_7d2b9a44-1c1e-4e0e-8f53-0a9c6b1d3e21"
	)
	withAnnotation := func(v string) *coordinationv1.Lease {
		l := lease(a, nil)
		l.Annotations = map[string]string{HolderPodAnnotation: v}
		return l
	}
	for _, tt := range []struct {
		name    string
		lease   *coordinationv1.Lease
		podUID  string
		release bool
	}{
		{"an earlier container of this pod holds it", lease(a, &HolderPod{Holder: a, PodUID: "uid-1"}), "uid-1", true},
		{"not in a pod (POD_UID unset)", lease(a, &HolderPod{Holder: a, PodUID: "uid-1"}), "", false},
		{"no Lease yet", nil, "uid-1", false},
		{"not held", lease("", &HolderPod{Holder: a, PodUID: "uid-1"}), "uid-1", false},
		{"holder recorded no pod (an older version, or it crashed before recording)", lease(a, nil), "uid-1", false},
		{"unreadable record", withAnnotation("{"), "uid-1", false},
		// hostNetwork: both replicas on one node have its hostname, so
		// their identities share the prefix; only the UID tells them apart.
		{"another replica on the same node (hostNetwork) holds it", lease(b, &HolderPod{Holder: b, PodUID: "uid-2"}), "uid-1", false},
		// The record is this pod's, but another process has won since:
		// the holder is alive elsewhere.
		{"record left by an earlier leader of this pod", lease(b, &HolderPod{Holder: a, PodUID: "uid-1"}), "uid-1", false},
		// UIDs and identities are compared whole, never by prefix.
		{"a pod whose UID starts with ours", lease(a, &HolderPod{Holder: a, PodUID: "uid-10"}), "uid-1", false},
		{"holder ccm-10_… against a record for ccm-1_…", lease("ccm-10_"+a[7:], &HolderPod{Holder: "ccm-1_" + a[7:], PodUID: "uid-1"}), "uid-1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.lease, tt.podUID)
			if d.Release != tt.release || d.Reason == "" {
				t.Errorf("Decide = %+v, want release %v with a reason", d, tt.release)
			}
		})
	}
}

// leases is a fake clientset whose Leases behave like the API server's:
// every write gets a new resourceVersion, and an update carrying an older
// one is a conflict (the fake tracker alone accepts any).
type leases struct {
	*fake.Clientset
	mu sync.Mutex
	rv int
	// afterGet, if set, runs after each get of the Lease (a live holder
	// renewing between a read and a write).
	afterGet func()
}

var leaseGVR = coordinationv1.SchemeGroupVersion.WithResource("leases")

func newLeases(objs ...runtime.Object) *leases {
	l := &leases{Clientset: fake.NewClientset()}
	for _, o := range objs {
		o := o.(*coordinationv1.Lease).DeepCopy()
		o.ResourceVersion = l.next()
		if err := l.Tracker().Add(o); err != nil {
			panic(err)
		}
	}
	l.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		o := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		o.ResourceVersion = l.next()
		if err := l.Tracker().Create(leaseGVR, o, o.Namespace); err != nil {
			return true, nil, err
		}
		return true, o, nil
	})
	l.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		o := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		cur, err := l.Tracker().Get(leaseGVR, o.Namespace, o.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*coordinationv1.Lease).ResourceVersion != o.ResourceVersion {
			return true, nil, apierrors.NewConflict(leaseGVR.GroupResource(), o.Name, nil)
		}
		o.ResourceVersion = l.next()
		return true, o, l.Tracker().Update(leaseGVR, o, o.Namespace)
	})
	l.PrependReactor("get", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		g := a.(k8stesting.GetAction)
		o, err := l.Tracker().Get(leaseGVR, g.GetNamespace(), g.GetName())
		if err == nil && l.afterGet != nil {
			l.afterGet()
		}
		return true, o, err
	})
	return l
}

func (l *leases) next() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rv++
	return strconv.Itoa(l.rv)
}

func (l *leases) get(t *testing.T) *coordinationv1.Lease {
	t.Helper()
	o, err := l.Tracker().Get(leaseGVR, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*coordinationv1.Lease)
}

func (l *leases) updates() int {
	n := 0
	for _, a := range l.Actions() {
		if a.GetVerb() == "update" {
			n++
		}
	}
	return n
}

func TestReleaseFromEarlierContainer(t *testing.T) {
	const holder = "node-1_0f6a3c1e-3c53-4b44-9d3e-5f4f1b7e2a10"
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC))
	ours := &HolderPod{Holder: holder, PodUID: "uid-1", Pod: ns + "/ccm-1"}

	t.Run("released", func(t *testing.T) {
		c := newLeases(lease(holder, ours))
		d, err := ReleaseFromEarlierContainer(t.Context(), c.CoordinationV1(), ns, name, "uid-1", clk)
		if err != nil || !d.Release || d.Holder != holder {
			t.Fatalf("= %+v, %v; want released from %s", d, err, holder)
		}
		got := c.get(t)
		if got.Spec.HolderIdentity != nil || *got.Spec.LeaseDurationSeconds != 1 || !got.Spec.RenewTime.Time.Equal(clk.Now()) {
			t.Errorf("released Lease spec %+v, want no holder, 1 s, renewed now", got.Spec)
		}
		if _, ok := got.Annotations[HolderPodAnnotation]; ok {
			t.Errorf("the record of the released holder's pod stayed: %v", got.Annotations)
		}
	})

	t.Run("renewed between the read and the write", func(t *testing.T) {
		c := newLeases(lease(holder, ours))
		c.afterGet = func() {
			c.afterGet = nil
			l := c.get(t).DeepCopy()
			now := metav1.NewMicroTime(clk.Now())
			l.Spec.RenewTime = &now
			l.ResourceVersion = c.next()
			if err := c.Tracker().Update(leaseGVR, l, ns); err != nil {
				t.Error(err)
			}
		}
		d, err := ReleaseFromEarlierContainer(t.Context(), c.CoordinationV1(), ns, name, "uid-1", clk)
		if err != nil || d.Release {
			t.Fatalf("= %+v, %v; want nothing released", d, err)
		}
		if got := c.get(t); got.Spec.HolderIdentity == nil || *got.Spec.HolderIdentity != holder {
			t.Errorf("holder now %v, want %s kept", got.Spec.HolderIdentity, holder)
		}
	})

	t.Run("another pod's", func(t *testing.T) {
		c := newLeases(lease(holder, ours))
		d, err := ReleaseFromEarlierContainer(t.Context(), c.CoordinationV1(), ns, name, "uid-2", clk)
		if err != nil || d.Release || c.updates() != 0 {
			t.Fatalf("= %+v, %v, %d updates; want no write", d, err, c.updates())
		}
	})

	t.Run("no Lease", func(t *testing.T) {
		c := newLeases()
		if d, err := ReleaseFromEarlierContainer(t.Context(), c.CoordinationV1(), ns, name, "uid-1", clk); err != nil || d.Release {
			t.Fatalf("= %+v, %v", d, err)
		}
	})
}

func TestMarkOnlyWhileHolding(t *testing.T) {
	c := newLeases(lease("node-1_b", nil))
	err := Mark(t.Context(), c.CoordinationV1(), ns, name, HolderPod{Holder: "node-1_a", PodUID: "uid-1"})
	if err == nil || c.updates() != 0 {
		t.Fatalf("Mark for a holder that is not = %v with %d updates, want an error and no write", err, c.updates())
	}
	// A renewal between the read and the write: re-read and written.
	renewed := false
	c = newLeases(lease("node-1_a", nil))
	c.afterGet = func() {
		if !renewed {
			renewed = true
			l := c.get(t).DeepCopy()
			l.ResourceVersion = c.next()
			if err := c.Tracker().Update(leaseGVR, l, ns); err != nil {
				t.Error(err)
			}
		}
	}
	if err := Mark(t.Context(), c.CoordinationV1(), ns, name, HolderPod{Holder: "node-1_a", PodUID: "uid-1"}); err != nil {
		t.Fatal(err)
	}
	if d := Decide(c.get(t), "uid-1"); !d.Release {
		t.Errorf("after Mark, Decide = %+v, want release for the same pod", d)
	}
}

// elect runs client-go's leader election as the framework does, with the
// framework's timings, the lock's events going through Tap, and Mark called
// on winning. It returns the lock and a channel closed when it leads and
// marked.
func elect(ctx context.Context, t *testing.T, c *leases, podUID string) (lock resourcelock.Interface, marked, done <-chan struct{}) {
	t.Helper()
	markedc, donec := make(chan struct{}), make(chan struct{})
	var rec record.EventRecorder = record.NewFakeRecorder(100)
	// The framework's form: hostname_uuid, a new one per process.
	identity := "node-1_" + string(uuid.NewUUID())
	ll := &resourcelock.LeaseLock{
		LeaseMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Client:    c.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{
			Identity: identity,
			EventRecorder: Tap(rec, ns, name, func(id string) {
				if id != identity {
					t.Errorf("Tap saw identity %q, want %q", id, identity)
				}
				go func() {
					if err := Mark(ctx, c.CoordinationV1(), ns, name, HolderPod{Holder: id, PodUID: podUID}); err != nil {
						t.Error(err)
					}
					close(markedc)
				}()
			}),
		},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:          ll,
		LeaseDuration: 15 * time.Second,
		RenewDeadline: 10 * time.Second,
		RetryPeriod:   100 * time.Millisecond,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		le.Run(ctx)
		close(donec)
	}()
	return ll, markedc, donec
}

// TestRestartedContainerLeadsAtOnce: the framework's election over a Lease
// whose holder was killed (no release on the way out). A new process of the
// same pod releases it and wins well within the 15 s lease duration.
func TestRestartedContainerLeadsAtOnce(t *testing.T) {
	c := newLeases()
	ctx, kill := context.WithCancel(t.Context())
	_, marked, done := elect(ctx, t, c, "uid-1")
	select {
	case <-marked:
	case <-time.After(10 * time.Second):
		t.Fatal("the first process never led and recorded its pod")
	}
	kill() // no release on the way out, as with kill -9
	<-done
	killed := c.get(t)

	start := time.Now()
	d, err := ReleaseFromEarlierContainer(t.Context(), c.CoordinationV1(), ns, name, "uid-1", clocktesting.NewFakeClock(start))
	if err != nil || !d.Release || d.Holder != *killed.Spec.HolderIdentity {
		t.Fatalf("release = %+v, %v; want the killed holder %s released", d, err, *killed.Spec.HolderIdentity)
	}
	lock, marked, _ := elect(t.Context(), t, c, "uid-1")
	select {
	case <-marked:
	case <-time.After(5 * time.Second):
		t.Fatalf("the restarted process did not lead within 5 s (the Lease lasts 15 s); Lease %+v", c.get(t).Spec)
	}
	got := c.get(t)
	if *got.Spec.HolderIdentity != lock.Identity() {
		t.Errorf("holder %s, want the restarted process %s", *got.Spec.HolderIdentity, lock.Identity())
	}
	if *got.Spec.LeaseTransitions != *killed.Spec.LeaseTransitions+1 {
		t.Errorf("lease transitions %d, want %d", *got.Spec.LeaseTransitions, *killed.Spec.LeaseTransitions+1)
	}
	t.Logf("restarted process led %s after its start", time.Since(start).Round(time.Millisecond))
}
