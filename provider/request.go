package provider

import (
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/ipam"
)

// serviceKey is the allocation key of a Service.
func serviceKey(svc *v1.Service) string { return svc.Namespace + "/" + svc.Name }

// requestFor turns a Service into an allocation request. An error here is a
// mistake in the Service (a bad annotation) and names it.
func requestFor(cfg *config.Config, svc *v1.Service) (ipam.Request, error) {
	req := ipam.Request{
		Key:     serviceKey(svc),
		Created: svc.CreationTimestamp.Time,
		Admits: func(pool string) bool {
			p, ok := cfg.Pool(pool)
			return ok && p.AdmitsService(svc.Namespace, svc.Labels)
		},
	}
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case v1.IPv4Protocol:
			req.Families = append(req.Families, ipam.IPv4)
		case v1.IPv6Protocol:
			req.Families = append(req.Families, ipam.IPv6)
		}
	}
	if len(req.Families) == 0 {
		req.Families = []ipam.Family{ipam.IPv4}
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case v1.IPFamilyPolicyPreferDualStack:
			req.Policy = ipam.PreferDualStack
		case v1.IPFamilyPolicyRequireDualStack:
			req.Policy = ipam.RequireDualStack
		}
	}

	if key, name, ok := firstAnnotation(svc.Annotations, poolAnnotations); ok {
		name = strings.TrimSpace(name)
		if _, exists := cfg.Pool(name); !exists {
			return req, fmt.Errorf("annotation %s names pool %q, which is not in the cloud-config (pools: %s)", key, name, poolNames(cfg))
		}
		req.Pool = name
	}

	ips, err := requestedIPs(svc)
	if err != nil {
		return req, err
	}
	req.IPs = ips

	if _, sharingKey, ok := firstAnnotation(svc.Annotations, sharingAnnotations); ok {
		req.SharingKey = strings.TrimSpace(sharingKey)
	}
	if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal {
		// Local traffic only works when every sharer has the same pods behind it.
		req.Backend = labels.SelectorFromSet(svc.Spec.Selector).String()
		if req.Backend == "" {
			req.Backend = "local:" + req.Key
		}
	}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(v1.ProtocolTCP)
		}
		req.Ports = append(req.Ports, ipam.Port{Protocol: proto, Port: p.Port})
	}
	return req, nil
}

// requestedIPs reads the addresses a Service asks for: the annotation, else
// spec.loadBalancerIP. At most one per family.
func requestedIPs(svc *v1.Service) ([]netip.Addr, error) {
	key, raw, ok := firstAnnotation(svc.Annotations, ipsAnnotations)
	if !ok {
		if svc.Spec.LoadBalancerIP == "" {
			return nil, nil
		}
		key, raw = "spec.loadBalancerIP", svc.Spec.LoadBalancerIP
	}
	var ips []netip.Addr
	seen := map[ipam.Family]bool{}
	for _, s := range strings.Split(raw, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%s: %q is not an IP address", key, s)
		}
		a = a.Unmap()
		f := ipam.FamilyOf(a)
		if seen[f] {
			return nil, fmt.Errorf("%s: more than one %s address given; give at most one per family", key, f)
		}
		seen[f] = true
		ips = append(ips, a)
	}
	return ips, nil
}

func poolNames(cfg *config.Config) string {
	if len(cfg.Pools) == 0 {
		return "none configured"
	}
	names := make([]string, len(cfg.Pools))
	for i, p := range cfg.Pools {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// statusFor renders an allocation as the Service's load-balancer status.
// ipMode VIP is explicit: the API server defaults it, and a nil here would
// make every sync look like a change.
func statusFor(a ipam.Allocation) *v1.LoadBalancerStatus {
	st := &v1.LoadBalancerStatus{}
	for _, ip := range a.IPs {
		mode := v1.LoadBalancerIPModeVIP
		st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{IP: ip.String(), IPMode: &mode})
	}
	return st
}

// wantsLoadBalancer reports whether the service controller manages svc.
func wantsLoadBalancer(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}
