package provider

import (
	"context"
	"errors"

	v1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/api"
	"k8s.io/klog/v2"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/ipam"
)

// loadBalancer is the Cloud seen as a cloudprovider.LoadBalancer.
type loadBalancer Cloud

var _ cloudprovider.LoadBalancer = (*loadBalancer)(nil)

var errNotSeeded = api.NewRetryError("the provider is still loading the addresses recorded in Service statuses; retrying", seedRetryDelay)

// GetLoadBalancer answers from IPAM, never from the Service status: when a
// Service's type changes the API server has already wiped its status.
func (lb *loadBalancer) GetLoadBalancer(ctx context.Context, clusterName string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	c := (*Cloud)(lb)
	if !c.isSeeded() {
		return nil, false, errNotSeeded
	}
	a, ok := c.alloc.Get(serviceKey(svc))
	if !ok {
		return nil, false, nil
	}
	return statusFor(a), true, nil
}

// GetLoadBalancerName is not used by the service controller; it is here for
// the interface and for logs.
func (lb *loadBalancer) GetLoadBalancerName(ctx context.Context, clusterName string, svc *v1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// EnsureLoadBalancer gives svc its addresses. It is idempotent and sticky:
// the same Service gets the same addresses until it asks for others.
func (lb *loadBalancer) EnsureLoadBalancer(ctx context.Context, clusterName string, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	c := (*Cloud)(lb)
	if !c.isSeeded() {
		return nil, errNotSeeded
	}
	req, err := requestFor(c.cfg.Load(), svc)
	if err != nil {
		allocations.WithLabelValues("invalid").Inc()
		return nil, err
	}
	a, err := c.alloc.Allocate(req)
	if err != nil {
		if errors.Is(err, ipam.ErrPoolExhausted) || errors.Is(err, ipam.ErrAddressInUse) {
			// Only a release cures this: wait for one (handover.go), on a
			// fixed delay rather than the framework's backoff to 5 minutes.
			c.waiting.add(req.Key, req.Created)
			if errors.Is(err, ipam.ErrPoolExhausted) {
				allocations.WithLabelValues("exhausted").Inc()
			} else {
				allocations.WithLabelValues("failed").Inc()
			}
			return nil, api.NewRetryError(err.Error()+"; the Service gets an address as soon as one is released", c.retryDelay())
		}
		allocations.WithLabelValues("failed").Inc()
		return nil, err
	}
	c.waiting.remove(req.Key)
	allocations.WithLabelValues("ok").Inc()
	klog.FromContext(ctx).V(2).Info("Load balancer ensured", "service", klog.KObj(svc), "pool", a.Pool, "ips", a.IPs)
	return statusFor(a), nil
}

// UpdateLoadBalancer has nothing to do: which node answers for an address is
// the node agents' decision, made from live leases, not from this node list.
func (lb *loadBalancer) UpdateLoadBalancer(ctx context.Context, clusterName string, svc *v1.Service, nodes []*v1.Node) error {
	return nil
}

// EnsureLoadBalancerDeleted releases svc's addresses. It does not read the
// status, which may already be gone.
func (lb *loadBalancer) EnsureLoadBalancerDeleted(ctx context.Context, clusterName string, svc *v1.Service) error {
	c := (*Cloud)(lb)
	if !c.isSeeded() {
		return errNotSeeded
	}
	c.waiting.remove(serviceKey(svc))
	c.alloc.Release(serviceKey(svc))
	c.addressesFreed()
	klog.FromContext(ctx).V(2).Info("Load balancer addresses released", "service", klog.KObj(svc))
	return nil
}
