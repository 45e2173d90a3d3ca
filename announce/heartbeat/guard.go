package heartbeat

import (
	"errors"
	"time"
)

// Reasons a verified message is still dropped.
var (
	ErrMisdirected = errors.New("heartbeat addressed to another node")
	ErrStale       = errors.New("heartbeat time outside the accepted window (are the nodes' clocks synchronised?)")
	ErrReplay      = errors.New("heartbeat does not move its sender's sequence forward (a replay)")
)

// Guard accepts each sender's messages only moving forward: within one
// epoch the sequence must grow; a new epoch (the sender restarted) must
// carry a later time than anything seen from the old one. With the time
// window this bounds a replay to a receiver that restarted less than a
// window ago and has not heard the sender since. Not safe for concurrent
// use.
type Guard struct {
	self   string
	window time.Duration
	seen   map[string]senderState
}

type senderState struct {
	epoch, seq uint64
	time       int64
}

// NewGuard returns a Guard for the receiver self that accepts messages
// whose time is within window of its own clock.
func NewGuard(self string, window time.Duration) *Guard {
	return &Guard{self: self, window: window, seen: map[string]senderState{}}
}

// Check reports why m must be dropped, or records it and returns nil.
func (g *Guard) Check(m Message, now time.Time) error {
	if m.To != g.self {
		return ErrMisdirected
	}
	if d := now.Sub(time.Unix(0, m.Time)); d > g.window || d < -g.window {
		return ErrStale
	}
	st, ok := g.seen[m.From]
	if ok {
		if m.Epoch == st.epoch && m.Seq <= st.seq {
			return ErrReplay
		}
		if m.Epoch != st.epoch && m.Time <= st.time {
			return ErrReplay
		}
	}
	g.seen[m.From] = senderState{epoch: m.Epoch, seq: m.Seq, time: m.Time}
	return nil
}
