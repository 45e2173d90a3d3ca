package bgp

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"k8s.io/klog/v2"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bfd"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// eventSpeaker is a test speaker whose events arrive on a channel.
func eventSpeaker(t *testing.T, mod func(*Options)) (*Speaker, chan Event) {
	t.Helper()
	events := make(chan Event, 100)
	opts := Options{
		NodeName: "n1", ASN: testASN, RouterID: netip.MustParseAddr("198.51.100.11"),
		NextHop4: netip.MustParseAddr("198.51.100.11"), NextHop6: netip.MustParseAddr("2001:db8:100::11"),
		Logger: klog.Background(), ConnectRetry: time.Second,
		OnEvent: func(e Event) { events <- e },
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s, events
}

// awaitEvent returns the first event of kind for peer.
func awaitEvent(t *testing.T, events <-chan Event, kind EventKind, peer string) Event {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Kind == kind && e.Peer == peer {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", kind, peer)
		}
	}
}

// expectPeerAS makes the router expect asn from the speaker.
func (r *testRouter) expectPeerAS(t *testing.T, asn uint32) {
	t.Helper()
	ctx := context.Background()
	if err := r.server.DeletePeer(ctx, &api.DeletePeerRequest{Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	err := r.server.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: asn},
		Transport: &api.Transport{PassiveMode: true},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: familyV4, Enabled: true}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLocalASNPerPeer(t *testing.T) {
	r := startRouters(t, 1)[0]
	r.expectPeerAS(t, 64601)
	s, events := eventSpeaker(t, nil)
	p := r.peer()
	p.ASN = testASN // the router's own AS
	p.LocalASN = 64601
	if err := s.SetPeers(context.Background(), []config.Peer{p}); err != nil {
		t.Fatal(err)
	}
	awaitEvent(t, events, EventSessionUp, r.name)
}

func TestWrongASNIsReported(t *testing.T) {
	r := startRouters(t, 1)[0]
	r.expectPeerAS(t, 64999)
	s, events := eventSpeaker(t, nil)
	if err := s.SetPeers(context.Background(), []config.Peer{r.peer()}); err != nil {
		t.Fatal(err)
	}
	// The router's NOTIFICATION carries no code gobgp logs at this
	// stage: the likely cause is named.
	e := awaitEvent(t, events, EventPeerError, r.name)
	if e.Error == nil || e.Error.Cause != CauseOpenRejected || !strings.Contains(e.Error.Message, "expects another AS number (this node uses AS 64512") {
		t.Fatalf("event %+v; want cause %s naming the AS", e, CauseOpenRejected)
	}
	st := s.Peers()[0]
	if st.Error == nil || st.Error.Cause != CauseOpenRejected || st.Errors[CauseOpenRejected] == 0 {
		t.Errorf("status %+v; want the error and its count", st)
	}
}

func TestWrongPeerASNIsReported(t *testing.T) {
	r := startRouters(t, 1)[0]
	s, events := eventSpeaker(t, nil)
	p := r.peer()
	p.ASN = 64999 // the router is testASN
	if err := s.SetPeers(context.Background(), []config.Peer{p}); err != nil {
		t.Fatal(err)
	}
	e := awaitEvent(t, events, EventPeerError, r.name)
	if e.Error == nil || e.Error.Cause != CauseBadPeerAS || !strings.Contains(e.Error.Message, "does not carry AS 64999") {
		t.Fatalf("event %+v; want cause %s", e, CauseBadPeerAS)
	}
}

func TestConnectionRefusedIsReported(t *testing.T) {
	s, events := eventSpeaker(t, nil)
	addr := netip.MustParseAddr("127.0.0.20")
	p := config.Peer{
		Name: "nobody", Address: addr.String(), Addr: addr, ASN: 64500, Port: freePort(t, addr),
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, SourceAddr: netip.MustParseAddr("127.0.0.1"),
	}
	if err := s.SetPeers(context.Background(), []config.Peer{p}); err != nil {
		t.Fatal(err)
	}
	e := awaitEvent(t, events, EventPeerError, "nobody")
	if e.Error == nil || e.Error.Cause != CauseConnectionRefused {
		t.Fatalf("event %+v; want cause %s", e, CauseConnectionRefused)
	}
}

func TestAnnouncedNamesOnlyPeersThatCarryTheRoute(t *testing.T) {
	r := startRouters(t, 1)[0]
	s, events := eventSpeaker(t, nil)
	ctx := context.Background()
	down := netip.MustParseAddr("127.0.0.21")
	absent := config.Peer{
		Name: "tor-down", Address: down.String(), Addr: down, ASN: testASN, Port: freePort(t, down),
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, SourceAddr: netip.MustParseAddr("127.0.0.1"),
	}
	if err := s.SetPeers(ctx, []config.Peer{r.peer(), absent}); err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParsePrefix("192.0.2.1/32")
	if err := s.SetAdvertisements(ctx, []Advertisement{{Prefix: vip, Peers: []string{r.name, "tor-down", "not-configured"}}}); err != nil {
		t.Fatal(err)
	}
	awaitEvent(t, events, EventSessionUp, r.name)
	if got := s.Announced()[vip]; !slices.Equal(got, []string{r.name}) {
		t.Errorf("Announced()[%s] = %v, want only [%s]", vip, got, r.name)
	}
}

func TestWeightIsLinkBandwidthAndHeldBack(t *testing.T) {
	r := startRouters(t, 1)[0]
	fc := clocktesting.NewFakeClock(time.Now())
	s, events := eventSpeaker(t, func(o *Options) { o.Clock = fc; o.WeightHold = time.Second })
	ctx := context.Background()
	if err := s.SetPeers(ctx, []config.Peer{r.peer()}); err != nil {
		t.Fatal(err)
	}
	awaitEvent(t, events, EventSessionUp, r.name)
	ad := func(w uint32) []Advertisement {
		return []Advertisement{{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Peers: []string{r.name}, Weight: w}}
	}
	if err := s.SetAdvertisements(ctx, ad(2)); err != nil {
		t.Fatal(err)
	}
	// 2 x 1 Mbit/s = 250,000 bytes/s, with the speaker's 2-byte AS.
	r.waitRoutes(t, map[string]string{"192.0.2.1/32": "lb=64512:250000 " + plain4})
	sent := r.updates(t)

	// Endpoints churn within the hold: nothing is sent.
	for _, w := range []uint32{3, 1, 4} {
		if err := s.SetAdvertisements(ctx, ad(w)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // give a wrongly sent UPDATE time to arrive
	if got := r.updates(t); got != sent {
		t.Errorf("router received %d UPDATEs during the hold, want none", got-sent)
	}
	// At the end of the hold, the last weight only.
	fc.Step(time.Second)
	r.waitRoutes(t, map[string]string{"192.0.2.1/32": "lb=64512:500000 " + plain4})
	if got := r.updates(t); got != sent+1 {
		t.Errorf("router received %d UPDATEs for three changes, want 1", got-sent)
	}
	// Dropping the weight is not a weight-only hold: the path changes.
	fc.Step(time.Second)
	if err := s.SetAdvertisements(ctx, ad(0)); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t, map[string]string{"192.0.2.1/32": plain4})
}

func TestLinkBandwidthEncoding(t *testing.T) {
	tests := []struct {
		weight, asn uint32
		want        []byte
	}{
		// 0x40 0x04: non-transitive link bandwidth; AS; IEEE float bytes/s.
		{2, 64512, []byte{0x40, 0x04, 0xfc, 0x00, 0x48, 0x74, 0x24, 0x00}},      // 250,000
		{1, 4200000000, []byte{0x40, 0x04, 0x5b, 0xa0, 0x47, 0xf4, 0x24, 0x00}}, // AS_TRANS, 125,000
	}
	for _, tt := range tests {
		got, err := linkBandwidth(tt.weight, tt.asn).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("linkBandwidth(%d, %d) = % x, want % x", tt.weight, tt.asn, got, tt.want)
		}
	}
}

// quietBFD is a BFD network on which nothing arrives: the sessions stay
// Down unless the test reports states itself.
type quietBFD struct{}

func (quietBFD) Dial(bfd.Peer) (bfd.Sender, error)           { return quietSender{}, nil }
func (quietBFD) Listen(bool, bool, func(bfd.Received)) error { return nil }
func (quietBFD) Close() error                                { return nil }

type quietSender struct{}

func (quietSender) Send([]byte) error { return nil }
func (quietSender) Close() error      { return nil }

// bfdSpeaker starts a speaker with one BFD peer on a network where no BFD
// packet arrives, driven by a fake clock, and waits until the peer has
// 192.0.2.1/32.
func bfdSpeaker(t *testing.T) (*Speaker, chan Event, *testRouter, *clocktesting.FakeClock) {
	t.Helper()
	r := startRouters(t, 1)[0]
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	s, events := eventSpeaker(t, func(o *Options) { o.BFDNetwork = quietBFD{}; o.Clock = clk })
	ctx := context.Background()
	p := r.peer()
	p.BFD = &config.PeerBFD{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 3}
	if err := s.SetPeers(ctx, []config.Peer{p}); err != nil {
		t.Fatal(err)
	}
	awaitEvent(t, events, EventSessionUp, r.name)
	if err := s.SetAdvertisements(ctx, []Advertisement{{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Peers: []string{r.name}}}); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t, map[string]string{"192.0.2.1/32": plain4})
	return s, events, r, clk
}

func TestBFDDownShutsTheSessionUntilUp(t *testing.T) {
	// The clock never moves: the hold-down after which the session
	// reconnects anyway (TestBFDDownReconnectsAfterTheHoldDown) never ends.
	s, events, r, _ := bfdSpeaker(t)

	s.inbox.put(bfdChanged{bfd.Status{Peer: r.addr, State: bfd.Up, RemoteState: bfd.Up}})
	awaitEvent(t, events, EventBFDUp, r.name)
	s.inbox.put(bfdChanged{bfd.Status{Peer: r.addr, State: bfd.Down, Diag: bfd.DiagDetectionExpired, RemoteState: bfd.Up}})
	e := awaitEvent(t, events, EventBFDDown, r.name)
	if e.Error == nil || e.Error.Cause != CauseBFDDown {
		t.Errorf("BFDDown event %+v; want cause %s", e, CauseBFDDown)
	}
	awaitEvent(t, events, EventSessionDown, r.name)
	r.waitRoutes(t, map[string]string{})
	if st := s.Peers()[0]; st.Error == nil || st.Error.Cause != CauseBFDDown {
		t.Errorf("status while BFD is down: %+v", st)
	}
	if got := s.Announced()[netip.MustParsePrefix("192.0.2.1/32")]; len(got) != 0 {
		t.Errorf("Announced while BFD is down = %v, want none", got)
	}

	s.inbox.put(bfdChanged{bfd.Status{Peer: r.addr, State: bfd.Up, RemoteState: bfd.Up}})
	awaitEvent(t, events, EventSessionUp, r.name)
	r.waitRoutes(t, map[string]string{"192.0.2.1/32": plain4})

	// The router taking BFD administratively down is no failure.
	s.inbox.put(bfdChanged{bfd.Status{Peer: r.addr, State: bfd.Down, Diag: bfd.DiagNeighborDown, RemoteState: bfd.AdminDown}})
	time.Sleep(200 * time.Millisecond)
	if got := r.routes(t); len(got) != 1 {
		t.Errorf("router routes after BFD AdminDown = %v, want the path kept", got)
	}
}
