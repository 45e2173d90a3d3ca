package l2

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeConn is a frameConn in memory. deliver hands the reader one frame
// and returns once the reader has handled it (asked for the next one).
type fakeConn struct {
	in     chan delivery
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	pending chan struct{} // the frame being handled
	written [][]byte
	wrote   chan struct{} // signalled on every write
	groups  map[netip.Addr]int
	joins   []string // "+group" / "-group", in order
}

type delivery struct {
	frame []byte
	err   error // returned by ReadFrame instead of a frame
	done  chan struct{}
}

func newFakeConn() *fakeConn {
	return &fakeConn{
		in:     make(chan delivery),
		closed: make(chan struct{}),
		wrote:  make(chan struct{}, 1),
		groups: map[netip.Addr]int{},
	}
}

var _ ndpConn = (*fakeConn)(nil)

func (c *fakeConn) ReadFrame(b []byte) (int, error) {
	c.handled()
	select {
	case d := <-c.in:
		n := copy(b, d.frame)
		c.mu.Lock()
		c.pending = d.done
		c.mu.Unlock()
		if d.err != nil {
			return 0, d.err
		}
		return n, nil
	case <-c.closed:
		return 0, fmt.Errorf("read: %w", net.ErrClosed)
	}
}

// handled tells deliver that the last frame was dealt with: the reader
// came back for the next one.
func (c *fakeConn) handled() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != nil {
		close(c.pending)
		c.pending = nil
	}
}

func (c *fakeConn) WriteFrame(b []byte) error {
	c.mu.Lock()
	c.written = append(c.written, append([]byte(nil), b...))
	c.mu.Unlock()
	select {
	case c.wrote <- struct{}{}:
	default:
	}
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	c.handled()
	return nil
}

func (c *fakeConn) JoinGroup(g netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups[g]++
	c.joins = append(c.joins, "+"+g.String())
	return nil
}

func (c *fakeConn) LeaveGroup(g netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups[g]--
	c.joins = append(c.joins, "-"+g.String())
	return nil
}

// take returns and forgets the frames written so far.
func (c *fakeConn) take() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.written
	c.written = nil
	return out
}

func (c *fakeConn) joined() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.joins...)
}

// fakeOpener hands out fakeConns for the interfaces it knows.
type fakeOpener struct {
	mu    sync.Mutex
	links map[string]*net.Interface
	arp   map[string]*fakeConn
	ndp   map[string]*fakeConn
	fail  error // returned by ARP and NDP when set
}

func newFakeOpener(links ...*net.Interface) *fakeOpener {
	o := &fakeOpener{links: map[string]*net.Interface{}, arp: map[string]*fakeConn{}, ndp: map[string]*fakeConn{}}
	for _, l := range links {
		o.links[l.Name] = l
	}
	return o
}

func (o *fakeOpener) Interface(name string) (*net.Interface, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ifi, ok := o.links[name]
	if !ok {
		return nil, fmt.Errorf("interface %s: no such network interface", name)
	}
	return ifi, nil
}

func (o *fakeOpener) ARP(ifi *net.Interface) (frameConn, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return nil, o.fail
	}
	c := newFakeConn()
	o.arp[ifi.Name] = c
	return c, nil
}

func (o *fakeOpener) NDP(ifi *net.Interface) (ndpConn, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return nil, o.fail
	}
	c := newFakeConn()
	o.ndp[ifi.Name] = c
	return c, nil
}

func (o *fakeOpener) conn(t *testing.T, v6 bool, iface string) *fakeConn {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.arp
	if v6 {
		m = o.ndp
	}
	c, ok := m[iface]
	if !ok {
		t.Fatalf("no socket opened on %s (IPv6 %v)", iface, v6)
	}
	return c
}

var (
	eth0 = &net.Interface{Index: 2, Name: "eth0", MTU: 1500, HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x10}}
	eth1 = &net.Interface{Index: 3, Name: "eth1", MTU: 1500, HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}}

	agentMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa1}
	otherMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb1}
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xc1}
	clientIP  = netip.MustParseAddr("192.0.2.100")
	clientIP6 = netip.MustParseAddr("fe80::c1")
)

// harness is an Announcer on fake sockets and a fake clock, with its
// changes and claims recorded.
type harness struct {
	t     *testing.T
	a     *Announcer
	clock *clocktesting.FakeClock
	open  *fakeOpener

	mu      sync.Mutex
	changes []Change
	claims  []string
}

const (
	testGARP     = 10 * time.Second
	testHandover = 2 * time.Second
)

func newHarness(t *testing.T, tweak ...func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, clock: clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), open: newFakeOpener(eth0, eth1)}
	opts := Options{
		Logger:          testr.New(t),
		Clock:           h.clock,
		GARPInterval:    testGARP,
		HandoverTimeout: testHandover,
		IsAgentMAC:      func(m net.HardwareAddr) bool { return m.String() == agentMAC.String() },
		OnChange: func(c Change) {
			h.mu.Lock()
			h.changes = append(h.changes, c)
			h.mu.Unlock()
		},
		OnClaim: func(iface string, ip netip.Addr, mac net.HardwareAddr) {
			h.mu.Lock()
			h.claims = append(h.claims, fmt.Sprintf("%s %s %s", iface, ip, mac))
			h.mu.Unlock()
		},
		open: h.open,
	}
	for _, f := range tweak {
		f(&opts)
	}
	h.a = New(opts)
	t.Cleanup(func() { h.a.Close() })
	return h
}

// step advances the clock and waits until the announcer acted on it.
func (h *harness) step(d time.Duration) {
	h.clock.Step(d)
	h.a.flush()
}

// takeChanges returns the changes reported since the last call, as
// "Kind addr iface [mac]".
func (h *harness) takeChanges() []string {
	h.a.flush()
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, c := range h.changes {
		s := fmt.Sprintf("%s %s %s", c.Kind, c.Addr, c.Interface)
		if c.MAC != nil {
			s += " " + c.MAC.String()
		}
		out = append(out, s)
	}
	h.changes = nil
	return out
}

func (h *harness) takeClaims() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.claims
	h.claims = nil
	return out
}

func (h *harness) set(want ...Announcement) {
	h.t.Helper()
	if err := h.a.Set(h.t.Context(), want); err != nil {
		h.t.Fatalf("Set: %v", err)
	}
	h.a.flush()
}

// deliver hands a frame to iface's reader and waits until it is handled.
func deliver(c *fakeConn, frame []byte) {
	done := make(chan struct{})
	c.in <- delivery{frame: frame, done: done}
	<-done
}

// checksumOK verifies an ICMPv6 checksum the way a receiver does (RFC 4443
// §2.3): the one's complement sum over the pseudo-header and the message,
// checksum included, is all ones.
func checksumOK(msg []byte, src, dst netip.Addr) bool {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	add([]byte{0, 0, byte(len(msg) >> 8), byte(len(msg)), 0, 0, 0, protoICMPv6})
	add(msg)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}
