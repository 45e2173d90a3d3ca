package bgp

import (
	"context"
	"fmt"

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

// onBFD treats a peer whose BFD session went down as down: its BGP session
// is shut until BFD is up again, so this node stops sending traffic
// towards a router it cannot reach (the router, running BFD too, withdraws
// this node's paths on its side). A router that takes BFD
// administratively down is not a failure (RFC 5882 §3.2), so that leaves
// BGP alone.
func (s *Speaker) onBFD(ctx context.Context, st bfd.Status) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, e := s.nameOf(st.Peer.String())
	if e == nil || e.cfg.BFD == nil {
		return nil
	}
	e.bfdState = st.State
	ev := Event{Peer: name, Address: e.cfg.Addr, BFD: &st}
	switch {
	case st.State == bfd.Up:
		ev.Kind = EventBFDUp
		if e.bfdDisabled {
			if err := s.enableAfterBFD(ctx, e); err != nil {
				s.log.Error(err, "Re-enabling the BGP session after BFD came up failed", "peer", name)
			}
		}
	case st.State == bfd.Down && st.RemoteState != bfd.AdminDown:
		ev.Kind = EventBFDDown
		ev.Error = &PeerError{Cause: CauseBFDDown, Message: fmt.Sprintf("BFD with %s went down (%s); the BGP session is shut until BFD is up again", e.cfg.Addr, st.Diag)}
		if !e.bfdDisabled && !s.stopped {
			if err := s.disableForBFD(ctx, e); err != nil {
				s.log.Error(err, "Shutting the BGP session after BFD went down failed", "peer", name)
			}
		}
	default:
		return nil
	}
	return []Event{ev}
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
