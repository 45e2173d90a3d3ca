package announce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
)

// LeasePrefix starts the name of every agent's Lease: baremetal-agent-<node>.
const LeasePrefix = "baremetal-agent-"

// Annotations and labels an agent publishes on its Lease.
const (
	annotationPrefix = apicontract.AnnotationPrefix
	// LabelPoolPrefix + pool name labels the Lease of an agent eligible to
	// answer for a layer-2 pool. Agents watch only the Leases of the pools
	// they are eligible for, so a renewal reaches only the agents that
	// could share a VIP with its node.
	LabelPoolPrefix = "pool." + annotationPrefix
	// AnnotationLeaving marks an agent that is shutting down: peers take
	// its VIPs over at once instead of waiting for the lease to expire.
	AnnotationLeaving = annotationPrefix + "leaving"
	// AnnotationMACs lists the node's hardware addresses.
	AnnotationMACs = annotationPrefix + "macs"
	// AnnotationUnreadyPools lists layer-2 pools the node cannot announce.
	AnnotationUnreadyPools = annotationPrefix + "unready-pools"
)

// PoolLabel is the Lease label of layer-2 pool pool.
func PoolLabel(pool string) string { return LabelPoolPrefix + pool }

// LeaseName is the name of node's agent Lease.
func LeaseName(node string) string { return LeasePrefix + node }

// leaseInfo reads what an agent published on its Lease.
func leaseInfo(l *coordinationv1.Lease) (leaving bool, info AgentInfo) {
	a := l.Annotations
	return a[AnnotationLeaving] == "true", AgentInfo{
		MACs:         splitList(a[AnnotationMACs]),
		UnreadyPools: splitList(a[AnnotationUnreadyPools]),
	}
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// leaseKeeper holds this agent's Lease: creates it, renews it, marks it
// leaving and deletes it. Writes go one at a time (writing) and may take as
// long as the API server makes them; the state the reconcile loop reads
// (state, lastContact) has a lock of its own that is never held across a
// request, so an unreachable API server never stalls the loop.
type leaseKeeper struct {
	client        kubernetes.Interface
	namespace     string
	node          string
	clock         clock.PassiveClock
	leaseDuration time.Duration

	writing chan struct{} // a token: held for the length of one write
	lease   *coordinationv1.Lease

	mu          sync.Mutex
	renewed     time.Time // last successful write, local clock
	contacted   time.Time // last time the API server answered at all
	unreachable bool      // the last failure was the API server not answering
}

func newLeaseKeeper(client kubernetes.Interface, namespace, node string, c clock.PassiveClock, leaseDuration time.Duration) *leaseKeeper {
	return &leaseKeeper{
		client: client, namespace: namespace, node: node, clock: c, leaseDuration: leaseDuration,
		writing: make(chan struct{}, 1),
	}
}

// acquire takes the write token, or gives up when ctx ends.
func (k *leaseKeeper) acquire(ctx context.Context) error {
	select {
	case k.writing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the previous write of lease %s/%s: %w", k.namespace, LeaseName(k.node), ctx.Err())
	}
}

func (k *leaseKeeper) release() { <-k.writing }

// renew writes the lease with a new renewTime and the given annotations.
// pools are the layer-2 pools the node is eligible for (labels).
func (k *leaseKeeper) renew(ctx context.Context, leaving bool, info AgentInfo, pools []string) error {
	if err := k.acquire(ctx); err != nil {
		return err
	}
	defer k.release()
	err := k.write(ctx, leaving, info, pools)
	if apierrors.IsConflict(err) {
		k.lease = nil // someone else wrote it; start from the server's copy
		err = k.write(ctx, leaving, info, pools)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.unreachable = isUnreachable(err)
		if !k.unreachable {
			k.contacted = k.clock.Now()
		}
		return err
	}
	k.renewed = k.clock.Now()
	k.contacted = k.renewed
	k.unreachable = false
	return nil
}

// write does one renewal (or the creation); the caller holds the write token.
func (k *leaseKeeper) write(ctx context.Context, leaving bool, info AgentInfo, pools []string) error {
	leases := k.client.CoordinationV1().Leases(k.namespace)
	name := LeaseName(k.node)
	now := metav1.NewMicroTime(k.clock.Now())
	if k.lease == nil {
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			l = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: k.namespace},
				Spec: coordinationv1.LeaseSpec{
					HolderIdentity:       ptr.To(k.node),
					LeaseDurationSeconds: ptr.To(int32(math.Ceil(k.leaseDuration.Seconds()))),
					AcquireTime:          &now,
					RenewTime:            &now,
				},
			}
			setLeaseAnnotations(l, leaving, info, pools)
			created, err := leases.Create(ctx, l, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("creating lease %s/%s: %w", k.namespace, name, err)
			}
			k.lease = created
			return nil
		case err != nil:
			return fmt.Errorf("reading lease %s/%s: %w", k.namespace, name, err)
		}
		k.lease = l
	}
	l := k.lease.DeepCopy()
	l.Spec.HolderIdentity = ptr.To(k.node)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(math.Ceil(k.leaseDuration.Seconds())))
	l.Spec.RenewTime = &now
	setLeaseAnnotations(l, leaving, info, pools)
	updated, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("renewing lease %s/%s: %w", k.namespace, name, err)
	}
	k.lease = updated
	return nil
}

func setLeaseAnnotations(l *coordinationv1.Lease, leaving bool, info AgentInfo, pools []string) {
	labels := map[string]string{}
	for k, v := range l.Labels {
		if !strings.HasPrefix(k, LabelPoolPrefix) {
			labels[k] = v
		}
	}
	for _, p := range pools {
		labels[PoolLabel(p)] = "true"
	}
	l.Labels = labels
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	set := func(key, value string) {
		if value == "" {
			delete(l.Annotations, key)
		} else {
			l.Annotations[key] = value
		}
	}
	set(AnnotationLeaving, map[bool]string{true: "true"}[leaving])
	set(AnnotationMACs, strings.Join(info.MACs, ","))
	set(AnnotationUnreadyPools, strings.Join(info.UnreadyPools, ","))
}

// delete removes the lease, so a node that is gone for good leaves no trace.
func (k *leaseKeeper) delete(ctx context.Context) error {
	if err := k.acquire(ctx); err != nil {
		return err
	}
	defer k.release()
	err := k.client.CoordinationV1().Leases(k.namespace).Delete(ctx, LeaseName(k.node), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting lease %s/%s: %w", k.namespace, LeaseName(k.node), err)
	}
	k.lease = nil
	k.mu.Lock()
	k.renewed = time.Time{}
	k.mu.Unlock()
	return nil
}

// state reports whether the lease is held (renewed within leaseDuration);
// if not, whether it ever was, and whether the last failure was the API
// server not answering.
func (k *leaseKeeper) state() (held, everHeld, unreachable bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	everHeld = !k.renewed.IsZero()
	held = everHeld && k.clock.Since(k.renewed) < k.leaseDuration
	return held, everHeld, k.unreachable
}

// lastContact is when the API server last answered this agent (zero:
// never): the age of its view.
func (k *leaseKeeper) lastContact() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.contacted
}

// isUnreachable tells "the API server did not answer" (everybody is likely
// in the same boat: keep the status quo) from "it answered no" (this agent
// must stop announcing).
func isUnreachable(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true // transport error, timeout, connection refused
	}
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err) ||
		apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err)
}

// macStrings renders hardware addresses for AnnotationMACs, sorted so the
// annotation only changes when the set does.
func macStrings(macs []net.HardwareAddr) []string {
	out := make([]string, 0, len(macs))
	for _, m := range macs {
		out = append(out, m.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}
