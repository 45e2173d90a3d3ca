// Package l2 makes VIPs reachable on a layer-2 segment: the owner binds each
// VIP to its announcing interface (the kernel then answers ARP and neighbour
// solicitations for it), announces it with gratuitous ARP or unsolicited
// neighbour advertisements, and refreshes those announcements. Before it
// first binds an address it probes for another host already using it.
//
// An address this node stops owning is handed over, not dropped: it stays
// bound until another agent announces it (or a bound passes), so that there
// is no moment in which no node answers.
package l2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bind"
)

// Defaults for Options left zero.
const (
	DefaultBurstCount      = 3
	DefaultBurstGap        = 300 * time.Millisecond
	DefaultProbeWait       = 200 * time.Millisecond
	DefaultProbeRetry      = 30 * time.Second
	DefaultHandoverTimeout = 2 * time.Second
)

// Options configure an Announcer.
type Options struct {
	Logger logr.Logger
	// GARPInterval is how often announcements are repeated; 0 turns the
	// refresh off.
	GARPInterval time.Duration
	// BurstCount announcements, BurstGap apart, follow a new binding.
	BurstCount int
	BurstGap   time.Duration
	// ProbeWait is how long a probe waits for another host to answer.
	ProbeWait time.Duration
	// ProbeRetry is how long an address found in use by another host is
	// left alone before it is probed again.
	ProbeRetry time.Duration
	// HandoverTimeout bounds how long an address no longer owned stays
	// bound while waiting for the new owner to announce it.
	HandoverTimeout time.Duration
	// Ours tells the VIPs this agent manages (addresses in a pool) from
	// other addresses, so that VIPs left by a crash are found and removed.
	Ours func(netip.Addr) bool
	// IsAgentMAC reports whether a MAC belongs to a node running an agent:
	// such a node answering a probe is a handover, not a conflict.
	IsAgentMAC func(net.HardwareAddr) bool
	// OnChange is called after a change took effect. It must not block.
	OnChange func(Change)
}

// Announcement is one VIP this node should announce, and where.
type Announcement struct {
	Addr      netip.Addr
	Interface string
}

// ChangeKind says what happened to a VIP.
type ChangeKind int

const (
	// Announced: the VIP is bound and the first announcement was sent.
	Announced ChangeKind = iota
	// Withdrawn: the VIP is no longer bound here.
	Withdrawn
	// Conflict: another host answered the probe; the VIP is not announced.
	Conflict
)

func (k ChangeKind) String() string {
	return [...]string{"Announced", "Withdrawn", "Conflict"}[k]
}

// Change reports a change that took effect.
type Change struct {
	Kind      ChangeKind
	Addr      netip.Addr
	Interface string
	MAC       net.HardwareAddr // Conflict: who answered
	// TakenBy is set on a Withdrawn after a handover: the MAC that
	// announced the address.
	TakenBy net.HardwareAddr
}

type phase int

const (
	owned phase = iota
	handingOver
)

type vip struct {
	iface     string
	phase     phase
	stopBurst context.CancelFunc
	deadline  *time.Timer // handingOver only
	reclaimed time.Time   // last reannouncement against another claim
	taken     bool        // handingOver: the new owner announced it
}

// reclaimEvery limits reannouncements of an owned address that another
// agent claims, so two agents that disagree do not flood the segment.
const (
	reclaimEvery = 5 * time.Second
	reclaimDelay = time.Second
)

// Announcer keeps this node's announced VIPs equal to a desired set.
type Announcer struct {
	opts Options
	log  logr.Logger

	mu        sync.Mutex
	vips      map[netip.Addr]*vip
	retryAt   map[netip.Addr]time.Time // addresses found in use by another host
	sockets   map[string]*sockets
	yield     bool
	closed    bool
	stopTimer chan struct{}

	probeMu sync.Mutex
	probes  map[netip.Addr]chan net.HardwareAddr

	claims chan claimSeen
	recent map[netip.Addr]claimSeen // peers' announcements seen lately
}

// New returns an Announcer that has bound nothing yet. Call Set (or
// Cleanup) once at start: it removes VIPs a crashed agent left behind.
func New(opts Options) *Announcer {
	if opts.BurstCount <= 0 {
		opts.BurstCount = DefaultBurstCount
	}
	if opts.BurstGap <= 0 {
		opts.BurstGap = DefaultBurstGap
	}
	if opts.ProbeWait <= 0 {
		opts.ProbeWait = DefaultProbeWait
	}
	if opts.ProbeRetry <= 0 {
		opts.ProbeRetry = DefaultProbeRetry
	}
	if opts.HandoverTimeout <= 0 {
		opts.HandoverTimeout = DefaultHandoverTimeout
	}
	if opts.Ours == nil {
		opts.Ours = func(netip.Addr) bool { return false }
	}
	if opts.IsAgentMAC == nil {
		opts.IsAgentMAC = func(net.HardwareAddr) bool { return false }
	}
	if opts.OnChange == nil {
		opts.OnChange = func(Change) {}
	}
	a := &Announcer{
		opts:      opts,
		log:       opts.Logger,
		vips:      map[netip.Addr]*vip{},
		retryAt:   map[netip.Addr]time.Time{},
		sockets:   map[string]*sockets{},
		stopTimer: make(chan struct{}),
		probes:    map[netip.Addr]chan net.HardwareAddr{},
		claims:    make(chan claimSeen, 1024),
		recent:    map[netip.Addr]claimSeen{},
	}
	go a.handleClaims()
	if opts.GARPInterval > 0 {
		go a.refresh(opts.GARPInterval)
	}
	return a
}

// Set makes the announced VIPs equal to want. New addresses are probed,
// bound and announced; addresses no longer wanted are handed over. It
// returns the errors of addresses that could not be changed; the others
// are applied.
func (a *Announcer) Set(ctx context.Context, want []Announcement) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("announcer is closed")
	}
	wanted := make(map[netip.Addr]string, len(want))
	var fresh []Announcement
	for _, w := range want {
		wanted[w.Addr] = w.Interface
		v, ok := a.vips[w.Addr]
		switch {
		case !ok:
			if t, found := a.retryAt[w.Addr]; found && time.Now().Before(t) {
				continue
			}
			fresh = append(fresh, w)
		case v.iface != w.Interface:
			// Moving to another interface: withdraw there, announce here.
			a.dropLocked(w.Addr)
			fresh = append(fresh, w)
		case v.phase == handingOver:
			// Ownership came back before the handover finished: the
			// other node may have announced, so announce again.
			v.phase = owned
			v.deadline.Stop()
			v.deadline = nil
			v.stopBurst = a.startBurst(w.Addr, w.Interface, a.opts.BurstCount)
		}
	}
	for addr, v := range a.vips {
		if _, ok := wanted[addr]; !ok && v.phase == owned {
			a.handOverLocked(addr, v)
		}
	}
	for addr := range a.retryAt {
		if _, ok := wanted[addr]; !ok {
			delete(a.retryAt, addr)
		}
	}

	var errs []error
	conflicts := a.probeAll(fresh)
	for _, w := range fresh {
		if mac, ok := conflicts[w.Addr]; ok {
			a.retryAt[w.Addr] = time.Now().Add(a.opts.ProbeRetry)
			a.log.Info("Not announcing: another host answers for the address", "vip", w.Addr, "interface", w.Interface, "mac", mac.String())
			a.opts.OnChange(Change{Kind: Conflict, Addr: w.Addr, Interface: w.Interface, MAC: mac})
			continue
		}
		delete(a.retryAt, w.Addr)
		a.vips[w.Addr] = &vip{iface: w.Interface, phase: owned}
	}
	added, removed, err := a.syncLinksLocked()
	if err != nil {
		errs = append(errs, err)
	}
	for _, addr := range removed {
		a.log.V(2).Info("Removed an address this node no longer owns", "vip", addr)
	}
	for _, w := range fresh {
		v, ok := a.vips[w.Addr]
		if !ok {
			continue
		}
		if !slices.Contains(added, w.Addr) && !a.isBound(w) {
			delete(a.vips, w.Addr) // binding failed; retried next pass
			continue
		}
		if err := a.announceOnce(w.Addr, w.Interface); err != nil {
			// Bound, so the kernel answers requests; the refresh retries.
			errs = append(errs, err)
		}
		v.stopBurst = a.startBurst(w.Addr, w.Interface, a.opts.BurstCount-1)
		a.log.V(2).Info("Announcing", "vip", w.Addr, "interface", w.Interface)
		a.opts.OnChange(Change{Kind: Announced, Addr: w.Addr, Interface: w.Interface})
	}
	return errors.Join(errs...)
}

// isBound reports whether w is on its interface already (bind.Set does
// not report addresses that were there before, e.g. after a restart).
func (a *Announcer) isBound(w Announcement) bool {
	l, err := netlink.LinkByName(w.Interface)
	if err != nil {
		return false
	}
	have, err := bind.Bound(l, func(x netip.Addr) bool { return x == w.Addr })
	return err == nil && have[w.Addr]
}

// SetYield makes owned addresses yield to another agent that announces them.
// The agent turns it on while its view of the cluster is stale (API server
// unreachable): it keeps announcing what it had, but if a peer with a fresh
// view took an address over, that peer is right.
func (a *Announcer) SetYield(on bool) {
	a.mu.Lock()
	a.yield = on
	a.mu.Unlock()
}

// Announced returns the VIPs bound and announced by this node, handovers
// in progress included.
func (a *Announcer) Announced() []Announcement {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Announcement, 0, len(a.vips))
	for addr, v := range a.vips {
		out = append(out, Announcement{Addr: addr, Interface: v.iface})
	}
	return out
}

// HandOver hands every VIP over and waits, up to the handover timeout, for
// the new owners to announce them; then it withdraws what is left.
func (a *Announcer) HandOver(ctx context.Context) error {
	a.mu.Lock()
	for addr, v := range a.vips {
		if v.phase == owned {
			a.handOverLocked(addr, v)
		}
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, a.opts.HandoverTimeout+100*time.Millisecond)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		a.mu.Lock()
		n := len(a.vips)
		a.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return a.WithdrawAll()
		case <-tick.C:
		}
	}
}

// WithdrawAll removes every VIP at once, without handover: what an agent
// that may no longer own anything (self-fencing) must do.
func (a *Announcer) WithdrawAll() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for addr := range a.vips {
		a.dropLocked(addr)
	}
	_, _, err := a.syncLinksLocked()
	return err
}

// Close withdraws everything and closes the sockets.
func (a *Announcer) Close() error {
	err := a.WithdrawAll()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return err
	}
	a.closed = true
	close(a.stopTimer)
	errs := []error{err}
	for name, s := range a.sockets {
		errs = append(errs, s.close())
		delete(a.sockets, name)
	}
	return errors.Join(errs...)
}

// handOverLocked stops announcing addr but keeps it bound until another
// agent announces it or the handover timeout passes.
func (a *Announcer) handOverLocked(addr netip.Addr, v *vip) {
	if v.stopBurst != nil {
		v.stopBurst()
	}
	v.phase = handingOver
	v.taken = false
	if c, ok := a.recent[addr]; ok && c.iface == v.iface && time.Since(c.at) < recentClaim {
		v.taken = true
		a.log.V(2).Info("Another node already announced the address; withdrawing", "vip", addr, "mac", c.mac.String())
		a.withdrawAfterLocked(addr, v, handoverGrace, c.mac)
		return
	}
	a.withdrawAfterLocked(addr, v, a.opts.HandoverTimeout, nil)
}

// handoverGrace keeps a handed-over address bound a little after the new
// owner announced it: clients that have not yet processed that
// announcement, and requests already on the wire, still find it here.
const handoverGrace = 150 * time.Millisecond

// withdrawAfterLocked withdraws addr, still handing over, after d (again,
// if a withdrawal was already scheduled).
func (a *Announcer) withdrawAfterLocked(addr netip.Addr, v *vip, d time.Duration, takenBy net.HardwareAddr) {
	if v.deadline != nil {
		v.deadline.Stop()
	}
	v.deadline = time.AfterFunc(d, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if cur, ok := a.vips[addr]; ok && cur == v && v.phase == handingOver {
			if takenBy == nil {
				a.log.V(2).Info("Handover timed out; withdrawing", "vip", addr)
			}
			a.withdrawLocked(addr, takenBy)
		}
	})
}

// forgetLocked stops addr's timers and forgets it.
func (a *Announcer) forgetLocked(addr netip.Addr) (*vip, bool) {
	v, ok := a.vips[addr]
	if !ok {
		return nil, false
	}
	if v.stopBurst != nil {
		v.stopBurst()
	}
	if v.deadline != nil {
		v.deadline.Stop()
	}
	delete(a.vips, addr)
	return v, true
}

// dropLocked forgets addr and reports it withdrawn; the caller syncs links.
func (a *Announcer) dropLocked(addr netip.Addr) {
	if v, ok := a.forgetLocked(addr); ok {
		a.opts.OnChange(Change{Kind: Withdrawn, Addr: addr, Interface: v.iface})
	}
}

// withdrawLocked unbinds one address now.
func (a *Announcer) withdrawLocked(addr netip.Addr, takenBy net.HardwareAddr) {
	v, ok := a.forgetLocked(addr)
	if !ok {
		return
	}
	if _, _, err := bind.Set(v.iface, a.boundOn(v.iface), a.opts.Ours); err != nil {
		a.log.Error(err, "Withdrawing a VIP failed; it is retried on the next reconcile", "vip", addr, "interface", v.iface)
	}
	a.opts.OnChange(Change{Kind: Withdrawn, Addr: addr, Interface: v.iface, TakenBy: takenBy})
}

// boundOn lists the VIPs that should be bound on iface.
func (a *Announcer) boundOn(iface string) []netip.Addr {
	var out []netip.Addr
	for addr, v := range a.vips {
		if v.iface == iface {
			out = append(out, addr)
		}
	}
	return out
}

// syncLinksLocked makes every interface's VIPs equal to a.vips, which also
// removes VIPs this agent bound before a crash and no longer owns.
func (a *Announcer) syncLinksLocked() (added, removed []netip.Addr, err error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	var errs []error
	for _, l := range ls {
		name := l.Attrs().Name
		if l.Attrs().Flags&net.FlagLoopback != 0 || name == BGPInterface {
			continue
		}
		add, rm, err := bind.Set(name, a.boundOn(name), a.opts.Ours)
		added = append(added, add...)
		removed = append(removed, rm...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return added, removed, errors.Join(errs...)
}

func (a *Announcer) socketsFor(name string) (*sockets, error) {
	if s, ok := a.sockets[name]; ok {
		return s, nil
	}
	s, err := openSockets(name, a.claim, a.log)
	if err != nil {
		return nil, err
	}
	a.sockets[name] = s
	return s, nil
}

func (a *Announcer) announceOnce(addr netip.Addr, iface string) error {
	s, err := a.socketsFor(iface)
	if err != nil {
		return err
	}
	return s.announce(addr)
}

// startBurst repeats the announcement n more times, BurstGap apart.
func (a *Announcer) startBurst(addr netip.Addr, iface string, n int) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	if n <= 0 {
		return cancel
	}
	go func() {
		t := time.NewTicker(a.opts.BurstGap)
		defer t.Stop()
		for i := 0; i < n; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			a.mu.Lock()
			err := a.announceOnce(addr, iface)
			a.mu.Unlock()
			if err != nil {
				a.log.Error(err, "Sending an announcement failed", "vip", addr, "interface", iface)
			}
		}
	}()
	return cancel
}

// refresh repeats every owned VIP's announcement, so that hosts that
// missed or expired it learn it again.
func (a *Announcer) refresh(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-a.stopTimer:
			return
		case <-t.C:
		}
		a.mu.Lock()
		for addr, v := range a.vips {
			if v.phase != owned {
				continue
			}
			if err := a.announceOnce(addr, v.iface); err != nil {
				a.log.Error(err, "Refreshing an announcement failed", "vip", addr, "interface", v.iface)
			}
		}
		a.mu.Unlock()
	}
}

// probeAll probes every address in batch at once and waits one ProbeWait
// for answers. It returns the addresses another (non-agent) host answered
// for, with that host's MAC. An answer from an agent's node is a handover
// in progress and ends that address's wait early.
func (a *Announcer) probeAll(batch []Announcement) map[netip.Addr]net.HardwareAddr {
	if len(batch) == 0 {
		return nil
	}
	waiting := map[netip.Addr]chan net.HardwareAddr{}
	a.probeMu.Lock()
	for _, w := range batch {
		ch := make(chan net.HardwareAddr, 8)
		a.probes[w.Addr] = ch
		waiting[w.Addr] = ch
	}
	a.probeMu.Unlock()
	defer func() {
		a.probeMu.Lock()
		for _, w := range batch {
			delete(a.probes, w.Addr)
		}
		a.probeMu.Unlock()
	}()

	for _, w := range batch {
		s, err := a.socketsFor(w.Interface)
		if err == nil {
			err = s.probe(w.Addr)
		}
		if err != nil {
			// Without a probe the address is announced anyway: a conflict
			// check must not keep a Service unreachable.
			a.log.Error(err, "Probing an address failed; announcing it unprobed", "vip", w.Addr, "interface", w.Interface)
			delete(waiting, w.Addr)
		}
	}
	conflicts := map[netip.Addr]net.HardwareAddr{}
	deadline := time.NewTimer(a.opts.ProbeWait)
	defer deadline.Stop()
	for len(waiting) > 0 {
		progressed := false
		for addr, ch := range waiting {
			select {
			case mac := <-ch:
				progressed = true
				if a.opts.IsAgentMAC(mac) {
					delete(waiting, addr)
				} else {
					conflicts[addr] = mac
					delete(waiting, addr)
				}
			default:
			}
		}
		if progressed {
			continue
		}
		select {
		case <-deadline.C:
			return conflicts
		case <-time.After(5 * time.Millisecond):
		}
	}
	return conflicts
}

// claim handles "ip is at mac" seen on iface. It runs on a socket's reader
// goroutine, which must never wait for a.mu: Set holds a.mu while a probe
// waits for that same reader. So it answers probes directly and queues the
// rest for handleClaims.
func (a *Announcer) claim(iface string, ip netip.Addr, mac net.HardwareAddr) {
	a.probeMu.Lock()
	ch, probing := a.probes[ip]
	a.probeMu.Unlock()
	if probing {
		select {
		case ch <- mac:
		default:
		}
		return
	}
	select {
	case a.claims <- claimSeen{iface: iface, ip: ip, mac: mac, at: time.Now()}:
	default:
		// An ARP storm: dropping a claim only delays a handover to its
		// timeout.
	}
}

type claimSeen struct {
	iface string
	ip    netip.Addr
	mac   net.HardwareAddr
	at    time.Time
}

// recentClaim is how long a peer's announcement still counts for a
// handover that starts after it was seen (the new owner may announce
// before this agent learns that it lost the address).
const recentClaim = time.Second

// handleClaims finishes handovers (and, when yielding, gives addresses up)
// when another agent announces an address this node holds.
func (a *Announcer) handleClaims() {
	for {
		select {
		case <-a.stopTimer:
			return
		case c := <-a.claims:
			agent := a.opts.IsAgentMAC(c.mac)
			a.log.V(4).Info("Address claim seen", "vip", c.ip, "mac", c.mac.String(), "interface", c.iface, "agent", agent)
			if !agent {
				continue
			}
			a.mu.Lock()
			a.recent[c.ip] = c
			v, ok := a.vips[c.ip]
			switch {
			case !ok || v.iface != c.iface:
			case v.phase == handingOver:
				if !v.taken {
					v.taken = true
					a.log.V(2).Info("Another node announced the address; withdrawing", "vip", c.ip, "mac", c.mac.String())
					a.withdrawAfterLocked(c.ip, v, handoverGrace, c.mac)
				}
			case a.yield:
				a.log.V(2).Info("Another node with a fresher view announced the address; yielding it", "vip", c.ip, "mac", c.mac.String())
				a.withdrawLocked(c.ip, c.mac)
			case time.Since(v.reclaimed) > reclaimEvery:
				// A peer took the address over early (it suspected this
				// node dead) and will hand it back: win the clients back.
				// Wait a little first: if this node is in fact losing the
				// address, its own view catches up and it hands over.
				v.reclaimed = time.Now()
				ip, mac := c.ip, c.mac
				time.AfterFunc(reclaimDelay, func() {
					a.mu.Lock()
					defer a.mu.Unlock()
					if cur, ok := a.vips[ip]; !ok || cur != v || v.phase != owned || a.closed {
						return
					}
					a.log.V(2).Info("Another node announced an address this node owns; announcing it again", "vip", ip, "mac", mac.String())
					if v.stopBurst != nil {
						v.stopBurst()
					}
					if err := a.announceOnce(ip, v.iface); err != nil {
						a.log.Error(err, "Reannouncing failed", "vip", ip)
					}
					v.stopBurst = a.startBurst(ip, v.iface, a.opts.BurstCount-1)
				})
			}
			for ip, old := range a.recent {
				if time.Since(old.at) > recentClaim {
					delete(a.recent, ip)
				}
			}
			a.mu.Unlock()
		}
	}
}
