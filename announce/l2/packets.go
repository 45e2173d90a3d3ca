package l2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"
)

// Wire constants the responder needs beyond what the codecs export.
const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	ipv6HeaderLen = 40
	ethHeaderLen  = 14
	protoICMPv6   = 58
	icmpTypeNS    = 135
	icmpTypeNA    = 136
	// ndpHopLimit: RFC 4861 §7.1 drops neighbour discovery messages that
	// crossed a router, which a hop limit below 255 betrays.
	ndpHopLimit = 255
)

var (
	// zeroMAC is the target hardware address of ARP requests: unknown.
	zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	// allNodesMAC carries frames to ff02::1 (RFC 2464 §7).
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}

	errNotForUs = errors.New("not a neighbour discovery message")
)

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

// arpReply answers req, a request for vip, with "vip is at mac", addressed
// to the requester alone (as a kernel answers, probes included).
func arpReply(mac net.HardwareAddr, vip netip.Addr, req *arp.Packet) (*arp.Packet, error) {
	p, err := arp.NewPacket(arp.OperationReply, mac, vip.AsSlice(), req.SenderHardwareAddr, req.SenderIP)
	if err != nil {
		return nil, fmt.Errorf("building ARP reply for %s: %w", vip, err)
	}
	return p, nil
}

// arpFrame wraps p in an Ethernet frame from src to dst.
func arpFrame(src, dst net.HardwareAddr, p *arp.Packet) ([]byte, error) {
	payload, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding ARP packet: %w", err)
	}
	f := &ethernet.Frame{Destination: dst, Source: src, EtherType: ethernet.EtherTypeARP, Payload: payload}
	b, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding Ethernet frame: %w", err)
	}
	return b, nil
}

// parseARPFrame decodes an Ethernet frame carrying ARP.
func parseARPFrame(b []byte) (src net.HardwareAddr, p *arp.Packet, err error) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		return nil, nil, err
	}
	if f.EtherType != ethernet.EtherTypeARP {
		return nil, nil, fmt.Errorf("EtherType %s is not ARP", f.EtherType)
	}
	p = new(arp.Packet)
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, nil, err
	}
	return f.Source, p, nil
}

// requestedIP returns the address an ARP request asks for. An announcement
// (sender IP = target IP) asks nothing: it is a claim, and answering it
// would contest the sender's address.
func requestedIP(p *arp.Packet) (netip.Addr, bool) {
	if p.Operation != arp.OperationRequest || p.SenderIP.Equal(p.TargetIP) {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(p.TargetIP)
	if !ok {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
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
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}, nil
}

// neighborProbe returns a neighbour solicitation for ip as duplicate address
// detection sends it (RFC 4862 §5.4.2): from the unspecified address and so
// without a source link-layer option. Any host using ip answers with a
// neighbour advertisement to all nodes, which needs no address of ours.
func neighborProbe(ip netip.Addr) (*ndp.NeighborSolicitation, error) {
	if !ip.Is6() || ip.Is4In6() {
		return nil, fmt.Errorf("neighbour solicitation needs an IPv6 address, not %s", ip)
	}
	return &ndp.NeighborSolicitation{TargetAddress: ip}, nil
}

// solicitedNA answers a solicitation for vip from src (unspecified for
// duplicate address detection, which is answered to all nodes).
func solicitedNA(mac net.HardwareAddr, vip, src netip.Addr) (*ndp.NeighborAdvertisement, netip.Addr) {
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: vip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	if src.IsUnspecified() {
		return na, netip.IPv6LinkLocalAllNodes()
	}
	na.Solicited = true
	return na, src
}

// multicastMAC is the Ethernet address of an IPv6 multicast group (RFC 2464 §7).
func multicastMAC(group netip.Addr) net.HardwareAddr {
	b := group.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// ndpFrame builds the Ethernet frame of a neighbour discovery message from
// src to dst, with the hop limit and checksum a receiver verifies. The raw
// socket bypasses the kernel's IPv6 stack, so the responder needs no IPv6
// address of its own: it speaks from the VIP, as a kernel holding the VIP
// would.
func ndpFrame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, m ndp.Message) ([]byte, error) {
	body, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", m.Type(), err)
	}
	b := make([]byte, ethHeaderLen+ipv6HeaderLen+len(body))
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv6)
	ip := b[ethHeaderLen:]
	ip[0] = 6 << 4 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(body)))
	ip[6] = protoICMPv6
	ip[7] = ndpHopLimit
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(ip[ipv6HeaderLen:], body)
	return b, nil
}

// ndpPacket is a neighbour discovery message read from the wire.
type ndpPacket struct {
	srcMAC   net.HardwareAddr
	src, dst netip.Addr
	msg      ndp.Message
}

// parseNDPFrame decodes an Ethernet frame carrying a neighbour solicitation
// or advertisement, and applies the checks of RFC 4861 §7.1 that do not
// need the checksum (an Ethernet frame with a bad checksum does not reach
// a socket).
func parseNDPFrame(b []byte) (ndpPacket, error) {
	if len(b) < ethHeaderLen+ipv6HeaderLen+4 || binary.BigEndian.Uint16(b[12:14]) != etherTypeIPv6 {
		return ndpPacket{}, errNotForUs
	}
	ip := b[ethHeaderLen:]
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 {
		return ndpPacket{}, errNotForUs
	}
	if ip[7] != ndpHopLimit {
		return ndpPacket{}, fmt.Errorf("hop limit %d: the message crossed a router", ip[7])
	}
	n := int(binary.BigEndian.Uint16(ip[4:6]))
	if ipv6HeaderLen+n > len(ip) {
		return ndpPacket{}, fmt.Errorf("IPv6 payload length %d exceeds the frame", n)
	}
	if t := ip[ipv6HeaderLen]; t != icmpTypeNS && t != icmpTypeNA {
		return ndpPacket{}, errNotForUs
	}
	m, err := ndp.ParseMessage(ip[ipv6HeaderLen : ipv6HeaderLen+n])
	if err != nil {
		return ndpPacket{}, err
	}
	return ndpPacket{
		srcMAC: net.HardwareAddr(b[6:12]),
		src:    netip.AddrFrom16([16]byte(ip[8:24])),
		dst:    netip.AddrFrom16([16]byte(ip[24:40])),
		msg:    m,
	}, nil
}

// linkLayer returns the link-layer address option of direction d in opts.
func linkLayer(opts []ndp.Option, d ndp.Direction) (net.HardwareAddr, bool) {
	for _, o := range opts {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == d {
			return lla.Addr, true
		}
	}
	return nil, false
}

// ndpFilter keeps, of the IPv6 frames a link carries, only neighbour
// solicitations and advertisements without extension headers (which RFC
// 4861 messages do not carry in practice), so the responder's socket sees
// a trickle, not the node's IPv6 traffic.
func ndpFilter() ([]bpf.RawInstruction, error) {
	return bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},                                  // EtherType
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 5}, // -> drop
		bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1},                    // next header
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},   // -> drop
		bpf.LoadAbsolute{Off: ethHeaderLen + ipv6HeaderLen, Size: 1},        // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpTypeNS, SkipTrue: 2},       // -> keep
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpTypeNA, SkipTrue: 1},       // -> keep
		bpf.RetConstant{Val: 0},                                             // drop
		bpf.RetConstant{Val: 1 << 16},                                       // keep the whole frame
	})
}
