package bfd

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Ports of RFC 5881 (single hop) and RFC 5883 (multihop) Control packets.
const (
	PortSingleHop = 3784
	PortMultihop  = 4784
)

// Peer is one BFD session to run, keyed by Addr and Multihop.
type Peer struct {
	Addr     netip.Addr // the router
	Local    netip.Addr // source address; the kernel's choice when invalid
	Multihop bool       // RFC 5883 (eBGP multihop) rather than RFC 5881
	Timers   Timers
}

// Status is the state of one session, for the BGP speaker, events and metrics.
type Status struct {
	Peer        netip.Addr
	Multihop    bool
	State       State
	Diag        Diag // why the session last went down, when it is not Up
	RemoteState State
	RemoteDiag  Diag
	// TxInterval is the agreed transmit interval and DetectionTime how
	// long the remote may stay silent before the session goes down.
	TxInterval    time.Duration
	DetectionTime time.Duration
}

// Options configure a Manager. Zero values are the real network and clock.
type Options struct {
	Logger logr.Logger
	Clock  clock.WithTicker
	// OnChange is called, from the session's goroutine, after every state
	// change. It must not block for long (packets wait for it) and must
	// not call Set or Close.
	OnChange func(Status)
	// Network opens the sockets; the real UDP network when nil.
	Network Network
}

// Network is what a Manager needs of the network; UDP unless a test fakes it.
type Network interface {
	// Dial opens the socket that sends one session's packets, from a
	// source port of its own (RFC 5881 §4) and with TTL 255.
	Dial(p Peer) (Sender, error)
	// Listen delivers every Control packet that arrives for sessions of
	// this family and hop kind until Close; it is called once per pair.
	Listen(is6, multihop bool, deliver func(Received)) error
	Close() error
}

// Sender sends one session's packets.
type Sender interface {
	Send(b []byte) error
	Close() error
}

// Received is one datagram from a listening socket.
type Received struct {
	Src      netip.Addr
	TTL      int // -1 when unknown
	Data     []byte
	Multihop bool
}

// Manager runs the BFD sessions of one node.
type Manager struct {
	opts Options
	log  logr.Logger

	opMu   sync.Mutex // serialises Set and Close
	closed bool

	mu        sync.Mutex // guards the maps, read by the receive path
	sessions  map[sessionKey]*runner
	byDiscr   map[uint32]*runner
	listening map[[2]bool]bool
}

type sessionKey struct {
	addr     netip.Addr
	multihop bool
}

// NewManager returns a Manager with no sessions.
func NewManager(opts Options) *Manager {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Network == nil {
		opts.Network = &UDP{}
	}
	if opts.OnChange == nil {
		opts.OnChange = func(Status) {}
	}
	return &Manager{
		opts:      opts,
		log:       opts.Logger.WithName("bfd"),
		sessions:  map[sessionKey]*runner{},
		byDiscr:   map[uint32]*runner{},
		listening: map[[2]bool]bool{},
	}
}

var errClosed = errors.New("the BFD manager is closed")

// Set makes the running sessions equal to peers. A new session starts
// Down; a removed one tells the router it is administratively down; a
// changed timer is negotiated with a Poll Sequence without a flap. A peer
// that cannot be set up is reported and the others still apply.
func (m *Manager) Set(peers []Peer) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.closed {
		return errClosed
	}
	var errs []error
	want := map[sessionKey]Peer{}
	for _, p := range peers {
		if err := p.Timers.validate(); err != nil {
			errs = append(errs, fmt.Errorf("BFD session with %s: %w", p.Addr, err))
			continue
		}
		want[sessionKey{p.Addr, p.Multihop}] = p
	}
	for _, r := range m.runners() {
		if p, ok := want[sessionKey{r.peer.Addr, r.peer.Multihop}]; ok && p.Local == r.peer.Local {
			continue
		}
		m.stop(r, true)
	}
	for k, p := range want {
		m.mu.Lock()
		r, ok := m.sessions[k]
		m.mu.Unlock()
		if ok {
			if r.peer.Timers != p.Timers {
				r.peer.Timers = p.Timers
				r.setTimers(p.Timers)
			}
			continue
		}
		if err := m.start(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t Timers) validate() error {
	switch {
	case t.DesiredMinTx <= 0:
		return fmt.Errorf("transmitInterval %s must be positive", t.DesiredMinTx)
	case t.RequiredMinRx <= 0:
		return fmt.Errorf("receiveInterval %s must be positive", t.RequiredMinRx)
	case t.DetectMult == 0:
		return errors.New("detectMultiplier must be at least 1")
	}
	return nil
}

func (m *Manager) start(p Peer) error {
	key := [2]bool{p.Addr.Is6(), p.Multihop}
	if !m.listening[key] {
		if err := m.opts.Network.Listen(p.Addr.Is6(), p.Multihop, m.deliver); err != nil {
			return fmt.Errorf("BFD session with %s: %w", p.Addr, err)
		}
		m.listening[key] = true
	}
	send, err := m.opts.Network.Dial(p)
	if err != nil {
		return fmt.Errorf("BFD session with %s: %w", p.Addr, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	discr := m.newDiscr()
	r := &runner{
		m:      m,
		peer:   p,
		discr:  discr,
		send:   send,
		sess:   newSession(m.opts.Clock, jitter, discr, p.Timers),
		rx:     make(chan *ControlPacket, 16),
		timers: make(chan Timers, 1),
		stop:   make(chan bool, 1),
		done:   make(chan struct{}),
	}
	r.status = r.snapshot()
	m.sessions[sessionKey{p.Addr, p.Multihop}] = r
	m.byDiscr[discr] = r
	m.log.V(2).Info("Starting BFD session", "peer", p.Addr, "multihop", p.Multihop, "discriminator", discr,
		"transmitInterval", p.Timers.DesiredMinTx, "receiveInterval", p.Timers.RequiredMinRx, "detectMultiplier", p.Timers.DetectMult)
	go r.run()
	return nil
}

// stop ends r, telling the router first when adminDown is set.
func (m *Manager) stop(r *runner, adminDown bool) {
	m.mu.Lock()
	delete(m.sessions, sessionKey{r.peer.Addr, r.peer.Multihop})
	delete(m.byDiscr, r.discr)
	m.mu.Unlock()
	r.stop <- adminDown
	<-r.done
}

func (m *Manager) runners() []*runner {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*runner, 0, len(m.sessions))
	for _, r := range m.sessions {
		out = append(out, r)
	}
	return out
}

func (m *Manager) newDiscr() uint32 {
	for {
		d := rand.Uint32()
		if _, used := m.byDiscr[d]; d != 0 && !used {
			return d
		}
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// Status reports every session, sorted by peer address.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.sessions))
	for _, r := range m.sessions {
		out = append(out, r.currentStatus())
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Peer.Compare(out[j].Peer); c != 0 {
			return c < 0
		}
		return !out[i].Multihop && out[j].Multihop
	})
	return out
}

// Close ends every session. With adminDown the routers are told first
// (State AdminDown), for a node leaving for good; without it the sessions
// just go silent, as they would if the process exited, for a restart.
func (m *Manager) Close(adminDown bool) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for _, r := range m.runners() {
		m.stop(r, adminDown)
	}
	return m.opts.Network.Close()
}

// deliver routes a received datagram to its session (RFC 5880 §6.8.6,
// RFC 5881 §5, RFC 5883 §2).
func (m *Manager) deliver(d Received) {
	var p ControlPacket
	if err := p.Unmarshal(d.Data); err != nil {
		m.log.V(5).Info("Dropping BFD packet", "from", d.Src, "err", err)
		return
	}
	// Single hop: only a packet sent with TTL 255 can come from a
	// directly connected router (the GTSM of RFC 5082).
	if !d.Multihop && d.TTL != 255 {
		m.log.V(5).Info("Dropping single-hop BFD packet whose TTL is not 255", "from", d.Src, "ttl", d.TTL)
		return
	}
	src := d.Src.Unmap()
	m.mu.Lock()
	var r *runner
	if p.YourDiscr != 0 {
		r = m.byDiscr[p.YourDiscr]
	} else {
		r = m.sessions[sessionKey{src, d.Multihop}]
	}
	m.mu.Unlock()
	if r == nil || r.peer.Addr != src || r.peer.Multihop != d.Multihop {
		m.log.V(5).Info("Dropping BFD packet for no session", "from", src, "yourDiscriminator", p.YourDiscr)
		return
	}
	select {
	case r.rx <- &p:
	default: // the session is behind; a later packet will do
	}
}

// runner is the goroutine of one session: it owns the session state.
type runner struct {
	m      *Manager
	peer   Peer
	discr  uint32
	send   Sender
	sess   *session
	rx     chan *ControlPacket
	timers chan Timers
	stop   chan bool
	done   chan struct{}

	mu     sync.Mutex
	status Status
}

func (r *runner) setTimers(t Timers) {
	select {
	case <-r.timers: // replace an unread change
	default:
	}
	r.timers <- t
}

func (r *runner) currentStatus() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *runner) snapshot() Status {
	s := r.sess
	return Status{
		Peer:          r.peer.Addr,
		Multihop:      r.peer.Multihop,
		State:         s.state,
		Diag:          s.localDiag,
		RemoteState:   s.remoteState,
		RemoteDiag:    s.remoteDiag,
		TxInterval:    s.txInterval(),
		DetectionTime: s.detectionTime(),
	}
}

func (r *runner) run() {
	defer close(r.done)
	defer r.send.Close()
	log := r.m.log.WithValues("peer", r.peer.Addr)
	c := r.m.opts.Clock
	timer := c.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Fire what is due until the next deadline is in the future, so a
		// deadline that passed while we were busy is never waited for.
		for {
			if r.sess.due() {
				r.transmit(log, false)
			}
			r.publish(log)
			if r.sess.deadline().After(c.Now()) {
				break
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C():
			default:
			}
		}
		timer.Reset(r.sess.deadline().Sub(c.Now()))
		select {
		case adminDown := <-r.stop:
			if adminDown {
				r.sess.adminDown()
				// A few copies: a lost one would leave the router to
				// time the session out and report a failure.
				for range 3 {
					r.transmit(log, false)
				}
			}
			return
		case p := <-r.rx:
			if r.sess.receive(p) {
				r.transmit(log, true)
			}
		case t := <-r.timers:
			r.sess.setTimers(t)
		case <-timer.C():
		}
	}
}

func (r *runner) transmit(log logr.Logger, final bool) {
	if err := r.send.Send(r.sess.packet(final).Marshal()); err != nil {
		log.V(4).Info("Sending a BFD packet failed", "err", err)
	}
}

// publish records the new status and reports a state change.
func (r *runner) publish(log logr.Logger) {
	st := r.snapshot()
	r.mu.Lock()
	old := r.status
	r.status = st
	r.mu.Unlock()
	if st.State == old.State {
		return
	}
	log.Info("BFD session changed state", "from", old.State, "to", st.State, "diagnostic", st.Diag.String(),
		"remoteDiagnostic", st.RemoteDiag.String(), "txInterval", st.TxInterval, "detectionTime", st.DetectionTime)
	r.m.opts.OnChange(st)
}
