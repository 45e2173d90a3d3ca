package announce

import (
	"context"
	"net"
	"net/netip"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bgp"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/l2"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// L2Plane answers ARP/NDP for the VIPs the plan gives this node.
// *l2.Announcer implements it; tests use a fake.
type L2Plane interface {
	// Set makes the answered VIPs equal to want; a VIP that leaves want is
	// handed over (answered until the new owner announces it).
	Set(ctx context.Context, want []l2.Announcement) error
	// Announced returns the VIPs answered now.
	Announced() []l2.Announcement
	// Probe asks who answers for ip on iface; nil MAC and nil error when
	// nobody did before ctx ended.
	Probe(ctx context.Context, iface string, ip netip.Addr) (net.HardwareAddr, error)
	// HandOver keeps answering until new owners announce, then stops.
	HandOver(ctx context.Context) error
	WithdrawAll() error
	Close() error
}

var _ L2Plane = (*l2.Announcer)(nil)

// BGPPlane advertises the VIPs the plan gives this node.
type BGPPlane interface {
	// Apply makes the sessions equal to peers and the advertised paths
	// equal to ads (sorted by VIP).
	Apply(ctx context.Context, peers []config.Peer, ads []BGPAdvertisement) error
	// Peers reports the sessions, for metrics.
	Peers() []bgp.PeerStatus
	// Stop withdraws every path and closes the sessions (the node leaves).
	Stop(ctx context.Context) error
	// Detach readies for a restart of the agent: paths stay with
	// graceful-restart peers (withdrawn from the others), and the next
	// process announces restarting mode.
	Detach(ctx context.Context) error
}

// speakerPlane is the BGPPlane over an embedded announce/bgp speaker,
// started on first use (a node with nothing to advertise and no peers
// runs none).
type speakerPlane struct {
	opts    func() bgp.Options
	speaker *bgp.Speaker
}

var _ BGPPlane = (*speakerPlane)(nil)

func (p *speakerPlane) Apply(ctx context.Context, peers []config.Peer, ads []BGPAdvertisement) error {
	if p.speaker == nil {
		if len(peers) == 0 && len(ads) == 0 {
			return nil
		}
		s, err := bgp.New(ctx, p.opts())
		if err != nil {
			return err
		}
		p.speaker = s
	}
	if err := p.speaker.SetPeers(ctx, peers); err != nil {
		return err
	}
	return p.speaker.SetAdvertisements(ctx, advertisements(ads))
}

func (p *speakerPlane) Peers() []bgp.PeerStatus {
	if p.speaker == nil {
		return nil
	}
	return p.speaker.Peers()
}

func (p *speakerPlane) Stop(ctx context.Context) error {
	if p.speaker == nil {
		return nil
	}
	return p.speaker.Stop(ctx)
}

func (p *speakerPlane) Detach(ctx context.Context) error {
	if p.speaker == nil {
		return nil
	}
	return p.speaker.Detach(ctx)
}
