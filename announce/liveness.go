package announce

import (
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Liveness judges which agents are alive from the renewals of their Leases
// as this agent observes them. It never compares timestamps written by
// other machines: a peer is dead when this agent has seen no new version of
// its Lease for leaseDuration, measured on this agent's monotonic clock.
//
// Not seeing renewals proves nothing when this agent's own view is stale
// (API server unreachable, watch broken). Its own Lease is the canary: the
// view is fresh while this agent's own renewals come back through the
// watch. While it is stale no peer is declared dead, and when it becomes
// fresh again every peer gets a full leaseDuration of grace, so an outage
// never causes takeovers.
type Liveness struct {
	clock         clock.PassiveClock
	self          string
	leaseDuration time.Duration
	freshWindow   time.Duration

	mu           sync.Mutex
	peers        map[string]*observed
	selfObserved time.Time // zero until our own lease is first seen
}

type observed struct {
	version string
	seen    time.Time
	leaving bool
	info    AgentInfo
}

// AgentInfo is what an agent publishes on its Lease for its peers.
type AgentInfo struct {
	// MACs of the node's interfaces: a probe answered by one of them is
	// a handover, not an address conflict.
	MACs []string
	// UnreadyPools are layer-2 pools this node cannot announce now (no
	// interface for them, or it is down).
	UnreadyPools []string
}

// NewLiveness returns a Liveness for the agent self. The view counts as
// fresh while self's lease was observed within freshWindow.
func NewLiveness(c clock.PassiveClock, self string, leaseDuration, freshWindow time.Duration) *Liveness {
	return &Liveness{
		clock:         c,
		self:          self,
		leaseDuration: leaseDuration,
		freshWindow:   freshWindow,
		peers:         map[string]*observed{},
	}
}

// Observe records a version of node's lease. A version seen before (a
// relist) is not a renewal. It reports whether the observation can change
// an election: a new or returning agent, a change in what it publishes or
// in whether it is leaving, or this agent's view turning fresh. Plain
// renewals of live agents change nothing, so they need no reconcile.
func (l *Liveness) Observe(node, version string, leaving bool, info AgentInfo) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	o, ok := l.peers[node]
	if ok && o.version == version {
		return false
	}
	changed := !ok || o.leaving != leaving || !slices.Equal(o.info.MACs, info.MACs) ||
		!slices.Equal(o.info.UnreadyPools, info.UnreadyPools) ||
		!now.Before(o.seen.Add(l.leaseDuration)) // it was (or was about to be) dead
	if node == l.self {
		if !l.freshLocked(now) {
			// Coming back from a stale view: what looked like missed
			// renewals may only have been missed observations.
			for _, p := range l.peers {
				p.seen = now
			}
			changed = true
		}
		l.selfObserved = now
	}
	l.peers[node] = &observed{version: version, seen: now, leaving: leaving, info: info}
	return changed
}

// Forget records that node's lease was deleted: it is gone at once.
func (l *Liveness) Forget(node string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.peers, node)
}

// Fresh reports whether this agent's view of the leases is current.
func (l *Liveness) Fresh() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.freshLocked(l.clock.Now())
}

func (l *Liveness) freshLocked(now time.Time) bool {
	return !l.selfObserved.IsZero() && now.Sub(l.selfObserved) <= l.freshWindow
}

// Live returns the other agents that are alive and not leaving, and the
// time at which that set next changes if no renewal arrives (zero if
// never). While the view is stale nobody expires. This agent's own
// liveness is whether it holds its lease, which the caller knows better.
func (l *Liveness) Live() (map[string]AgentInfo, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	fresh := l.freshLocked(now)
	live := map[string]AgentInfo{}
	var next time.Time
	for name, o := range l.peers {
		if o.leaving || name == l.self {
			continue
		}
		expiry := o.seen.Add(l.leaseDuration)
		if fresh && !now.Before(expiry) {
			continue
		}
		live[name] = o.info
		if next.IsZero() || expiry.Before(next) {
			next = expiry
		}
	}
	return live, next
}

// Leaving reports whether node's lease says it is shutting down.
func (l *Liveness) Leaving(node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.peers[node]
	return ok && o.leaving
}

// Known returns every agent with a lease, dead or leaving ones included.
func (l *Liveness) Known() map[string]AgentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]AgentInfo, len(l.peers))
	for name, o := range l.peers {
		out[name] = o.info
	}
	return out
}
