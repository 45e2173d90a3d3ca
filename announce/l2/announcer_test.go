package l2

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

var (
	vip4 = netip.MustParseAddr("192.0.2.240")
	vip6 = netip.MustParseAddr("2001:db8::240")
)

func mustFrame(t *testing.T, b []byte, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// whoHas is a client's ARP request for ip.
func whoHas(t *testing.T, ip netip.Addr) []byte {
	t.Helper()
	p, err := arp.NewPacket(arp.OperationRequest, clientMAC, clientIP.AsSlice(), zeroMAC, ip.AsSlice())
	if err != nil {
		t.Fatal(err)
	}
	b, err := arpFrame(clientMAC, broadcast, p)
	return mustFrame(t, b, err)
}

// isAt is mac's ARP reply or gratuitous ARP saying ip is at mac.
func isAt(t *testing.T, mac net.HardwareAddr, ip netip.Addr) []byte {
	t.Helper()
	pkts, err := gratuitousARP(mac, ip)
	if err != nil {
		t.Fatal(err)
	}
	b, err := arpFrame(mac, broadcast, pkts[1])
	return mustFrame(t, b, err)
}

// arpSummary renders written ARP frames as "op sender-ip sender-mac -> target-ip eth-dst".
func arpSummary(t *testing.T, frames [][]byte) []string {
	t.Helper()
	var out []string
	for _, f := range frames {
		var dst net.HardwareAddr = f[:6]
		_, p, err := parseARPFrame(f)
		if err != nil {
			t.Fatalf("frame %x: %v", f, err)
		}
		out = append(out, strings.Join([]string{p.Operation.String(), p.SenderIP.String(), p.SenderHardwareAddr.String(), "->", p.TargetIP.String(), dst.String()}, " "))
	}
	return out
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
}

const (
	probe4   = "OperationRequest 0.0.0.0 02:00:00:00:00:10 -> 192.0.2.240 ff:ff:ff:ff:ff:ff"
	garpReq  = "OperationRequest 192.0.2.240 02:00:00:00:00:10 -> 192.0.2.240 ff:ff:ff:ff:ff:ff"
	garpRep  = "OperationReply 192.0.2.240 02:00:00:00:00:10 -> 192.0.2.240 ff:ff:ff:ff:ff:ff"
	answer4  = "OperationReply 192.0.2.240 02:00:00:00:00:10 -> 192.0.2.100 02:00:00:00:00:c1"
	announce = "Announced 192.0.2.240 eth0"
)

// own takes vip4 on eth0 through a silent probe and drops the frames sent.
func (h *harness) own() *fakeConn {
	h.t.Helper()
	h.set(Announcement{Addr: vip4, Interface: "eth0"})
	h.step(DefaultProbeWait)
	eq(h.t, "changes", h.takeChanges(), []string{announce})
	c := h.open.conn(h.t, false, "eth0")
	c.take()
	return c
}

func TestSetProbesThenAnswersAndAnnounces(t *testing.T) {
	h := newHarness(t)
	h.set(Announcement{Addr: vip4, Interface: "eth0"})
	c := h.open.conn(t, false, "eth0")
	eq(t, "after Set", arpSummary(t, c.take()), []string{probe4})

	// While the probe waits, the address is not answered.
	deliver(c, whoHas(t, vip4))
	eq(t, "answers while probing", arpSummary(t, c.take()), nil)
	if got := h.a.Announced(); len(got) != 0 {
		t.Fatalf("Announced while probing: %v", got)
	}

	h.step(DefaultProbeWait - time.Millisecond)
	eq(t, "before the probe ends", h.takeChanges(), nil)
	h.step(time.Millisecond)
	eq(t, "changes", h.takeChanges(), []string{announce})
	eq(t, "takeover announcement", arpSummary(t, c.take()), []string{garpReq, garpRep})

	deliver(c, whoHas(t, vip4))
	eq(t, "answer", arpSummary(t, c.take()), []string{answer4})
	want := []Announcement{{Addr: vip4, Interface: "eth0"}}
	if got := h.a.Announced(); !slices.Equal(got, want) {
		t.Fatalf("Announced = %v, want %v", got, want)
	}
	// Requests for other addresses, and announcements, are not answered.
	deliver(c, whoHas(t, netip.MustParseAddr("192.0.2.241")))
	deliver(c, isAt(t, otherMAC, netip.MustParseAddr("192.0.2.241")))
	eq(t, "answers for others", arpSummary(t, c.take()), nil)
}

func TestAnnouncementsBurstThenRefresh(t *testing.T) {
	h := newHarness(t)
	c := h.own() // the first of DefaultBurstCount announcements went out
	for i := 1; i < DefaultBurstCount; i++ {
		h.step(DefaultBurstGap - time.Millisecond)
		eq(t, "before the burst gap", arpSummary(t, c.take()), nil)
		h.step(time.Millisecond)
		eq(t, "burst", arpSummary(t, c.take()), []string{garpReq, garpRep})
	}
	h.step(testGARP - time.Millisecond)
	eq(t, "before the refresh", arpSummary(t, c.take()), nil)
	h.step(time.Millisecond)
	eq(t, "refresh", arpSummary(t, c.take()), []string{garpReq, garpRep})
	h.step(testGARP)
	eq(t, "second refresh", arpSummary(t, c.take()), []string{garpReq, garpRep})
	eq(t, "changes", h.takeChanges(), nil)
}

func TestConflictWithAHostThatIsNotAnAgent(t *testing.T) {
	h := newHarness(t)
	h.set(Announcement{Addr: vip4, Interface: "eth0"})
	c := h.open.conn(t, false, "eth0")
	c.take()
	deliver(c, isAt(t, otherMAC, vip4))
	eq(t, "changes", h.takeChanges(), []string{"Conflict 192.0.2.240 eth0 " + otherMAC.String()})
	eq(t, "claims", h.takeClaims(), []string{"eth0 192.0.2.240 " + otherMAC.String()})

	h.step(DefaultProbeWait)
	deliver(c, whoHas(t, vip4))
	eq(t, "frames while in conflict", arpSummary(t, c.take()), nil)

	// Probed again after ProbeRetry; now the other host is gone.
	h.step(DefaultProbeRetry - DefaultProbeWait)
	eq(t, "retry", arpSummary(t, c.take()), []string{probe4})
	h.step(DefaultProbeWait)
	eq(t, "changes", h.takeChanges(), []string{announce})
}

func TestAgentAnsweringTheProbeIsAHandover(t *testing.T) {
	h := newHarness(t)
	h.set(Announcement{Addr: vip4, Interface: "eth0"})
	c := h.open.conn(t, false, "eth0")
	c.take()
	deliver(c, isAt(t, agentMAC, vip4))
	// No wait for the probe to end: the old owner hands over when it
	// hears this node announce.
	eq(t, "changes", h.takeChanges(), []string{announce})
	eq(t, "frames", arpSummary(t, c.take()), []string{garpReq, garpRep})
}

func TestSetReturnsWhileProbing(t *testing.T) {
	h := newHarness(t)
	// The fake clock never moves: a Set that waited for its probe would
	// never return.
	done := make(chan error)
	go func() {
		done <- h.a.Set(context.Background(), []Announcement{{Addr: vip4, Interface: "eth0"}, {Addr: vip6, Interface: "eth0"}})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Set waited for its conflict probes")
	}
}

func TestHandoverEndsWhenAnotherAgentAnnounces(t *testing.T) {
	h := newHarness(t)
	c := h.own()
	h.set()
	// Still answered, no longer announced.
	deliver(c, whoHas(t, vip4))
	eq(t, "answer while handing over", arpSummary(t, c.take()), []string{answer4})
	h.step(DefaultBurstGap)
	eq(t, "announcements while handing over", arpSummary(t, c.take()), nil)

	deliver(c, isAt(t, agentMAC, vip4))
	eq(t, "claims", h.takeClaims(), []string{"eth0 192.0.2.240 " + agentMAC.String()})
	h.step(handoverGrace - time.Millisecond)
	eq(t, "changes within the grace", h.takeChanges(), nil)
	h.step(time.Millisecond)
	eq(t, "changes", h.takeChanges(), []string{"Withdrawn 192.0.2.240 eth0 " + agentMAC.String()})
	deliver(c, whoHas(t, vip4))
	eq(t, "answers after the handover", arpSummary(t, c.take()), nil)
}

func TestHandoverTimesOut(t *testing.T) {
	h := newHarness(t)
	h.own()
	h.set()
	// A foreign host's claim does not end a handover.
	deliver(h.open.conn(t, false, "eth0"), isAt(t, otherMAC, vip4))
	h.step(testHandover - time.Millisecond)
	eq(t, "before the timeout", h.takeChanges(), nil)
	h.step(time.Millisecond)
	eq(t, "changes", h.takeChanges(), []string{"Withdrawn 192.0.2.240 eth0"})
}

func TestHandoverStartedAfterTheNewOwnerAnnounced(t *testing.T) {
	h := newHarness(t)
	c := h.own()
	deliver(c, isAt(t, agentMAC, vip4))
	h.step(recentClaim / 2)
	h.set()
	h.step(handoverGrace)
	eq(t, "changes", h.takeChanges(), []string{"Withdrawn 192.0.2.240 eth0 " + agentMAC.String()})
}

func TestOwnedAgainDuringHandover(t *testing.T) {
	h := newHarness(t)
	c := h.own()
	h.set()
	h.set(Announcement{Addr: vip4, Interface: "eth0"})
	eq(t, "announced again", arpSummary(t, c.take()), []string{garpReq, garpRep})
	h.step(testHandover)
	eq(t, "changes", h.takeChanges(), nil)
	c.take()
	deliver(c, whoHas(t, vip4))
	eq(t, "answer", arpSummary(t, c.take()), []string{answer4})
}

func TestMovingToAnotherInterface(t *testing.T) {
	h := newHarness(t)
	h.own()
	h.set(Announcement{Addr: vip4, Interface: "eth1"})
	eq(t, "changes", h.takeChanges(), []string{"Withdrawn 192.0.2.240 eth0"})
	deliver(h.open.conn(t, false, "eth0"), whoHas(t, vip4))
	eq(t, "answers on the old interface", arpSummary(t, h.open.conn(t, false, "eth0").take()), nil)
	h.step(DefaultProbeWait)
	eq(t, "changes", h.takeChanges(), []string{"Announced 192.0.2.240 eth1"})
}

func TestHandOverWaitsForTheNewOwner(t *testing.T) {
	h := newHarness(t)
	c := h.own()
	done := make(chan error, 1)
	go func() { done <- h.a.HandOver(context.Background()) }()
	// HandOver registers before it waits; the claim may come first.
	for {
		h.a.mu.RLock()
		waiting := len(h.a.drained) > 0
		h.a.mu.RUnlock()
		if waiting {
			break
		}
		h.a.flush()
	}
	deliver(c, isAt(t, agentMAC, vip4))
	h.step(handoverGrace)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("HandOver did not return after the new owner announced")
	}
	eq(t, "changes", h.takeChanges(), []string{"Withdrawn 192.0.2.240 eth0 " + agentMAC.String()})
}

func TestHandOverGivesUpWithItsContext(t *testing.T) {
	h := newHarness(t)
	c := h.own()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.a.HandOver(ctx); err != nil {
		t.Fatal(err)
	}
	deliver(c, whoHas(t, vip4))
	eq(t, "answers after HandOver", arpSummary(t, c.take()), nil)
	eq(t, "changes", h.takeChanges(), []string{"Withdrawn 192.0.2.240 eth0"})
}

func TestHandOverWithNothingOwned(t *testing.T) {
	h := newHarness(t)
	h.set(Announcement{Addr: vip4, Interface: "eth0"}) // still probing
	if err := h.a.HandOver(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.step(DefaultProbeWait)
	eq(t, "changes", h.takeChanges(), nil)
}

func TestWithdrawAllStopsAnsweringAtOnce(t *testing.T) {
	h := newHarness(t)
	c := h.own()
	if err := h.a.WithdrawAll(); err != nil {
		t.Fatal(err)
	}
	deliver(c, whoHas(t, vip4))
	eq(t, "answers after WithdrawAll", arpSummary(t, c.take()), nil)
	eq(t, "changes", h.takeChanges(), []string{"Withdrawn 192.0.2.240 eth0"})
	if got := h.a.Announced(); len(got) != 0 {
		t.Fatalf("Announced after WithdrawAll: %v", got)
	}
}

func TestCloseWithdrawsAndClosesSockets(t *testing.T) {
	h := newHarness(t)
	c := h.own()
	if err := h.a.Close(); err != nil {
		t.Fatal(err)
	}
	eq(t, "changes", h.takeChanges(), []string{"Withdrawn 192.0.2.240 eth0"})
	select {
	case <-c.closed:
	default:
		t.Fatal("socket left open")
	}
	if err := h.a.Set(context.Background(), nil); !errors.Is(err, errClosed) {
		t.Fatalf("Set after Close: %v, want %v", err, errClosed)
	}
	if _, err := h.a.Probe(context.Background(), "eth0", vip4); err == nil {
		t.Fatal("Probe after Close: no error")
	}
	if err := h.a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSetReportsWhatItCannotTake(t *testing.T) {
	h := newHarness(t)
	err := h.a.Set(context.Background(), []Announcement{
		{Addr: vip4, Interface: "eth0"},
		{Addr: netip.MustParseAddr("192.0.2.241"), Interface: "bond9"},
		{Addr: vip4, Interface: "eth1"},
		{Interface: "eth0"},
	})
	h.a.flush()
	for _, want := range []string{"192.0.2.241 on bond9", "both eth0 and eth1", `"invalid IP" on eth0`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Set error %v does not mention %q", err, want)
		}
	}
	h.step(DefaultProbeWait)
	eq(t, "the valid address is still taken", h.takeChanges(), []string{announce})

	h.open.fail = errors.New("operation not permitted")
	err = h.a.Set(context.Background(), []Announcement{{Addr: vip6, Interface: "eth1"}})
	if err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("Set with a socket that cannot be opened: %v", err)
	}
}

func TestProbe(t *testing.T) {
	h := newHarness(t)
	type result struct {
		mac net.HardwareAddr
		err error
	}
	run := func(ctx context.Context) chan result {
		out := make(chan result, 1)
		go func() {
			mac, err := h.a.Probe(ctx, "eth0", vip4)
			out <- result{mac, err}
		}()
		return out
	}
	waitSent := func() *fakeConn {
		for {
			h.open.mu.Lock()
			c := h.open.arp["eth0"]
			h.open.mu.Unlock()
			if c != nil {
				select {
				case <-c.wrote:
					return c
				case <-time.After(10 * time.Second):
					t.Fatal("no probe sent")
				}
			}
			h.a.flush()
		}
	}

	// Somebody answers: its MAC.
	res := run(context.Background())
	c := waitSent()
	eq(t, "probe", arpSummary(t, c.take()), []string{probe4})
	deliver(c, isAt(t, otherMAC, vip4))
	if r := <-res; r.err != nil || r.mac.String() != otherMAC.String() {
		t.Fatalf("Probe = %v, %v; want %s", r.mac, r.err, otherMAC)
	}
	eq(t, "claims", h.takeClaims(), []string{"eth0 192.0.2.240 " + otherMAC.String()})

	// Nobody answers: nil, nil; and a Set right after needs no probe.
	ctx, cancel := context.WithCancel(context.Background())
	res = run(ctx)
	eq(t, "second probe", arpSummary(t, waitSent().take()), []string{probe4})
	cancel()
	if r := <-res; r.err != nil || r.mac != nil {
		t.Fatalf("Probe = %v, %v; want nil, nil", r.mac, r.err)
	}
	h.set(Announcement{Addr: vip4, Interface: "eth0"})
	eq(t, "changes", h.takeChanges(), []string{announce})
	eq(t, "frames", arpSummary(t, c.take()), []string{garpReq, garpRep})

	if _, err := h.a.Probe(context.Background(), "eth0", netip.Addr{}); err == nil {
		t.Error("Probe of an invalid address: no error")
	}
	if _, err := h.a.Probe(context.Background(), "bond9", vip4); err == nil {
		t.Error("Probe on a missing interface: no error")
	}
}

func TestClaimsOnlyForAddressesInPlay(t *testing.T) {
	h := newHarness(t)
	c := h.own()
	deliver(c, isAt(t, otherMAC, netip.MustParseAddr("192.0.2.1"))) // a router's GARP
	deliver(c, isAt(t, agentMAC, vip4))
	deliver(c, isAt(t, eth0.HardwareAddr, vip4)) // our own, looped back
	eq(t, "claims", h.takeClaims(), []string{"eth0 192.0.2.240 " + agentMAC.String()})
	// A claim does not make the owner give the address up: the planner
	// decides.
	h.step(testHandover)
	c.take()
	deliver(c, whoHas(t, vip4))
	eq(t, "answer", arpSummary(t, c.take()), []string{answer4})
}

// ndpSummary renders written neighbour discovery frames.
func ndpSummary(t *testing.T, frames [][]byte) []string {
	t.Helper()
	var out []string
	for _, f := range frames {
		var dstMAC net.HardwareAddr = f[:6]
		p, err := parseNDPFrame(f)
		if err != nil {
			t.Fatalf("frame %x: %v", f, err)
		}
		if !checksumOK(f[ethHeaderLen+ipv6HeaderLen:], p.src, p.dst) {
			t.Fatalf("frame %x: bad ICMPv6 checksum", f)
		}
		var s string
		switch m := p.msg.(type) {
		case *ndp.NeighborSolicitation:
			s = "NS " + m.TargetAddress.String()
		case *ndp.NeighborAdvertisement:
			lla, _ := linkLayer(m.Options, ndp.Target)
			s = "NA " + m.TargetAddress.String() + " at " + lla.String()
			if m.Solicited {
				s += " solicited"
			}
			if m.Override {
				s += " override"
			}
		}
		out = append(out, s+" "+p.src.String()+" -> "+p.dst.String()+" "+dstMAC.String())
	}
	return out
}

// ns is a neighbour solicitation for target from src.
func ns(t *testing.T, src netip.Addr, target netip.Addr) []byte {
	t.Helper()
	m := &ndp.NeighborSolicitation{TargetAddress: target}
	if !src.IsUnspecified() {
		m.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: clientMAC}}
	}
	group, _ := ndp.SolicitedNodeMulticast(target)
	b, err := ndpFrame(clientMAC, multicastMAC(group), src, group, m)
	return mustFrame(t, b, err)
}

func TestIPv6(t *testing.T) {
	h := newHarness(t)
	h.set(Announcement{Addr: vip6, Interface: "eth0"})
	c := h.open.conn(t, true, "eth0")
	eq(t, "groups", c.joined(), []string{"+ff02::1:ff00:240"})
	eq(t, "probe", ndpSummary(t, c.take()), []string{"NS 2001:db8::240 :: -> ff02::1:ff00:240 33:33:ff:00:02:40"})
	deliver(c, ns(t, clientIP6, vip6))
	eq(t, "answers while probing", ndpSummary(t, c.take()), nil)

	h.step(DefaultProbeWait)
	eq(t, "changes", h.takeChanges(), []string{"Announced 2001:db8::240 eth0"})
	eq(t, "unsolicited NA", ndpSummary(t, c.take()), []string{"NA 2001:db8::240 at 02:00:00:00:00:10 override 2001:db8::240 -> ff02::1 33:33:00:00:00:01"})

	deliver(c, ns(t, clientIP6, vip6))
	eq(t, "answer", ndpSummary(t, c.take()), []string{"NA 2001:db8::240 at 02:00:00:00:00:10 solicited override 2001:db8::240 -> fe80::c1 02:00:00:00:00:c1"})
	// Duplicate address detection by another host: defended to all nodes.
	deliver(c, ns(t, netip.IPv6Unspecified(), vip6))
	eq(t, "answer to DAD", ndpSummary(t, c.take()), []string{"NA 2001:db8::240 at 02:00:00:00:00:10 override 2001:db8::240 -> ff02::1 33:33:00:00:00:01"})
	deliver(c, ns(t, clientIP6, netip.MustParseAddr("2001:db8::241")))
	eq(t, "answers for others", ndpSummary(t, c.take()), nil)

	// An agent's advertisement is a claim.
	na, _ := unsolicitedNA(agentMAC, vip6)
	b, err := ndpFrame(agentMAC, allNodesMAC, vip6, netip.IPv6LinkLocalAllNodes(), na)
	deliver(c, mustFrame(t, b, err))
	eq(t, "claims", h.takeClaims(), []string{"eth0 2001:db8::240 " + agentMAC.String()})

	if err := h.a.WithdrawAll(); err != nil {
		t.Fatal(err)
	}
	eq(t, "changes", h.takeChanges(), []string{"Withdrawn 2001:db8::240 eth0"})
	eq(t, "groups", c.joined(), []string{"+ff02::1:ff00:240", "-ff02::1:ff00:240"})
}

func TestSolicitedNodeGroupsAreShared(t *testing.T) {
	h := newHarness(t)
	// Same low 24 bits: one group.
	a, b := netip.MustParseAddr("2001:db8::aa00:240"), netip.MustParseAddr("2001:db8::bb00:240")
	h.set(Announcement{Addr: a, Interface: "eth0"}, Announcement{Addr: b, Interface: "eth0"})
	c := h.open.conn(t, true, "eth0")
	eq(t, "groups", c.joined(), []string{"+ff02::1:ff00:240"})
	h.set(Announcement{Addr: b, Interface: "eth0"})
	eq(t, "groups after one left", c.joined(), []string{"+ff02::1:ff00:240"})
	h.set()
	eq(t, "groups after both left", c.joined(), []string{"+ff02::1:ff00:240", "-ff02::1:ff00:240"})
}

func TestChangeKindString(t *testing.T) {
	for k, want := range map[ChangeKind]string{Announced: "Announced", Withdrawn: "Withdrawn", Conflict: "Conflict", 7: "ChangeKind(7)"} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestInterfaceRecreated(t *testing.T) {
	h := newHarness(t)
	h.set(Announcement{Addr: vip4, Interface: "eth0"}, Announcement{Addr: vip6, Interface: "eth0"})
	h.step(DefaultProbeWait)
	// One pass reports both, in no particular order.
	eq(t, "changes", slices.Sorted(slices.Values(h.takeChanges())), []string{"Announced 192.0.2.240 eth0", "Announced 2001:db8::240 eth0"})
	old4, old6 := h.open.conn(t, false, "eth0"), h.open.conn(t, true, "eth0")

	// eth0 deleted and created again: a new index, and a new MAC.
	h.open.mu.Lock()
	h.open.links["eth0"] = &net.Interface{Index: 9, Name: "eth0", MTU: 1500, HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x19}}
	h.open.mu.Unlock()
	h.set(Announcement{Addr: vip4, Interface: "eth0"}, Announcement{Addr: vip6, Interface: "eth0"})
	for _, c := range []*fakeConn{old4, old6} {
		select {
		case <-c.closed:
		default:
			t.Fatal("the old interface's socket is still open")
		}
	}
	new4, new6 := h.open.conn(t, false, "eth0"), h.open.conn(t, true, "eth0")
	if new4 == old4 || new6 == old6 {
		t.Fatal("no new sockets")
	}
	eq(t, "groups on the new socket", new6.joined(), []string{"+ff02::1:ff00:240"})
	deliver(new4, whoHas(t, vip4))
	eq(t, "answer from the new MAC", arpSummary(t, new4.take()), []string{"OperationReply 192.0.2.240 02:00:00:00:00:19 -> 192.0.2.100 02:00:00:00:00:c1"})
	eq(t, "changes", h.takeChanges(), nil)
}

func TestSetErrorKeepsWhatWasAnswered(t *testing.T) {
	h := newHarness(t)
	c := h.own()
	// eth0 vanishes from a lookup (a netlink hiccup, or the link being
	// recreated): the error is reported and vip4 is still answered.
	h.open.mu.Lock()
	saved := h.open.links["eth0"]
	delete(h.open.links, "eth0")
	h.open.mu.Unlock()
	if err := h.a.Set(context.Background(), []Announcement{{Addr: vip4, Interface: "eth0"}}); err == nil {
		t.Fatal("Set on a missing interface: no error")
	}
	h.step(testHandover)
	eq(t, "changes", h.takeChanges(), nil)
	c.take()
	deliver(c, whoHas(t, vip4))
	eq(t, "answer", arpSummary(t, c.take()), []string{answer4})
	h.open.mu.Lock()
	h.open.links["eth0"] = saved
	h.open.mu.Unlock()
}

// A claim's MAC outlives the frame it came in: the reader reuses its
// buffer for the next frame.
func TestClaimedMACIsKept(t *testing.T) {
	h := newHarness(t)
	h.set(Announcement{Addr: vip6, Interface: "eth0"})
	h.step(DefaultProbeWait)
	eq(t, "changes", h.takeChanges(), []string{"Announced 2001:db8::240 eth0"})
	c := h.open.conn(t, true, "eth0")
	h.set()
	// An advertisement without a target link-layer option: the MAC is the
	// frame's source, inside the read buffer.
	na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: vip6}
	b, err := ndpFrame(agentMAC, allNodesMAC, vip6, netip.IPv6LinkLocalAllNodes(), na)
	deliver(c, mustFrame(t, b, err))
	deliver(c, ns(t, clientIP6, netip.MustParseAddr("2001:db8::999"))) // overwrites the buffer
	h.step(handoverGrace)
	eq(t, "changes", h.takeChanges(), []string{"Withdrawn 2001:db8::240 eth0 " + agentMAC.String()})
}

// A read error (the link went down) pauses the reader; it does not end it.
func TestReaderSurvivesReadErrors(t *testing.T) {
	// No refresh and a burst of one: after own() the loop has no timer, so
	// the clock's only waiter is the paused reader.
	h := newHarness(t, func(o *Options) { o.GARPInterval, o.BurstCount = 0, 1 })
	c := h.own()
	if h.clock.HasWaiters() {
		t.Fatal("a timer is waiting before the read error")
	}
	failed := make(chan struct{})
	go func() {
		c.in <- delivery{err: errors.New("recvfrom: network is down"), done: failed}
	}()
	// The reader waits readRetry on the clock before reading again.
	for !h.clock.HasWaiters() {
		runtime.Gosched()
	}
	h.clock.Step(readRetry)
	<-failed
	deliver(c, whoHas(t, vip4))
	eq(t, "answer after the error", arpSummary(t, c.take()), []string{answer4})
}
