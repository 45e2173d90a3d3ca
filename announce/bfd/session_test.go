package bfd

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func noJitter(time.Duration) time.Duration { return 0 }

const localDiscr = 0x1111

// fast is what the lab configures: 100 ms x 3.
var fast = Timers{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3}

func newTestSession(timers Timers) (*session, *clocktesting.FakeClock) {
	fc := clocktesting.NewFakeClock(t0)
	return newSession(fc, noJitter, localDiscr, timers), fc
}

// remote builds the packet a router with discriminator 0x2222 sends.
func remote(state State, mods ...func(*ControlPacket)) *ControlPacket {
	p := &ControlPacket{
		State: state, DetectMult: 3, MyDiscr: 0x2222, YourDiscr: localDiscr,
		DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond,
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

// bringUp runs the three-way handshake and answers the Poll that follows.
func bringUp(t *testing.T, s *session) {
	t.Helper()
	s.receive(remote(Down, func(p *ControlPacket) { p.YourDiscr = 0 }))
	s.receive(remote(Up))
	if s.state != Up {
		t.Fatalf("state after the handshake = %s, want Up", s.state)
	}
	s.receive(remote(Up, func(p *ControlPacket) { p.Final = true }))
	if s.polling {
		t.Fatal("still polling after the Final")
	}
}

func TestHandshake(t *testing.T) {
	tests := []struct {
		name string
		from State
		recv State
		want State
	}{
		{"down hears down", Down, Down, Init},
		{"down hears init", Down, Init, Up},
		{"down hears up", Down, Up, Down},
		{"init hears init", Init, Init, Up},
		{"init hears up", Init, Up, Up},
		{"init hears down", Init, Down, Init},
		{"up hears down", Up, Down, Down},
		{"up hears init", Up, Init, Up},
		{"up hears admin down", Up, AdminDown, Down},
		{"down hears admin down", Down, AdminDown, Down},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestSession(fast)
			s.state = tt.from
			s.receive(remote(tt.recv))
			if s.state != tt.want {
				t.Errorf("state = %s, want %s", s.state, tt.want)
			}
		})
	}
}

func TestNeighborDownDiagnostic(t *testing.T) {
	s, _ := newTestSession(fast)
	bringUp(t, s)
	s.receive(remote(AdminDown, func(p *ControlPacket) { p.Diag = DiagAdminDown }))
	if s.state != Down || s.localDiag != DiagNeighborDown || s.remoteDiag != DiagAdminDown {
		t.Errorf("after the router's AdminDown: state %s diag %q remote diag %q; want Down, %q, %q",
			s.state, s.localDiag, s.remoteDiag, DiagNeighborDown, DiagAdminDown)
	}
}

func TestSlowTransmitUntilUp(t *testing.T) {
	s, fc := newTestSession(fast)
	if !s.due() {
		t.Fatal("a new session does not send at once")
	}
	p := s.packet(false)
	if p.State != Down || p.DesiredMinTx != time.Second || p.RequiredMinRx != 100*time.Millisecond || p.YourDiscr != 0 || p.MyDiscr != localDiscr {
		t.Errorf("first packet = %+v; want Down, TX 1s (RFC 5880 §6.8.3), RX 100ms, Your Discriminator 0", p)
	}
	// The remote asks for nothing faster than 1 µs yet: 1 s it is.
	fc.Step(999 * time.Millisecond)
	if s.due() {
		t.Error("sent again before 1s while Down")
	}
	fc.Step(time.Millisecond)
	if !s.due() {
		t.Error("did not send again after 1s while Down")
	}

	bringUp(t, s)
	p = s.packet(false)
	if p.State != Up || p.DesiredMinTx != 100*time.Millisecond || p.Poll {
		t.Errorf("packet once Up and the poll answered = %+v; want Up, TX 100ms, no Poll", p)
	}
	if got := s.txInterval(); got != 100*time.Millisecond {
		t.Errorf("transmit interval once Up = %s, want 100ms", got)
	}
}

func TestUpStartsPollSequence(t *testing.T) {
	s, _ := newTestSession(fast)
	s.receive(remote(Init, func(p *ControlPacket) { p.YourDiscr = 0 }))
	if s.state != Up {
		t.Fatalf("state = %s, want Up", s.state)
	}
	if !s.due() {
		t.Fatal("going Up does not send at once")
	}
	p := s.packet(false)
	if !p.Poll || p.Final || p.DesiredMinTx != 100*time.Millisecond {
		t.Errorf("first packet when Up = %+v; want Poll with the fast TX 100ms", p)
	}
	// Until the Final, TX is already the faster 100 ms (a decrease
	// needs no wait) and the remote's detection may use the old value.
	if got := s.txInterval(); got != 100*time.Millisecond {
		t.Errorf("transmit interval while polling = %s, want 100ms", got)
	}
	s.receive(remote(Up, func(p *ControlPacket) { p.Final = true }))
	if s.polling || s.packet(false).Poll {
		t.Error("still polling after the Final")
	}
}

func TestPollIsAnsweredWithFinal(t *testing.T) {
	s, _ := newTestSession(fast)
	bringUp(t, s)
	if !s.receive(remote(Up, func(p *ControlPacket) { p.Poll = true })) {
		t.Fatal("a Poll does not ask for an immediate Final")
	}
	if p := s.packet(true); !p.Final || p.Poll {
		t.Errorf("answer to the Poll = %+v; want Final and no Poll", p)
	}
	// Our own poll in progress: P and F are never set together.
	s.setTimers(Timers{DesiredMinTx: 200 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3})
	if p := s.packet(true); !p.Final || p.Poll {
		t.Errorf("Final while our poll runs = %+v; want F without P", p)
	}
	if p := s.packet(false); !p.Poll {
		t.Errorf("periodic packet while our poll runs = %+v; want P", p)
	}
}

func TestNegotiatedIntervals(t *testing.T) {
	tests := []struct {
		name                  string
		local                 Timers
		remoteTx, remoteRx    time.Duration
		remoteMult            uint8
		wantTx, wantDetection time.Duration
	}{
		{"remote wants it slower", fast, 100 * time.Millisecond, 500 * time.Millisecond, 3, 500 * time.Millisecond, 300 * time.Millisecond},
		{"we send slower", Timers{DesiredMinTx: 300 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3},
			100 * time.Millisecond, 100 * time.Millisecond, 3, 300 * time.Millisecond, 300 * time.Millisecond},
		// Detection: the remote's multiplier times the slower of our RX and its TX.
		{"remote sends slower", fast, 250 * time.Millisecond, 100 * time.Millisecond, 5, 100 * time.Millisecond, 1250 * time.Millisecond},
		{"we accept slower", Timers{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 400 * time.Millisecond, DetectMult: 3},
			100 * time.Millisecond, 100 * time.Millisecond, 2, 100 * time.Millisecond, 800 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestSession(tt.local)
			mod := func(p *ControlPacket) {
				p.DesiredMinTx, p.RequiredMinRx, p.DetectMult = tt.remoteTx, tt.remoteRx, tt.remoteMult
			}
			s.receive(remote(Init, mod, func(p *ControlPacket) { p.YourDiscr = 0 }))
			s.receive(remote(Up, mod, func(p *ControlPacket) { p.Final = true }))
			if got := s.txInterval(); got != tt.wantTx {
				t.Errorf("transmit interval = %s, want %s", got, tt.wantTx)
			}
			if got := s.detectionTime(); got != tt.wantDetection {
				t.Errorf("detection time = %s, want %s", got, tt.wantDetection)
			}
		})
	}
}

func TestDetectionTimeExpires(t *testing.T) {
	s, fc := newTestSession(fast)
	bringUp(t, s)
	// The last packet (the Final) armed 3 x 100 ms.
	fc.Step(299 * time.Millisecond)
	s.due()
	if s.state != Up {
		t.Fatalf("state 299ms after the last packet = %s, want Up", s.state)
	}
	s.receive(remote(Up)) // re-arms
	fc.Step(299 * time.Millisecond)
	s.due()
	if s.state != Up {
		t.Fatalf("state 299ms after a fresh packet = %s, want Up", s.state)
	}
	if got, want := s.deadline(), fc.Now().Add(time.Millisecond); got.After(want) {
		t.Errorf("deadline = %s, want no later than the detection timeout %s", got, want)
	}
	fc.Step(time.Millisecond)
	s.due()
	if s.state != Down || s.localDiag != DiagDetectionExpired || s.remoteDiscr != 0 {
		t.Errorf("after 300ms of silence: state %s diag %q remote discriminator %d; want Down, %q, 0",
			s.state, s.localDiag, s.remoteDiscr, DiagDetectionExpired)
	}
	if p := s.packet(false); p.DesiredMinTx != time.Second || p.YourDiscr != 0 {
		t.Errorf("packet after going Down = %+v; want the slow 1s TX and Your Discriminator 0", p)
	}
}

func TestLongerTransmitWaitsForFinal(t *testing.T) {
	s, fc := newTestSession(fast)
	bringUp(t, s)
	slower := Timers{DesiredMinTx: 400 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3}
	s.setTimers(slower)
	if p := s.packet(false); !p.Poll || p.DesiredMinTx != 400*time.Millisecond {
		t.Errorf("packet after raising TX = %+v; want Poll advertising 400ms", p)
	}
	if got := s.txInterval(); got != 100*time.Millisecond {
		t.Errorf("transmit interval before the Final = %s, want still 100ms", got)
	}
	s.due()
	fc.Step(100 * time.Millisecond)
	if !s.due() {
		t.Error("no periodic packet 100ms later while the poll is unanswered")
	}
	s.receive(remote(Up, func(p *ControlPacket) { p.Final = true }))
	if got := s.txInterval(); got != 400*time.Millisecond {
		t.Errorf("transmit interval after the Final = %s, want 400ms", got)
	}
}

func TestShorterReceiveWaitsForFinal(t *testing.T) {
	slow := Timers{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 500 * time.Millisecond, DetectMult: 3}
	s, _ := newTestSession(slow)
	bringUp(t, s)
	if got := s.detectionTime(); got != 1500*time.Millisecond {
		t.Fatalf("detection time = %s, want 1.5s", got)
	}
	s.setTimers(fast)
	if got := s.detectionTime(); got != 1500*time.Millisecond {
		t.Errorf("detection time before the Final = %s, want still 1.5s", got)
	}
	s.receive(remote(Up, func(p *ControlPacket) { p.Final = true }))
	if got := s.detectionTime(); got != 300*time.Millisecond {
		t.Errorf("detection time after the Final = %s, want 300ms", got)
	}
}

func TestIgnoredPackets(t *testing.T) {
	tests := []struct {
		name string
		p    *ControlPacket
	}{
		{"no Your Discriminator while Up", remote(Down, func(p *ControlPacket) { p.YourDiscr = 0 })},
		{"authenticated", remote(Down, func(p *ControlPacket) { p.Auth = true })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestSession(fast)
			bringUp(t, s)
			s.receive(tt.p)
			if s.state != Up {
				t.Errorf("state = %s, want Up", s.state)
			}
		})
	}
}

func TestAdminDown(t *testing.T) {
	s, fc := newTestSession(fast)
	bringUp(t, s)
	s.adminDown()
	if p := s.packet(false); p.State != AdminDown || p.Diag != DiagAdminDown {
		t.Errorf("packet = %+v; want AdminDown with diagnostic 7", p)
	}
	s.receive(remote(Up))
	fc.Step(time.Hour)
	s.due()
	if s.state != AdminDown {
		t.Errorf("state = %s, want AdminDown to hold", s.state)
	}
}

func TestNoPacketsWhenRemoteWantsNone(t *testing.T) {
	s, fc := newTestSession(fast)
	s.receive(remote(Down, func(p *ControlPacket) { p.YourDiscr, p.RequiredMinRx = 0, 0 }))
	fc.Step(time.Second)
	if s.due() {
		t.Error("sent a periodic packet to a remote whose Required Min RX is 0")
	}
}

func TestJitter(t *testing.T) {
	most := func(d time.Duration) time.Duration { return d } // the largest reduction allowed
	tests := []struct {
		name   string
		mult   uint8
		jitter func(time.Duration) time.Duration
		want   time.Duration
	}{
		{"none", 3, noJitter, 100 * time.Millisecond},
		{"most", 3, most, 75 * time.Millisecond},
		{"multiplier 1, least", 1, noJitter, 90 * time.Millisecond},
		{"multiplier 1, most", 1, most, 75 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := clocktesting.NewFakeClock(t0)
			s := newSession(fc, tt.jitter, localDiscr, Timers{DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: time.Second, DetectMult: tt.mult})
			if got := s.jittered(100 * time.Millisecond); got != tt.want {
				t.Errorf("jittered(100ms) = %s, want %s", got, tt.want)
			}
		})
	}
}

// A router comes Up asking for packets no faster than 1 s, then lowers its
// RequiredMinRx to 100 ms in a Poll and times us out by it at once: the
// next packet must follow within the new interval, not at the slot the old
// one scheduled (FRR's bfdd declared the lab's nodes down 300 ms after Up).
func TestShorterRemoteRxSpeedsUpAtOnce(t *testing.T) {
	s, fc := newTestSession(fast)
	slow := func(p *ControlPacket) { p.RequiredMinRx, p.DesiredMinTx = time.Second, time.Second }
	s.receive(remote(Down, slow, func(p *ControlPacket) { p.YourDiscr = 0 }))
	s.receive(remote(Up, slow))
	if s.state != Up {
		t.Fatalf("state %s, want Up", s.state)
	}
	if !s.due() { // the packet that tells the router we are Up
		t.Fatal("no packet at Up")
	}
	if got := s.deadline().Sub(fc.Now()); got != time.Second {
		t.Fatalf("next packet in %s while the router accepts one a second, want 1s", got)
	}
	fc.Step(50 * time.Millisecond)
	if final := s.receive(remote(Up, func(p *ControlPacket) { p.Poll = true })); !final {
		t.Fatal("the router's Poll was not answered with a Final")
	}
	if got := s.deadline().Sub(fc.Now()); got > 100*time.Millisecond {
		t.Errorf("next packet %s after the router asked for one every 100ms, want within 100ms", got)
	}
}
