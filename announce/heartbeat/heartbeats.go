package heartbeat

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Defaults. The agent sets the interval from nodeAgent.heartbeatInterval;
// judging silence is the agent's Liveness (nodeAgent.suspectAfter).
const (
	DefaultPort     = 7474
	DefaultInterval = 100 * time.Millisecond
	// DefaultWindow is how far a message's time may be from the
	// receiver's clock. Nodes of one cluster keep their clocks within
	// milliseconds (NTP); the window only has to bound replays.
	DefaultWindow = 10 * time.Second
)

// Drop reasons, the label values of the agent's drop counter.
const (
	DropMalformed   = "malformed"
	DropSignature   = "signature"
	DropMisdirected = "misdirected"
	DropStale       = "stale"
	DropReplay      = "replay"
)

// PacketConn is the socket: UDP in production, an in-memory network in
// tests and the fleet simulation.
type PacketConn interface {
	ReadFrom(b []byte) (int, netip.AddrPort, error)
	WriteTo(b []byte, to netip.AddrPort) error
	Close() error
}

// Options configure Heartbeats.
type Options struct {
	Self     string
	Conn     PacketConn
	PeerPort int           // where peers listen; DefaultPort if 0
	Interval time.Duration // DefaultInterval if 0
	Window   time.Duration // DefaultWindow if 0
	Clock    clock.WithTicker
	Logger   logr.Logger
	// OnHeard is called for every authenticated message from a peer,
	// outside any lock. It must not block.
	OnHeard func(node string, leaving bool)
	// OnDrop is called with the reason of every dropped message.
	OnDrop func(reason string)
}

// Heartbeats sends and receives heartbeats. Judging silence is not its
// job: it reports whom it heard (OnHeard), and the agent's Liveness turns
// that into verdicts.
type Heartbeats struct {
	opts  Options
	epoch uint64

	intervalChanged chan struct{}

	mu        sync.Mutex
	interval  time.Duration
	seq       uint64
	keys      [][]byte // keys[0] signs; all verify
	targets   map[string]netip.AddrPort
	leaving   bool
	answering bool
	guard     *Guard
}

// New returns Heartbeats over opts.Conn with a fresh random epoch. It
// sends and answers nothing until SetKeys and SetAnswering(true).
func New(opts Options) *Heartbeats {
	if opts.PeerPort == 0 {
		opts.PeerPort = DefaultPort
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Window == 0 {
		opts.Window = DefaultWindow
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.OnHeard == nil {
		opts.OnHeard = func(string, bool) {}
	}
	if opts.OnDrop == nil {
		opts.OnDrop = func(string) {}
	}
	var e [8]byte
	if _, err := rand.Read(e[:]); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err)) // crypto/rand does not fail on Linux
	}
	return &Heartbeats{
		opts:            opts,
		intervalChanged: make(chan struct{}, 1),
		interval:        opts.Interval,
		epoch:           binary.BigEndian.Uint64(e[:]),
		targets:         map[string]netip.AddrPort{},
		guard:           NewGuard(opts.Self, opts.Window),
	}
}

// SetKeys sets the signing key and further keys still accepted (the
// previous key during a rotation).
func (h *Heartbeats) SetKeys(sign []byte, accepted ...[]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys = append([][]byte{sign}, accepted...)
}

// SetTargets sets the peers to send beats to, by node name.
func (h *Heartbeats) SetTargets(targets map[string]netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.targets = make(map[string]netip.AddrPort, len(targets))
	for n, a := range targets {
		h.targets[n] = netip.AddrPortFrom(a, uint16(h.opts.PeerPort))
	}
}

// SetInterval changes how often beats are sent (a reloaded config); the
// next beat goes out one new interval from now.
func (h *Heartbeats) SetInterval(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d <= 0 || d == h.interval {
		return
	}
	h.interval = d
	select {
	case h.intervalChanged <- struct{}{}:
	default:
	}
}

// SetAnswering turns sending beats and replies on or off. An agent answers
// only while it applies a plan: one that is starting, or fenced by a stale
// view, stays silent, so its peers take its VIPs over.
func (h *Heartbeats) SetAnswering(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answering = on
}

// SetLeaving flags every message from now on as leaving and sends a beat
// to every target at once, so successors take over without waiting a tick.
func (h *Heartbeats) SetLeaving(on bool) {
	h.mu.Lock()
	h.leaving = on
	h.mu.Unlock()
	h.Tick()
}

// Tick sends one beat to every target.
func (h *Heartbeats) Tick() {
	h.mu.Lock()
	if !h.answering || len(h.keys) == 0 {
		h.mu.Unlock()
		return
	}
	type out struct {
		b  []byte
		to netip.AddrPort
	}
	msgs := make([]out, 0, len(h.targets))
	for node, addr := range h.targets {
		b, err := h.encodeLocked(Beat, node)
		if err != nil {
			h.opts.Logger.V(4).Info("Encoding a heartbeat failed", "node", node, "err", err.Error())
			continue
		}
		msgs = append(msgs, out{b, addr})
	}
	h.mu.Unlock()
	for _, m := range msgs {
		if err := h.opts.Conn.WriteTo(m.b, m.to); err != nil {
			h.opts.Logger.V(4).Info("Sending a heartbeat failed", "to", m.to.String(), "err", err.Error())
		}
	}
}

func (h *Heartbeats) encodeLocked(kind Kind, to string) ([]byte, error) {
	h.seq++
	var flags byte
	if h.leaving {
		flags |= FlagLeaving
	}
	return Encode(Message{
		Kind: kind, Flags: flags, Epoch: h.epoch, Seq: h.seq,
		Time: h.opts.Clock.Now().UnixNano(), From: h.opts.Self, To: to,
	}, h.keys[0])
}

// Receive handles one datagram from addr.
func (h *Heartbeats) Receive(b []byte, from netip.AddrPort) {
	h.mu.Lock()
	keys := h.keys
	m, err := Decode(b, keys)
	if err == nil {
		err = h.guard.Check(m, h.opts.Clock.Now())
	}
	if err != nil {
		h.mu.Unlock()
		h.opts.OnDrop(dropReason(err))
		h.opts.Logger.V(4).Info("Dropped a heartbeat", "from", from.String(), "reason", err.Error())
		return
	}
	var reply []byte
	if m.Kind == Beat && h.answering {
		reply, err = h.encodeLocked(Reply, m.From)
		if err != nil {
			reply = nil
		}
	}
	h.mu.Unlock()
	if reply != nil {
		if err := h.opts.Conn.WriteTo(reply, from); err != nil {
			h.opts.Logger.V(4).Info("Answering a heartbeat failed", "to", from.String(), "err", err.Error())
		}
	}
	h.opts.OnHeard(m.From, m.Flags&FlagLeaving != 0)
}

func dropReason(err error) string {
	switch {
	case errors.Is(err, ErrSignature):
		return DropSignature
	case errors.Is(err, ErrMisdirected):
		return DropMisdirected
	case errors.Is(err, ErrStale):
		return DropStale
	case errors.Is(err, ErrReplay):
		return DropReplay
	default:
		return DropMalformed
	}
}

// Run sends a beat to every target each interval and handles what
// arrives, until ctx is done; then it closes the connection.
func (h *Heartbeats) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1024)
		for {
			n, from, err := h.opts.Conn.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
					return
				}
				continue // e.g. ICMP port unreachable from a dead agent's node
			}
			h.Receive(buf[:n], from)
		}
	}()
	h.mu.Lock()
	t := h.opts.Clock.NewTicker(h.interval)
	h.mu.Unlock()
	defer func() { t.Stop() }()
	for {
		select {
		case <-h.intervalChanged:
			h.mu.Lock()
			d := h.interval
			h.mu.Unlock()
			t.Stop()
			t = h.opts.Clock.NewTicker(d)
		case <-ctx.Done():
			if err := h.opts.Conn.Close(); err != nil {
				h.opts.Logger.V(4).Info("Closing the heartbeat socket failed", "err", err.Error())
			}
			<-done
			return
		case <-t.C():
			h.Tick()
		}
	}
}

// UDPConn is a PacketConn over a UDP socket.
type UDPConn struct{ *net.UDPConn }

// ListenUDP listens on UDP port (all addresses; 0 picks one) and returns
// the socket and its port.
func ListenUDP(port int) (*UDPConn, int, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
	if err != nil {
		return nil, 0, fmt.Errorf("listening for heartbeats on UDP port %d (--heartbeat-port): %w", port, err)
	}
	return &UDPConn{c}, c.LocalAddr().(*net.UDPAddr).Port, nil
}

// ReadFrom implements PacketConn.
func (c *UDPConn) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	n, a, err := c.ReadFromUDPAddrPort(b)
	return n, netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), err
}

// WriteTo implements PacketConn.
func (c *UDPConn) WriteTo(b []byte, to netip.AddrPort) error {
	_, err := c.WriteToUDPAddrPort(b, to)
	return err
}
