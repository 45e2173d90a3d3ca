// Package bind removes the VIPs that agents before v2 bound to network
// interfaces. Agents no longer bind VIPs (DESIGN decision 6): an agent that
// starts on a node where an older version bound some calls RemoveLegacy.
//
// Set and Bound remain while the BGP speaker still binds on kube-lb0.
package bind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Set makes the VIPs on link equal to want.
//
// Deprecated: nothing should bind VIPs; kept until announce/bgp stops
// binding on kube-lb0. Addresses on the link for which
// ours returns true and that are not wanted are removed; every other address
// is left alone. It changes nothing that is already right, and reports which
// addresses it added and removed.
func Set(link string, want []netip.Addr, ours func(netip.Addr) bool) (added, removed []netip.Addr, err error) {
	l, err := netlink.LinkByName(link)
	if err != nil {
		return nil, nil, fmt.Errorf("interface %s: %w", link, err)
	}
	have, err := Bound(l, ours)
	if err != nil {
		return nil, nil, err
	}
	wanted := make(map[netip.Addr]bool, len(want))
	var errs []error
	for _, a := range want {
		wanted[a] = true
		if have[a] {
			continue
		}
		if err := netlink.AddrReplace(l, vipAddr(a)); err != nil {
			errs = append(errs, fmt.Errorf("binding %s to %s: %w", a, link, err))
			continue
		}
		added = append(added, a)
	}
	for a := range have {
		if wanted[a] {
			continue
		}
		if err := netlink.AddrDel(l, vipAddr(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("unbinding %s from %s: %w", a, link, err))
			continue
		}
		removed = append(removed, a)
	}
	return added, removed, errors.Join(errs...)
}

// Bound returns the host-route addresses on l that ours claims.
//
// Deprecated: see Set.
func Bound(l netlink.Link, ours func(netip.Addr) bool) (map[netip.Addr]bool, error) {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", l.Attrs().Name, err)
	}
	have := map[netip.Addr]bool{}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		ones, bits := a.Mask.Size()
		if ones == bits && ours(ip) {
			have[ip] = true
		}
	}
	return have, nil
}

func vipAddr(a netip.Addr) *netlink.Addr {
	bits := a.BitLen()
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
	if a.Is6() {
		// A VIP must answer at once: no duplicate address detection delay.
		addr.Flags = unix.IFA_F_NODAD
	}
	return addr
}
