package announce

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func TestHeartbeatsSuspectASilentPeer(t *testing.T) {
	const interval, suspect = 10 * time.Millisecond, 80 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var changes atomic.Int32
	watcher, err := ListenHeartbeats(0, interval, suspect, func() { changes.Add(1) }, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	go watcher.Run(ctx)

	startPeer := func(port int) (int, context.CancelFunc) {
		peer, err := ListenHeartbeats(port, interval, suspect, func() {}, logr.Discard())
		if err != nil {
			t.Fatal(err)
		}
		pctx, stop := context.WithCancel(ctx)
		go peer.Run(pctx)
		return peer.port, stop
	}
	port, stopPeer := startPeer(0)
	watcher.peerPort = port
	watcher.SetTargets(map[string]netip.Addr{"peer": netip.MustParseAddr("127.0.0.1")})

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(4 * suspect)
	if s := watcher.Suspected(); s["peer"] {
		t.Fatalf("a peer that answers is suspected: %v", s)
	}

	stopPeer()
	stopped := time.Now()
	waitFor("the silent peer is suspected", func() bool { return watcher.Suspected()["peer"] })
	if took := time.Since(stopped); took > suspect+10*interval {
		t.Errorf("suspected after %s, want about %s", took, suspect)
	}
	if changes.Load() == 0 {
		t.Error("no change reported when the peer became suspected")
	}

	before := changes.Load()
	_, stopPeer = startPeer(port)
	defer stopPeer()
	waitFor("the peer is trusted again", func() bool { return !watcher.Suspected()["peer"] })
	if changes.Load() == before {
		t.Error("no change reported when the peer answered again")
	}

	watcher.SetTargets(nil)
	if s := watcher.Suspected(); len(s) != 0 {
		t.Errorf("suspects %v after the targets were cleared", s)
	}
}
