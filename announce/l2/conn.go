package l2

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"
)

// frameConn sends and receives whole Ethernet frames of one kind on one
// link. The responder's logic sits on this, so that it is tested with
// frames in memory, without root.
type frameConn interface {
	// ReadFrame blocks for the next frame; after Close it returns an error
	// that wraps net.ErrClosed.
	ReadFrame(b []byte) (int, error)
	WriteFrame(b []byte) error
	Close() error
}

// ndpConn is a frameConn for neighbour discovery that also joins the
// multicast groups solicitations are sent to.
type ndpConn interface {
	frameConn
	JoinGroup(group netip.Addr) error
	LeaveGroup(group netip.Addr) error
}

// opener opens the sockets of a link.
type opener interface {
	Interface(name string) (*net.Interface, error)
	ARP(ifi *net.Interface) (frameConn, error)
	NDP(ifi *net.Interface) (ndpConn, error)
}

// rawOpener opens real sockets: AF_PACKET sockets for the frames (they
// need CAP_NET_RAW and nothing else), plus an ICMPv6 socket that only
// holds group memberships.
type rawOpener struct{}

var _ opener = rawOpener{}

func (rawOpener) Interface(name string) (*net.Interface, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address: layer-2 announcements need an Ethernet link", name)
	}
	return ifi, nil
}

func (rawOpener) ARP(ifi *net.Interface) (frameConn, error) {
	c, err := packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
	if err != nil {
		return nil, fmt.Errorf("opening an ARP socket on %s (the agent needs CAP_NET_RAW): %w", ifi.Name, err)
	}
	return &packetConn{c: c}, nil
}

func (rawOpener) NDP(ifi *net.Interface) (ndpConn, error) {
	filter, err := ndpFilter()
	if err != nil {
		return nil, fmt.Errorf("assembling the neighbour discovery filter: %w", err)
	}
	c, err := packet.Listen(ifi, packet.Raw, etherTypeIPv6, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("opening an NDP socket on %s (the agent needs CAP_NET_RAW): %w", ifi.Name, err)
	}
	// Joining a group through the IPv6 stack, not only the packet socket,
	// makes the kernel send MLD reports, so that switches that snoop MLD
	// forward the solicited-node traffic to this port.
	g, _, err := ndp.Listen(ifi, ndp.Unspecified)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("opening an ICMPv6 socket on %s for multicast groups (IPv6 disabled on the link?): %w", ifi.Name, err)
	}
	var block ipv6.ICMPFilter
	block.SetAll(true) // every message is read from the packet socket
	if err := g.SetICMPFilter(&block); err != nil {
		c.Close()
		g.Close()
		return nil, fmt.Errorf("filtering ICMPv6 on %s: %w", ifi.Name, err)
	}
	return &packetNDPConn{packetConn: packetConn{c: c}, groups: g}, nil
}

type packetConn struct{ c *packet.Conn }

func (p *packetConn) ReadFrame(b []byte) (int, error) {
	n, _, err := p.c.ReadFrom(b)
	return n, err
}

func (p *packetConn) WriteFrame(b []byte) error {
	if len(b) < 6 {
		return fmt.Errorf("frame of %d bytes has no destination", len(b))
	}
	_, err := p.c.WriteTo(b, &packet.Addr{HardwareAddr: net.HardwareAddr(b[:6])})
	return err
}

func (p *packetConn) Close() error { return p.c.Close() }

type packetNDPConn struct {
	packetConn
	groups *ndp.Conn
}

func (p *packetNDPConn) JoinGroup(g netip.Addr) error  { return p.groups.JoinGroup(g) }
func (p *packetNDPConn) LeaveGroup(g netip.Addr) error { return p.groups.LeaveGroup(g) }

func (p *packetNDPConn) Close() error {
	err := p.packetConn.Close()
	if gerr := p.groups.Close(); err == nil {
		err = gerr
	}
	return err
}

// broadcast is where gratuitous ARP and probes go.
var broadcast = ethernet.Broadcast
