package heartbeat

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var (
	keyOld = bytes.Repeat([]byte{1}, 32)
	keyNew = bytes.Repeat([]byte{2}, 32)
	now    = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
)

func msg(seq uint64) Message {
	return Message{Kind: Beat, Epoch: 7, Seq: seq, Time: now.UnixNano(), From: "node-a", To: "node-b"}
}

func TestEncodeDecode(t *testing.T) {
	m := msg(1)
	m.Flags = FlagLeaving
	b, err := Encode(m, keyNew)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b, [][]byte{keyNew})
	if err != nil || got != m {
		t.Fatalf("Decode = %+v, %v; want %+v", got, err, m)
	}
	// During a rotation the previous key is still accepted.
	if _, err := Decode(b, [][]byte{keyOld, keyNew}); err != nil {
		t.Errorf("a message signed with an accepted second key was refused: %v", err)
	}
	if _, err := Decode(b, [][]byte{keyOld}); !errors.Is(err, ErrSignature) {
		t.Errorf("wrong key: %v, want ErrSignature", err)
	}
	for i := range b {
		tampered := slices.Clone(b)
		tampered[i] ^= 0x40
		if _, err := Decode(tampered, [][]byte{keyNew}); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	if _, err := Decode(b[:len(b)-1], [][]byte{keyNew}); err == nil {
		t.Error("a truncated message was accepted")
	}
	if _, err := Decode([]byte("bmhb\x00"), [][]byte{keyNew}); !errors.Is(err, ErrMalformed) {
		t.Errorf("the unauthenticated v1 heartbeat: %v, want ErrMalformed", err)
	}
	if _, err := Encode(m, nil); err == nil {
		t.Error("encoding without a key succeeded")
	}
}

func TestGuard(t *testing.T) {
	at := func(m Message, d time.Duration) Message { m.Time = now.Add(d).UnixNano(); return m }
	epoch := func(m Message, e uint64) Message { m.Epoch = e; return m }
	tests := []struct {
		name string
		seq  []Message
		want []error // per message
	}{
		{"sequence moves forward", []Message{msg(1), msg(2), msg(5)}, []error{nil, nil, nil}},
		{"a replayed message is dropped", []Message{msg(1), msg(2), msg(2), msg(1)}, []error{nil, nil, ErrReplay, ErrReplay}},
		{"a restarted sender (new epoch, later time) is accepted",
			[]Message{msg(9), at(epoch(msg(1), 8), time.Millisecond)}, []error{nil, nil}},
		{"an old epoch replayed after a restart is dropped",
			[]Message{msg(9), at(epoch(msg(1), 8), time.Millisecond), msg(10)}, []error{nil, nil, ErrReplay}},
		{"outside the window", []Message{at(msg(1), -11*time.Second), at(msg(2), 11*time.Second), at(msg(3), 9*time.Second)},
			[]error{ErrStale, ErrStale, nil}},
		{"addressed to another node", []Message{{Kind: Beat, Seq: 1, Time: now.UnixNano(), From: "node-a", To: "node-c"}}, []error{ErrMisdirected}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGuard("node-b", DefaultWindow)
			for i, m := range tt.seq {
				if err := g.Check(m, now); !errors.Is(err, tt.want[i]) {
					t.Fatalf("message %d: %v, want %v", i, err, tt.want[i])
				}
			}
		})
	}
}

// memNet delivers datagrams by hand: tests decide when and whether.
type memNet struct {
	mu   sync.Mutex
	sent []packet
}

type packet struct {
	from, to netip.AddrPort
	b        []byte
}

type memConn struct {
	net  *memNet
	addr netip.AddrPort
}

func (c *memConn) ReadFrom([]byte) (int, netip.AddrPort, error) { select {} }
func (c *memConn) Close() error                                 { return nil }
func (c *memConn) WriteTo(b []byte, to netip.AddrPort) error {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	c.net.sent = append(c.net.sent, packet{c.addr, to, slices.Clone(b)})
	return nil
}

func (n *memNet) take() []packet {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.sent
	n.sent = nil
	return out
}

type recorder struct {
	mu    sync.Mutex
	heard []string
	drops []string
}

func (r *recorder) onHeard(node string, leaving bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if leaving {
		node += "!"
	}
	r.heard = append(r.heard, node)
}

func (r *recorder) onDrop(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drops = append(r.drops, reason)
}

func addr(i byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, i}), DefaultPort)
}

func newPeer(n *memNet, clk *clocktesting.FakeClock, name string, i byte, r *recorder) *Heartbeats {
	h := New(Options{Self: name, Conn: &memConn{n, addr(i)}, Clock: clk, OnHeard: r.onHeard, OnDrop: r.onDrop})
	h.SetKeys(keyNew)
	h.SetAnswering(true)
	return h
}

func deliver(t *testing.T, n *memNet, peers map[netip.AddrPort]*Heartbeats) int {
	t.Helper()
	count := 0
	for _, p := range n.take() {
		if h, ok := peers[p.to]; ok {
			h.Receive(p.b, p.from)
			count++
		}
	}
	return count
}

func TestBeatsAndReplies(t *testing.T) {
	n := &memNet{}
	clk := clocktesting.NewFakeClock(now)
	var ra, rb recorder
	a := newPeer(n, clk, "node-a", 1, &ra)
	b := newPeer(n, clk, "node-b", 2, &rb)
	peers := map[netip.AddrPort]*Heartbeats{addr(1): a, addr(2): b}
	a.SetTargets(map[string]netip.Addr{"node-b": addr(2).Addr()})

	a.Tick()
	if got := deliver(t, n, peers); got != 1 {
		t.Fatalf("delivered %d beats, want 1", got)
	}
	if got := deliver(t, n, peers); got != 1 {
		t.Fatalf("delivered %d replies, want 1", got)
	}
	if !slices.Equal(rb.heard, []string{"node-a"}) || !slices.Equal(ra.heard, []string{"node-b"}) {
		t.Errorf("a heard %v, b heard %v; want each the other", ra.heard, rb.heard)
	}

	// A peer that does not answer (starting, or fenced) neither replies
	// nor beats.
	b.SetAnswering(false)
	b.SetTargets(map[string]netip.Addr{"node-a": addr(1).Addr()})
	b.Tick()
	a.Tick()
	deliver(t, n, peers)
	if got := deliver(t, n, peers); got != 0 {
		t.Errorf("a silent peer sent %d replies", got)
	}

	// Leaving is flagged and sent at once.
	b.SetAnswering(true)
	b.SetLeaving(true)
	deliver(t, n, peers)
	if last := ra.heard[len(ra.heard)-1]; last != "node-b!" {
		t.Errorf("a last heard %q, want node-b leaving", last)
	}
	if len(ra.drops)+len(rb.drops) != 0 {
		t.Errorf("drops %v %v", ra.drops, rb.drops)
	}
}

func TestForgedAndReplayedHeartbeatsAreDropped(t *testing.T) {
	n := &memNet{}
	clk := clocktesting.NewFakeClock(now)
	var ra, rb recorder
	a := newPeer(n, clk, "node-a", 1, &ra)
	b := newPeer(n, clk, "node-b", 2, &rb)
	a.SetTargets(map[string]netip.Addr{"node-b": addr(2).Addr()})
	a.Tick()
	beat := n.take()[0]

	b.Receive(beat.b, beat.from)
	n.take()
	b.Receive(beat.b, beat.from) // replay
	forged, _ := Encode(Message{Kind: Beat, Epoch: 1, Seq: 1, Time: now.UnixNano(), From: "node-a", To: "node-b"}, keyOld)
	b.Receive(forged, addr(66))
	b.Receive([]byte("bmhb\x00"), addr(66))
	clk.Step(time.Minute)
	a.Tick()
	late := n.take()[0]
	clk.SetTime(now)
	b.Receive(late.b, late.from) // from a clock a minute ahead

	if !slices.Equal(rb.heard, []string{"node-a"}) {
		t.Errorf("b heard %v, want node-a once", rb.heard)
	}
	want := []string{DropReplay, DropSignature, DropMalformed, DropStale}
	if !slices.Equal(rb.drops, want) {
		t.Errorf("drops %v, want %v", rb.drops, want)
	}
	if got := n.take(); len(got) != 0 {
		t.Errorf("dropped messages were answered: %d replies", len(got))
	}
}

func TestKeyRotation(t *testing.T) {
	n := &memNet{}
	clk := clocktesting.NewFakeClock(now)
	var ra, rb recorder
	a := newPeer(n, clk, "node-a", 1, &ra)
	b := newPeer(n, clk, "node-b", 2, &rb)
	peers := map[netip.AddrPort]*Heartbeats{addr(1): a, addr(2): b}
	a.SetTargets(map[string]netip.Addr{"node-b": addr(2).Addr()})
	a.SetKeys(keyOld)
	b.SetKeys(keyOld)
	// b picks up the rotated Secret first: signs with the new key,
	// still accepts the old one; a has not seen it yet.
	b.SetKeys(keyNew, keyOld)
	a.Tick()
	deliver(t, n, peers) // a -> b: old key, accepted
	deliver(t, n, peers) // b -> a: new key, refused by a
	a.SetKeys(keyNew, keyOld)
	a.Tick()
	deliver(t, n, peers)
	deliver(t, n, peers)
	if len(rb.heard) != 2 || len(ra.heard) != 1 || !slices.Equal(ra.drops, []string{DropSignature}) {
		t.Errorf("b heard %v, a heard %v (drops %v): want b to hear both beats and a the reply after it rotated", rb.heard, ra.heard, ra.drops)
	}
}

func TestRunOverUDP(t *testing.T) {
	connA, portA, err := ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	connB, portB, err := ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	heard := make(chan string, 100)
	clk := clocktesting.NewFakeClock(time.Now())
	mk := func(name string, conn PacketConn, peerPort int) *Heartbeats {
		h := New(Options{Self: name, Conn: conn, PeerPort: peerPort, Clock: clk, OnHeard: func(n string, _ bool) {
			select {
			case heard <- name + "<-" + n:
			default:
			}
		}})
		h.SetKeys(keyNew)
		h.SetAnswering(true)
		return h
	}
	a := mk("node-a", connA, portB)
	b := mk("node-b", connB, portA)
	a.SetTargets(map[string]netip.Addr{"node-b": netip.MustParseAddr("127.0.0.1")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { a.Run(ctx); done <- struct{}{} }()
	go func() { b.Run(ctx); done <- struct{}{} }()
	// Step until the ticker goroutine has registered and a beat went out.
	got := map[string]bool{}
	deadline := time.After(10 * time.Second)
	for !got["node-b<-node-a"] || !got["node-a<-node-b"] {
		select {
		case s := <-heard:
			got[s] = true
		case <-time.After(20 * time.Millisecond):
			clk.Step(DefaultInterval)
		case <-deadline:
			t.Fatalf("heard only %v", got)
		}
	}
	cancel()
	<-done
	<-done
}

// A reloaded heartbeatInterval retimes a running sender.
func TestSetIntervalRetimesTheBeats(t *testing.T) {
	connA, _, err := ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	connB, portB, err := ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	heard := make(chan struct{}, 1000)
	clk := clocktesting.NewFakeClock(time.Now())
	a := New(Options{Self: "node-a", Conn: connA, PeerPort: portB, Clock: clk})
	a.SetKeys(keyNew)
	a.SetAnswering(true)
	b := New(Options{Self: "node-b", Conn: connB, Clock: clk, OnHeard: func(string, bool) { heard <- struct{}{} }})
	b.SetKeys(keyNew)
	a.SetTargets(map[string]netip.Addr{"node-b": netip.MustParseAddr("127.0.0.1")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { a.Run(ctx); done <- struct{}{} }()
	go func() { b.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()

	// Beats go out every DefaultInterval.
	deadline := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case <-heard:
			got = true
		case <-time.After(20 * time.Millisecond):
			clk.Step(DefaultInterval)
		case <-deadline:
			t.Fatal("no beat at the default interval")
		}
	}
	// Every 10 default intervals from now on: 900 ms bring at most the
	// one beat the old ticker may still send, not nine.
	a.SetInterval(10 * DefaultInterval)
	time.Sleep(50 * time.Millisecond)
	for len(heard) > 0 {
		<-heard
	}
	for range 9 {
		clk.Step(DefaultInterval)
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(heard); n > 1 {
		t.Fatalf("%d beats in 9 old intervals after SetInterval(%s), want at most 1", n, 10*DefaultInterval)
	}
	for len(heard) > 0 {
		<-heard
	}
	clk.Step(DefaultInterval)
	select {
	case <-heard:
	case <-time.After(5 * time.Second):
		t.Fatal("no beat one new interval after SetInterval")
	}
}
