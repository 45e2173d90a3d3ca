package announce

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bgp"
)

func TestBGPEventText(t *testing.T) {
	tor := netip.MustParseAddr("198.51.100.1")
	md5 := &bgp.PeerError{Cause: bgp.CauseMD5Mismatch, Message: "198.51.100.1 does not answer: this peer uses TCP MD5"}
	tests := []struct {
		name        string
		ev          bgp.Event
		typ, reason string
		wantIn      []string
	}{
		{"peer error names the peer and cause", bgp.Event{Kind: bgp.EventPeerError, Peer: "tor", Address: tor, Error: md5},
			v1.EventTypeWarning, "MD5Mismatch", []string{`BGP peer "tor" (198.51.100.1)`, "TCP MD5"}},
		{"session up", bgp.Event{Kind: bgp.EventSessionUp, Peer: "tor", Address: tor},
			v1.EventTypeNormal, ReasonBGPSessionUp, []string{`"tor"`, "established"}},
		{"session down with its cause", bgp.Event{Kind: bgp.EventSessionDown, Peer: "tor", Address: tor, Error: md5},
			v1.EventTypeWarning, ReasonBGPSessionDown, []string{`"tor"`, "went down", "TCP MD5"}},
		{"BFD up with the negotiated timers", bgp.Event{Kind: bgp.EventBFDUp, Peer: "tor", Address: tor,
			BFD: &bfd.Status{State: bfd.Up, TxInterval: 100 * time.Millisecond, DetectionTime: 300 * time.Millisecond}},
			v1.EventTypeNormal, ReasonBFDUp, []string{`"tor"`, "100ms", "300ms"}},
		{"BFD down", bgp.Event{Kind: bgp.EventBFDDown, Peer: "tor", Address: tor, BFD: &bfd.Status{State: bfd.Down}},
			v1.EventTypeWarning, ReasonBFDDown, []string{`"tor"`, "BFD", "down", "shut"}},
		{"peer error without an error: none", bgp.Event{Kind: bgp.EventPeerError, Peer: "tor", Address: tor}, "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, reason, msg := bgpEventText(tt.ev)
			if typ != tt.typ || reason != tt.reason {
				t.Fatalf("type %q reason %q, want %q %q (%s)", typ, reason, tt.typ, tt.reason, msg)
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}

// The agent turns the speaker's events into events on its own Node.
func TestAgentRecordsBGPEventsOnItsNode(t *testing.T) {
	h := newHarness(t, "node-b", testNode("node-b", "192.0.2.202"))
	h.agent.onBGPEvent(bgp.Event{Kind: bgp.EventPeerError, Peer: "tor", Address: netip.MustParseAddr("198.51.100.1"),
		Error: &bgp.PeerError{Cause: bgp.CauseBadPeerAS, Message: "the router refused this node's AS number"}})
	if e := h.waitEvent("BadPeerAS"); !strings.HasPrefix(e, "Warning BadPeerAS") || !strings.Contains(e, `"tor"`) {
		t.Errorf("event %q", e)
	}
}

// At shutdown a node that stays (a rollout) detaches, keeping the paths
// with graceful-restart peers; a node that leaves withdraws them.
func TestAgentShutdownRestartOrRemoval(t *testing.T) {
	cordoned := testNode("node-b", "192.0.2.202")
	cordoned.Spec.Unschedulable = true
	tainted := testNode("node-b", "192.0.2.202")
	tainted.Spec.Taints = []v1.Taint{{Key: TaintToBeDeleted, Effect: v1.TaintEffectNoSchedule}}
	tests := []struct {
		name string
		node *v1.Node
		want string
	}{
		{"rollout: restart", testNode("node-b", "192.0.2.202"), "Detach"},
		{"cordoned: removal", cordoned, "Stop"},
		{"being deleted by the autoscaler: removal", tainted, "Stop"},
		{"Node gone: removal", testNode("node-other", "192.0.2.203"), "Stop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, "node-b", tt.node)
			h.start()
			deadline := time.Now().Add(20 * time.Second)
			for !h.agent.synced.Load() {
				if time.Now().After(deadline) {
					t.Fatal("the agent did not sync")
				}
				time.Sleep(10 * time.Millisecond)
			}
			h.stop()
			h.bgp.mu.Lock()
			defer h.bgp.mu.Unlock()
			if !slices.Equal(h.bgp.calls, []string{tt.want}) {
				t.Errorf("BGP plane calls %v, want [%s]", h.bgp.calls, tt.want)
			}
		})
	}
}
