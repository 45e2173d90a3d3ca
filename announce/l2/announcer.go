// Package l2 makes VIPs reachable on a layer-2 segment without binding them:
// the owner answers ARP requests and IPv6 neighbour solicitations for its
// VIPs itself, from raw sockets, and announces them with gratuitous ARP or
// unsolicited neighbour advertisements on takeover and every GARPInterval.
// The kernel never holds a VIP, so a process that dies stops answering and
// leaves nothing behind. Before it first answers for an address it probes
// for another host already using it (RFC 5227).
//
// Who owns a VIP is not decided here: Set takes the desired set, and the
// claims this node hears from other hosts are reported (OnClaim) for the
// caller to judge. An address this node stops owning is handed over, not
// dropped: it is still answered until another agent announces it (or
// HandoverTimeout passes), so that there is no moment nobody answers.
package l2

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Defaults for Options left zero.
const (
	DefaultBurstCount      = 3
	DefaultBurstGap        = 300 * time.Millisecond
	DefaultProbeWait       = 200 * time.Millisecond
	DefaultProbeRetry      = 30 * time.Second
	DefaultHandoverTimeout = 2 * time.Second
)

const (
	// handoverGrace keeps answering a handed-over address a little after
	// the new owner announced it: clients that have not processed that
	// announcement yet, and requests already on the wire, still get an
	// answer.
	handoverGrace = 150 * time.Millisecond
	// recentClaim is how long another agent's announcement of an owned
	// address still counts as "taken" for a handover that starts after it
	// (the new owner may announce before this agent learns that it lost
	// the address).
	recentClaim = time.Second
	// silentProbeFresh is how long a Probe that nobody answered stands in
	// for the conflict probe of a Set that follows it, so that a takeover
	// after a probe does not wait for a second one.
	silentProbeFresh = time.Second
)

// Options configure an Announcer.
type Options struct {
	Logger logr.Logger
	// Clock is every timer's and Now's source; the real clock if nil.
	Clock clock.WithTicker
	// GARPInterval is how often announcements are repeated; 0 turns the
	// refresh off.
	GARPInterval time.Duration
	// HandoverTimeout bounds how long an address no longer owned is still
	// answered while waiting for the new owner to announce it.
	HandoverTimeout time.Duration
	// BurstCount announcements, BurstGap apart, follow a takeover.
	BurstCount int
	BurstGap   time.Duration
	// ProbeWait is how long the conflict probe waits for another host.
	ProbeWait time.Duration
	// ProbeRetry is how long an address found in use by another host is
	// left alone before it is probed again.
	ProbeRetry time.Duration
	// IsAgentMAC reports whether a MAC belongs to a node running an agent:
	// such a node answering a probe is a handover, not a conflict.
	IsAgentMAC func(net.HardwareAddr) bool
	// OnChange is called after a change took effect, in order, from one
	// goroutine, never with a lock held. It must not call back into the
	// Announcer's HandOver.
	OnChange func(Change)
	// OnClaim is called when another host says it has an address this
	// node answers for, probes, or hands over: a gratuitous ARP, an
	// unsolicited neighbour advertisement, or the answer to a probe. It
	// runs on a socket's reader and must not block.
	OnClaim func(iface string, ip netip.Addr, mac net.HardwareAddr)

	// open replaces the raw sockets in tests.
	open opener
}

// Announcement is one VIP this node should answer for, and where.
type Announcement struct {
	Addr      netip.Addr
	Interface string
}

// ChangeKind says what happened to a VIP.
type ChangeKind int

const (
	// Announced: the VIP is answered and its first announcement was sent.
	Announced ChangeKind = iota
	// Withdrawn: the VIP is no longer answered here.
	Withdrawn
	// Conflict: another host (not an agent) answered the probe; the VIP
	// is not answered, and is probed again after ProbeRetry.
	Conflict
)

func (k ChangeKind) String() string {
	switch k {
	case Announced:
		return "Announced"
	case Withdrawn:
		return "Withdrawn"
	case Conflict:
		return "Conflict"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change reports a change that took effect.
type Change struct {
	Kind      ChangeKind
	Addr      netip.Addr
	Interface string
	// MAC is, for a Conflict, the host that answered the probe; for a
	// Withdrawn at the end of a handover, the agent that took the address
	// over (nil when the handover timed out).
	MAC net.HardwareAddr
}

type state int

const (
	probing     state = iota // conflict probe in flight; not answered yet
	owned                    // answered and announced
	handingOver              // answered, not announced; ends when taken or due
	conflicted               // another host has it; probed again when due
)

// entry is one VIP this node answers for or is about to. due is when its
// next step is; the announcer's loop takes every step.
type entry struct {
	iface     string
	state     state
	due       time.Time
	sent      bool // probing: the probe went out
	burstLeft int  // owned: announcements left in the takeover burst
	reported  bool // Announced was reported, so Withdrawn will be
	claimAt   time.Time
	claimBy   net.HardwareAddr // owned: last agent that announced it too
	takenBy   net.HardwareAddr // handingOver: the agent that took it
}

func (e *entry) answering() bool { return e.state == owned || e.state == handingOver }

type actKind int

const (
	actJoin actKind = iota
	actLeave
	actProbe
	actAnnounce
	actReport
)

// action is I/O or a callback the loop performs outside the lock.
type action struct {
	kind   actKind
	addr   netip.Addr
	iface  string
	change Change
}

type waiter struct {
	iface string
	ch    chan net.HardwareAddr
}

type silentProbe struct {
	iface string
	at    time.Time
}

// Announcer keeps the VIPs this node answers for equal to a desired set.
type Announcer struct {
	opts  Options
	log   logr.Logger
	clock clock.WithTicker

	respMu     sync.Mutex
	responders map[string]*responder

	mu      sync.RWMutex
	entries map[netip.Addr]*entry
	waiters map[netip.Addr][]*waiter // Probe calls in flight
	silent  map[netip.Addr]silentProbe
	pending []action // queued outside the loop, run by its next pass
	drained []chan struct{}
	closed  bool

	kick  chan struct{}
	syncs chan chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

// New returns an Announcer that answers for nothing yet.
func New(opts Options) *Announcer {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
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
	if opts.IsAgentMAC == nil {
		opts.IsAgentMAC = func(net.HardwareAddr) bool { return false }
	}
	if opts.OnChange == nil {
		opts.OnChange = func(Change) {}
	}
	if opts.OnClaim == nil {
		opts.OnClaim = func(string, netip.Addr, net.HardwareAddr) {}
	}
	if opts.open == nil {
		opts.open = rawOpener{}
	}
	a := &Announcer{
		opts:       opts,
		log:        opts.Logger,
		clock:      opts.Clock,
		responders: map[string]*responder{},
		entries:    map[netip.Addr]*entry{},
		waiters:    map[netip.Addr][]*waiter{},
		silent:     map[netip.Addr]silentProbe{},
		kick:       make(chan struct{}, 1),
		syncs:      make(chan chan struct{}),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	go a.run()
	return a
}

// Set makes the answered VIPs equal to want and returns at once: new
// addresses are probed, then answered and announced, by the announcer's
// loop (OnChange tells when); addresses no longer wanted are handed over.
// It returns the errors of addresses it could not take on (an interface
// that is missing, or a socket it cannot open); those keep the state they
// had, and the others are applied.
func (a *Announcer) Set(ctx context.Context, want []Announcement) error {
	wanted := make(map[netip.Addr]string, len(want))
	failed := map[netip.Addr]bool{}
	var errs []error
	checked := map[string]error{} // interfaces looked up in this call
	replaced := map[string]bool{}
	for _, w := range want {
		if !w.Addr.IsValid() || w.Addr.Is4In6() {
			errs = append(errs, fmt.Errorf("announcing %q on %s: not an IPv4 or IPv6 address", w.Addr, w.Interface))
			continue
		}
		if other, dup := wanted[w.Addr]; dup && other != w.Interface {
			errs = append(errs, fmt.Errorf("announcing %s: asked for on both %s and %s; keeping %s", w.Addr, other, w.Interface, other))
			continue
		}
		err, seen := checked[w.Interface]
		var r *responder
		if !seen {
			var again bool
			r, again, err = a.responder(w.Interface)
			checked[w.Interface] = err
			replaced[w.Interface] = again
		} else if err == nil {
			r = a.existingResponder(w.Interface)
		}
		if err == nil {
			err = r.ensure(w.Addr)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("announcing %s on %s: %w", w.Addr, w.Interface, err))
			failed[w.Addr] = true
			continue
		}
		wanted[w.Addr] = w.Interface
	}

	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errClosed
	}
	now := a.clock.Now()
	for addr, e := range a.entries {
		if replaced[e.iface] && addr.Is6() {
			// The new sockets are in no group yet.
			a.pending = append(a.pending, action{kind: actJoin, addr: addr, iface: e.iface})
		}
		iface, ok := wanted[addr]
		switch {
		case !ok && failed[addr]:
			// Left as it is: a failure to look at the interface must not
			// withdraw what it answers for.
		case !ok:
			a.unwantLocked(addr, e, now)
		case iface != e.iface:
			a.deleteLocked(addr, e) // answered on the new interface below
		case e.state == handingOver:
			// Ownership came back before the handover finished: the other
			// node may have announced, so announce again.
			a.log.V(2).Info("Owning the address again; announcing it", "vip", addr, "interface", iface)
			e.state, e.takenBy = owned, nil
			e.burstLeft, e.due = a.opts.BurstCount, now
		}
	}
	for addr, iface := range wanted {
		if _, ok := a.entries[addr]; ok {
			continue
		}
		e := &entry{iface: iface, state: probing, due: now}
		if s, ok := a.silent[addr]; ok && s.iface == iface && now.Sub(s.at) <= silentProbeFresh {
			// A Probe just found nobody: that was the conflict probe.
			e.state, e.burstLeft = owned, a.opts.BurstCount
		}
		a.entries[addr] = e
		if addr.Is6() {
			a.pending = append(a.pending, action{kind: actJoin, addr: addr, iface: iface})
		}
	}
	for addr, s := range a.silent {
		if now.Sub(s.at) > silentProbeFresh {
			delete(a.silent, addr)
		}
	}
	a.mu.Unlock()
	a.wake()
	return errors.Join(errs...)
}

// unwantLocked starts the handover of an answered address; one still being
// probed or in conflict is forgotten.
func (a *Announcer) unwantLocked(addr netip.Addr, e *entry, now time.Time) {
	switch e.state {
	case owned:
		a.handOverLocked(addr, e, now)
	case probing, conflicted:
		a.deleteLocked(addr, e)
	}
}

func (a *Announcer) handOverLocked(addr netip.Addr, e *entry, now time.Time) {
	e.state, e.burstLeft, e.takenBy = handingOver, 0, nil
	if e.claimBy != nil && now.Sub(e.claimAt) < recentClaim {
		a.log.V(2).Info("Another agent already announced the address; handing it over", "vip", addr, "mac", e.claimBy.String())
		e.takenBy, e.due = e.claimBy, now.Add(handoverGrace)
		return
	}
	a.log.V(2).Info("Handing the address over; answering until another agent announces it", "vip", addr, "timeout", a.opts.HandoverTimeout)
	e.due = now.Add(a.opts.HandoverTimeout)
}

// deleteLocked stops answering addr at once; the loop reports it.
func (a *Announcer) deleteLocked(addr netip.Addr, e *entry) {
	delete(a.entries, addr)
	if addr.Is6() {
		a.pending = append(a.pending, action{kind: actLeave, addr: addr, iface: e.iface})
	}
	if e.reported {
		a.pending = append(a.pending, action{kind: actReport, change: Change{Kind: Withdrawn, Addr: addr, Interface: e.iface, MAC: e.takenBy}})
	}
}

// Announced returns the VIPs this node answers for now, handovers in
// progress included, sorted by address.
func (a *Announcer) Announced() []Announcement {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]Announcement, 0, len(a.entries))
	for addr, e := range a.entries {
		if e.answering() {
			out = append(out, Announcement{Addr: addr, Interface: e.iface})
		}
	}
	slices.SortFunc(out, func(x, y Announcement) int {
		return cmp.Or(x.Addr.Compare(y.Addr), cmp.Compare(x.Interface, y.Interface))
	})
	return out
}

// answers is the responders' decision: answer for ip on iface now?
func (a *Announcer) answers(iface string, ip netip.Addr) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	e, ok := a.entries[ip]
	return ok && e.iface == iface && e.answering()
}

// Probe sends an ARP probe or a neighbour solicitation for ip on iface and
// returns the MAC of the first host that answers, or a nil MAC and a nil
// error when nobody answered before ctx ended. A successor calls it before
// taking a VIP over from a silent owner; a Set that takes ip on iface
// within a second after a silent Probe skips its own conflict probe.
func (a *Announcer) Probe(ctx context.Context, iface string, ip netip.Addr) (net.HardwareAddr, error) {
	if !ip.IsValid() || ip.Is4In6() {
		return nil, fmt.Errorf("probing %q on %s: not an IPv4 or IPv6 address", ip, iface)
	}
	r, replaced, err := a.responder(iface)
	if err == nil {
		err = r.ensure(ip)
	}
	if err != nil {
		return nil, fmt.Errorf("probing %s on %s: %w", ip, iface, err)
	}
	if replaced {
		a.mu.Lock()
		for addr, e := range a.entries {
			if e.iface == iface && addr.Is6() {
				a.pending = append(a.pending, action{kind: actJoin, addr: addr, iface: iface})
			}
		}
		a.mu.Unlock()
		a.wake()
	}
	w := &waiter{iface: iface, ch: make(chan net.HardwareAddr, 1)}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, errClosed
	}
	a.waiters[ip] = append(a.waiters[ip], w)
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.waiters[ip] = slices.DeleteFunc(a.waiters[ip], func(x *waiter) bool { return x == w })
		if len(a.waiters[ip]) == 0 {
			delete(a.waiters, ip)
		}
		a.mu.Unlock()
	}()
	if err := r.probe(ip); err != nil {
		return nil, err
	}
	select {
	case mac := <-w.ch:
		return mac, nil
	case <-ctx.Done():
		a.mu.Lock()
		a.silent[ip] = silentProbe{iface: iface, at: a.clock.Now()}
		a.mu.Unlock()
		return nil, nil
	}
}

// claim handles "ip is at mac" heard on iface from another host. It runs
// on a socket's reader, so it never waits for I/O.
func (a *Announcer) claim(iface string, ip netip.Addr, mac net.HardwareAddr) {
	a.mu.RLock()
	e, ours := a.entries[ip]
	ours = ours && e.iface == iface
	probed := len(a.waiters[ip]) > 0
	a.mu.RUnlock()
	if !ours && !probed {
		return // ARP chatter about other hosts' addresses
	}
	mac = bytes.Clone(mac) // it may point into the reader's buffer
	agent := a.opts.IsAgentMAC(mac)

	relevant := false
	a.mu.Lock()
	now := a.clock.Now()
	if e, ok := a.entries[ip]; ok && e.iface == iface {
		relevant = true
		a.claimLocked(ip, e, mac, agent, now)
	}
	for _, w := range a.waiters[ip] {
		if w.iface == iface {
			relevant = true
			select {
			case w.ch <- mac:
			default: // a first answer is already there
			}
		}
	}
	a.mu.Unlock()
	a.wake()
	if relevant {
		a.opts.OnClaim(iface, ip, mac)
	}
}

func (a *Announcer) claimLocked(ip netip.Addr, e *entry, mac net.HardwareAddr, agent bool, now time.Time) {
	switch e.state {
	case probing:
		if agent {
			// The old owner still answers: a handover in progress. Take
			// over now; it withdraws when it hears the announcement.
			a.log.V(2).Info("Another agent answers for the address; taking it over", "vip", ip, "mac", mac.String())
			e.state, e.burstLeft, e.due = owned, a.opts.BurstCount, now
			return
		}
		a.log.Info("Not announcing: another host answers for the address", "vip", ip, "interface", e.iface, "mac", mac.String(), "retry", a.opts.ProbeRetry)
		e.state, e.due = conflicted, now.Add(a.opts.ProbeRetry)
		a.pending = append(a.pending, action{kind: actReport, change: Change{Kind: Conflict, Addr: ip, Interface: e.iface, MAC: mac}})
	case owned:
		if agent {
			e.claimAt, e.claimBy = now, mac
		}
	case handingOver:
		if agent && e.takenBy == nil {
			a.log.V(2).Info("Another agent announced the address; withdrawing it", "vip", ip, "mac", mac.String())
			e.takenBy = mac
			if grace := now.Add(handoverGrace); grace.Before(e.due) {
				e.due = grace
			}
		}
	}
}

// HandOver hands every VIP over: each is answered, no longer announced,
// until another agent announces it or HandoverTimeout passes; then it
// returns. If ctx ends first, it withdraws what is left.
func (a *Announcer) HandOver(ctx context.Context) error {
	done := make(chan struct{})
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errClosed
	}
	now := a.clock.Now()
	for addr, e := range a.entries {
		switch e.state {
		case owned:
			a.handOverLocked(addr, e, now)
		case probing, conflicted:
			a.deleteLocked(addr, e)
		}
	}
	a.drained = append(a.drained, done)
	a.mu.Unlock()
	a.wake()
	select {
	case <-done:
		return nil
	case <-a.done:
		return errClosed
	case <-ctx.Done():
		return a.WithdrawAll()
	}
}

// WithdrawAll stops answering every VIP at once, without handover: what an
// agent that may no longer own anything (self-fencing) must do.
func (a *Announcer) WithdrawAll() error {
	a.mu.Lock()
	for addr, e := range a.entries {
		a.deleteLocked(addr, e)
	}
	a.mu.Unlock()
	a.wake()
	return nil
}

// Close stops answering everything, reports it, and closes the sockets.
func (a *Announcer) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	for addr, e := range a.entries {
		a.deleteLocked(addr, e)
	}
	a.closed = true
	a.mu.Unlock()
	close(a.stop)
	<-a.done
	a.respMu.Lock()
	defer a.respMu.Unlock()
	var errs []error
	for name, r := range a.responders {
		errs = append(errs, r.close())
		delete(a.responders, name)
	}
	return errors.Join(errs...)
}

// responder returns iface's responder, creating it on first use, and
// replacing it when the interface is no longer the one its sockets were
// opened on (deleted and created again, or a new MAC, as a bond may get):
// replaced reports that, so that the caller joins the groups again.
func (a *Announcer) responder(iface string) (r *responder, replaced bool, err error) {
	select {
	case <-a.stop:
		return nil, false, errClosed
	default:
	}
	ifi, err := a.opts.open.Interface(iface)
	if err != nil {
		return nil, false, err
	}
	a.respMu.Lock()
	defer a.respMu.Unlock()
	old, ok := a.responders[iface]
	if ok && old.ifi.Index == ifi.Index && bytes.Equal(old.ifi.HardwareAddr, ifi.HardwareAddr) {
		return old, false, nil
	}
	if ok {
		a.log.Info("Interface changed; reopening its sockets", "interface", iface, "index", ifi.Index, "mac", ifi.HardwareAddr.String())
		if err := old.close(); err != nil {
			a.log.Error(err, "Closing the sockets of a changed interface failed", "interface", iface)
		}
	}
	r = newResponder(ifi, a.opts.open, a.clock, a.log, a.answers, a.claim)
	a.responders[iface] = r
	return r, ok, nil
}

func (a *Announcer) existingResponder(iface string) *responder {
	a.respMu.Lock()
	defer a.respMu.Unlock()
	return a.responders[iface]
}

func (a *Announcer) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// run is the announcer's loop: every timed step (probe ends, announcements,
// handover deadlines, conflict retries) and every callback happens here,
// so no timer is started under a lock and OnChange calls come in order.
func (a *Announcer) run() {
	defer close(a.done)
	t := a.clock.NewTimer(time.Hour)
	t.Stop()
	var syncs []chan struct{}
	for {
		next := a.pass()
		for _, ch := range syncs {
			close(ch)
		}
		syncs = nil
		if !next.IsZero() {
			t.Reset(max(next.Sub(a.clock.Now()), 0))
		}
		select {
		case <-a.stop:
			t.Stop()
			a.pass() // report what Close withdrew
			a.mu.Lock()
			for _, ch := range a.drained {
				close(ch)
			}
			a.drained = nil
			a.mu.Unlock()
			return
		case <-t.C():
		case <-a.kick:
		case ch := <-a.syncs:
			syncs = append(syncs, ch)
		}
		t.Stop()
	}
}

// flush waits for one full pass of the loop (tests: after a clock step).
func (a *Announcer) flush() {
	ch := make(chan struct{})
	select {
	case a.syncs <- ch:
		<-ch
	case <-a.done:
	}
}

// pass takes every step that is due, then performs the I/O and callbacks
// outside the lock. It returns when the next step is due (zero: none).
func (a *Announcer) pass() time.Time {
	a.mu.Lock()
	now := a.clock.Now()
	acts := a.pending
	a.pending = nil
	var next time.Time
	for addr, e := range a.entries {
		acts = a.stepLocked(addr, e, now, acts)
		if _, ok := a.entries[addr]; ok && !e.due.IsZero() && (next.IsZero() || e.due.Before(next)) {
			next = e.due
		}
	}
	a.mu.Unlock()

	for _, act := range acts {
		a.perform(act)
	}

	a.mu.Lock()
	if len(a.drained) > 0 && !a.answeringLocked() {
		for _, ch := range a.drained {
			close(ch)
		}
		a.drained = nil
	}
	a.mu.Unlock()
	return next
}

func (a *Announcer) answeringLocked() bool {
	for _, e := range a.entries {
		if e.answering() {
			return true
		}
	}
	return false
}

// stepLocked takes addr's due steps, appending the I/O they need.
func (a *Announcer) stepLocked(addr netip.Addr, e *entry, now time.Time, acts []action) []action {
	for !e.due.IsZero() && !now.Before(e.due) {
		switch e.state {
		case probing:
			if !e.sent {
				e.sent, e.due = true, now.Add(a.opts.ProbeWait)
				acts = append(acts, action{kind: actProbe, addr: addr, iface: e.iface})
				continue
			}
			// Nobody answered: the address is free.
			e.state, e.burstLeft, e.due = owned, a.opts.BurstCount, now
		case owned:
			acts = append(acts, action{kind: actAnnounce, addr: addr, iface: e.iface})
			if !e.reported {
				e.reported = true
				a.log.V(2).Info("Answering and announcing", "vip", addr, "interface", e.iface)
				acts = append(acts, action{kind: actReport, change: Change{Kind: Announced, Addr: addr, Interface: e.iface}})
			}
			e.due = time.Time{}
			if e.burstLeft--; e.burstLeft > 0 {
				e.due = now.Add(a.opts.BurstGap)
			} else if a.opts.GARPInterval > 0 {
				e.due = now.Add(a.opts.GARPInterval)
			}
		case handingOver:
			if e.takenBy == nil {
				a.log.V(2).Info("Handover timed out; withdrawing", "vip", addr)
			}
			a.deleteLocked(addr, e)
			acts = append(acts, a.pending...)
			a.pending = nil
			return acts
		case conflicted:
			e.state, e.sent, e.due = probing, false, now
		}
	}
	return acts
}

// perform does one action's I/O or callback.
func (a *Announcer) perform(act action) {
	if act.kind == actReport {
		a.opts.OnChange(act.change)
		return
	}
	r := a.existingResponder(act.iface)
	if r == nil {
		return
	}
	var err error
	switch act.kind {
	case actJoin:
		err = r.watch(act.addr)
	case actLeave:
		err = r.unwatch(act.addr)
	case actProbe:
		// Without a probe the address is answered anyway when the wait
		// ends: a conflict check must not keep a Service unreachable.
		err = r.probe(act.addr)
	case actAnnounce:
		err = r.announce(act.addr)
	}
	if err != nil {
		a.log.Error(err, "Layer-2 I/O failed", "vip", act.addr, "interface", act.iface)
	}
}
