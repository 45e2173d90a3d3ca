// Package leaderlease lets a restarted CCM container take the leader Lease
// at once instead of waiting out --leader-elect-lease-duration.
//
// The framework (k8s.io/cloud-provider/app) names each process
// "<hostname>_<random uuid>", so a container restarted after a crash or a
// kill -9 never recognises the Lease its predecessor held, and waits 15 s for
// it to expire although that predecessor is dead. Deciding that "the holder
// is dead" is what must never be wrong: a live holder released is two
// leaders. The hostname cannot decide it: the manifests run the CCM with
// hostNetwork, where the hostname is the node's and two replicas on one node
// share it. The pod's UID can: a pod's containers are restarted by its own
// kubelet, only after the previous one has exited, and a UID is never
// reused. So the leader writes on the Lease which pod it runs in (Mark), with
// the exact identity it won the election under, and a container starting in
// the same pod releases a Lease whose holder is still that identity
// (ReleaseFromEarlierContainer), before its own election starts.
package leaderlease

import (
	"context"
	"encoding/json"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
)

// HolderPodAnnotation on the leader Lease names the pod the holder runs in:
// JSON {"holder": identity, "podUID": uid, "pod": namespace/name}.
const HolderPodAnnotation = apicontract.AnnotationPrefix + "holder-pod"

// HolderPod is the value of HolderPodAnnotation.
type HolderPod struct {
	// Holder is the identity the marking process won the election under.
	Holder string `json:"holder"`
	// PodUID is the UID of the pod that process ran in (downward API
	// metadata.uid).
	PodUID string `json:"podUID"`
	// Pod is namespace/name, for people reading the Lease.
	Pod string `json:"pod,omitempty"`
}

// Decision is whether a starting process releases the Lease, and why.
type Decision struct {
	Release bool
	Reason  string
	// Holder is the Lease's holder when read.
	Holder string
}

// Decide says whether a process starting in the pod with UID podUID, before
// its own election, may release lease: only when the Lease is held, by the
// very identity that marked it as running in this pod. That holder was an
// earlier container of this pod (this process has not run for election
// yet), and a pod's containers never overlap. Anything else (another pod, a
// mark left by an earlier leader, no mark, no UID known) waits for the
// Lease to expire, as the framework does.
func Decide(lease *coordinationv1.Lease, podUID string) Decision {
	if lease == nil {
		return Decision{Reason: "no Lease"}
	}
	holder := ""
	if lease.Spec.HolderIdentity != nil {
		holder = *lease.Spec.HolderIdentity
	}
	d := Decision{Holder: holder}
	switch {
	case podUID == "":
		d.Reason = "the pod's UID is unknown (POD_UID unset)"
	case holder == "":
		d.Reason = "the Lease is not held"
	default:
		raw, ok := lease.Annotations[HolderPodAnnotation]
		if !ok {
			d.Reason = "the holder did not record its pod"
			break
		}
		var mark HolderPod
		if err := json.Unmarshal([]byte(raw), &mark); err != nil {
			d.Reason = fmt.Sprintf("unreadable %s: %v", HolderPodAnnotation, err)
			break
		}
		switch {
		case mark.Holder != holder:
			d.Reason = "the pod record is an earlier leader's"
		case mark.PodUID != podUID:
			d.Reason = "the holder runs in another pod (" + mark.Pod + ")"
		default:
			d.Release = true
			d.Reason = "the holder was an earlier container of this pod"
		}
	}
	return d
}

// ReleaseFromEarlierContainer reads the Lease namespace/name and, when
// Decide allows it, releases it the way a leader stepping down does
// (holderIdentity cleared, leaseDurationSeconds 1), conditional on the
// resourceVersion it read: if the Lease changed in between, nothing is
// released. It returns the decision taken; Release is true only if the
// release was written. A missing Lease is no error.
func ReleaseFromEarlierContainer(ctx context.Context, leases coordinationv1client.LeasesGetter, namespace, name, podUID string, clk clock.Clock) (Decision, error) {
	lease, err := leases.Leases(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Decision{Reason: "no Lease"}, nil
	}
	if err != nil {
		return Decision{Reason: "cannot read the Lease"}, fmt.Errorf("reading Lease %s/%s: %w", namespace, name, err)
	}
	d := Decide(lease, podUID)
	if !d.Release {
		return d, nil
	}
	released := lease.DeepCopy()
	now := metav1.NewMicroTime(clk.Now())
	one := int32(1)
	released.Spec.HolderIdentity = nil
	released.Spec.LeaseDurationSeconds = &one
	released.Spec.AcquireTime = &now
	released.Spec.RenewTime = &now
	delete(released.Annotations, HolderPodAnnotation)
	// Update carries lease's resourceVersion: a Lease renewed or taken
	// since the read is a conflict, and stays as it is.
	if _, err := leases.Leases(namespace).Update(ctx, released, metav1.UpdateOptions{}); err != nil {
		d.Release = false
		if apierrors.IsConflict(err) {
			d.Reason = "the Lease changed while deciding"
			return d, nil
		}
		return d, fmt.Errorf("releasing Lease %s/%s held by %s: %w", namespace, name, d.Holder, err)
	}
	return d, nil
}

// Mark records on the Lease that identity, which has just won the election,
// runs in the pod mark.PodUID. It writes only while the Lease is held by
// identity (re-read on a conflict with the elector's own renewals), so a
// mark never names a holder other than the process that wrote it.
func Mark(ctx context.Context, leases coordinationv1client.LeasesGetter, namespace, name string, mark HolderPod) error {
	value, err := json.Marshal(mark)
	if err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		lease, err := leases.Leases(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != mark.Holder {
			return fmt.Errorf("the Lease %s/%s is no longer held by %s", namespace, name, mark.Holder)
		}
		if lease.Annotations[HolderPodAnnotation] == string(value) {
			return nil
		}
		lease = lease.DeepCopy()
		if lease.Annotations == nil {
			lease.Annotations = map[string]string{}
		}
		lease.Annotations[HolderPodAnnotation] = string(value)
		_, err = leases.Leases(namespace).Update(ctx, lease, metav1.UpdateOptions{})
		return err
	})
}
