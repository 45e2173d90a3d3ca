package bgp

import (
	"context"
	"net/netip"
	"sync"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
)

// EventKind says what happened to a peer.
type EventKind string

// Kinds of Event. The agent turns them into events on its Node (Warning
// for errors and downs) and, for SessionUp, re-announces the Services whose
// routes the peer now carries.
const (
	EventSessionUp   EventKind = "SessionUp"
	EventSessionDown EventKind = "SessionDown"
	EventBFDUp       EventKind = "BFDUp"
	EventBFDDown     EventKind = "BFDDown"
	EventPeerError   EventKind = "PeerError"
)

// Event is a change in one peer's state, reported through Options.OnEvent.
type Event struct {
	Kind    EventKind
	Peer    string
	Address netip.Addr
	// Error says why, for PeerError, SessionDown and BFDDown (when known).
	Error *PeerError
	// BFD is the BFD session's state, for BFDUp and BFDDown.
	BFD *bfd.Status
}

// inbox queues work for the speaker's loop from goroutines that must not
// block (gobgp's logger and watcher, BFD sessions).
type inbox struct {
	mu    sync.Mutex
	items []any
	wake  chan struct{}
}

func newInbox() *inbox { return &inbox{wake: make(chan struct{}, 1)} }

func (q *inbox) put(x any) {
	q.mu.Lock()
	q.items = append(q.items, x)
	q.mu.Unlock()
	q.kick()
}

func (q *inbox) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *inbox) take() []any {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items
	q.items = nil
	return out
}

// Items the loop handles.
type (
	bfdChanged struct{ st bfd.Status }
	peerState  struct {
		addr  string
		state api.PeerState_SessionState
	}
	errorChanged struct{ addr string }
)

// loop handles peer events and sends held-back weight changes, until ctx
// ends. It is the only caller of Options.OnEvent.
func (s *Speaker) loop(ctx context.Context) {
	defer close(s.loopDone)
	timer := s.opts.Clock.NewTimer(s.opts.WeightHold)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.inbox.wake:
		case <-timer.C():
		}
		for _, item := range s.inbox.take() {
			for _, ev := range s.handle(ctx, item) {
				s.opts.OnEvent(ev)
			}
		}
		next := s.flushWeights(ctx)
		if reopen := s.reopenAfterBFD(ctx); reopen > 0 && (next <= 0 || reopen < next) {
			next = reopen
		}
		if !timer.Stop() {
			select {
			case <-timer.C():
			default:
			}
		}
		if next > 0 {
			timer.Reset(next)
		}
	}
}

func (s *Speaker) handle(ctx context.Context, item any) []Event {
	switch it := item.(type) {
	case bfdChanged:
		return s.onBFD(ctx, it.st)
	case peerState:
		return s.onPeerState(it.addr, it.state)
	case errorChanged:
		s.mu.Lock()
		name, e := s.nameOf(it.addr)
		s.mu.Unlock()
		if e == nil {
			return nil
		}
		if pe := s.errs.get(it.addr); pe != nil {
			return []Event{{Kind: EventPeerError, Peer: name, Address: e.cfg.Addr, Error: pe}}
		}
	}
	return nil
}

// onPeerState reports a session coming up or going down.
func (s *Speaker) onPeerState(addr string, state api.PeerState_SessionState) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, e := s.nameOf(addr)
	if e == nil {
		return nil
	}
	up := state == api.PeerState_ESTABLISHED
	if up == e.established {
		return nil
	}
	e.established = up
	if up {
		return []Event{{Kind: EventSessionUp, Peer: name, Address: e.cfg.Addr}}
	}
	return []Event{{Kind: EventSessionDown, Peer: name, Address: e.cfg.Addr, Error: s.errs.get(addr)}}
}

// nameOf finds the configured peer with a gobgp neighbor address.
func (s *Speaker) nameOf(addr string) (string, *peerEntry) {
	for name, e := range s.peers {
		if e.cfg.Addr.String() == addr {
			return name, e
		}
	}
	return "", nil
}

// watchPeers feeds gobgp's session state changes to the loop.
func (s *Speaker) watchPeers(ctx context.Context) error {
	return s.server.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		pe := r.GetPeer()
		if pe == nil || pe.GetType() != api.WatchEventResponse_PeerEvent_STATE {
			return
		}
		p := pe.GetPeer()
		s.inbox.put(peerState{addr: p.GetConf().GetNeighborAddress(), state: p.GetState().GetSessionState()})
	})
}
