package announce

import (
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Liveness turns what this agent observed into a verdict on every other
// agent (PeerHealth): Up, Silent or Leaving. Two sources, one verdict:
//
//   - heartbeats (Heard): an agent heard within suspectAfter is Up. An
//     agent this one exchanges heartbeats with (a target) that has not been
//     heard for suspectAfter is Silent, whatever its Lease says: a Lease
//     renewed every 10 s says nothing about the last second.
//   - the Lease, as a backstop where no heartbeats are exchanged: an agent
//     whose Lease this agent has not seen renewed for leaseDuration is
//     Silent. Judged by when this agent observed the renewals, never by
//     comparing clocks, and only while this agent's own view is fresh (its
//     own renewals come back through the watch): a stale view declares
//     nobody silent, and on turning fresh again every peer gets a full
//     leaseDuration of grace.
//
// Silent is not dead: the planner takes a VIP over only when a probe
// agrees. Membership (who has a Lease, and what it published) is kept here
// too, so the agent reads members and verdicts under one lock.
type Liveness struct {
	clock         clock.PassiveClock
	self          string
	leaseDuration time.Duration
	suspectAfter  time.Duration

	mu           sync.Mutex
	peers        map[string]*observed
	heard        map[string]heardState
	targets      map[string]time.Time // node -> when it became a target
	selfObserved time.Time            // zero until our own lease is first seen
}

type observed struct {
	version string
	seen    time.Time
	leaving bool
	info    AgentInfo
}

type heardState struct {
	at      time.Time
	leaving bool
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

func (i AgentInfo) equal(o AgentInfo) bool {
	return slices.Equal(i.MACs, o.MACs) && slices.Equal(i.UnreadyPools, o.UnreadyPools)
}

// NewLiveness returns a Liveness for the agent self.
func NewLiveness(c clock.PassiveClock, self string, leaseDuration, suspectAfter time.Duration) *Liveness {
	return &Liveness{
		clock:         c,
		self:          self,
		leaseDuration: leaseDuration,
		suspectAfter:  suspectAfter,
		peers:         map[string]*observed{},
		heard:         map[string]heardState{},
		targets:       map[string]time.Time{},
	}
}

// ObserveLease records a version of node's Lease. A version seen before (a
// relist) is not a renewal. It reports whether the observation can change
// a plan: a new member, a change in what it publishes or in whether it is
// leaving, a renewal of a Lease that had expired, or this agent's view
// turning fresh. Plain renewals change nothing and need no reconcile.
func (l *Liveness) ObserveLease(node, version string, leaving bool, info AgentInfo) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	o, ok := l.peers[node]
	if ok && o.version == version {
		return false
	}
	changed := !ok || o.leaving != leaving || !o.info.equal(info) ||
		!now.Before(o.seen.Add(l.leaseDuration)) // it had expired
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

// ForgetLease records that node's Lease was deleted: it is no member.
func (l *Liveness) ForgetLease(node string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.peers, node)
}

// Heard records an authenticated heartbeat from node. It reports whether
// that changes a verdict (a silent agent returned, or it started or
// stopped leaving), so the caller reconciles only then.
func (l *Liveness) Heard(node string, leaving bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	before := l.healthLocked(node, now)
	l.heard[node] = heardState{at: now, leaving: leaving}
	return l.healthLocked(node, now).State != before.State
}

// SetSuspectAfter changes the suspicion window (a reloaded config).
func (l *Liveness) SetSuspectAfter(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.suspectAfter = d
}

// SetTargets sets the agents this one exchanges heartbeats with. A new
// target gets suspectAfter to be heard before it counts as silent.
func (l *Liveness) SetTargets(nodes []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	next := make(map[string]time.Time, len(nodes))
	for _, n := range nodes {
		if since, ok := l.targets[n]; ok {
			next[n] = since
		} else {
			next[n] = now
		}
	}
	l.targets = next
}

// Fresh reports whether this agent's view of the Leases is current: its own
// Lease was observed within leaseDuration.
func (l *Liveness) Fresh() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.freshLocked(l.clock.Now())
}

func (l *Liveness) freshLocked(now time.Time) bool {
	return !l.selfObserved.IsZero() && now.Sub(l.selfObserved) < l.leaseDuration
}

// Members returns the other agents with a Lease and what they published.
func (l *Liveness) Members() map[string]AgentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]AgentInfo, len(l.peers))
	for name, o := range l.peers {
		if name != l.self {
			out[name] = o.info
		}
	}
	return out
}

// Verdicts returns the verdict on every member.
func (l *Liveness) Verdicts() map[string]PeerHealth {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	out := make(map[string]PeerHealth, len(l.peers))
	for name := range l.peers {
		if name != l.self {
			out[name] = l.healthLocked(name, now)
		}
	}
	return out
}

// NextChange is when the verdict on some member next changes by the
// passing of time alone, if nothing is heard or observed (zero if never).
// Ask it after SetTargets: a new target that is never heard turns silent
// suspectAfter after it became one, which verdicts taken before it became
// a target cannot know. (Asked before, an owner that died right after it
// became a target was judged only when its Lease ran out: 2.5 s, not
// 0.5 s, in the lab's crash benchmark.)
func (l *Liveness) NextChange() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	var next time.Time
	for name := range l.peers {
		if name == l.self {
			continue
		}
		if t := l.changesAtLocked(name, now); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

func (l *Liveness) healthLocked(node string, now time.Time) PeerHealth {
	o, member := l.peers[node]
	hs, heard := l.heard[node]
	if (member && o.leaving) || (heard && hs.leaving) {
		return PeerHealth{State: Leaving}
	}
	if heard && now.Sub(hs.at) < l.suspectAfter {
		return PeerHealth{State: Up}
	}
	if since, target := l.targets[node]; target {
		last := since
		if heard && hs.at.After(last) {
			last = hs.at
		}
		if silentAt := last.Add(l.suspectAfter); !now.Before(silentAt) {
			return PeerHealth{State: Silent, Since: silentAt}
		}
		return PeerHealth{State: Up}
	}
	if member && l.freshLocked(now) {
		if expiry := o.seen.Add(l.leaseDuration); !now.Before(expiry) {
			return PeerHealth{State: Silent, Since: expiry}
		}
	}
	return PeerHealth{State: Up}
}

// changesAtLocked is when node's verdict next changes by the passing of
// time alone: a heartbeat or a Lease running out.
func (l *Liveness) changesAtLocked(node string, now time.Time) time.Time {
	var ts []time.Time
	if hs, ok := l.heard[node]; ok {
		ts = append(ts, hs.at.Add(l.suspectAfter))
	}
	if since, ok := l.targets[node]; ok {
		ts = append(ts, since.Add(l.suspectAfter))
	}
	if o, ok := l.peers[node]; ok {
		ts = append(ts, o.seen.Add(l.leaseDuration))
	}
	var next time.Time
	for _, t := range ts {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

// Known returns every agent with a Lease (leaving ones included) and what
// it published, this one included.
func (l *Liveness) Known() map[string]AgentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]AgentInfo, len(l.peers))
	for name, o := range l.peers {
		out[name] = o.info
	}
	return out
}
