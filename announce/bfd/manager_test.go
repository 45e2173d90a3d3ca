package bfd

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// fakeNetwork records what sessions send and lets the test deliver packets
// as the router.
type fakeNetwork struct {
	sent    chan *ControlPacket
	mu      sync.Mutex
	deliver func(Received)
}

func newFakeNetwork() *fakeNetwork { return &fakeNetwork{sent: make(chan *ControlPacket, 1000)} }

func (f *fakeNetwork) Dial(Peer) (Sender, error) { return fakeSender{f}, nil }
func (f *fakeNetwork) Listen(_, _ bool, deliver func(Received)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deliver = deliver
	return nil
}
func (f *fakeNetwork) Close() error { return nil }

func (f *fakeNetwork) send(t *testing.T, from netip.Addr, ttl int, p *ControlPacket) {
	t.Helper()
	f.mu.Lock()
	d := f.deliver
	f.mu.Unlock()
	d(Received{Src: from, TTL: ttl, Data: p.Marshal()})
}

// next returns the next packet a session sent that matches ok.
func (f *fakeNetwork) next(t *testing.T, what string, ok func(*ControlPacket) bool) *ControlPacket {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-f.sent:
			if ok(p) {
				return p
			}
		case <-timeout:
			t.Fatalf("the session never sent %s", what)
		}
	}
}

type fakeSender struct{ f *fakeNetwork }

func (s fakeSender) Send(b []byte) error {
	var p ControlPacket
	if err := p.Unmarshal(b); err != nil {
		return err
	}
	s.f.sent <- &p
	return nil
}
func (fakeSender) Close() error { return nil }

func awaitChange(t *testing.T, ch <-chan Status, want State) Status {
	t.Helper()
	select {
	case st := <-ch:
		if st.State != want {
			t.Fatalf("state changed to %s (%+v), want %s", st.State, st, want)
		}
		return st
	case <-time.After(10 * time.Second):
		t.Fatalf("no change to %s", want)
	}
	return Status{}
}

var router = netip.MustParseAddr("192.0.2.254")

func TestManagerSessionLifecycle(t *testing.T) {
	fc := clocktesting.NewFakeClock(t0)
	net := newFakeNetwork()
	changes := make(chan Status, 10)
	m := NewManager(Options{Clock: fc, Network: net, OnChange: func(s Status) { changes <- s }})
	defer m.Close(false)

	if err := m.Set([]Peer{{Addr: router, Timers: fast}}); err != nil {
		t.Fatal(err)
	}
	first := net.next(t, "a Down packet", func(p *ControlPacket) bool { return p.State == Down })
	ours := first.MyDiscr

	// A packet forwarded by a router on the way (TTL < 255) is not
	// from a direct neighbour: dropped.
	net.send(t, router, 254, remote(Down, func(p *ControlPacket) { p.YourDiscr = 0 }))
	// From the wrong address: dropped too.
	net.send(t, netip.MustParseAddr("192.0.2.1"), 255, remote(Down, func(p *ControlPacket) { p.YourDiscr = 0 }))
	net.send(t, router, 255, remote(Down, func(p *ControlPacket) { p.YourDiscr = 0 }))
	awaitChange(t, changes, Init)
	net.next(t, "an Init packet naming the router", func(p *ControlPacket) bool { return p.State == Init && p.YourDiscr == 0x2222 })

	net.send(t, router, 255, remote(Up, func(p *ControlPacket) { p.YourDiscr = ours }))
	awaitChange(t, changes, Up)
	net.next(t, "a Poll with the fast interval", func(p *ControlPacket) bool { return p.Poll && p.DesiredMinTx == 100*time.Millisecond })
	net.send(t, router, 255, remote(Up, func(p *ControlPacket) { p.YourDiscr, p.Final = ours, true }))

	// The router asks for a Poll: the Final comes without waiting for
	// the clock to move.
	net.send(t, router, 255, remote(Up, func(p *ControlPacket) { p.YourDiscr, p.Poll = ours, true }))
	net.next(t, "a Final", func(p *ControlPacket) bool { return p.Final })

	// Silence: 300 ms after the last packet the session goes down.
	fc.Step(299 * time.Millisecond)
	select {
	case st := <-changes:
		t.Fatalf("state changed to %s before the detection time", st.State)
	default:
	}
	fc.Step(time.Millisecond)
	st := awaitChange(t, changes, Down)
	if st.Diag != DiagDetectionExpired {
		t.Errorf("diagnostic = %q, want %q", st.Diag, DiagDetectionExpired)
	}
}

func TestManagerSetChangesAndRemovesSessions(t *testing.T) {
	fc := clocktesting.NewFakeClock(t0)
	net := newFakeNetwork()
	m := NewManager(Options{Clock: fc, Network: net})
	defer m.Close(false)
	if err := m.Set([]Peer{{Addr: router, Timers: fast}}); err != nil {
		t.Fatal(err)
	}
	first := net.next(t, "a Down packet", func(p *ControlPacket) bool { return p.State == Down })
	net.send(t, router, 255, remote(Init, func(p *ControlPacket) { p.YourDiscr = first.MyDiscr }))
	net.next(t, "an Up packet", func(p *ControlPacket) bool { return p.State == Up })

	slower := Timers{DesiredMinTx: 200 * time.Millisecond, RequiredMinRx: 200 * time.Millisecond, DetectMult: 3}
	if err := m.Set([]Peer{{Addr: router, Timers: slower}}); err != nil {
		t.Fatal(err)
	}
	p := net.next(t, "a Poll with the new intervals", func(p *ControlPacket) bool {
		return p.Poll && p.DesiredMinTx == 200*time.Millisecond && p.RequiredMinRx == 200*time.Millisecond
	})
	if p.State != Up || p.MyDiscr != first.MyDiscr {
		t.Errorf("changing timers restarted the session: %+v", p)
	}

	if err := m.Set(nil); err != nil {
		t.Fatal(err)
	}
	net.next(t, "an AdminDown packet", func(p *ControlPacket) bool { return p.State == AdminDown && p.Diag == DiagAdminDown })
	if got := m.Status(); len(got) != 0 {
		t.Errorf("Status after removing every peer = %+v, want none", got)
	}
}

func TestManagerRefusesBadTimers(t *testing.T) {
	m := NewManager(Options{Clock: clocktesting.NewFakeClock(t0), Network: newFakeNetwork()})
	defer m.Close(false)
	err := m.Set([]Peer{
		{Addr: router, Timers: Timers{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond}},
		{Addr: netip.MustParseAddr("192.0.2.253"), Timers: fast},
	})
	if err == nil {
		t.Fatal("a detect multiplier of 0 was accepted")
	}
	if got := m.Status(); len(got) != 1 || got[0].Peer != netip.MustParseAddr("192.0.2.253") {
		t.Errorf("Status = %+v, want the valid peer still running", got)
	}
}

// TestUDPLoopback runs two managers against each other over real sockets on
// loopback (127.0.0.1 and 127.0.0.2), with the real clock.
func TestUDPLoopback(t *testing.T) {
	a4, b4 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	port := 20000 + int(time.Now().UnixNano()%20000)
	type side struct {
		m       *Manager
		changes chan Status
	}
	mk := func(local netip.Addr) side {
		ch := make(chan Status, 10)
		m := NewManager(Options{
			Network:  &UDP{SingleHopPort: port, ListenAddr4: local},
			OnChange: func(s Status) { ch <- s },
		})
		return side{m, ch}
	}
	a, b := mk(a4), mk(b4)
	defer a.m.Close(false)
	defer b.m.Close(false)
	timers := Timers{DesiredMinTx: 50 * time.Millisecond, RequiredMinRx: 50 * time.Millisecond, DetectMult: 3}
	if err := a.m.Set([]Peer{{Addr: b4, Local: a4, Timers: timers}}); err != nil {
		t.Skipf("cannot open BFD sockets on loopback here: %v", err)
	}
	if err := b.m.Set([]Peer{{Addr: a4, Local: b4, Timers: timers}}); err != nil {
		t.Fatal(err)
	}
	awaitUp := func(s side, name string) {
		t.Helper()
		for {
			st := awaitChangeAny(t, s.changes, name)
			if st.State == Up {
				return
			}
		}
	}
	awaitUp(a, "a")
	awaitUp(b, "b")

	// a leaves for good: b hears AdminDown, not a timeout.
	if err := a.m.Close(true); err != nil {
		t.Fatal(err)
	}
	st := awaitChangeAny(t, b.changes, "b")
	if st.State != Down || st.Diag != DiagNeighborDown || st.RemoteDiag != DiagAdminDown {
		t.Errorf("b after a closed = %+v; want Down, %q, remote %q", st, DiagNeighborDown, DiagAdminDown)
	}
}

func awaitChangeAny(t *testing.T, ch <-chan Status, name string) Status {
	t.Helper()
	select {
	case st := <-ch:
		return st
	case <-time.After(15 * time.Second):
		t.Fatal(fmt.Sprintf("session %s did not change state", name))
	}
	return Status{}
}
