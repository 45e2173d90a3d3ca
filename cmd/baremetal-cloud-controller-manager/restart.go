package main

import (
	"context"
	"os"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
	cloudcontrollerconfig "k8s.io/cloud-provider/app/config"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/internal/leaderlease"
)

// What the manifests set from the downward API: the pod the CCM runs in.
const (
	podUIDEnv       = "POD_UID"
	podNameEnv      = "POD_NAME"
	podNamespaceEnv = "POD_NAMESPACE"
)

// takeOverFromEarlierContainer runs before the framework's election. A
// container the kubelet restarted (a crash, kill -9, the OOM killer) finds
// the leader Lease still held by its dead predecessor, under an identity it
// cannot recognise; without this it waits the whole
// --leader-elect-lease-duration (15 s) with no Service addressed. When the
// Lease's holder recorded that it runs in this very pod, it is released at
// once (package leaderlease says why that is safe, also with hostNetwork).
// It also has the process record its pod on the Lease when it wins, for
// its own successor. Nothing here is fatal: at worst the Lease expires as
// before.
func takeOverFromEarlierContainer(c *cloudcontrollerconfig.CompletedConfig) {
	le := c.ComponentConfig.Generic.LeaderElection
	if !le.LeaderElect || c.Client == nil {
		return
	}
	if le.ResourceLock != resourcelock.LeasesResourceLock {
		klog.InfoS("Leader lock is not a Lease: a restarted container waits for it to expire", "resourceLock", le.ResourceLock)
		return
	}
	podUID := os.Getenv(podUIDEnv)
	if podUID == "" {
		klog.InfoS("POD_UID is not set: a restarted container waits for the leader Lease to expire", "lease", klog.KRef(le.ResourceNamespace, le.ResourceName))
		return
	}
	pod := klog.KRef(os.Getenv(podNamespaceEnv), os.Getenv(podNameEnv)).String()
	leases := c.Client.CoordinationV1()

	ctx, cancel := context.WithTimeout(context.Background(), le.RenewDeadline.Duration)
	d, err := leaderlease.ReleaseFromEarlierContainer(ctx, leases, le.ResourceNamespace, le.ResourceName, podUID, clock.RealClock{})
	cancel()
	switch {
	case err != nil:
		klog.ErrorS(err, "Cannot release the leader Lease of an earlier container; waiting for it to expire", "lease", klog.KRef(le.ResourceNamespace, le.ResourceName))
	case d.Release:
		klog.InfoS("Released the leader Lease held by an earlier container of this pod", "lease", klog.KRef(le.ResourceNamespace, le.ResourceName), "holder", d.Holder, "pod", pod, "podUID", podUID)
	default:
		klog.V(2).InfoS("Leader Lease left to the election", "lease", klog.KRef(le.ResourceNamespace, le.ResourceName), "holder", d.Holder, "reason", d.Reason)
	}

	c.EventRecorder = leaderlease.Tap(c.EventRecorder, le.ResourceNamespace, le.ResourceName, func(identity string) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), le.RenewDeadline.Duration)
			defer cancel()
			mark := leaderlease.HolderPod{Holder: identity, PodUID: podUID, Pod: pod}
			if err := leaderlease.Mark(ctx, leases, le.ResourceNamespace, le.ResourceName, mark); err != nil {
				klog.ErrorS(err, "Cannot record this pod on the leader Lease; a restart of this container will wait for the Lease to expire")
				return
			}
			klog.V(2).InfoS("Recorded this pod on the leader Lease", "holder", identity, "pod", pod, "podUID", podUID)
		}()
	})
}
