package bfd

import (
	"time"

	"k8s.io/utils/clock"
)

// Timers are a session's configured intervals (bgp.peers[].bfd).
type Timers struct {
	DesiredMinTx  time.Duration // transmitInterval
	RequiredMinRx time.Duration // receiveInterval
	DetectMult    uint8         // detectMultiplier
}

// DefaultTimers are FRR's defaults, so a peer configured with `bfd: {}`
// behaves as the router does.
var DefaultTimers = Timers{DesiredMinTx: 300 * time.Millisecond, RequiredMinRx: 300 * time.Millisecond, DetectMult: 3}

// slowTx is the least transmit interval advertised while a session is not
// Up (RFC 5880 §6.8.3), so idle or broken sessions cost little.
const slowTx = time.Second

// session is the RFC 5880 state machine of one asynchronous-mode session,
// without sockets or goroutines: its owner feeds it received packets, calls
// due when the clock passes deadline, and sends what they return. Demand
// mode and the echo function are not implemented: the session never sets D,
// never asks for echo, and treats a remote D bit as asynchronous mode.
type session struct {
	clock  clock.PassiveClock
	jitter func(time.Duration) time.Duration // how much to shorten an interval; [0, d)
	timers Timers

	state       State
	localDiag   Diag
	localDiscr  uint32
	remoteDiscr uint32

	remoteState      State
	remoteDiag       Diag
	remoteMinRx      time.Duration
	remoteDesiredTx  time.Duration
	remoteDetectMult uint8

	// advTx and advRx are the intervals in the packets we send; effTx
	// and effRx the ones we act on, which lag behind while a Poll
	// Sequence is unanswered (RFC 5880 §6.8.3).
	advTx, advRx time.Duration
	effTx, effRx time.Duration
	polling      bool

	nextTx   time.Time
	detectAt time.Time // zero: no detection timer armed
}

func newSession(c clock.PassiveClock, jitter func(time.Duration) time.Duration, discr uint32, t Timers) *session {
	s := &session{
		clock:       c,
		jitter:      jitter,
		timers:      t,
		state:       Down,
		localDiscr:  discr,
		remoteMinRx: time.Microsecond, // RFC 5880 §6.8.1
		nextTx:      c.Now(),
	}
	s.advTx, s.advRx = s.wantIntervals()
	s.effTx, s.effRx = s.advTx, s.advRx
	return s
}

// wantIntervals are the intervals to advertise in the current state.
func (s *session) wantIntervals() (tx, rx time.Duration) {
	tx = s.timers.DesiredMinTx
	if s.state != Up {
		tx = max(tx, slowTx)
	}
	return tx, s.timers.RequiredMinRx
}

// retime advertises the intervals the state and timers call for. While Up
// a change starts a Poll Sequence, and until it ends a longer transmit
// interval or a shorter receive interval is not acted upon.
func (s *session) retime() {
	tx, rx := s.wantIntervals()
	if tx == s.advTx && rx == s.advRx {
		return
	}
	s.advTx, s.advRx = tx, rx
	if s.state != Up {
		s.effTx, s.effRx = tx, rx
		s.polling = false
		return
	}
	s.effTx, s.effRx = min(s.effTx, tx), max(s.effRx, rx)
	s.polling = true
	// Start the poll now rather than after a slow interval.
	s.nextTx = s.clock.Now()
}

// setTimers changes the configured intervals.
func (s *session) setTimers(t Timers) {
	s.timers = t
	s.retime()
}

// receive processes a packet that passed Unmarshal (RFC 5880 §6.8.6) and
// reports whether a packet with the Final bit must be sent at once.
func (s *session) receive(p *ControlPacket) (final bool) {
	if p.Auth {
		return false // no authentication is configured, so none is accepted
	}
	if p.YourDiscr == 0 && s.state != Down && s.state != AdminDown {
		return false
	}
	oldTx := s.txInterval()
	s.remoteDiscr = p.MyDiscr
	s.remoteState = p.State
	s.remoteDiag = p.Diag
	s.remoteMinRx = p.RequiredMinRx
	s.remoteDesiredTx = p.DesiredMinTx
	s.remoteDetectMult = p.DetectMult
	if p.Final && s.polling {
		s.polling = false
		s.effTx, s.effRx = s.advTx, s.advRx
	}
	// A shorter interval takes effect at once: the remote times us out
	// by it as soon as it has said so (a router going Up lowers its
	// RequiredMinRx from 1 s), so a packet still scheduled by the old
	// one would come too late.
	if tx := s.txInterval(); tx < oldTx {
		if next := s.clock.Now().Add(s.jittered(tx)); next.Before(s.nextTx) {
			s.nextTx = next
		}
	}
	if s.state == AdminDown {
		return false
	}
	s.detectAt = s.clock.Now().Add(s.detectionTime())

	switch {
	case p.State == AdminDown:
		if s.state != Down {
			s.goDown(DiagNeighborDown)
		}
	case s.state == Down:
		switch p.State {
		case Down:
			s.setState(Init, DiagNone)
		case Init:
			s.setState(Up, DiagNone)
		}
	case s.state == Init:
		if p.State == Init || p.State == Up {
			s.setState(Up, DiagNone)
		}
	case s.state == Up:
		if p.State == Down {
			s.goDown(DiagNeighborDown)
		}
	}
	return p.Poll
}

// detectionTime is how long the remote may stay silent (RFC 5880 §6.8.4):
// its detect multiplier times the interval it agreed to send at.
func (s *session) detectionTime() time.Duration {
	return time.Duration(s.remoteDetectMult) * max(s.effRx, s.remoteDesiredTx)
}

// txInterval is the agreed periodic transmit interval, before jitter.
func (s *session) txInterval() time.Duration {
	return max(s.effTx, s.remoteMinRx)
}

// setState changes state and tells the remote at once rather than at the
// next periodic packet, which speeds up the three-way handshake.
func (s *session) setState(st State, diag Diag) {
	s.state = st
	s.localDiag = diag
	s.retime()
	s.nextTx = s.clock.Now()
}

func (s *session) goDown(diag Diag) {
	s.setState(Down, diag)
}

// deadline is when due must next be called.
func (s *session) deadline() time.Time {
	if s.detectAt.IsZero() || s.nextTx.Before(s.detectAt) {
		return s.nextTx
	}
	return s.detectAt
}

// due fires the timers that have expired and reports whether a periodic
// packet is to be sent now.
func (s *session) due() (send bool) {
	now := s.clock.Now()
	if !s.detectAt.IsZero() && !now.Before(s.detectAt) {
		s.detectAt = time.Time{}
		s.remoteDiscr = 0
		if s.state == Init || s.state == Up {
			s.goDown(DiagDetectionExpired)
		}
	}
	if now.Before(s.nextTx) {
		return false
	}
	s.nextTx = now.Add(s.jittered(s.txInterval()))
	return s.remoteMinRx != 0 // a remote that asks for no packets gets none
}

// jittered shortens d by 0-25%, or by 10-25% with a detect multiplier of 1
// (RFC 5880 §6.8.7), so sessions do not synchronise.
func (s *session) jittered(d time.Duration) time.Duration {
	if s.timers.DetectMult == 1 {
		return d - d/10 - s.jitter(d*15/100)
	}
	return d - s.jitter(d/4)
}

// packet is the Control packet to send now.
func (s *session) packet(final bool) *ControlPacket {
	return &ControlPacket{
		Diag:          s.localDiag,
		State:         s.state,
		Poll:          s.polling && !final, // never P and F together
		Final:         final,
		DetectMult:    s.timers.DetectMult,
		MyDiscr:       s.localDiscr,
		YourDiscr:     s.remoteDiscr,
		DesiredMinTx:  s.advTx,
		RequiredMinRx: s.advRx,
	}
}

// adminDown takes the session administratively down: the remote is told
// (State AdminDown, diagnostic 7), and nothing it sends changes the state.
func (s *session) adminDown() {
	s.state = AdminDown
	s.localDiag = DiagAdminDown
	s.detectAt = time.Time{}
	s.polling = false
}
