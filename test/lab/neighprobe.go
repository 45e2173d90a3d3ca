package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// NeighborProbe asks, from a host's eth0, who has each of a set of
// addresses (ARP requests for IPv4, neighbour solicitations for IPv6) every
// interval, and records which MACs answered each round and when. It is how
// the lab's client times failovers and catches two nodes answering for one
// address.
type NeighborProbe struct {
	Interval time.Duration

	ips    []netip.Addr
	srcMAC net.HardwareAddr
	src4   netip.Addr
	src6   netip.Addr
	arp    *packet.Conn
	ndp    *ipv6.PacketConn // ICMPv6 (see openNDP)
	ifi    *net.Interface
	stop   chan struct{}
	done   sync.WaitGroup

	mu     sync.Mutex
	rounds map[netip.Addr][]*ProbeRound
}

// ProbeRound is one question about one address and the answers to it (those
// that arrived before the next question).
type ProbeRound struct {
	Sent    time.Time
	Answers []ProbeAnswer
}

// ProbeAnswer is one reply: who answered and when.
type ProbeAnswer struct {
	At  time.Time
	MAC string
}

// MACs returns the distinct MACs that answered the round, in order.
func (r *ProbeRound) MACs() []string {
	var out []string
	for _, a := range r.Answers {
		if !slices.Contains(out, a.MAC) {
			out = append(out, a.MAC)
		}
	}
	return out
}

// StartNeighborProbe starts probing ips from h's eth0 every interval. h
// needs an address of each family it probes for. Stop it when done (it is
// also stopped with the host).
func (h *Host) StartNeighborProbe(ips []netip.Addr, interval time.Duration) (*NeighborProbe, error) {
	p := &NeighborProbe{Interval: interval, ips: slices.Clone(ips), srcMAC: h.MAC, stop: make(chan struct{}),
		rounds: map[netip.Addr][]*ProbeRound{}}
	h.mu.Lock()
	for _, a := range h.Addrs {
		if a.Addr().Is4() && !p.src4.IsValid() {
			p.src4 = a.Addr()
		}
	}
	h.mu.Unlock()
	var need4, need6 bool
	for _, ip := range ips {
		need4 = need4 || ip.Is4()
		need6 = need6 || ip.Is6()
	}
	if need4 && !p.src4.IsValid() {
		return nil, fmt.Errorf("host %q has no IPv4 address to ask for %v from", h.Name, ips)
	}
	err := inNetns(h.Netns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		p.ifi = ifi
		if need4 {
			if p.arp, err = packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil); err != nil {
				return fmt.Errorf("opening an ARP socket: %w", err)
			}
		}
		if need6 {
			if p.ndp, p.src6, err = openNDP(ifi); err != nil {
				return fmt.Errorf("opening an NDP socket: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		p.closeConns()
		return nil, fmt.Errorf("probing neighbours from host %q: %w", h.Name, err)
	}
	if p.arp != nil {
		p.done.Add(1)
		go p.readARP()
	}
	if p.ndp != nil {
		p.done.Add(1)
		go p.readNDP()
	}
	p.done.Add(1)
	go p.ask()
	h.onClose(p.Stop)
	return p, nil
}

func (p *NeighborProbe) closeConns() {
	if p.arp != nil {
		p.arp.Close()
	}
	if p.ndp != nil {
		p.ndp.Close()
	}
}

// Stop ends probing; the rounds stay readable. Safe to call twice.
func (p *NeighborProbe) Stop() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.closeConns()
	p.done.Wait()
}

func (p *NeighborProbe) ask() {
	defer p.done.Done()
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		for _, ip := range p.ips {
			p.mu.Lock()
			p.rounds[ip] = append(p.rounds[ip], &ProbeRound{Sent: time.Now()})
			p.mu.Unlock()
			// A send that fails (the link is down) is a round nobody
			// answers, which is what it is.
			if ip.Is4() {
				_ = p.sendARP(ip)
			} else {
				_ = p.sendNS(ip)
			}
		}
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *NeighborProbe) sendARP(ip netip.Addr) error {
	req, err := arp.NewPacket(arp.OperationRequest, p.srcMAC, net.IP(p.src4.AsSlice()), ethernet.Broadcast, net.IP(ip.AsSlice()))
	if err != nil {
		return err
	}
	pb, err := req.MarshalBinary()
	if err != nil {
		return err
	}
	f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: p.srcMAC, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = p.arp.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast})
	return err
}

// openNDP opens an ICMPv6 socket on ifi's link-local address. (ndp.Conn
// names the interface in every destination's zone, which Go resolves in
// the calling thread's namespace, not the socket's: the lab sends from
// threads in the root namespace, so it addresses by index instead.)
func openNDP(ifi *net.Interface) (*ipv6.PacketConn, netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, netip.Addr{}, err
	}
	var ll netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Is6() && ip.IsLinkLocalUnicast() {
				ll = ip
			}
		}
	}
	if !ll.IsValid() {
		return nil, ll, fmt.Errorf("%s has no IPv6 link-local address", ifi.Name)
	}
	// The zone is the interface index, not its name: the net package caches
	// name-to-index lookups process-wide for a minute, and every lab
	// namespace has an eth0, so a name could resolve to another
	// namespace's index (bind: no such device).
	ic, err := icmp.ListenPacket("ip6:ipv6-icmp", ll.WithZone(strconv.Itoa(ifi.Index)).String())
	if err != nil {
		return nil, ll, err
	}
	pc := ic.IPv6PacketConn()
	for _, set := range []func() error{
		func() error { return pc.SetHopLimit(ndp.HopLimit) },
		func() error { return pc.SetMulticastHopLimit(ndp.HopLimit) },
		func() error { return pc.SetChecksum(true, 2) },
	} {
		if err := set(); err != nil {
			ic.Close()
			return nil, ll, err
		}
	}
	return pc, ll, nil
}

func (p *NeighborProbe) sendNS(ip netip.Addr) error {
	group, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return err
	}
	b, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: p.srcMAC}},
	})
	if err != nil {
		return err
	}
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: p.src6.AsSlice(), IfIndex: p.ifi.Index}
	_, err = p.ndp.WriteTo(b, cm, &net.IPAddr{IP: group.AsSlice(), Zone: strconv.Itoa(p.ifi.Index)})
	return err
}

func (p *NeighborProbe) record(ip netip.Addr, mac string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rs := p.rounds[ip]
	if len(rs) == 0 {
		return // not asked (yet): a gratuitous announcement
	}
	r := rs[len(rs)-1]
	r.Answers = append(r.Answers, ProbeAnswer{At: at, MAC: mac})
}

func (p *NeighborProbe) readARP() {
	defer p.done.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := p.arp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-p.stop:
				return
			default:
				continue
			}
		}
		at := time.Now()
		var f ethernet.Frame
		var pkt arp.Packet
		if f.UnmarshalBinary(buf[:n]) != nil || pkt.UnmarshalBinary(f.Payload) != nil {
			continue
		}
		// Only replies to our questions: gratuitous ARP is not an answer.
		if pkt.Operation != arp.OperationReply || !pkt.TargetIP.Equal(net.IP(p.src4.AsSlice())) {
			continue
		}
		ip, ok := netip.AddrFromSlice(pkt.SenderIP)
		if !ok {
			continue
		}
		p.record(ip.Unmap(), pkt.SenderHardwareAddr.String(), at)
	}
}

func (p *NeighborProbe) readNDP() {
	defer p.done.Done()
	buf := make([]byte, 2048)
	for {
		n, _, from, err := p.ndp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-p.stop:
				return
			default:
				continue
			}
		}
		at := time.Now()
		m, err := ndp.ParseMessage(buf[:n])
		if err != nil {
			continue
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		// Solicited: an answer to a question (ours: we are the only
		// asker in the lab); unsolicited NA is an announcement.
		if !ok || !na.Solicited {
			continue
		}
		mac := ""
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				mac = lla.Addr.String()
			}
		}
		if mac == "" {
			mac = "from " + from.String()
		}
		p.record(na.TargetAddress, mac, at)
	}
}

// Rounds returns a copy of the rounds for ip sent in [from, to) (a zero
// time is open).
func (p *NeighborProbe) Rounds(ip netip.Addr, from, to time.Time) []ProbeRound {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ProbeRound
	for _, r := range p.rounds[ip] {
		if (!from.IsZero() && r.Sent.Before(from)) || (!to.IsZero() && !r.Sent.Before(to)) {
			continue
		}
		out = append(out, ProbeRound{Sent: r.Sent, Answers: slices.Clone(r.Answers)})
	}
	return out
}

// FirstAnswer returns the first answer for ip after since from a MAC other
// than notMAC ("" = any).
func (p *NeighborProbe) FirstAnswer(ip netip.Addr, since time.Time, notMAC string) (ProbeAnswer, bool) {
	for _, r := range p.Rounds(ip, since, time.Time{}) {
		for _, a := range r.Answers {
			if a.MAC != notMAC {
				return a, true
			}
		}
	}
	return ProbeAnswer{}, false
}

// Summary is what a client saw of one address over a time window.
type Summary struct {
	Rounds int
	// Answered counts rounds per MAC that answered them.
	Answered map[string]int
	// Unanswered counts rounds nobody answered.
	Unanswered int
	// LongestGap is the longest time from a question to the next answered
	// one, over rounds nobody answered (0 if every round was answered).
	LongestGap time.Duration
	// Split is the time in which more than one MAC answered: the rounds
	// answered by two or more MACs, times the interval.
	Split time.Duration
	// SplitRounds counts those rounds.
	SplitRounds int
	// Last is the MACs that answered the last answered round.
	Last []string
	// LongestSendGap is the longest time between two questions. Far over
	// the interval, the client itself did not get the CPU: a gap as long
	// as it is the client's stall, not the answerer's.
	LongestSendGap time.Duration
}

// Summarize reports on the rounds for ip sent in [from, to).
func (p *NeighborProbe) Summarize(ip netip.Addr, from, to time.Time) Summary {
	return summarize(p.Rounds(ip, from, to), p.Interval)
}

func summarize(rounds []ProbeRound, interval time.Duration) Summary {
	s := Summary{Rounds: len(rounds), Answered: map[string]int{}}
	var gapStart time.Time
	for i, r := range rounds {
		if i > 0 {
			s.LongestSendGap = max(s.LongestSendGap, r.Sent.Sub(rounds[i-1].Sent))
		}
		macs := r.MACs()
		if len(macs) == 0 {
			s.Unanswered++
			if gapStart.IsZero() {
				gapStart = r.Sent
			}
			continue
		}
		if !gapStart.IsZero() {
			s.LongestGap = max(s.LongestGap, r.Sent.Sub(gapStart))
			gapStart = time.Time{}
		}
		for _, m := range macs {
			s.Answered[m]++
		}
		if len(macs) > 1 {
			s.SplitRounds++
			s.Split += interval
		}
		s.Last = macs
	}
	if !gapStart.IsZero() && len(rounds) > 0 {
		// Still unanswered at the end: the gap lasts at least until the
		// last question plus the interval.
		s.LongestGap = max(s.LongestGap, rounds[len(rounds)-1].Sent.Add(interval).Sub(gapStart))
	}
	return s
}

func (s Summary) String() string {
	return fmt.Sprintf("%d rounds, answered by %v, %d unanswered (longest gap %s), %d answered by two or more MACs (%s), last answered by %v; longest between questions %s",
		s.Rounds, s.Answered, s.Unanswered, s.LongestGap.Round(time.Millisecond), s.SplitRounds, s.Split, s.Last, s.LongestSendGap.Round(time.Millisecond))
}

// WhoHas asks from h's eth0 who has each of ips, twice within window, and
// returns the MACs that answered for each (none: no entry).
func (h *Host) WhoHas(ips []netip.Addr, window time.Duration) (map[netip.Addr][]string, error) {
	p, err := h.StartNeighborProbe(ips, window/2)
	if err != nil {
		return nil, err
	}
	// A measurement window, not a wait for a condition: answers that come
	// later than this are not answers a client would wait for.
	time.Sleep(window)
	p.Stop()
	out := map[netip.Addr][]string{}
	for _, ip := range ips {
		for _, r := range p.Rounds(ip, time.Time{}, time.Time{}) {
			for _, m := range r.MACs() {
				if !slices.Contains(out[ip], m) {
					out[ip] = append(out[ip], m)
				}
			}
		}
	}
	return out, nil
}
