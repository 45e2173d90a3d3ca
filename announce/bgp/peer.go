package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// peerEntry is one configured peer. spec is nil when the peer could not be
// configured; err says why.
type peerEntry struct {
	cfg  config.Peer
	spec *api.Peer
	err  error

	established bool      // as gobgp last reported
	bfdState    bfd.State // as the BFD session last reported
	bfdDisabled bool      // the session is shut because BFD went down
	bfdUpAt     time.Time // when BFD last came up; zero while down
	bfdHold     time.Duration
	bfdReopenAt time.Time // when a session shut by BFD reconnects
}

// sameSession reports whether a running session already matches w.
func sameSession(old, w *peerEntry) bool {
	if old == w {
		return true
	}
	if old.spec == nil || w.spec == nil {
		return old.spec == nil && w.spec == nil
	}
	return proto.Equal(old.spec, w.spec)
}

// gracefulRestartTime is how long a router keeps our paths after the session
// drops without a notification (an agent crash or kill) when the peer has
// gracefulRestart. RFC 4724 caps it at 4095s; 120s covers an agent restart.
const gracefulRestartTime = 120

// gracefulDeferral bounds, in seconds, how long a restarted speaker waits
// for the routers' End-of-RIB before sending its paths.
const gracefulDeferral = 5

// desiredPeer builds the gobgp configuration of p, reading its password.
func (s *Speaker) desiredPeer(p config.Peer) (*peerEntry, error) {
	spec, err := peerSpec(p, s.opts.ConnectRetry)
	if err != nil {
		return nil, err
	}
	return &peerEntry{cfg: p, spec: spec}, nil
}

// peerSpec turns a configured peer into gobgp's configuration.
func peerSpec(p config.Peer, connectRetry time.Duration) (*api.Peer, error) {
	if !p.Addr.IsValid() {
		return nil, fmt.Errorf("BGP peer %q has no valid address (%q)", p.Name, p.Address)
	}
	password, err := readPassword(p)
	if err != nil {
		return nil, err
	}
	hold := p.HoldTime
	if hold == 0 {
		hold = config.DefaultHoldTime
	}
	keepalive := p.KeepaliveTime
	if keepalive == 0 {
		keepalive = config.DefaultKeepalive(hold)
	}
	port := uint32(p.Port)
	if port == 0 {
		port = config.DefaultBGPPort
	}
	spec := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Addr.String(),
			PeerAsn:         p.ASN,
			LocalAsn:        p.LocalASN, // 0: bgp.asn
			AuthPassword:    password,
			Description:     p.Name,
		},
		Transport: &api.Transport{
			RemotePort:  port,
			PassiveMode: false,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      uint64(max(connectRetry/time.Second, 1)),
			HoldTime:          uint64(hold / time.Second),
			KeepaliveInterval: uint64(keepalive / time.Second),
		}},
	}
	if p.SourceAddr.IsValid() {
		spec.Transport.LocalAddress = p.SourceAddr.String()
	}
	if p.EBGPMultihop > 0 {
		spec.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihop)}
	}
	if p.GracefulRestart {
		// LocalRestarting: the first session of this process announces
		// the Restart State bit, with the forwarding bit per family, so a
		// router that kept our paths as stale while the agent restarted
		// keeps them until our End-of-RIB instead of dropping them at
		// once (RFC 4724 §4.2). gobgp clears it once the paths are sent.
		spec.GracefulRestart = &api.GracefulRestart{
			Enabled: true, RestartTime: gracefulRestartTime,
			LocalRestarting: true, DeferralTime: gracefulDeferral,
		}
	}
	// Both families on every session: a router that activates only one
	// family negotiates only that one, and a dual-stack router can carry
	// IPv6 VIPs over an IPv4 session.
	for _, f := range []*api.Family{familyV4, familyV6} {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true}}
		if p.GracefulRestart {
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		spec.AfiSafis = append(spec.AfiSafis, af)
	}
	return spec, nil
}

// readPassword returns the TCP MD5 password of p, or "" when it has none.
// The password itself never appears in an error or a log line.
func readPassword(p config.Peer) (string, error) {
	if p.PasswordFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(p.PasswordFile)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the message
		}
		return "", fmt.Errorf("BGP peer %q: cannot read its passwordFile %s: %w", p.Name, p.PasswordFile, err)
	}
	password := strings.TrimRight(string(b), "\r\n")
	switch {
	case password == "":
		return "", fmt.Errorf("BGP peer %q: its passwordFile %s is empty", p.Name, p.PasswordFile)
	case len(password) > 80:
		// TCP_MD5SIG_MAXKEYLEN
		return "", fmt.Errorf("BGP peer %q: the password in %s is %d bytes; TCP MD5 allows at most 80", p.Name, p.PasswordFile, len(password))
	}
	return password, nil
}

var (
	familyV4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyV6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// Names of the gobgp policy objects that send paths to one peer.
func neighborSetName(peer string) string  { return "bm-neighbor-" + peer }
func markerSetName(peer string) string    { return "bm-marker-" + peer }
func exportPolicyName(peer string) string { return "bm-export-" + peer }

const (
	importPolicyName   = "bm-import"
	allNeighborsSet    = "bm-all-neighbors"
	globalPolicyTarget = "global"
)

// installGlobalPolicies makes gobgp export nothing unless a peer's policy
// accepts it, and ignore every route the routers send: the speaker only
// advertises, and a router's copy of a VIP must never replace our own.
func (s *Speaker) installGlobalPolicies(ctx context.Context) error {
	steps := []func() error{
		func() error {
			return s.server.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
				DefinedType: api.DefinedType_NEIGHBOR, Name: allNeighborsSet, List: []string{"0.0.0.0/0", "::/0"},
			}})
		},
		func() error {
			return s.server.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{
				Name: importPolicyName,
				Statements: []*api.Statement{{
					Name:       importPolicyName,
					Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: allNeighborsSet}},
					Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
				}},
			}})
		},
		func() error {
			return s.server.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
				Name: globalPolicyTarget, Direction: api.PolicyDirection_IMPORT,
				Policies: []*api.Policy{{Name: importPolicyName}}, DefaultAction: api.RouteAction_ACCEPT,
			}})
		},
		func() error {
			return s.server.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
				Name: globalPolicyTarget, Direction: api.PolicyDirection_EXPORT, DefaultAction: api.RouteAction_REJECT,
			}})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("setting up the BGP speaker's policies: %w", err)
		}
	}
	return nil
}

// addPeer installs the export policy for e, then opens its session, so the
// first UPDATE the router gets is already filtered.
func (s *Speaker) addPeer(ctx context.Context, e *peerEntry) error {
	name, addr := e.cfg.Name, e.cfg.Addr
	host := netip.PrefixFrom(addr, addr.BitLen())
	marker := s.marker(name)
	steps := []func() error{
		func() error {
			return s.server.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
				DefinedType: api.DefinedType_NEIGHBOR, Name: neighborSetName(name), List: []string{host.String()},
			}})
		},
		func() error {
			return s.server.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
				DefinedType: api.DefinedType_LARGE_COMMUNITY, Name: markerSetName(name), List: []string{markerRegexp(marker)},
			}})
		},
		func() error {
			return s.server.AddPolicy(ctx, &api.AddPolicyRequest{Policy: exportPolicy(name)})
		},
		func() error {
			return s.server.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
				Name: globalPolicyTarget, Direction: api.PolicyDirection_EXPORT,
				Policies: []*api.Policy{{Name: exportPolicyName(name)}}, DefaultAction: api.RouteAction_REJECT,
			}})
		},
		func() error {
			return s.server.AddPeer(ctx, &api.AddPeerRequest{Peer: e.spec})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			s.deletePeerPolicy(ctx, name)
			return fmt.Errorf("adding BGP peer %q (%s): %w", name, addr, err)
		}
	}
	s.errs.forget(addr.String())
	s.log.Info("Added BGP peer", "peer", name, "address", addr, "asn", e.cfg.ASN, "md5", e.cfg.PasswordFile != "")
	return nil
}

// removePeer closes e's session, then removes its export policy.
func (s *Speaker) removePeer(ctx context.Context, e *peerEntry) error {
	if e.spec == nil {
		return nil
	}
	if err := s.server.DeletePeer(ctx, &api.DeletePeerRequest{Address: e.cfg.Addr.String()}); err != nil {
		return fmt.Errorf("removing BGP peer %q (%s): %w", e.cfg.Name, e.cfg.Addr, err)
	}
	s.deletePeerPolicy(ctx, e.cfg.Name)
	s.errs.forget(e.cfg.Addr.String())
	s.log.Info("Removed BGP peer", "peer", e.cfg.Name, "address", e.cfg.Addr)
	return nil
}

// deletePeerPolicy removes whatever part of a peer's export policy exists.
// Leftovers are harmless (the neighbor set names only that peer's address),
// so failures are logged, not returned.
func (s *Speaker) deletePeerPolicy(ctx context.Context, name string) {
	policy := &api.Policy{Name: exportPolicyName(name)}
	steps := []func() error{
		func() error {
			return s.server.DeletePolicyAssignment(ctx, &api.DeletePolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
				Name: globalPolicyTarget, Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{policy},
				DefaultAction: api.RouteAction_REJECT,
			}})
		},
		func() error { return s.server.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: policy, All: true}) },
		func() error {
			return s.server.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{
				DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: neighborSetName(name)}, All: true,
			})
		},
		func() error {
			return s.server.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{
				DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_LARGE_COMMUNITY, Name: markerSetName(name)}, All: true,
			})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			s.log.V(4).Info("Cleaning up a BGP peer's export policy", "peer", name, "err", err)
		}
	}
}

// exportPolicy accepts, for the peer's address only, paths that carry the
// peer's marker, and strips every marker before the path leaves.
func exportPolicy(peer string) *api.Policy {
	return &api.Policy{
		Name: exportPolicyName(peer),
		Statements: []*api.Statement{{
			Name: exportPolicyName(peer),
			Conditions: &api.Conditions{
				NeighborSet:       &api.MatchSet{Type: api.MatchSet_ANY, Name: neighborSetName(peer)},
				LargeCommunitySet: &api.MatchSet{Type: api.MatchSet_ANY, Name: markerSetName(peer)},
			},
			Actions: &api.Actions{
				RouteAction:    api.RouteAction_ACCEPT,
				LargeCommunity: &api.CommunityAction{Type: api.CommunityAction_REMOVE, Communities: []string{allMarkersRegexp}},
			},
		}},
	}
}

// marker returns the marker id of a peer name, assigning one on first use.
// Ids are never reused, so a path never carries a stale peer's marker that
// a new peer would match.
func (s *Speaker) marker(peer string) uint32 {
	if id, ok := s.markers[peer]; ok {
		return id
	}
	id := uint32(len(s.markers) + 1)
	s.markers[peer] = id
	return id
}
