package announce

import (
	"maps"
	"slices"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

const (
	testLease = 3 * time.Second
	testFresh = 2 * time.Second
)

// liveNames returns the sorted names Live reports.
func liveNames(l *Liveness) []string {
	live, _ := l.Live()
	return slices.Sorted(maps.Keys(live))
}

func TestLiveness(t *testing.T) {
	type step struct {
		advance time.Duration
		observe []string // "node@version"
		forget  string
		leaving string // observe this node@version marked leaving
		want    []string
		fresh   bool
	}
	obs := func(l *Liveness, s string, leaving bool) {
		for i := range s {
			if s[i] == '@' {
				l.Observe(s[:i], s[i+1:], leaving, AgentInfo{})
				return
			}
		}
		t.Fatalf("bad observation %q", s)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "a peer that stops renewing dies after leaseDuration",
			steps: []step{
				{observe: []string{"self@1", "b@1"}, want: []string{"b"}, fresh: true},
				{advance: time.Second, observe: []string{"self@2"}, want: []string{"b"}, fresh: true},
				{advance: time.Second, observe: []string{"self@3"}, want: []string{"b"}, fresh: true},
				{advance: 999 * time.Millisecond, observe: []string{"self@4"}, want: []string{"b"}, fresh: true},
				{advance: time.Millisecond, want: nil, fresh: true},
			},
		},
		{
			name: "renewals keep a peer alive",
			steps: []step{
				{observe: []string{"self@1", "b@1"}, want: []string{"b"}, fresh: true},
				{advance: 2 * time.Second, observe: []string{"self@2", "b@2"}, want: []string{"b"}, fresh: true},
				{advance: 2 * time.Second, observe: []string{"self@3", "b@3"}, want: []string{"b"}, fresh: true},
				{advance: 2 * time.Second, observe: []string{"self@4", "b@4"}, want: []string{"b"}, fresh: true},
			},
		},
		{
			name: "a relist of the same version is not a renewal",
			steps: []step{
				{observe: []string{"self@1", "b@7"}, want: []string{"b"}, fresh: true},
				{advance: 2 * time.Second, observe: []string{"self@2", "b@7"}, want: []string{"b"}, fresh: true},
				{advance: 1500 * time.Millisecond, observe: []string{"self@3", "b@7"}, want: nil, fresh: true},
			},
		},
		{
			name: "while our own renewals do not come back, nobody dies",
			steps: []step{
				{observe: []string{"self@1", "b@1"}, want: []string{"b"}, fresh: true},
				{advance: 2 * time.Second, want: []string{"b"}, fresh: true},
				{advance: 10 * time.Second, want: []string{"b"}, fresh: false},
				{advance: 20 * time.Second, want: []string{"b"}, fresh: false},
			},
		},
		{
			name: "back from a stale view every peer gets a full lease of grace",
			steps: []step{
				{observe: []string{"self@1", "b@1", "c@1"}, want: []string{"b", "c"}, fresh: true},
				{advance: 20 * time.Second, want: []string{"b", "c"}, fresh: false},
				{observe: []string{"self@2"}, want: []string{"b", "c"}, fresh: true},
				{advance: time.Second, observe: []string{"self@3", "b@2"}, want: []string{"b", "c"}, fresh: true},
				{advance: 2 * time.Second, observe: []string{"self@4", "b@3"}, want: []string{"b"}, fresh: true},
			},
		},
		{
			name: "before our own lease is seen the view is stale",
			steps: []step{
				{observe: []string{"b@1"}, want: []string{"b"}, fresh: false},
				{advance: time.Minute, want: []string{"b"}, fresh: false},
			},
		},
		{
			name: "a leaving peer is out at once, and back when it renews without the mark",
			steps: []step{
				{observe: []string{"self@1", "b@1"}, want: []string{"b"}, fresh: true},
				{leaving: "b@2", want: nil, fresh: true},
				{observe: []string{"b@3"}, want: []string{"b"}, fresh: true},
			},
		},
		{
			name: "a deleted lease is out at once",
			steps: []step{
				{observe: []string{"self@1", "b@1", "c@1"}, want: []string{"b", "c"}, fresh: true},
				{forget: "b", want: []string{"c"}, fresh: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
			l := NewLiveness(clk, "self", testLease, testFresh)
			for i, s := range tt.steps {
				clk.SetTime(clk.Now().Add(s.advance))
				for _, o := range s.observe {
					obs(l, o, false)
				}
				if s.leaving != "" {
					obs(l, s.leaving, true)
				}
				if s.forget != "" {
					l.Forget(s.forget)
				}
				if got := liveNames(l); !slices.Equal(got, s.want) {
					t.Fatalf("step %d: live %v, want %v", i, got, s.want)
				}
				if got := l.Fresh(); got != s.fresh {
					t.Fatalf("step %d: fresh %v, want %v", i, got, s.fresh)
				}
			}
		})
	}
}

func TestLivenessNextExpiry(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	l := NewLiveness(clk, "self", testLease, testFresh)
	l.Observe("self", "1", false, AgentInfo{})
	l.Observe("b", "1", false, AgentInfo{})
	clk.SetTime(clk.Now().Add(500 * time.Millisecond))
	l.Observe("c", "1", false, AgentInfo{})
	_, next := l.Live()
	if want := time.Unix(1000, 0).Add(testLease); !next.Equal(want) {
		t.Fatalf("next change at %v, want %v (b's expiry)", next, want)
	}
	l.Forget("b")
	l.Forget("c")
	if _, next := l.Live(); !next.IsZero() {
		t.Fatalf("next change at %v with no peers, want none", next)
	}
}

func TestLivenessKnownIncludesDeadAndLeaving(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	l := NewLiveness(clk, "self", testLease, testFresh)
	l.Observe("self", "1", false, AgentInfo{MACs: []string{"02:00:00:00:00:01"}})
	l.Observe("b", "1", true, AgentInfo{MACs: []string{"02:00:00:00:00:02"}})
	l.Observe("c", "1", false, AgentInfo{MACs: []string{"02:00:00:00:00:03"}})
	clk.SetTime(clk.Now().Add(time.Minute))
	l.Observe("self", "2", false, AgentInfo{MACs: []string{"02:00:00:00:00:01"}})
	if got := slices.Sorted(maps.Keys(l.Known())); !slices.Equal(got, []string{"b", "c", "self"}) {
		t.Fatalf("known %v", got)
	}
}

func TestObserveReportsOnlyElectionChanges(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	l := NewLiveness(clk, "self", testLease, testFresh)
	mac := AgentInfo{MACs: []string{"02:00:00:00:00:02"}}
	steps := []struct {
		name    string
		advance time.Duration
		node    string
		version string
		leaving bool
		info    AgentInfo
		want    bool
	}{
		{"first sight of our own lease: the view turns fresh", 0, "self", "1", false, AgentInfo{}, true},
		{"a new peer", 0, "b", "1", false, mac, true},
		{"a plain renewal", time.Second, "b", "2", false, mac, false},
		{"our own plain renewal", 0, "self", "2", false, AgentInfo{}, false},
		{"a relist of the same version", 0, "b", "2", false, mac, false},
		{"the peer publishes new state", 0, "b", "3", false, AgentInfo{MACs: mac.MACs, UnreadyPools: []string{"lan"}}, true},
		{"the peer is leaving", 0, "b", "4", true, mac, true},
		{"the peer is back", 0, "b", "5", false, mac, true},
		{"our renewal keeps the view fresh", 1500 * time.Millisecond, "self", "3", false, AgentInfo{}, false},
		{"a renewal after the peer expired brings it back", 2 * time.Second, "b", "6", false, mac, true},
	}
	for _, s := range steps {
		clk.SetTime(clk.Now().Add(s.advance))
		if got := l.Observe(s.node, s.version, s.leaving, s.info); got != s.want {
			t.Errorf("%s: Observe = %v, want %v", s.name, got, s.want)
		}
	}
}
