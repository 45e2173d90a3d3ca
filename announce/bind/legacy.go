package bind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LegacyBGPInterface is the device on which agents before v2 bound the VIPs
// of BGP pools. Agents no longer bind anything (VIPs are answered from user
// space and routes originate from the BGP speaker's RIB); the name is kept
// to find what an older agent left.
const LegacyBGPInterface = "kube-lb0"

// kubeProxyIPVSInterface holds the load-balancer addresses kube-proxy binds
// in IPVS mode: they are kube-proxy's, never an older agent's.
const kubeProxyIPVSInterface = "kube-ipvs0"

// linkAddrs is one interface and the addresses on it.
type linkAddrs struct {
	link     netlink.Link
	name     string
	loopback bool
	addrs    []netlink.Addr
}

// Netlink is the part of the netlink API RemoveLegacy uses.
type Netlink interface {
	LinkList() ([]netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

type kernel struct{}

func (kernel) LinkList() ([]netlink.Link, error) { return netlink.LinkList() }
func (kernel) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	return netlink.AddrList(l, family)
}
func (kernel) AddrDel(l netlink.Link, a *netlink.Addr) error { return netlink.AddrDel(l, a) }

// RemoveLegacy removes the VIPs an agent of an older version bound and left
// behind (after a crash, or before an upgrade): host addresses (/32, /128)
// that ours claims (the addresses inside the configured pools) on any
// interface, and every address ours claims on kube-lb0. It leaves loopback
// and kube-proxy's kube-ipvs0 alone, changes nothing when there is nothing
// to remove, and reports what it removed, also when some removals failed.
func RemoveLegacy(ours func(netip.Addr) bool) ([]netip.Addr, error) {
	return RemoveLegacyWith(kernel{}, ours)
}

// RemoveLegacyWith is RemoveLegacy on the given netlink handle.
func RemoveLegacyWith(nl Netlink, ours func(netip.Addr) bool) ([]netip.Addr, error) {
	links, err := nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces to remove VIPs an older agent bound: %w", err)
	}
	var (
		all  []linkAddrs
		errs []error
	)
	for _, l := range links {
		a := l.Attrs()
		addrs, err := nl.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing addresses of %s: %w", a.Name, err))
			continue
		}
		all = append(all, linkAddrs{link: l, name: a.Name, loopback: a.Flags&net.FlagLoopback != 0, addrs: addrs})
	}
	var removed []netip.Addr
	for _, la := range all {
		for _, addr := range legacy(la, ours) {
			ip, _ := netip.AddrFromSlice(addr.IP)
			err := nl.AddrDel(la.link, &addr)
			if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("removing %s that an older agent bound on %s: %w", ip.Unmap(), la.name, err))
				continue
			}
			removed = append(removed, ip.Unmap())
		}
	}
	slices.SortFunc(removed, netip.Addr.Compare)
	return removed, errors.Join(errs...)
}

// legacy picks, of one interface's addresses, those an older agent bound.
func legacy(la linkAddrs, ours func(netip.Addr) bool) []netlink.Addr {
	if la.loopback || la.name == kubeProxyIPVSInterface {
		return nil
	}
	var out []netlink.Addr
	for _, a := range la.addrs {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		ones, bits := a.Mask.Size()
		host := bits != 0 && ones == bits
		if (host || la.name == LegacyBGPInterface) && ours(ip) {
			out = append(out, a)
		}
	}
	return out
}
