package ipam

import (
	"net/netip"
	"time"
)

// Pool is the allocator's view of a configured pool.
type Pool struct {
	Name          string
	Ranges        []Range
	AutoAssign    bool
	AvoidBuggyIPs bool // skip IPv4 addresses ending in .0 or .255
}

// Family is an IP family.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func (f Family) String() string {
	if f == IPv4 {
		return "IPv4"
	}
	return "IPv6"
}

// Policy mirrors spec.ipFamilyPolicy.
type Policy int

const (
	SingleStack Policy = iota
	PreferDualStack
	RequireDualStack
)

// Port is one protocol/port pair a Service exposes; sharing an address
// requires that no two sharers expose the same pair.
type Port struct {
	Protocol string // TCP, UDP, SCTP
	Port     int32
}

// Request describes what a Service needs. The caller (provider) turns a
// Service into a Request; the allocator knows nothing of Kubernetes.
type Request struct {
	// Key identifies the Service ("namespace/name"); one allocation per key.
	Key string
	// Families wanted, in order of preference (spec.ipFamilies). Empty means IPv4.
	Families []Family
	Policy   Policy
	// Pool, when set, is the only pool to draw from (the pool annotation).
	Pool string
	// IPs are specific addresses asked for (at most one per family).
	IPs []netip.Addr
	// Admits reports whether the Service may draw from the named pool
	// (namespaces, serviceSelector). Nil admits every pool.
	Admits func(pool string) bool
	// SharingKey lets Services with the same key share addresses.
	SharingKey string
	// Backend must be equal for Services that share: "" for
	// externalTrafficPolicy Cluster, the pod selector for Local.
	Backend string
	Ports   []Port
	// Created orders Services when seeding: the oldest keeps a contested address.
	Created time.Time
}

// Allocation is what a Service holds.
type Allocation struct {
	Pool string
	IPs  []netip.Addr // in the order of Request.Families
}

// PoolStats is the use of one pool and family, for metrics and messages.
type PoolStats struct {
	Pool   string
	Family Family
	Size   float64 // may exceed 2^64 for IPv6, hence float
	InUse  int
}

// Orphan is an address held by a Service whose pool no longer contains it.
type Orphan struct {
	Key string
	IP  netip.Addr
}
