package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Sentinel errors, for errors.Is. The errors the allocator returns carry a
// sentence for the user and unwrap to one of these.
var (
	// ErrInvalidRequest: the request contradicts itself (an address of a
	// family the Service does not have, two addresses of one family, ...).
	ErrInvalidRequest = errors.New("invalid address request")
	// ErrUnknownPool: the request names a pool that is not configured.
	ErrUnknownPool = errors.New("unknown pool")
	// ErrPoolNotAllowed: the pool's namespaces or serviceSelector refuse the Service.
	ErrPoolNotAllowed = errors.New("pool does not admit the service")
	// ErrNoPool: no configured pool can serve the request at all.
	ErrNoPool = errors.New("no suitable pool")
	// ErrNotInPool: a requested address lies outside every pool (or the named one).
	ErrNotInPool = errors.New("address not in pool")
	// ErrAddressInUse: a requested address is held by a Service it cannot be shared with.
	ErrAddressInUse = errors.New("address in use")
	// ErrPoolExhausted: every suitable pool is full for a wanted family.
	ErrPoolExhausted = errors.New("pool exhausted")
	// ErrNoDualStackPool: RequireDualStack, and no admitted pool has both families.
	ErrNoDualStackPool = errors.New("no dual-stack pool")
)

// requestError is a message for the user that matches a sentinel.
type requestError struct {
	kind error
	msg  string
}

func (e *requestError) Error() string { return e.msg }
func (e *requestError) Unwrap() error { return e.kind }

func newError(kind error, format string, args ...any) error {
	return &requestError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// PoolExhaustedError says that a pool has no free address of a family.
type PoolExhaustedError struct {
	Pool   string
	Family Family
	InUse  int
	Size   float64
}

func (e *PoolExhaustedError) Error() string {
	return fmt.Sprintf("pool %q has no free %s address (%d of %.0f in use)", e.Pool, e.Family, e.InUse, e.Size)
}

func (e *PoolExhaustedError) Is(target error) bool { return target == ErrPoolExhausted }

// ShareConflict says why an address cannot be shared.
type ShareConflict int

const (
	// NotShareable: one of the two Services has no sharing key.
	NotShareable ShareConflict = iota
	// SharingKeyDiffers: the Services have different sharing keys.
	SharingKeyDiffers
	// BackendDiffers: the Services would send traffic to different endpoints.
	BackendDiffers
	// PortCollides: both Services expose the same protocol and port.
	PortCollides
)

// AddressInUseError says that an address is held by another Service that
// it cannot be shared with, and why.
type AddressInUseError struct {
	IP       netip.Addr
	Holder   string // "namespace/name" of a Service holding IP
	Conflict ShareConflict
	key      string // the holder's sharing key
	port     Port   // the colliding port
}

func (e *AddressInUseError) Error() string {
	switch e.Conflict {
	case SharingKeyDiffers:
		return fmt.Sprintf("%s is already used by %s with allow-shared-ip key %q; to share it, give both Services the same key", e.IP, e.Holder, e.key)
	case BackendDiffers:
		return fmt.Sprintf("%s is shared with %s, but the two Services cannot share it: both must have externalTrafficPolicy Cluster, or both Local with the same pod selector", e.IP, e.Holder)
	case PortCollides:
		return fmt.Sprintf("%s is shared with %s, which already uses %s/%d; Services sharing an address need different ports", e.IP, e.Holder, e.port.Protocol, e.port.Port)
	default:
		return fmt.Sprintf("%s is already used by %s; to share it, give both Services the same allow-shared-ip key", e.IP, e.Holder)
	}
}

func (e *AddressInUseError) Is(target error) bool { return target == ErrAddressInUse }

// multiError reports why each candidate pool failed.
type multiError []error

func (m multiError) Error() string {
	msgs := make([]string, len(m))
	for i, err := range m {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (m multiError) Unwrap() []error { return m }

// joinErrors returns nil, the only error, or all of them.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return multiError(errs)
}
