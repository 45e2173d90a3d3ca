package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// bfdFRRConf is frrConf with bfdd's profile "fast" (100 ms x 3) on the
// nodes' peer group: `neighbor nodes bfd profile fast`.
func bfdFRRConf() string {
	conf := frrConf()
	conf = strings.Replace(conf, " neighbor nodes remote-as internal\n",
		" neighbor nodes remote-as internal\n neighbor nodes bfd profile fast\n", 1)
	return "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n" + conf
}

const bfdFast = "bfd:\n  receiveInterval: 100ms\n  transmitInterval: 100ms\n  detectMultiplier: 3"

// bfdPeer waits until bfdd has an Up session with addr and returns it.
func (l *bgpLab) bfdPeer(addr netip.Addr, timeout time.Duration) (lab.FRRBFDPeer, error) {
	var got lab.FRRBFDPeer
	err := lab.Eventually(context.Background(), timeout, 50*time.Millisecond, func() error {
		peers, err := l.router.BFDPeers(context.Background())
		if err != nil {
			return err
		}
		for _, p := range peers {
			if p.Peer == addr.String() {
				got = p
				if p.Status != "up" {
					return fmt.Errorf("BFD session with %s is %s", addr, p.Status)
				}
				return nil
			}
		}
		return fmt.Errorf("bfdd has no session with %s: %+v", addr, peers)
	})
	return got, err
}

// crashTrial starts n's speaker (advertising vip with BFD to tor), waits
// for the route and the BFD session, then crashes the node (its link goes
// down, the speaker is SIGKILLed: nothing reaches the router) and returns
// how long the router's kernel kept the route. The link is back up after.
func crashTrial(t *testing.T, l *bgpLab, n *node, vip netip.Prefix, watch *routeWatch) time.Duration {
	t.Helper()
	n.start(t)
	if _, err := watch.waitAll([]netip.Prefix{vip}, true, time.Time{}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := l.bfdPeer(n.addr4, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.waitNextHops(vip, 10*time.Second, n.addr4); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if err := n.host.SetLink(false); err != nil {
		t.Fatal(err)
	}
	if err := n.speaker.Kill(); err != nil {
		t.Fatal(err)
	}
	gone, err := watch.waitAll([]netip.Prefix{vip}, false, at, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.host.SetLink(true); err != nil {
		t.Fatal(err)
	}
	return gone.Sub(at)
}

// TestBGPBFD runs the speaker's BFD against FRR's bfdd: sessions come Up
// on both sides with the negotiated intervals, and a crashed node's path
// leaves the router within a second instead of the hold time (9 s here).
func TestBGPBFD(t *testing.T) {
	l := newBGPLabConf(t, bfdFRRConf())
	watch := watchRoutes(t, l.router.Host)
	vip := netip.MustParsePrefix("192.0.2.10/32")
	n1 := l.addNode(t, "n1", 11, "")
	n1.writeConfig(t, peerYAML{name: "tor", address: routerLAN4.String(), extra: bfdFast})
	n1.writeAds(t, adJSON{Prefix: vip.String(), Peers: []string{"tor"}})
	// n2 asks for slower timers than the router's, to see them negotiated.
	n2 := l.addNode(t, "n2", 12, "")
	n2.writeConfig(t, peerYAML{name: "tor", address: routerLAN4.String(),
		extra: "bfd:\n  receiveInterval: 300ms\n  transmitInterval: 200ms\n  detectMultiplier: 5"})
	n2.writeAds(t)
	n2.start(t)

	t.Run("sessions Up with the negotiated intervals", func(t *testing.T) {
		n2.waitEstablished(t, "tor")
		p, err := l.bfdPeer(n2.addr4, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The router sees n2's own timers...
		if p.RemoteReceiveInterval != 300 || p.RemoteTransmit != 200 || p.RemoteDetectMult != 5 {
			t.Errorf("bfdd's view of n2: remote rx %d ms, tx %d ms, x%d; want 300, 200, 5", p.RemoteReceiveInterval, p.RemoteTransmit, p.RemoteDetectMult)
		}
		// ...and n2 sends no faster than either side allows (max(200,
		// 100)) and waits 3 x max(300, 100) before declaring the router down.
		err = lab.Eventually(context.Background(), 10*time.Second, 100*time.Millisecond, func() error {
			st, err := n2.peer("tor")
			if err != nil {
				return err
			}
			if st.BFD == nil || st.BFD.State != bfd.Up {
				return fmt.Errorf("n2's BFD: %+v", st.BFD)
			}
			if st.BFD.TxInterval != 200*time.Millisecond || st.BFD.DetectionTime != 900*time.Millisecond {
				return fmt.Errorf("n2's BFD: tx %s, detection %s; want 200ms, 900ms", st.BFD.TxInterval, st.BFD.DetectionTime)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("a crashed node's path leaves the router within a second", func(t *testing.T) {
		took := crashTrial(t, l, n1, vip, watch)
		t.Logf("link down + SIGKILL -> route removed at the router in %s (BFD 100ms x 3; hold time 9s)", took.Round(time.Millisecond))
		// 300 ms detection plus FRR's work; generous for a loaded
		// machine, and far below the 9 s hold time it takes without BFD.
		if took > 3*time.Second {
			t.Errorf("the route stayed %s after the crash; want well under the hold time", took)
		}
		// The other node's BFD session did not flap.
		if p, err := l.bfdPeer(n2.addr4, time.Second); err != nil {
			t.Errorf("n2: %v (%+v)", err, p)
		}
	})
}

// TestBGPBenchBFD measures the crash-to-withdrawal time over 20 trials.
func TestBGPBenchBFD(t *testing.T) {
	benchEnabled(t)
	l := newBGPLabConf(t, bfdFRRConf())
	watch := watchRoutes(t, l.router.Host)
	vip := netip.MustParsePrefix("192.0.2.10/32")
	n := l.addNode(t, "n1", 11, "")
	n.writeConfig(t, peerYAML{name: "tor", address: routerLAN4.String(), extra: bfdFast})
	n.writeAds(t, adJSON{Prefix: vip.String(), Peers: []string{"tor"}})
	var took []time.Duration
	for range 20 {
		took = append(took, crashTrial(t, l, n, vip, watch))
	}
	t.Logf("BFD 100ms x 3, link down + SIGKILL -> route removed at the router: %s", summary(took))
	t.Logf("trials: %v", took)
}
