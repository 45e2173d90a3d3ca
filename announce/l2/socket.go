package l2

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"
)

const (
	etherTypeARP = 0x0806
	// readRetry paces reads after an error, so a link that is down does
	// not make a reader spin.
	readRetry = 20 * time.Millisecond
)

// claimFunc receives every "ip is at mac" claim seen on an interface.
type claimFunc func(link string, ip netip.Addr, mac net.HardwareAddr)

// sockets are the raw ARP and NDP sockets of one interface. Each is opened
// on first use and read by its own goroutine, which reports every address
// claim it sees, so that probes and handovers can wait for them.
type sockets struct {
	ifi   *net.Interface
	claim claimFunc
	log   logr.Logger

	mu  sync.Mutex
	arp *packet.Conn
	ndp *ndp.Conn
}

func openSockets(name string, claim claimFunc, log logr.Logger) (*sockets, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	return &sockets{ifi: ifi, claim: claim, log: log}, nil
}

func (s *sockets) arpConn() (*packet.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.arp != nil {
		return s.arp, nil
	}
	c, err := packet.Listen(s.ifi, packet.Raw, etherTypeARP, nil)
	if err != nil {
		return nil, fmt.Errorf("opening an ARP socket on %s (needs CAP_NET_RAW): %w", s.ifi.Name, err)
	}
	s.arp = c
	go s.readARP(c)
	return c, nil
}

func (s *sockets) ndpConn() (*ndp.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ndp != nil {
		return s.ndp, nil
	}
	c, _, err := ndp.Listen(s.ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("opening an NDP socket on %s (needs CAP_NET_RAW and a link-local address): %w", s.ifi.Name, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, fmt.Errorf("filtering ICMPv6 on %s: %w", s.ifi.Name, err)
	}
	s.ndp = c
	go s.readNDP(c)
	return c, nil
}

func (s *sockets) readARP(c *packet.Conn) {
	buf := make([]byte, s.ifi.MTU+64)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			// ENETDOWN while the link is down, and the like: the socket
			// works again once the link is back.
			s.log.V(4).Info("Reading ARP failed", "interface", s.ifi.Name, "err", err.Error())
			time.Sleep(readRetry)
			continue
		}
		var f ethernet.Frame
		if err := f.UnmarshalBinary(buf[:n]); err != nil || f.EtherType != ethernet.EtherTypeARP {
			s.log.V(5).Info("Not an ARP frame", "interface", s.ifi.Name, "len", n)
			continue
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil {
			continue
		}
		if ip, mac, ok := announcedBy(&p); ok && !bytes.Equal(mac, s.ifi.HardwareAddr) {
			s.claim(s.ifi.Name, ip, mac)
		}
	}
}

func (s *sockets) readNDP(c *ndp.Conn) {
	for {
		m, _, _, err := c.ReadFrom()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			time.Sleep(readRetry) // link down, or an unparsable message
			continue
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok {
			continue
		}
		if mac, ok := targetLinkLayer(na); ok && !bytes.Equal(mac, s.ifi.HardwareAddr) {
			s.claim(s.ifi.Name, na.TargetAddress, mac)
		}
	}
}

// announce sends one round of announcements for ip: a gratuitous ARP
// request and reply, or an unsolicited neighbour advertisement.
func (s *sockets) announce(ip netip.Addr) error {
	if ip.Is4() {
		c, err := s.arpConn()
		if err != nil {
			return err
		}
		pkts, err := gratuitousARP(s.ifi.HardwareAddr, ip)
		if err != nil {
			return err
		}
		for _, p := range pkts {
			if err := s.writeARP(c, p); err != nil {
				return fmt.Errorf("sending gratuitous ARP for %s on %s: %w", ip, s.ifi.Name, err)
			}
		}
		return nil
	}
	c, err := s.ndpConn()
	if err != nil {
		return err
	}
	na, err := unsolicitedNA(s.ifi.HardwareAddr, ip)
	if err != nil {
		return err
	}
	if err := c.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("sending neighbour advertisement for %s on %s: %w", ip, s.ifi.Name, err)
	}
	return nil
}

// probe asks who uses ip; answers arrive through claim.
func (s *sockets) probe(ip netip.Addr) error {
	if ip.Is4() {
		c, err := s.arpConn()
		if err != nil {
			return err
		}
		p, err := arpProbe(s.ifi.HardwareAddr, ip)
		if err != nil {
			return err
		}
		if err := s.writeARP(c, p); err != nil {
			return fmt.Errorf("sending ARP probe for %s on %s: %w", ip, s.ifi.Name, err)
		}
		return nil
	}
	c, err := s.ndpConn()
	if err != nil {
		return err
	}
	ns, err := neighborProbe(s.ifi.HardwareAddr, ip)
	if err != nil {
		return err
	}
	dst, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return fmt.Errorf("solicited-node address of %s: %w", ip, err)
	}
	if err := c.WriteTo(ns, nil, dst); err != nil {
		return fmt.Errorf("sending neighbour solicitation for %s on %s: %w", ip, s.ifi.Name, err)
	}
	return nil
}

func (s *sockets) writeARP(c *packet.Conn, p *arp.Packet) error {
	b, err := arpFrame(s.ifi.HardwareAddr, p)
	if err != nil {
		return err
	}
	_, err = c.WriteTo(b, &packet.Addr{HardwareAddr: ethernet.Broadcast})
	return err
}

func (s *sockets) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.arp != nil {
		errs = append(errs, s.arp.Close())
		s.arp = nil
	}
	if s.ndp != nil {
		errs = append(errs, s.ndp.Close())
		s.ndp = nil
	}
	return errors.Join(errs...)
}
