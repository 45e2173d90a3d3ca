package announce

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bgp"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
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
			v1.EventTypeNormal, apicontract.ReasonBGPSessionUp, []string{`"tor"`, "established"}},
		{"session down with its cause", bgp.Event{Kind: bgp.EventSessionDown, Peer: "tor", Address: tor, Error: md5},
			v1.EventTypeWarning, apicontract.ReasonBGPSessionDown, []string{`"tor"`, "went down", "TCP MD5"}},
		{"BFD up with the negotiated timers", bgp.Event{Kind: bgp.EventBFDUp, Peer: "tor", Address: tor,
			BFD: &bfd.Status{State: bfd.Up, TxInterval: 100 * time.Millisecond, DetectionTime: 300 * time.Millisecond}},
			v1.EventTypeNormal, apicontract.ReasonBFDUp, []string{`"tor"`, "100ms", "300ms"}},
		{"BFD down", bgp.Event{Kind: bgp.EventBFDDown, Peer: "tor", Address: tor, BFD: &bfd.Status{State: bfd.Down}},
			v1.EventTypeWarning, apicontract.ReasonBFDDown, []string{`"tor"`, "BFD", "down", "shut"}},
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
			h.waitShutdownDecision(tt.want)
		})
	}
	// Cordoned just before the SIGTERM, before the watch delivered it:
	// the agent asks the API server and withdraws.
	t.Run("cordoned a moment before: removal", func(t *testing.T) {
		h := newHarness(t, "node-b", testNode("node-b", "192.0.2.202"))
		h.setAPI("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, cordoned.DeepCopy(), nil
		})
		h.start()
		h.waitShutdownDecision("Stop")
	})
}

// waitShutdownDecision waits for the view to sync, stops the agent and
// checks what it did with its BGP sessions.
func (h *harness) waitShutdownDecision(want string) {
	t := h.t
	t.Helper()
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
	if !slices.Equal(h.bgp.calls, []string{want}) {
		t.Errorf("BGP plane calls %v, want [%s]", h.bgp.calls, want)
	}
}

const announcingConfig = `
bgp:
  asn: 64512
  peers:
    - {name: tor-a, address: 198.51.100.1, asn: 64500}
    - {name: tor-b, address: 198.51.100.2, asn: 64500}
    - {name: tor-r2, address: 198.51.100.3, asn: 64500, nodeSelector: {matchLabels: {rack: r2}}}
pools:
  - name: wan
    mode: bgp
    addresses: [203.0.113.0/24]
`

// Announcing names the peers that carry the path: none before a session
// is up (tor-r2 never: it does not peer with this node), each peer as its
// session comes up, and Withdrawn once the last one goes down.
func TestAgentAnnouncingNamesEstablishedPeers(t *testing.T) {
	svc := lbService("web", v1.ServiceExternalTrafficPolicyCluster, "203.0.113.10")
	h := newHarnessWithConfig(t, "node-b", announcingConfig, testNode("node-b", "192.0.2.202"), svc)
	h.start()
	vip := netip.MustParseAddr("203.0.113.10")
	deadline := time.Now().Add(20 * time.Second)
	for !h.appliedBGP(vip) {
		if time.Now().After(deadline) {
			t.Fatalf("the speaker was never given %s", vip)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tor := func(name, addr, state string) bgp.PeerStatus {
		return bgp.PeerStatus{Name: name, Address: netip.MustParseAddr(addr), State: state}
	}
	up := func(peers ...bgp.PeerStatus) {
		h.bgp.setPeers(peers...)
		h.agent.onBGPEvent(bgp.Event{Kind: bgp.EventSessionUp, Peer: peers[0].Name, Address: peers[0].Address})
	}
	down := func(peers ...bgp.PeerStatus) {
		h.bgp.setPeers(peers...)
		h.agent.onBGPEvent(bgp.Event{Kind: bgp.EventSessionDown, Peer: peers[0].Name, Address: peers[0].Address})
	}

	// No session up: the path is handed to the speaker but not announced.
	h.agent.requestReport()
	if got := h.nextEvent(apicontract.ReasonAnnouncing, apicontract.ReasonBGPSessionUp); got != "" {
		t.Fatalf("event %q before any session was up", got)
	}
	up(tor("tor-a", "198.51.100.1", "established"), tor("tor-b", "198.51.100.2", "active"))
	if e := h.waitEvent(apicontract.ReasonAnnouncing); !strings.HasSuffix(e, "Announcing 203.0.113.10 from node node-b to peers tor-a (bgp)") {
		t.Errorf("first Announcing %q: want tor-a only", e)
	}
	h.waitAnnouncedBGP(1)
	up(tor("tor-b", "198.51.100.2", "established"), tor("tor-a", "198.51.100.1", "established"))
	if e := h.waitEvent(apicontract.ReasonAnnouncing); !strings.HasSuffix(e, "to peers tor-a, tor-b (bgp)") {
		t.Errorf("Announcing once tor-b is up %q: want tor-a, tor-b", e)
	}
	down(tor("tor-a", "198.51.100.1", "active"), tor("tor-b", "198.51.100.2", "active"))
	if e := h.waitEvent(apicontract.ReasonWithdrawn); !strings.HasSuffix(e, "stopped announcing 203.0.113.10 to peers tor-a, tor-b (bgp)") {
		t.Errorf("Withdrawn %q", e)
	}
	h.waitAnnouncedBGP(0)
}

// waitAnnouncedBGP waits for the announced-VIPs metric of bgp to be want.
func (h *harness) waitAnnouncedBGP(want float64) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := testutil.ToFloat64(h.metrics.AnnouncedVIPs.WithLabelValues("bgp"))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			h.t.Errorf("announced bgp VIPs %v, want %v", got, want)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// appliedBGP reports whether the last Apply advertised vip.
func (h *harness) appliedBGP(vip netip.Addr) bool {
	h.bgp.mu.Lock()
	defer h.bgp.mu.Unlock()
	if len(h.bgp.ads) == 0 {
		return false
	}
	for _, ad := range h.bgp.ads[len(h.bgp.ads)-1] {
		if ad.VIP == vip {
			return true
		}
	}
	return false
}

// nextEvent returns the first event with one of reasons recorded within a
// second, or "" if none is.
func (h *harness) nextEvent(reasons ...string) string {
	timeout := time.After(time.Second)
	for {
		select {
		case e := <-h.events.Events:
			for _, r := range reasons {
				if strings.Contains(e, " "+r+" ") {
					return e
				}
			}
		case <-timeout:
			return ""
		}
	}
}
