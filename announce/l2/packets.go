package l2

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// zeroMAC is the target hardware address of ARP requests: unknown.
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// gratuitousARP returns the two forms of an ARP announcement of ip at mac:
// a request and a reply, both with sender and target IP set to ip. Hosts
// differ in which form updates an existing cache entry, so both are sent.
func gratuitousARP(mac net.HardwareAddr, ip netip.Addr) ([]*arp.Packet, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("gratuitous ARP needs an IPv4 address, not %s", ip)
	}
	req, err := arp.NewPacket(arp.OperationRequest, mac, ip.AsSlice(), zeroMAC, ip.AsSlice())
	if err != nil {
		return nil, fmt.Errorf("building gratuitous ARP request for %s: %w", ip, err)
	}
	reply, err := arp.NewPacket(arp.OperationReply, mac, ip.AsSlice(), ethernet.Broadcast, ip.AsSlice())
	if err != nil {
		return nil, fmt.Errorf("building gratuitous ARP reply for %s: %w", ip, err)
	}
	return []*arp.Packet{req, reply}, nil
}

// arpProbe returns an RFC 5227 ARP probe for ip: a request with an all-zero
// sender IP, so that no host updates its cache from it, which any host using
// ip answers.
func arpProbe(mac net.HardwareAddr, ip netip.Addr) (*arp.Packet, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("ARP probe needs an IPv4 address, not %s", ip)
	}
	p, err := arp.NewPacket(arp.OperationRequest, mac, net.IPv4zero, zeroMAC, ip.AsSlice())
	if err != nil {
		return nil, fmt.Errorf("building ARP probe for %s: %w", ip, err)
	}
	return p, nil
}

// arpFrame wraps p in a broadcast Ethernet frame from mac.
func arpFrame(mac net.HardwareAddr, p *arp.Packet) ([]byte, error) {
	payload, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding ARP packet: %w", err)
	}
	f := &ethernet.Frame{
		Destination: ethernet.Broadcast,
		Source:      mac,
		EtherType:   ethernet.EtherTypeARP,
		Payload:     payload,
	}
	b, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding Ethernet frame: %w", err)
	}
	return b, nil
}

// unsolicitedNA returns the IPv6 counterpart of a gratuitous ARP: an
// unsolicited neighbour advertisement with the override flag set, so that
// receivers replace a cached link-layer address (RFC 4861 §7.2.6).
func unsolicitedNA(mac net.HardwareAddr, ip netip.Addr) (*ndp.NeighborAdvertisement, error) {
	if !ip.Is6() || ip.Is4In6() {
		return nil, fmt.Errorf("neighbour advertisement needs an IPv6 address, not %s", ip)
	}
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac},
		},
	}, nil
}

// neighborProbe returns a neighbour solicitation for ip, which any host
// using ip answers with a neighbour advertisement naming its MAC.
func neighborProbe(mac net.HardwareAddr, ip netip.Addr) (*ndp.NeighborSolicitation, error) {
	if !ip.Is6() || ip.Is4In6() {
		return nil, fmt.Errorf("neighbour solicitation needs an IPv6 address, not %s", ip)
	}
	return &ndp.NeighborSolicitation{
		TargetAddress: ip,
		Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac},
		},
	}, nil
}

// announcedBy reports which address an ARP packet claims for its sender:
// every ARP packet with a sender IP other than 0.0.0.0 says "sender IP is
// at sender MAC", which is what a new owner's announcement looks like.
func announcedBy(p *arp.Packet) (netip.Addr, net.HardwareAddr, bool) {
	ip, ok := netip.AddrFromSlice(p.SenderIP)
	if !ok {
		return netip.Addr{}, nil, false
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		return netip.Addr{}, nil, false
	}
	return ip, p.SenderHardwareAddr, true
}

// targetLinkLayer returns the target link-layer address option of na.
func targetLinkLayer(na *ndp.NeighborAdvertisement) (net.HardwareAddr, bool) {
	for _, o := range na.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
			return lla.Addr, true
		}
	}
	return nil, false
}
