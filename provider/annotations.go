package provider

// Service annotations. Ours come first; MetalLB's are accepted as fallbacks
// so a cluster can move over without editing its Services.
const (
	AnnotationPrefix          = "baremetal.cloud-provider.io/"
	AnnotationPool            = AnnotationPrefix + "pool"
	AnnotationLoadBalancerIPs = AnnotationPrefix + "load-balancer-ips"
	AnnotationAllowSharedIP   = AnnotationPrefix + "allow-shared-ip"
)

var (
	poolAnnotations    = []string{AnnotationPool, "metallb.io/address-pool", "metallb.universe.tf/address-pool"}
	ipsAnnotations     = []string{AnnotationLoadBalancerIPs, "metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs"}
	sharingAnnotations = []string{AnnotationAllowSharedIP, "metallb.io/allow-shared-ip", "metallb.universe.tf/allow-shared-ip"}
)

// Event reasons the provider emits itself (the service controller emits
// SyncLoadBalancerFailed with our error text).
const (
	EventAddressConflict = "AddressConflict"
	EventOrphanedAddress = "OrphanedAddress"
	EventInvalidConfig   = "InvalidConfig"
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
