package bgp

import (
	"context"
	"fmt"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// bfdPeers are the BFD sessions the configured peers ask for.
func bfdPeers(peers []config.Peer) []bfd.Peer {
	var out []bfd.Peer
	for _, p := range peers {
		if p.BFD == nil || !p.Addr.IsValid() {
			continue
		}
		out = append(out, bfd.Peer{
			Addr:     p.Addr,
			Local:    p.SourceAddr,
			Multihop: p.EBGPMultihop > 0,
			Timers: bfd.Timers{
				DesiredMinTx:  p.BFD.TransmitInterval,
				RequiredMinRx: p.BFD.ReceiveInterval,
				DetectMult:    p.BFD.DetectMultiplier,
			},
		})
	}
	return out
}

// setBFD runs a BFD session for each peer that has bfd set.
func (s *Speaker) setBFD(peers []config.Peer) error {
	want := bfdPeers(peers)
	if s.bfd == nil {
		if len(want) == 0 {
			return nil
		}
		s.bfd = bfd.NewManager(bfd.Options{
			Logger:   s.log,
			Clock:    s.opts.Clock,
			Network:  s.opts.BFDNetwork,
			OnChange: func(st bfd.Status) { s.inbox.put(bfdChanged{st}) },
		})
	}
	if err := s.bfd.Set(want); err != nil {
		return fmt.Errorf("setting up BFD: %w", err)
	}
	return nil
}

// A session shut because BFD went down reconnects after a hold-down, BFD
// up or not: many routers (FRR with `bgp listen range`, for one) run a BFD
// session only while the BGP session is up, so waiting for BFD would wait
// forever. The hold-down doubles while BFD keeps failing, so a flapping
// link costs the router one session every bfdMaxHoldDown at most.
const (
	bfdHoldDown    = 2 * time.Second
	bfdMaxHoldDown = time.Minute
	// bfdStable is how long BFD must stay up for the next failure to
	// count as a first one again.
	bfdStable = time.Minute
)

// onBFD treats a peer whose BFD session went down as down: its BGP session
// is shut for a hold-down, so this node stops sending traffic towards a
// router it cannot reach (the router, running BFD too, withdraws this
// node's paths on its side). A router that takes BFD administratively
// down is not a failure (RFC 5882 §3.2), so that leaves BGP alone.
func (s *Speaker) onBFD(ctx context.Context, st bfd.Status) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, e := s.nameOf(st.Peer.String())
	if e == nil || e.cfg.BFD == nil {
		return nil
	}
	now := s.opts.Clock.Now()
	e.bfdState = st.State
	ev := Event{Peer: name, Address: e.cfg.Addr, BFD: &st}
	switch {
	case st.State == bfd.Up:
		ev.Kind = EventBFDUp
		e.bfdUpAt = now
		if e.bfdDisabled {
			if err := s.enableAfterBFD(ctx, e); err != nil {
				s.log.Error(err, "Re-enabling the BGP session after BFD came up failed", "peer", name)
			}
		}
	case st.State == bfd.Down && st.RemoteState != bfd.AdminDown:
		ev.Kind = EventBFDDown
		if e.bfdHold == 0 || now.Sub(e.bfdUpAt) >= bfdStable {
			e.bfdHold = bfdHoldDown
		} else {
			e.bfdHold = min(2*e.bfdHold, bfdMaxHoldDown)
		}
		e.bfdUpAt = time.Time{}
		ev.Error = &PeerError{Cause: CauseBFDDown, Message: fmt.Sprintf("BFD with %s went down (%s); the BGP session is shut and reconnects in %s", e.cfg.Addr, st.Diag, e.bfdHold)}
		if !e.bfdDisabled && !s.stopped {
			if err := s.disableForBFD(ctx, e); err != nil {
				s.log.Error(err, "Shutting the BGP session after BFD went down failed", "peer", name)
			}
			e.bfdReopenAt = now.Add(e.bfdHold)
		}
	default:
		return nil
	}
	return []Event{ev}
}

// reopenAfterBFD re-enables the sessions whose hold-down has passed and
// returns when the next one is due (zero if none).
func (s *Speaker) reopenAfterBFD(ctx context.Context) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Clock.Now()
	var next time.Duration
	for name, e := range s.peers {
		if !e.bfdDisabled || s.stopped {
			continue
		}
		if wait := e.bfdReopenAt.Sub(now); wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		s.log.Info("Reconnecting the BGP session shut when BFD went down", "peer", name, "holdDown", e.bfdHold)
		if err := s.enableAfterBFD(ctx, e); err != nil {
			s.log.Error(err, "Re-enabling the BGP session after the BFD hold-down failed", "peer", name)
		}
	}
	return next
}

func (s *Speaker) disableForBFD(ctx context.Context, e *peerEntry) error {
	if e.spec == nil {
		return nil
	}
	e.bfdDisabled = true
	return s.server.DisablePeer(ctx, &api.DisablePeerRequest{Address: e.cfg.Addr.String(), Communication: "BFD down"})
}

func (s *Speaker) enableAfterBFD(ctx context.Context, e *peerEntry) error {
	e.bfdDisabled = false
	if e.spec == nil {
		return nil
	}
	return s.server.EnablePeer(ctx, &api.EnablePeerRequest{Address: e.cfg.Addr.String()})
}
