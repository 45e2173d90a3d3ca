package bgp

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Kinds of link EnsureInterface makes.
const (
	KindDummy  = "dummy"
	KindBridge = "bridge"
)

// EnsureInterface makes sure the link that carries advertised VIPs exists
// and is up. It creates a dummy link, or, where the kernel has no dummy
// driver, a bridge with no ports: either carries no traffic of its own, so
// binding a VIP there only makes the node accept packets for it. It reports
// the kind of link and whether it created it.
func EnsureInterface(name string) (kind string, created bool, err error) {
	l, err := netlink.LinkByName(name)
	if err == nil {
		if err := netlink.LinkSetUp(l); err != nil {
			return l.Type(), false, fmt.Errorf("setting %s up: %w", name, err)
		}
		return l.Type(), false, nil
	}
	var notFound netlink.LinkNotFoundError
	if !errors.As(err, &notFound) {
		return "", false, fmt.Errorf("looking up %s: %w", name, err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	kind = KindDummy
	dummyErr := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
	if dummyErr != nil {
		// No dummy driver (EOPNOTSUPP, or ENOENT when modules cannot load).
		kind = KindBridge
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return "", false, fmt.Errorf("creating %s: as a dummy link: %v; as a bridge: %w", name, dummyErr, err)
		}
	}
	l, err = netlink.LinkByName(name)
	if err != nil {
		return kind, true, fmt.Errorf("looking up %s after creating it: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return kind, true, fmt.Errorf("setting %s up: %w", name, err)
	}
	return kind, true, nil
}
