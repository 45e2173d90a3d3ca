package provider

import "github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"

// Service annotations. Ours come first; MetalLB's are accepted as fallbacks
// so a cluster can move over without editing its Services.
const (
	AnnotationPool            = apicontract.AnnotationPrefix + "pool"
	AnnotationLoadBalancerIPs = apicontract.AnnotationPrefix + "load-balancer-ips"
	AnnotationAllowSharedIP   = apicontract.AnnotationPrefix + "allow-shared-ip"
)

var (
	poolAnnotations    = []string{AnnotationPool, "metallb.io/address-pool", "metallb.universe.tf/address-pool"}
	ipsAnnotations     = []string{AnnotationLoadBalancerIPs, "metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs"}
	sharingAnnotations = []string{AnnotationAllowSharedIP, "metallb.io/allow-shared-ip", "metallb.universe.tf/allow-shared-ip"}
)

// firstAnnotation returns the value of the first key present.
func firstAnnotation(annotations map[string]string, keys []string) (key, value string, ok bool) {
	for _, k := range keys {
		if v, found := annotations[k]; found {
			return k, v, true
		}
	}
	return "", "", false
}
