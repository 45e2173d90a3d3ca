package announce

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

const (
	testLease   = 40 * time.Second
	testSuspect = 500 * time.Millisecond
)

func TestLiveness(t *testing.T) {
	type step struct {
		advance time.Duration
		lease   []string // "node@version"; "node@version!" marks it leaving
		forget  string
		heard   []string // "node" or "node!" (leaving)
		targets []string // replaces the targets when non-nil
		want    map[string]HealthState
		fresh   bool
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "backstop: a peer whose Lease is not renewed turns silent after leaseDuration",
			steps: []step{
				{lease: []string{"self@1", "b@1"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 20 * time.Second, lease: []string{"self@2"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 19 * time.Second, lease: []string{"self@3"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: time.Second, want: map[string]HealthState{"b": Silent}, fresh: true},
				{lease: []string{"b@2"}, want: map[string]HealthState{"b": Up}, fresh: true},
			},
		},
		{
			name: "a relist (same version) is no renewal",
			steps: []step{
				{lease: []string{"self@1", "b@1"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 39 * time.Second, lease: []string{"self@2", "b@1"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: time.Second, want: map[string]HealthState{"b": Silent}, fresh: true},
			},
		},
		{
			name: "a stale view declares nobody silent, and returning grants every peer a full lease",
			steps: []step{
				{lease: []string{"self@1", "b@1"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 50 * time.Second, want: map[string]HealthState{"b": Up}, fresh: false},
				{lease: []string{"self@2"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 39 * time.Second, lease: []string{"self@3"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: time.Second, want: map[string]HealthState{"b": Silent}, fresh: true},
			},
		},
		{
			name: "heartbeats: a target not heard for suspectAfter is silent though its Lease is current",
			steps: []step{
				{lease: []string{"self@1", "b@1"}, targets: []string{"b"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 499 * time.Millisecond, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: time.Millisecond, want: map[string]HealthState{"b": Silent}, fresh: true},
				{heard: []string{"b"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 400 * time.Millisecond, heard: []string{"b"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 400 * time.Millisecond, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 100 * time.Millisecond, want: map[string]HealthState{"b": Silent}, fresh: true},
			},
		},
		{
			name: "heartbeats: an agent heard is up though its Lease expired (cut off from the API server)",
			steps: []step{
				{lease: []string{"self@1", "b@1"}, targets: []string{"b"}, heard: []string{"b"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 30 * time.Second, lease: []string{"self@2"}, heard: []string{"b"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 30 * time.Second, lease: []string{"self@3"}, heard: []string{"b"}, want: map[string]HealthState{"b": Up}, fresh: true},
			},
		},
		{
			name: "heartbeats work without the API server: silence still shows while the view is stale",
			steps: []step{
				{lease: []string{"self@1", "b@1"}, targets: []string{"b"}, heard: []string{"b"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{advance: 60 * time.Second, heard: []string{"b"}, want: map[string]HealthState{"b": Up}, fresh: false},
				{advance: time.Second, want: map[string]HealthState{"b": Silent}, fresh: false},
			},
		},
		{
			name: "a target that was never heard is silent after its grace",
			steps: []step{
				{lease: []string{"self@1", "b@1", "c@1"}, want: map[string]HealthState{"b": Up, "c": Up}, fresh: true},
				{advance: 10 * time.Second, targets: []string{"b"}, want: map[string]HealthState{"b": Up, "c": Up}, fresh: true},
				{advance: testSuspect, want: map[string]HealthState{"b": Silent, "c": Up}, fresh: true},
				{targets: []string{}, want: map[string]HealthState{"b": Up, "c": Up}, fresh: true},
			},
		},
		{
			name: "leaving on the Lease or on the heartbeat channel",
			steps: []step{
				{lease: []string{"self@1", "b@1", "c@1"}, want: map[string]HealthState{"b": Up, "c": Up}, fresh: true},
				{lease: []string{"b@2!"}, heard: []string{"c!"}, want: map[string]HealthState{"b": Leaving, "c": Leaving}, fresh: true},
				{heard: []string{"c"}, want: map[string]HealthState{"b": Leaving, "c": Up}, fresh: true},
			},
		},
		{
			name: "a deleted Lease is no member",
			steps: []step{
				{lease: []string{"self@1", "b@1"}, want: map[string]HealthState{"b": Up}, fresh: true},
				{forget: "b", want: map[string]HealthState{}, fresh: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(start)
			l := NewLiveness(clk, "self", testLease, testSuspect)
			for i, s := range tt.steps {
				clk.SetTime(clk.Now().Add(s.advance))
				for _, o := range s.lease {
					node, version, _ := cut(o, "@")
					leaving := version[len(version)-1] == '!'
					l.ObserveLease(node, version, leaving, AgentInfo{})
				}
				if s.forget != "" {
					l.ForgetLease(s.forget)
				}
				if s.targets != nil {
					l.SetTargets(s.targets)
				}
				for _, h := range s.heard {
					node, leaving := h, false
					if h[len(h)-1] == '!' {
						node, leaving = h[:len(h)-1], true
					}
					l.Heard(node, leaving)
				}
				got := l.Verdicts()
				if len(got) != len(s.want) {
					t.Fatalf("step %d: verdicts %v, want %v", i, got, s.want)
				}
				for n, w := range s.want {
					if got[n].State != w {
						t.Fatalf("step %d: %s is %v, want %v", i, n, got[n].State, w)
					}
				}
				if f := l.Fresh(); f != s.fresh {
					t.Fatalf("step %d: fresh %v, want %v", i, f, s.fresh)
				}
			}
		})
	}
}

func cut(s, sep string) (string, string, bool) {
	for i := 0; i+len(sep) <= len(s); i++ {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

func TestLivenessSilentSinceAndNext(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(start)
	l := NewLiveness(clk, "self", testLease, testSuspect)
	l.ObserveLease("self", "1", false, AgentInfo{})
	l.ObserveLease("b", "1", false, AgentInfo{})
	l.SetTargets([]string{"b"})
	l.Heard("b", false)
	if next, want := l.NextChange(), start.Add(testSuspect); !next.Equal(want) {
		t.Errorf("next change %v, want %v (b's suspicion)", next, want)
	}
	clk.SetTime(start.Add(2 * time.Second))
	v := l.Verdicts()
	if want := start.Add(testSuspect); v["b"].State != Silent || !v["b"].Since.Equal(want) {
		t.Errorf("b: %+v, want Silent since %v (the last beat plus suspectAfter)", v["b"], want)
	}
	if !l.Heard("b", false) {
		t.Error("Heard from a silent agent did not report a change")
	}
	if l.Heard("b", false) {
		t.Error("a second heartbeat reported a change")
	}
}

func TestLivenessObserveReportsOnlyChanges(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l := NewLiveness(clk, "self", testLease, testSuspect)
	if !l.ObserveLease("self", "1", false, AgentInfo{}) {
		t.Error("first own lease: no change reported (the view turned fresh)")
	}
	if !l.ObserveLease("b", "1", false, AgentInfo{}) {
		t.Error("new member: no change reported")
	}
	clk.SetTime(clk.Now().Add(10 * time.Second))
	if l.ObserveLease("b", "2", false, AgentInfo{}) {
		t.Error("plain renewal reported as a change")
	}
	if l.ObserveLease("b", "2", false, AgentInfo{}) {
		t.Error("relist reported as a change")
	}
	if !l.ObserveLease("b", "3", false, AgentInfo{MACs: []string{"02:00:00:00:00:0b"}}) {
		t.Error("new MACs: no change reported")
	}
	if !l.ObserveLease("b", "4", true, AgentInfo{MACs: []string{"02:00:00:00:00:0b"}}) {
		t.Error("leaving: no change reported")
	}
	if got := l.Members(); len(got) != 1 || len(got["b"].MACs) != 1 {
		t.Errorf("members %v, want b with its MAC", got)
	}
	if got := l.Known(); len(got) != 2 {
		t.Errorf("known %v, want self and b", got)
	}
}
