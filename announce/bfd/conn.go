package bfd

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Source ports of Control packets (RFC 5881 §4): one per session.
const (
	minSourcePort = 49152
	maxSourcePort = 65535
)

// UDP is the real network: Control packets over UDP with TTL 255.
type UDP struct {
	// Ports override the destination ports (PortSingleHop, PortMultihop)
	// when non-zero, and ListenAddr4/6 the listening addresses; for tests.
	SingleHopPort, MultihopPort int
	ListenAddr4, ListenAddr6    netip.Addr

	mu    sync.Mutex
	conns []net.PacketConn
}

var _ Network = (*UDP)(nil)

func (u *UDP) port(multihop bool) int {
	if multihop {
		return cmpOr(u.MultihopPort, PortMultihop)
	}
	return cmpOr(u.SingleHopPort, PortSingleHop)
}

func cmpOr(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

// Dial binds a socket to a free source port in 49152-65535 and connects
// it to the peer.
func (u *UDP) Dial(p Peer) (Sender, error) {
	network := "udp4"
	if p.Addr.Is6() {
		network = "udp6"
	}
	raddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Addr, uint16(u.port(p.Multihop))))
	span := maxSourcePort - minSourcePort + 1
	start := rand.N(span)
	var lastErr error
	for i := range 64 { // a few tries: most of the range is free on a node
		port := minSourcePort + (start+i*997)%span
		laddr := &net.UDPAddr{IP: net.IP(p.Local.AsSlice()), Port: port}
		c, err := net.DialUDP(network, laddr, raddr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				lastErr = err
				continue
			}
			return nil, fmt.Errorf("opening a UDP socket to %s: %w", raddr, err)
		}
		if err := setTTL(c, p.Addr.Is6()); err != nil {
			c.Close()
			return nil, err
		}
		return &udpSender{c: c}, nil
	}
	return nil, fmt.Errorf("no free UDP source port in %d-%d for BFD: %w", minSourcePort, maxSourcePort, lastErr)
}

// setTTL makes every packet leave with TTL (hop limit) 255, so a directly
// connected receiver can tell it was not forwarded.
func setTTL(c *net.UDPConn, is6 bool) error {
	var err error
	if is6 {
		err = ipv6.NewConn(c).SetHopLimit(255)
	} else {
		err = ipv4.NewConn(c).SetTTL(255)
	}
	if err != nil {
		return fmt.Errorf("setting TTL 255 on the BFD socket: %w", err)
	}
	return nil
}

type udpSender struct{ c *net.UDPConn }

func (s *udpSender) Send(b []byte) error {
	_, err := s.c.Write(b)
	return err
}

func (s *udpSender) Close() error { return s.c.Close() }

// Listen opens the receiving socket of a family and hop kind and reads it
// until Close, asking the kernel for each packet's TTL.
func (u *UDP) Listen(is6, multihop bool, deliver func(Received)) error {
	network, laddr := "udp4", u.ListenAddr4
	if is6 {
		network, laddr = "udp6", u.ListenAddr6
	}
	addr := net.JoinHostPort("", fmt.Sprint(u.port(multihop)))
	if laddr.IsValid() {
		addr = netip.AddrPortFrom(laddr, uint16(u.port(multihop))).String()
	}
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		return fmt.Errorf("listening for BFD on UDP %s (is another BFD daemon running on this node?): %w", addr, err)
	}
	var read func([]byte) (int, int, net.Addr, error)
	if is6 {
		pc := ipv6.NewPacketConn(c)
		if err := pc.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
			c.Close()
			return fmt.Errorf("asking for the hop limit of BFD packets: %w", err)
		}
		read = func(b []byte) (int, int, net.Addr, error) {
			n, cm, src, err := pc.ReadFrom(b)
			ttl := -1
			if cm != nil {
				ttl = cm.HopLimit
			}
			return n, ttl, src, err
		}
	} else {
		pc := ipv4.NewPacketConn(c)
		if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
			c.Close()
			return fmt.Errorf("asking for the TTL of BFD packets: %w", err)
		}
		read = func(b []byte) (int, int, net.Addr, error) {
			n, cm, src, err := pc.ReadFrom(b)
			ttl := -1
			if cm != nil {
				ttl = cm.TTL
			}
			return n, ttl, src, err
		}
	}
	u.mu.Lock()
	u.conns = append(u.conns, c)
	u.mu.Unlock()
	go func() {
		buf := make([]byte, 512)
		for {
			n, ttl, src, err := read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			ua, ok := src.(*net.UDPAddr)
			if !ok {
				continue
			}
			deliver(Received{
				Src:      ua.AddrPort().Addr().Unmap(),
				TTL:      ttl,
				Data:     append([]byte(nil), buf[:n]...),
				Multihop: multihop,
			})
		}
	}()
	return nil
}

// Close closes the listening sockets.
func (u *UDP) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for _, c := range u.conns {
		errs = append(errs, c.Close())
	}
	u.conns = nil
	return errors.Join(errs...)
}
