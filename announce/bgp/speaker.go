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
	"k8s.io/utils/clock"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
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

	// ConnectRetry is the pause between attempts to open a session; 5s if zero.
	ConnectRetry time.Duration

	// OnEvent receives peer events (sessions and BFD up and down, peer
	// errors) from the speaker's own goroutine, in order. It must not
	// block for long nor call back into the speaker.
	OnEvent func(Event)
	// WeightHold is the least time between two link-bandwidth changes of
	// one prefix (1s if zero): the first change is sent at once, later
	// ones within the hold are merged, so a rolling update costs the
	// router about one UPDATE per prefix per second.
	WeightHold time.Duration
	// Clock is the time source of BFD and of WeightHold; the real clock
	// if nil.
	Clock clock.WithTicker
	// BFDNetwork carries BFD packets; UDP if nil (tests fake it).
	BFDNetwork bfd.Network
}

// Advertisement is one prefix this node advertises to some peers.
type Advertisement struct {
	Prefix      netip.Prefix // the VIP as /32 or /128, or its aggregate
	Peers       []string     // names from the config's bgp.peers
	Communities []config.Community
	LocalPref   *uint32 // sent to iBGP peers only, as BGP requires
	// Weight, when not 0, is sent as the link-bandwidth extended community
	// (Weight x 1 Mbit/s) so routers that honour it balance traffic among
	// the nodes in proportion (UCMP). The agent sets it to the node's
	// ready endpoints for pools with weightByEndpoints.
	Weight uint32
}

// PeerStatus is the state of one session, for metrics and events.
type PeerStatus struct {
	Name       string
	Address    netip.Addr
	State      string // "established", "active", "connect", "idle", ...
	Advertised int    // prefixes sent to this peer (0 unless established)
	LastError  string // why the session is not up, when known
	// Error is LastError with its cause; nil when none is known.
	Error *PeerError `json:",omitempty"`
	// Errors counts the errors seen since the speaker started, by cause.
	Errors map[Cause]int `json:",omitempty"`
	// BFD is the BFD session's state; nil when the peer has no bfd.
	BFD *bfd.Status `json:",omitempty"`
}

// Established reports whether the session is up.
func (p PeerStatus) Established() bool { return p.State == stateEstablished }

const (
	stateEstablished      = "established"
	defaultConnectRetry   = 5 * time.Second
	defaultWeightHold     = time.Second
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
	inbox  *inbox      // work for loop
	cancel context.CancelFunc
	// loopDone is closed when loop returns.
	loopDone chan struct{}

	// infoMu guards info, read by gobgp's logger while mu may be held.
	infoMu sync.Mutex
	info   map[string]neighborInfo

	mu      sync.Mutex
	stopped bool                  // no more changes (Stop or Detach)
	closed  bool                  // the gobgp server is gone
	peers   map[string]*peerEntry // by peer name
	markers map[string]uint32     // peer name -> marker id; never reused
	paths   map[netip.Prefix]*pathEntry
	// pending are weight-only changes held back by WeightHold.
	pending map[netip.Prefix]*pathEntry
	bfd     *bfd.Manager // nil until a peer asks for BFD
}

// New starts a speaker with no peers and no paths.
func New(ctx context.Context, opts Options) (*Speaker, error) {
	if opts.ASN == 0 {
		return nil, errors.New("the BGP speaker needs an ASN (bgp.asn in the cloud-config)")
	}
	if !opts.RouterID.Is4() {
		return nil, fmt.Errorf("router ID %q is not an IPv4 address; set bgp.routerID or give the node an IPv4 InternalIP", opts.RouterID)
	}
	if opts.ConnectRetry <= 0 {
		opts.ConnectRetry = defaultConnectRetry
	}
	if opts.WeightHold <= 0 {
		opts.WeightHold = defaultWeightHold
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.OnEvent == nil {
		opts.OnEvent = func(Event) {}
	}
	logger := opts.Logger.WithName("bgp")

	errs := newPeerErrors()
	s := &Speaker{
		opts:     opts,
		log:      logger,
		errs:     errs,
		inbox:    newInbox(),
		loopDone: make(chan struct{}),
		info:     map[string]neighborInfo{},
		peers:    map[string]*peerEntry{},
		markers:  map[string]uint32{},
		paths:    map[netip.Prefix]*pathEntry{},
		pending:  map[netip.Prefix]*pathEntry{},
	}
	errs.changed = func(addr string) { s.inbox.put(errorChanged{addr}) }
	s.server = server.NewBgpServer(server.LoggerOption(&gobgpLogger{log: logger.WithName("gobgp"), errs: errs, info: s.neighborInfo}))
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
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	if err := s.watchPeers(loopCtx); err != nil {
		cancel()
		s.shutdownServer(ctx)
		return nil, fmt.Errorf("watching BGP sessions: %w", err)
	}
	go s.loop(loopCtx)
	return s, nil
}

func (s *Speaker) neighborInfo(addr string) neighborInfo {
	s.infoMu.Lock()
	defer s.infoMu.Unlock()
	return s.info[addr]
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
			old.cfg = w.cfg // same session; BFD timers may differ
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
	s.setInfo(s.opts.ASN)
	if err := s.setBFD(peers); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// setInfo refreshes what the logger knows about each neighbor.
func (s *Speaker) setInfo(globalAS uint32) {
	info := make(map[string]neighborInfo, len(s.peers))
	for _, e := range s.peers {
		local := e.cfg.LocalASN
		if local == 0 {
			local = globalAS
		}
		info[e.cfg.Addr.String()] = neighborInfo{md5: e.cfg.PasswordFile != "", localAS: local, peerAS: e.cfg.ASN}
	}
	s.infoMu.Lock()
	s.info = info
	s.infoMu.Unlock()
}

// SetAdvertisements makes the advertised paths equal to ads, as a diff.
// Paths that did not change are not sent again. The routes originate from
// the speaker's RIB alone: nothing is bound on the node (DESIGN decision 6);
// the cluster's service proxy takes the traffic that arrives for a VIP.
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
			if !first.equal(e) {
				errs = append(errs, fmt.Errorf("prefix %s is advertised twice with different peers or attributes (%s and %s); only the first is used", first.ad.Prefix, first.ad, e.ad))
			}
			continue
		}
		want[e.ad.Prefix] = e
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
	now := s.opts.Clock.Now()
	clear(s.pending)
	for prefix, w := range want {
		old, ok := s.paths[prefix]
		if ok && old.equal(w) {
			continue
		}
		if ok && old.equalButWeight(w) && now.Sub(old.sent) < s.opts.WeightHold {
			s.pending[prefix] = w
			continue
		}
		if err := s.advertise(ctx, w); err != nil {
			errs = append(errs, err)
			continue
		}
		w.sent = now
		s.paths[prefix] = w
	}
	if len(s.pending) > 0 {
		s.inbox.kick()
	}
	return errors.Join(errs...)
}

// flushWeights sends the held-back weight changes whose hold has passed
// and returns how long until the next one is due (0: none pending).
func (s *Speaker) flushWeights(ctx context.Context) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return 0
	}
	now := s.opts.Clock.Now()
	var next time.Duration
	for prefix, w := range s.pending {
		old := s.paths[prefix]
		if wait := s.opts.WeightHold - now.Sub(old.sent); wait > 0 {
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		if err := s.advertise(ctx, w); err != nil {
			s.log.Error(err, "Sending a new weight failed; retrying at the next change")
		} else {
			w.sent = now
			s.paths[prefix] = w
		}
		delete(s.pending, prefix)
	}
	return next
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
	bfdStatus := map[netip.Addr]bfd.Status{}
	if s.bfd != nil {
		for _, b := range s.bfd.Status() {
			bfdStatus[b.Peer] = b
		}
	}
	out := make([]PeerStatus, 0, len(s.peers))
	for name, e := range s.peers {
		st := PeerStatus{Name: name, Address: e.cfg.Addr, State: "idle", Errors: s.errs.countsOf(e.cfg.Addr.String())}
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
			st.Error = &PeerError{Cause: CauseConfig, Message: e.err.Error()}
		case e.bfdDisabled:
			st.Error = &PeerError{Cause: CauseBFDDown, Message: fmt.Sprintf("BFD with %s is down; the BGP session is shut until it is up again or %s passed", e.cfg.Addr, e.bfdHold)}
		case !st.Established():
			st.Error = s.errs.get(e.cfg.Addr.String())
		}
		if st.Error != nil {
			st.LastError = st.Error.Message
		}
		if b, ok := bfdStatus[e.cfg.Addr]; ok && e.cfg.BFD != nil {
			st.BFD = &b
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stop withdraws every path, waits for the withdrawals to leave (each
// session then closes with an Administrative Shutdown notification sent
// after them), and stops the speaker.
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
	s.stopLoop()
	if s.bfd != nil {
		// The BGP sessions are closed: tell the routers' BFD that this
		// is administrative, not a failure.
		err = errors.Join(err, s.bfd.Close(true))
	}
	return err
}

// stopLoop ends loop and waits for it; mu is held, and loop takes it, so
// loop is let go of the lock while it finishes.
func (s *Speaker) stopLoop() {
	s.cancel()
	s.mu.Unlock()
	<-s.loopDone
	s.mu.Lock()
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
// with gracefulRestart peers are left open, their paths in place:
// when the process exits, the kernel closes them without a NOTIFICATION,
// so those routers keep the paths (marked stale, RFC 4724) until the
// restarted speaker advertises again or the restart time (120s) passes.
// The caller must exit soon after; the speaker takes no more changes.
//
// BFD sessions keep running until the process exits: a router then sees
// the BGP connection close first (and, with graceful restart, keeps the
// paths as stale) and BFD time out after; with `bfd
// check-control-plane-failure` FRR does not act on that BFD down while it
// holds stale paths. The speaker of the next process announces restarting
// mode (RFC 4724 Restart State bit) so the routers keep those paths until
// it has sent its own.
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

// Announced reports, for each advertised prefix, the peers that carry it:
// those it is meant for whose session is established and not shut by BFD.
// This is what the agent's Announcing event names.
func (s *Speaker) Announced() map[netip.Prefix][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.Prefix][]string, len(s.paths))
	for prefix, e := range s.paths {
		var peers []string
		for _, name := range e.ad.Peers {
			if p, ok := s.peers[name]; ok && p.established && !p.bfdDisabled {
				peers = append(peers, name)
			}
		}
		out[prefix] = peers
	}
	return out
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
