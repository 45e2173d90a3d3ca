package l2

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bind"
)

// Link is what the announcer needs to know about one interface.
type Link struct {
	Name     string
	Up       bool // administratively up and with carrier
	MAC      net.HardwareAddr
	Prefixes []netip.Prefix // on-link subnets (host routes excluded)
	Addrs    []netip.Addr   // every address of the link
}

// Links is a snapshot of the node's interfaces, read once per reconcile so
// every decision in a pass sees the same state.
type Links []Link

// ReadLinks lists the interfaces of this network namespace.
func ReadLinks() (Links, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	out := make(Links, 0, len(ls))
	for _, l := range ls {
		attrs := l.Attrs()
		if attrs.Flags&net.FlagLoopback != 0 || attrs.Name == bind.LegacyBGPInterface {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("listing addresses of %s: %w", attrs.Name, err)
		}
		lk := Link{Name: attrs.Name, Up: isUp(attrs), MAC: attrs.HardwareAddr}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			lk.Addrs = append(lk.Addrs, ip)
			ones, bits := a.Mask.Size()
			if ones < bits && !ip.IsLinkLocalUnicast() {
				lk.Prefixes = append(lk.Prefixes, netip.PrefixFrom(ip, ones).Masked())
			}
		}
		out = append(out, lk)
	}
	return out, nil
}

// isUp reports whether frames can leave through the link: up, and with
// carrier (a veth whose peer is down reports LOWERLAYERDOWN).
func isUp(a *netlink.LinkAttrs) bool {
	if a.Flags&net.FlagUp == 0 {
		return false
	}
	return a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown
}

// Get returns the link named name.
func (ls Links) Get(name string) (Link, bool) {
	for _, l := range ls {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

// MACs returns the hardware addresses of every interface.
func (ls Links) MACs() []net.HardwareAddr {
	var out []net.HardwareAddr
	for _, l := range ls {
		if len(l.MAC) == 6 {
			out = append(out, l.MAC)
		}
	}
	return out
}

// InterfaceFor picks the interface that announces vip: the first of the
// pool's interfaces this node has; else the interface whose subnet holds
// vip; else the interface holding one of the node's own addresses
// (InternalIP), preferring one of vip's family. It reports false when the
// node has no such interface.
func (ls Links) InterfaceFor(vip netip.Addr, poolInterfaces []string, nodeIPs []netip.Addr) (Link, bool) {
	if len(poolInterfaces) > 0 {
		for _, name := range poolInterfaces {
			if l, ok := ls.Get(name); ok {
				return l, true
			}
		}
		return Link{}, false
	}
	for _, l := range ls {
		for _, p := range l.Prefixes {
			if p.Contains(vip) {
				return l, true
			}
		}
	}
	var fallback *Link
	for _, ip := range nodeIPs {
		for i := range ls {
			for _, a := range ls[i].Addrs {
				if a != ip {
					continue
				}
				if ip.Is4() == vip.Is4() {
					return ls[i], true
				}
				if fallback == nil {
					fallback = &ls[i]
				}
			}
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return Link{}, false
}
