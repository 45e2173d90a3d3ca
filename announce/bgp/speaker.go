// Package bgp advertises VIPs to routers from an embedded gobgp v3 speaker.
package bgp

import (
	"context"
	"errors"
	"net/netip"

	"github.com/go-logr/logr"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// Options configure one node's speaker.
type Options struct {
	NodeName string
	ASN      uint32
	RouterID netip.Addr // IPv4
	// NextHop4 and NextHop6 are this node's addresses advertised as next hop.
	NextHop4 netip.Addr
	NextHop6 netip.Addr
	Logger   logr.Logger
}

// Advertisement is one prefix this node advertises to some peers.
type Advertisement struct {
	Prefix      netip.Prefix // the VIP as /32 or /128, or its aggregate
	Peers       []string     // names from the config's bgp.peers
	Communities []config.Community
	LocalPref   *uint32
}

// PeerStatus is the state of one session, for metrics and events.
type PeerStatus struct {
	Name       string
	State      string // "established", "active", ...
	Advertised int
	LastError  string
}

// Speaker is one embedded BGP speaker.
type Speaker struct{}

var errNotImplemented = errors.New("bgp: not implemented yet")

// New starts a speaker with no peers and no paths.
func New(ctx context.Context, opts Options) (*Speaker, error) { return nil, errNotImplemented }

// SetPeers makes the sessions equal to peers (already filtered for this
// node). A peer that cannot be configured (e.g. unreadable password file) is
// reported in the returned error, and the others still apply.
func (s *Speaker) SetPeers(ctx context.Context, peers []config.Peer) error { return errNotImplemented }

// SetAdvertisements makes the advertised paths equal to ads, as a diff, and
// binds each advertised VIP on kube-lb0.
func (s *Speaker) SetAdvertisements(ctx context.Context, ads []Advertisement) error {
	return errNotImplemented
}

// Peers reports every session's state.
func (s *Speaker) Peers() []PeerStatus { return nil }

// Stop withdraws every path, then closes the sessions.
func (s *Speaker) Stop(ctx context.Context) error { return errNotImplemented }
