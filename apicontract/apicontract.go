// Package apicontract holds what the cloud-controller-manager and the node
// agents agree on through the Kubernetes API (DESIGN decision 3): the
// annotation prefix, the event reasons both binaries record, and how a
// Service's status lists its addresses. One definition each, so the two
// binaries cannot drift apart.
package apicontract

import (
	"net/netip"

	v1 "k8s.io/api/core/v1"
)

// AnnotationPrefix starts every annotation this project reads or writes.
const AnnotationPrefix = "baremetal.cloud-provider.io/"

// Event reasons, CamelCase. The CCM's reasons are about allocation; the
// agent's about announcing. A name says which side found the problem.
const (
	// CCM: two Services claim one address in their status.
	ReasonAddressConflict = "AddressConflict"
	// CCM: an address in use left every pool.
	ReasonOrphanedAddress = "OrphanedAddress"
	// Both: a changed cloud-config was refused.
	ReasonInvalidConfig = "InvalidConfig"

	// Agent: a node started answering for (layer 2) or advertising (BGP) a VIP.
	ReasonAnnouncing = "Announcing"
	// Agent: a node stopped.
	ReasonWithdrawn = "Withdrawn"
	// Agent: another host already answers ARP/NDP for the VIP.
	ReasonAnnounceConflict = "AnnounceConflict"
	// Agent: the node has no interface to answer for the VIP on.
	ReasonNoInterface = "NoInterface"

	// Agent, on its Node: a BGP session or its BFD session came up or went
	// down. A peer error's reason is its likely cause (bgp.Cause:
	// MD5Mismatch, BadPeerAS, ConnectionRefused, ...).
	ReasonBGPSessionUp   = "BGPSessionUp"
	ReasonBGPSessionDown = "BGPSessionDown"
	ReasonBFDUp          = "BFDUp"
	ReasonBFDDown        = "BFDDown"
)

// IngressIPs returns the addresses recorded in a Service's
// status.loadBalancer.ingress, IPv4-mapped ones unmapped. Entries that are
// not addresses (hostnames) are skipped.
func IngressIPs(svc *v1.Service) []netip.Addr {
	var ips []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			ips = append(ips, a.Unmap())
		}
	}
	return ips
}
