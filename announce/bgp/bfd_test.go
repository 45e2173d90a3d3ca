package bgp

import (
	"context"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
)

// A session shut because BFD went down reconnects after the hold-down even
// though BFD stays down (a router that runs BFD only while BGP is up never
// brings it back otherwise), and the hold-down doubles when BFD fails again
// soon after.
func TestBFDDownReconnectsAfterTheHoldDown(t *testing.T) {
	s, events, r, clk := bfdSpeaker(t)

	flap := func(hold time.Duration) {
		t.Helper()
		s.inbox.put(bfdChanged{bfd.Status{Peer: r.addr, State: bfd.Up, RemoteState: bfd.Up}})
		awaitEvent(t, events, EventBFDUp, r.name)
		s.inbox.put(bfdChanged{bfd.Status{Peer: r.addr, State: bfd.Down, Diag: bfd.DiagDetectionExpired, RemoteState: bfd.Up}})
		awaitEvent(t, events, EventBFDDown, r.name)
		awaitEvent(t, events, EventSessionDown, r.name)
		r.waitRoutes(t, map[string]string{})
		// Just short of the hold-down the session stays shut.
		clk.Step(hold - 100*time.Millisecond)
		time.Sleep(300 * time.Millisecond) // the loop runs on real time
		if st := s.Peers()[0]; st.Error == nil || st.Error.Cause != CauseBFDDown {
			t.Fatalf("%s into a %s hold-down the session is no longer shut: %+v", hold-100*time.Millisecond, hold, st)
		}
		clk.Step(100 * time.Millisecond)
		if err := waitUntil(5*time.Second, func() bool {
			st := s.Peers()[0]
			return st.Error == nil || st.Error.Cause != CauseBFDDown
		}); err != nil {
			t.Fatalf("the session is still shut after its %s hold-down", hold)
		}
		awaitEvent(t, events, EventSessionUp, r.name)
		r.waitRoutes(t, map[string]string{"192.0.2.1/32": plain4})
	}
	flap(bfdHoldDown)
	// BFD fails again within bfdStable of coming up: twice the wait.
	flap(2 * bfdHoldDown)
}

func waitUntil(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
