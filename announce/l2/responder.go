package l2

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"k8s.io/utils/clock"
)

// readRetry paces reads after an error, so that a link that is down does
// not make a reader spin.
const readRetry = 20 * time.Millisecond

// answerFunc is the responder's one decision: does this node answer for
// ip on iface right now?
type answerFunc func(iface string, ip netip.Addr) bool

// claimFunc receives every "ip is at mac" another host says on iface;
// mac may point into the reader's buffer and must be copied to be kept.
type claimFunc func(iface string, ip netip.Addr, mac net.HardwareAddr)

// responder answers ARP requests and neighbour solicitations on one link
// for the addresses answer accepts, reports the claims it hears, and
// sends announcements and probes. It knows nothing of who owns what.
type responder struct {
	ifi    *net.Interface
	log    logr.Logger
	clock  clock.Clock
	open   opener
	answer answerFunc
	claim  claimFunc

	mu     sync.Mutex
	arp    frameConn
	ndp    ndpConn
	groups map[netip.Addr]int // solicited-node group -> VIPs that need it
	stop   chan struct{}
	closed bool
	wg     sync.WaitGroup
}

func newResponder(ifi *net.Interface, o opener, c clock.Clock, log logr.Logger, answer answerFunc, claim claimFunc) *responder {
	return &responder{
		ifi: ifi, open: o, clock: c, log: log.WithValues("interface", ifi.Name),
		answer: answer, claim: claim,
		groups: map[netip.Addr]int{},
		stop:   make(chan struct{}),
	}
}

var errClosed = errors.New("the layer-2 announcer is closed")

// ensure opens the socket of ip's family on first use and starts reading it.
func (r *responder) ensure(ip netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errClosed
	}
	if ip.Is4() {
		if r.arp != nil {
			return nil
		}
		c, err := r.open.ARP(r.ifi)
		if err != nil {
			return err
		}
		r.arp = c
		r.wg.Add(1)
		go r.read(c, r.handleARP)
		return nil
	}
	if r.ndp != nil {
		return nil
	}
	c, err := r.open.NDP(r.ifi)
	if err != nil {
		return err
	}
	r.ndp = c
	r.wg.Add(1)
	go r.read(c, r.handleNDP)
	return nil
}

func (r *responder) read(c frameConn, handle func(frameConn, []byte)) {
	defer r.wg.Done()
	buf := make([]byte, max(r.ifi.MTU, 1500)+ethHeaderLen)
	for {
		n, err := c.ReadFrame(buf)
		if err != nil {
			select {
			case <-r.stop:
				return
			default:
			}
			// ENETDOWN while the link is down, and the like: the socket
			// works again once the link is back.
			r.log.V(4).Info("Reading from a raw socket failed", "err", err.Error())
			select {
			case <-r.stop:
				return
			case <-r.clock.After(readRetry):
			}
			continue
		}
		handle(c, buf[:n])
	}
}

func (r *responder) mine(mac net.HardwareAddr) bool {
	return bytes.Equal(mac, r.ifi.HardwareAddr)
}

func (r *responder) handleARP(c frameConn, frame []byte) {
	src, p, err := parseARPFrame(frame)
	if err != nil || r.mine(src) || r.mine(p.SenderHardwareAddr) {
		return // not ARP, or our own frame looped back
	}
	if ip, ok := requestedIP(p); ok && r.answer(r.ifi.Name, ip) {
		if err := r.replyARP(c, ip, p); err != nil {
			r.log.Error(err, "Answering an ARP request failed", "vip", ip)
		}
	}
	if ip, mac, ok := announcedBy(p); ok {
		r.claim(r.ifi.Name, ip, mac)
	}
}

func (r *responder) replyARP(c frameConn, vip netip.Addr, req *arp.Packet) error {
	reply, err := arpReply(r.ifi.HardwareAddr, vip, req)
	if err != nil {
		return err
	}
	b, err := arpFrame(r.ifi.HardwareAddr, req.SenderHardwareAddr, reply)
	if err != nil {
		return err
	}
	return c.WriteFrame(b)
}

func (r *responder) handleNDP(c frameConn, frame []byte) {
	pkt, err := parseNDPFrame(frame)
	if err != nil || r.mine(pkt.srcMAC) {
		return
	}
	switch m := pkt.msg.(type) {
	case *ndp.NeighborSolicitation:
		if !r.answer(r.ifi.Name, m.TargetAddress) {
			return
		}
		na, dst := solicitedNA(r.ifi.HardwareAddr, m.TargetAddress, pkt.src)
		dstMAC := allNodesMAC
		if dst != netip.IPv6LinkLocalAllNodes() {
			dstMAC = pkt.srcMAC
			if lla, ok := linkLayer(m.Options, ndp.Source); ok {
				dstMAC = lla
			}
		}
		b, err := ndpFrame(r.ifi.HardwareAddr, dstMAC, m.TargetAddress, dst, na)
		if err == nil {
			err = c.WriteFrame(b)
		}
		if err != nil {
			r.log.Error(err, "Answering a neighbour solicitation failed", "vip", m.TargetAddress)
		}
	case *ndp.NeighborAdvertisement:
		mac, ok := linkLayer(m.Options, ndp.Target)
		if !ok {
			mac = pkt.srcMAC
		}
		r.claim(r.ifi.Name, m.TargetAddress, mac)
	}
}

func (r *responder) conns() (frameConn, ndpConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, nil, errClosed
	}
	return r.arp, r.ndp, nil
}

// announce sends one round of announcements for ip: a gratuitous ARP
// request and reply, or an unsolicited neighbour advertisement.
func (r *responder) announce(ip netip.Addr) error {
	arpc, ndpc, err := r.conns()
	if err != nil {
		return err
	}
	mac := r.ifi.HardwareAddr
	if ip.Is4() {
		if arpc == nil {
			return fmt.Errorf("no ARP socket on %s", r.ifi.Name)
		}
		pkts, err := gratuitousARP(mac, ip)
		if err != nil {
			return err
		}
		for _, p := range pkts {
			b, err := arpFrame(mac, broadcast, p)
			if err == nil {
				err = arpc.WriteFrame(b)
			}
			if err != nil {
				return fmt.Errorf("sending gratuitous ARP for %s on %s: %w", ip, r.ifi.Name, err)
			}
		}
		return nil
	}
	if ndpc == nil {
		return fmt.Errorf("no NDP socket on %s", r.ifi.Name)
	}
	na, err := unsolicitedNA(mac, ip)
	if err != nil {
		return err
	}
	b, err := ndpFrame(mac, allNodesMAC, ip, netip.IPv6LinkLocalAllNodes(), na)
	if err == nil {
		err = ndpc.WriteFrame(b)
	}
	if err != nil {
		return fmt.Errorf("sending neighbour advertisement for %s on %s: %w", ip, r.ifi.Name, err)
	}
	return nil
}

// probe asks who uses ip; answers arrive as claims.
func (r *responder) probe(ip netip.Addr) error {
	arpc, ndpc, err := r.conns()
	if err != nil {
		return err
	}
	mac := r.ifi.HardwareAddr
	if ip.Is4() {
		if arpc == nil {
			return fmt.Errorf("no ARP socket on %s", r.ifi.Name)
		}
		p, err := arpProbe(mac, ip)
		if err != nil {
			return err
		}
		b, err := arpFrame(mac, broadcast, p)
		if err == nil {
			err = arpc.WriteFrame(b)
		}
		if err != nil {
			return fmt.Errorf("sending ARP probe for %s on %s: %w", ip, r.ifi.Name, err)
		}
		return nil
	}
	if ndpc == nil {
		return fmt.Errorf("no NDP socket on %s", r.ifi.Name)
	}
	ns, err := neighborProbe(ip)
	if err != nil {
		return err
	}
	group, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return fmt.Errorf("solicited-node group of %s: %w", ip, err)
	}
	b, err := ndpFrame(mac, multicastMAC(group), netip.IPv6Unspecified(), group, ns)
	if err == nil {
		err = ndpc.WriteFrame(b)
	}
	if err != nil {
		return fmt.Errorf("sending neighbour solicitation for %s on %s: %w", ip, r.ifi.Name, err)
	}
	return nil
}

// watch joins the solicited-node group of an IPv6 VIP, where neighbours
// send their solicitations for it; unwatch leaves it once no VIP needs it.
func (r *responder) watch(ip netip.Addr) error   { return r.group(ip, 1) }
func (r *responder) unwatch(ip netip.Addr) error { return r.group(ip, -1) }

func (r *responder) group(ip netip.Addr, delta int) error {
	if !ip.Is6() {
		return nil
	}
	group, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return fmt.Errorf("solicited-node group of %s: %w", ip, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.ndp == nil {
		return nil // closing the socket left every group
	}
	n := r.groups[group] + delta
	switch {
	case n <= 0:
		delete(r.groups, group)
		if delta < 0 && n == 0 {
			if err := r.ndp.LeaveGroup(group); err != nil {
				return fmt.Errorf("leaving %s on %s: %w", group, r.ifi.Name, err)
			}
		}
	case n == 1 && delta > 0:
		if err := r.ndp.JoinGroup(group); err != nil {
			return fmt.Errorf("joining %s on %s: %w", group, r.ifi.Name, err)
		}
		r.groups[group] = n
	default:
		r.groups[group] = n
	}
	return nil
}

// close closes the sockets (which leaves their groups) and waits for the
// readers to end.
func (r *responder) close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.stop)
	var errs []error
	if r.arp != nil {
		errs = append(errs, r.arp.Close())
	}
	if r.ndp != nil {
		errs = append(errs, r.ndp.Close())
	}
	r.mu.Unlock()
	r.wg.Wait()
	return errors.Join(errs...)
}
