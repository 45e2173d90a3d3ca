// Package bgp advertises VIPs to routers from an embedded gobgp v3 speaker.
//
// One Speaker runs per node. It opens outbound sessions only (it never
// listens), advertises every VIP with this node as next hop, and sends each
// path only to the peers its Advertisement names. Both the peers and the
// paths are kept equal to a desired set by diffing, so calling SetPeers or
// SetAdvertisements again with the same input sends nothing to the routers.
//
// Per-peer targeting uses one gobgp export policy per peer: a path carries a
// private marker (a large community, stripped before it leaves) for every
// peer it is meant for, and peer P's policy accepts only paths that carry P's
// marker. When a path stops naming a peer, gobgp compares the new path with
// the one it replaces and withdraws it from that peer alone.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bind"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// DefaultInterface is the link that carries the VIPs this node advertises.
const DefaultInterface = "kube-lb0"

// Options configure one node's speaker.
type Options struct {
	NodeName string
	ASN      uint32
	RouterID netip.Addr // IPv4
	// NextHop4 and NextHop6 are this node's addresses advertised as next hop.
	NextHop4 netip.Addr
	NextHop6 netip.Addr
	Logger   logr.Logger

	// Interface is where advertised VIPs are bound; DefaultInterface if
	// empty. The speaker creates it if missing (a dummy link, or a bridge
	// with no ports where the kernel has no dummy driver) and treats every
	// host route on it as its own.
	Interface string
	// NoBind leaves VIPs unbound (for tests that cannot change links).
	NoBind bool
	// ConnectRetry is the pause between attempts to open a session; 5s if zero.
	ConnectRetry time.Duration
}

// Advertisement is one prefix this node advertises to some peers.
type Advertisement struct {
	Prefix      netip.Prefix // the VIP as /32 or /128, or its aggregate
	Peers       []string     // names from the config's bgp.peers
	Communities []config.Community
	LocalPref   *uint32 // sent to iBGP peers only, as BGP requires
	// Addrs are the VIPs inside Prefix to bind on the interface. When
	// empty, Prefix's address is bound if Prefix is a host route.
	Addrs []netip.Addr
}

// PeerStatus is the state of one session, for metrics and events.
type PeerStatus struct {
	Name       string
	Address    netip.Addr
	State      string // "established", "active", "connect", "idle", ...
	Advertised int    // prefixes sent to this peer (0 unless established)
	LastError  string // why the session is not up, when known
}

// Established reports whether the session is up.
func (p PeerStatus) Established() bool { return p.State == stateEstablished }

const (
	stateEstablished      = "established"
	defaultConnectRetry   = 5 * time.Second
	shutdownCommunication = "baremetal-node-agent: shutting down"
	// stopWait bounds how long Stop waits for routers to receive the
	// withdrawals when the caller's context has no deadline.
	stopWait = 5 * time.Second
)

// Speaker is one embedded BGP speaker.
type Speaker struct {
	opts   Options
	log    logr.Logger
	server *server.BgpServer
	errs   *peerErrors // connection errors gobgp reports, by neighbor address

	mu      sync.Mutex
	stopped bool                  // no more changes (Stop or Detach)
	closed  bool                  // the gobgp server is gone
	peers   map[string]*peerEntry // by peer name
	markers map[string]uint32     // peer name -> marker id; never reused
	paths   map[netip.Prefix]*pathEntry
}

// New starts a speaker with no peers and no paths.
func New(ctx context.Context, opts Options) (*Speaker, error) {
	if opts.ASN == 0 {
		return nil, errors.New("the BGP speaker needs an ASN (bgp.asn in the cloud-config)")
	}
	if !opts.RouterID.Is4() {
		return nil, fmt.Errorf("router ID %q is not an IPv4 address; set bgp.routerID or give the node an IPv4 InternalIP", opts.RouterID)
	}
	if opts.Interface == "" {
		opts.Interface = DefaultInterface
	}
	if opts.ConnectRetry <= 0 {
		opts.ConnectRetry = defaultConnectRetry
	}
	logger := opts.Logger.WithName("bgp")
	if !opts.NoBind {
		kind, created, err := EnsureInterface(opts.Interface)
		if err != nil {
			return nil, err
		}
		if created {
			logger.Info("Created the VIP interface", "interface", opts.Interface, "kind", kind)
		}
	}

	errs := newPeerErrors()
	s := &Speaker{
		opts:    opts,
		log:     logger,
		errs:    errs,
		peers:   map[string]*peerEntry{},
		markers: map[string]uint32{},
		paths:   map[netip.Prefix]*pathEntry{},
	}
	s.server = server.NewBgpServer(server.LoggerOption(&gobgpLogger{log: logger.WithName("gobgp"), errs: errs}))
	go s.server.Serve()

	err := s.server.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        opts.ASN,
		RouterId:   opts.RouterID.String(),
		ListenPort: -1, // outbound sessions only
	}})
	if err != nil {
		s.server.Stop()
		return nil, fmt.Errorf("starting the BGP speaker (ASN %d, router ID %s): %w", opts.ASN, opts.RouterID, err)
	}
	if err := s.installGlobalPolicies(ctx); err != nil {
		s.shutdownServer(ctx)
		return nil, err
	}
	return s, nil
}

// SetPeers makes the sessions equal to peers (already filtered for this
// node). A peer that cannot be configured (e.g. unreadable password file) is
// reported in the returned error, and the others still apply. Unchanged
// peers keep their sessions; a changed peer's session is re-established.
func (s *Speaker) SetPeers(ctx context.Context, peers []config.Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopped
	}
	var errs []error
	want := make(map[string]*peerEntry, len(peers))
	byAddr := map[netip.Addr]string{}
	for i := range peers {
		p := peers[i]
		if other, dup := byAddr[p.Addr]; dup {
			errs = append(errs, fmt.Errorf("BGP peer %q has the same address %s as peer %q; only %q is used", p.Name, p.Addr, other, other))
			continue
		}
		if _, dup := want[p.Name]; dup {
			errs = append(errs, fmt.Errorf("BGP peer %q is listed twice; only the first is used", p.Name))
			continue
		}
		byAddr[p.Addr] = p.Name
		e, err := s.desiredPeer(p)
		if err != nil {
			if old, ok := s.peers[p.Name]; ok && old.spec != nil && old.cfg.Addr == p.Addr {
				// Keep a working session rather than drop it over a
				// configuration we cannot read; the error says why.
				e = old
			} else {
				e = &peerEntry{cfg: p}
			}
			e.err = err
			errs = append(errs, err)
		}
		want[p.Name] = e
	}

	// Remove first: a peer that moved to a new name keeps its address.
	for name, old := range s.peers {
		if w, ok := want[name]; ok && sameSession(old, w) {
			continue
		}
		if err := s.removePeer(ctx, old); err != nil {
			errs = append(errs, err)
		}
		delete(s.peers, name)
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		w := want[name]
		if old, ok := s.peers[name]; ok {
			old.err = w.err
			continue
		}
		if w.spec != nil {
			if err := s.addPeer(ctx, w); err != nil {
				w.err = err
				w.spec = nil
				errs = append(errs, err)
			}
		}
		s.peers[name] = w
	}
	return errors.Join(errs...)
}

// SetAdvertisements makes the advertised paths equal to ads, as a diff, and
// binds each advertised VIP on the interface. Paths that did not change are
// not sent again. New VIPs are bound before they are advertised, and
// withdrawn VIPs are unbound after they are withdrawn.
func (s *Speaker) SetAdvertisements(ctx context.Context, ads []Advertisement) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopped
	}
	var errs []error
	want := make(map[netip.Prefix]*pathEntry, len(ads))
	for _, ad := range ads {
		e, err := s.desiredPath(ad)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if first, dup := want[e.ad.Prefix]; dup {
			// VIPs aggregated into one prefix: one path binding them all.
			merged, err := s.mergeAddrs(first, e)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e = merged
		}
		want[e.ad.Prefix] = e
	}

	// Bind everything still or newly wanted, keeping what is being withdrawn.
	if err := s.bind(unionAddrs(want, s.paths)); err != nil {
		errs = append(errs, err)
	}
	for prefix, old := range s.paths {
		if _, ok := want[prefix]; ok {
			continue
		}
		if err := s.withdraw(ctx, old); err != nil {
			errs = append(errs, err)
			want[prefix] = old // still advertised; retried next time
			continue
		}
		delete(s.paths, prefix)
	}
	for prefix, w := range want {
		if old, ok := s.paths[prefix]; ok && old.equal(w) {
			continue
		}
		if err := s.advertise(ctx, w); err != nil {
			errs = append(errs, err)
			continue
		}
		s.paths[prefix] = w
	}
	if err := s.bind(unionAddrs(s.paths, nil)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mergeAddrs joins two advertisements of one prefix that differ only in
// the VIPs they bind.
func (s *Speaker) mergeAddrs(a, b *pathEntry) (*pathEntry, error) {
	probe := *b
	probe.ad.Addrs = a.ad.Addrs
	if !a.equal(&probe) {
		return nil, fmt.Errorf("prefix %s is advertised twice with different peers or attributes (%s and %s); only the first is used", a.ad.Prefix, a.ad, b.ad)
	}
	ad := a.ad
	ad.Addrs = append(slices.Clone(a.ad.Addrs), b.ad.Addrs...)
	return s.desiredPath(ad)
}

// Peers reports every configured session's state, sorted by name.
func (s *Speaker) Peers() []PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	states := map[string]api.PeerState_SessionState{}
	if !s.closed {
		// ListPeer only reads; a failure leaves the states unknown.
		if err := s.server.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
			states[p.GetConf().GetNeighborAddress()] = p.GetState().GetSessionState()
		}); err != nil {
			s.log.V(4).Info("Listing BGP sessions failed", "err", err)
		}
	}
	out := make([]PeerStatus, 0, len(s.peers))
	for name, e := range s.peers {
		st := PeerStatus{Name: name, Address: e.cfg.Addr, State: "idle"}
		if e.spec != nil {
			if state, ok := states[e.cfg.Addr.String()]; ok {
				st.State = sessionState(state)
			}
		}
		if st.Established() {
			st.Advertised = s.countFor(name)
		}
		switch {
		case e.err != nil:
			st.LastError = e.err.Error()
		case !st.Established():
			st.LastError = s.errs.explain(e.cfg.Addr.String(), e.cfg.PasswordFile != "")
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stop withdraws every path, waits for the withdrawals to leave (each
// session then closes with an Administrative Shutdown notification sent
// after them), and stops the speaker. The VIPs are unbound last.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel, ok := s.beginStop(ctx)
	if !ok {
		return nil
	}
	defer cancel()
	err := s.leave(ctx, func(string) bool { return false })
	s.shutdownServer(ctx)
	return errors.Join(err, s.bind(nil))
}

// beginStop marks the speaker stopped (false if it already was) and bounds
// ctx by stopWait unless the caller gave a deadline.
func (s *Speaker) beginStop(ctx context.Context) (context.Context, context.CancelFunc, bool) {
	if s.stopped {
		return ctx, func() {}, false
	}
	s.stopped = true
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}, true
	}
	ctx, cancel := context.WithTimeout(ctx, stopWait)
	return ctx, cancel, true
}

// Detach readies the speaker for the process to exit and come back (an
// agent restart, not a node going away). Peers without gracefulRestart get
// every path withdrawn and their sessions closed, as with Stop. Sessions
// with gracefulRestart peers are left open, their paths and VIPs in place:
// when the process exits, the kernel closes them without a NOTIFICATION,
// so those routers keep the paths (marked stale, RFC 4724) until the
// restarted speaker advertises again or the restart time (120s) passes.
// The caller must exit soon after; the speaker takes no more changes.
func (s *Speaker) Detach(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel, ok := s.beginStop(ctx)
	if !ok {
		return nil
	}
	defer cancel()
	keep := map[string]bool{}
	for name, e := range s.peers {
		keep[name] = e.spec != nil && e.cfg.GracefulRestart
	}
	return s.leave(ctx, func(peer string) bool { return keep[peer] })
}

// leave withdraws every path from the peers keep refuses, then closes their
// sessions. The shutdown notification is queued behind the withdrawals on
// each session, so a router sees every withdrawal before the session ends.
func (s *Speaker) leave(ctx context.Context, keep func(peer string) bool) error {
	var errs []error
	for prefix, e := range s.paths {
		ad := e.ad
		ad.Peers = slices.DeleteFunc(slices.Clone(ad.Peers), func(p string) bool { return !keep(p) })
		if len(ad.Peers) == 0 {
			if err := s.withdraw(ctx, e); err != nil {
				errs = append(errs, err)
			}
			delete(s.paths, prefix)
			continue
		}
		if len(ad.Peers) == len(e.ad.Peers) {
			continue
		}
		// The same path minus the other peers' markers: gobgp withdraws
		// it from exactly those peers.
		w, err := s.desiredPath(ad)
		if err == nil {
			err = s.advertise(ctx, w)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.paths[prefix] = w
	}
	for name, e := range s.peers {
		if e.spec == nil || keep(name) {
			continue
		}
		if err := s.server.ShutdownPeer(ctx, &api.ShutdownPeerRequest{
			Address: e.cfg.Addr.String(), Communication: shutdownCommunication,
		}); err != nil {
			errs = append(errs, fmt.Errorf("closing the session with BGP peer %q: %w", name, err))
		}
	}
	if err := s.waitSessionsClosed(ctx, func(addr string) bool { return !keep(s.peerName(addr)) }); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Speaker) peerName(addr string) string {
	for name, e := range s.peers {
		if e.cfg.Addr.String() == addr {
			return name
		}
	}
	return ""
}

var errStopped = errors.New("the BGP speaker is stopped")

// waitSessionsClosed polls until no session for which which returns true
// (every session when which is nil) is established.
func (s *Speaker) waitSessionsClosed(ctx context.Context, which func(addr string) bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var up []string
		err := s.server.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			addr := p.GetConf().GetNeighborAddress()
			if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED && (which == nil || which(addr)) {
				up = append(up, addr)
			}
		})
		if err != nil {
			return fmt.Errorf("checking that BGP sessions closed: %w", err)
		}
		if len(up) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("BGP sessions with %s did not close after the withdrawals: %w", strings.Join(up, ", "), ctx.Err())
		case <-tick.C:
		}
	}
}

func (s *Speaker) shutdownServer(ctx context.Context) {
	s.closed = true
	if err := s.server.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		s.log.Error(err, "Stopping the BGP speaker failed")
	}
	s.server.Stop()
}

// bind keeps the interface's VIPs equal to addrs.
func (s *Speaker) bind(addrs []netip.Addr) error {
	if s.opts.NoBind {
		return nil
	}
	added, removed, err := bind.Set(s.opts.Interface, addrs, func(netip.Addr) bool { return true })
	for _, a := range added {
		s.log.V(2).Info("Bound VIP", "vip", a, "interface", s.opts.Interface)
	}
	for _, a := range removed {
		s.log.V(2).Info("Unbound VIP", "vip", a, "interface", s.opts.Interface)
	}
	return err
}

func (s *Speaker) countFor(peer string) int {
	n := 0
	for _, e := range s.paths {
		for _, p := range e.ad.Peers {
			if p == peer {
				n++
				break
			}
		}
	}
	return n
}

func sessionState(st api.PeerState_SessionState) string {
	return strings.ToLower(st.String())
}

// unionAddrs returns the VIPs of both path sets, sorted and without duplicates.
func unionAddrs(a, b map[netip.Prefix]*pathEntry) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, m := range []map[netip.Prefix]*pathEntry{a, b} {
		for _, e := range m {
			for _, addr := range e.ad.Addrs {
				if !seen[addr] {
					seen[addr] = true
					out = append(out, addr)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}
