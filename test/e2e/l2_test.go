package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/apicontract"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// failoverBound is the crash failover the design promises: leaseDuration
// (3s) plus 1s, with a little room for this shared 2-core machine.
const failoverBound = 4500 * time.Millisecond

// TestL2 runs the layer-2 proofs of issue 3 against one lab: three nodes
// with real agents, the real CCM, a client on the same segment. Each
// subtest leaves the lab as it found it (agents running, links up).
func TestL2(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	l := newL2Lab(t, 3)

	t.Run("one owner answers ARP and serves", func(t *testing.T) {
		ip := l.createService(ctx, "web")
		owner := l.waitOwner(ctx, ip, 10*time.Second)
		l.expectOnlyOwnerAnswers(ctx, t, ip, owner)
		waitEvent(ctx, t, l, "web", "Announcing", fmt.Sprintf("Announcing %s from node %s on interface eth0", ip, owner))
	})

	t.Run("IPv6: one owner answers neighbour solicitations and serves", func(t *testing.T) {
		ip := l.createService(ctx, "web6", withIPv6)
		if !ip.Is6() {
			t.Fatalf("IPv6 Service got %s", ip)
		}
		owner := l.waitOwner(ctx, ip, 10*time.Second)
		var macs []string
		err := lab.Eventually(ctx, 10*time.Second, 200*time.Millisecond, func() error {
			macs = l.ndisc(ctx, ip)
			if len(macs) != 1 || l.nodeByMAC(macs[0]) != owner {
				return fmt.Errorf("ndisc6 %s answered by %v, want only %s", ip, macs, owner)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if name, err := l.curl(ctx, ip, 2*time.Second); err != nil || name != owner {
			t.Fatalf("curl %s = %q, %v; want %s", ip, name, err, owner)
		}
	})

	t.Run("kill -9 of the owner: another node takes over within the bound", func(t *testing.T) {
		ip := l.createService(ctx, "crash")
		owner := l.waitOwner(ctx, ip, 10*time.Second)
		l.expectOnlyOwnerAnswers(ctx, t, ip, owner)
		w := watchARP(t, l.client)
		old := l.node(owner)
		killed := time.Now()
		if err := old.agent.Kill(); err != nil {
			t.Fatal(err)
		}
		claim, err := w.waitClaim(ctx, ip, killed, old.host.MAC.String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		took := claim.at.Sub(killed)
		t.Logf("%s: gratuitous ARP from %s %s after the kill", ip, l.nodeByMAC(claim.mac), took)
		if took > failoverBound {
			t.Errorf("failover took %s, want under %s", took, failoverBound)
		}
		newOwner := l.nodeByMAC(claim.mac)
		if got := l.neighMAC(ctx, ip); got != claim.mac {
			t.Errorf("client's neighbour entry for %s is %s, want the new owner's %s", ip, got, claim.mac)
		}
		if name, err := l.curl(ctx, ip, 2*time.Second); err != nil || name != newOwner {
			t.Errorf("curl %s = %q, %v; want %s", ip, name, err, newOwner)
		}
		// The restarted agent (a DaemonSet would restart it) wins the
		// hash again, takes the VIP back, and only one node answers.
		l.startAgent(old)
		back := l.waitOwner(ctx, ip, 15*time.Second, owner)
		l.expectOnlyOwnerAnswers(ctx, t, ip, back)
	})

	t.Run("owner's link down: another node takes over within the bound", func(t *testing.T) {
		ip := l.createService(ctx, "cable")
		owner := l.waitOwner(ctx, ip, 10*time.Second)
		w := watchARP(t, l.client)
		old := l.node(owner)
		down := time.Now()
		if err := old.host.SetLink(false); err != nil {
			t.Fatal(err)
		}
		claim, err := w.waitClaim(ctx, ip, down, old.host.MAC.String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		took := claim.at.Sub(down)
		t.Logf("%s: gratuitous ARP from %s %s after link down", ip, l.nodeByMAC(claim.mac), took)
		if took > failoverBound {
			t.Errorf("failover took %s, want under %s", took, failoverBound)
		}
		if name, err := l.curl(ctx, ip, 2*time.Second); err != nil || name != l.nodeByMAC(claim.mac) {
			t.Errorf("curl %s = %q, %v; want %s", ip, name, err, l.nodeByMAC(claim.mac))
		}
		if err := old.host.SetLink(true); err != nil {
			t.Fatal(err)
		}
		back := l.waitOwner(ctx, ip, 15*time.Second)
		l.expectOnlyOwnerAnswers(ctx, t, ip, back)
	})

	t.Run("SIGTERM of the owner: handover with no gap", func(t *testing.T) {
		ip := l.createService(ctx, "graceful")
		owner := l.waitOwner(ctx, ip, 10*time.Second)
		l.expectOnlyOwnerAnswers(ctx, t, ip, owner)
		w := watchARP(t, l.client)
		old := l.node(owner)
		p := l.probeHTTP(ip, 20*time.Millisecond)
		time.Sleep(300 * time.Millisecond)
		termed := time.Now()
		if err := old.agent.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		claim, err := w.waitClaim(ctx, ip, termed, old.host.MAC.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: gratuitous ARP from %s %s after SIGTERM", ip, l.nodeByMAC(claim.mac), claim.at.Sub(termed))
		if err := old.agent.Wait(10 * time.Second); err != nil {
			t.Errorf("agent after SIGTERM: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
		answers, fails, total := p.finish()
		t.Logf("HTTP probes during the handover: %d, unanswered %d, reset by the move %d, answered by %v", total, fails, p.resets, answers)
		if fails > 0 {
			t.Errorf("%d of %d requests to %s got no answer during the handover: %q", fails, total, ip, p.errs)
		}
		if p.resets > 1 {
			t.Errorf("%d requests to %s were reset; a handover should cut at most the one in flight: %q", p.resets, ip, p.errs)
		}
		if answers[l.nodeByMAC(claim.mac)] == 0 {
			t.Errorf("the new owner %s never answered", l.nodeByMAC(claim.mac))
		}
		a, err := l.answering(ip)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(a[ip], owner) {
			t.Errorf("%s still answers ARP for %s after it shut down (answering: %v)", owner, ip, a[ip])
		}
		if msgs := l.events(ctx, "graceful", "Withdrawn"); !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, owner) }) {
			t.Errorf("no Withdrawn event from %s: %v", owner, msgs)
		}
		l.startAgent(old)
		l.waitOwner(ctx, ip, 15*time.Second, owner)
	})

	t.Run("externalTrafficPolicy Local follows the endpoint", func(t *testing.T) {
		ip := l.createService(ctx, "local", withLocal)
		// Put the endpoint on a node that does not win the plain hash, so
		// following the endpoint is visible.
		for _, target := range []string{"node-1", "node-3", "node-2"} {
			l.setEndpoints(ctx, "local", target)
			l.waitOwner(ctx, ip, 10*time.Second, target)
			l.expectOnlyOwnerAnswers(ctx, t, ip, target)
		}
	})

	t.Run("an address another host uses is not announced", func(t *testing.T) {
		intruder := l.seg.AddHost("intruder", netip.MustParsePrefix("192.0.2.250/24"))
		ip := l.createService(ctx, "conflict", withIP("192.0.2.250"))
		msg := waitEvent(ctx, t, l, "conflict", apicontract.ReasonAnnounceConflict, intruder.MAC.String())
		t.Logf("event: %s", msg)
		if macs := l.arping(ctx, ip); len(macs) != 1 || macs[0] != intruder.MAC.String() {
			t.Errorf("arping %s answered by %v, want only the intruder %s", ip, macs, intruder.MAC)
		}
	})

	t.Run("IPv6: an address another host uses is not announced", func(t *testing.T) {
		intruder := l.seg.AddHost("intruder6", netip.MustParsePrefix("2001:db8::1:ff/64"))
		ip := l.createService(ctx, "conflict6", withIPv6, withIP("2001:db8::1:ff"))
		msg := waitEvent(ctx, t, l, "conflict6", apicontract.ReasonAnnounceConflict, intruder.MAC.String())
		t.Logf("event: %s", msg)
		a, err := l.answering(ip)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"unknown MAC " + intruder.MAC.String()}; !slices.Equal(a[ip], want) {
			t.Errorf("%s is answered for by %v although %s uses it", ip, a[ip], intruder.MAC)
		}
	})

	t.Run("API server down for 20s: same owners, no flap after", func(t *testing.T) {
		ip := l.createService(ctx, "outage")
		owner := l.waitOwner(ctx, ip, 10*time.Second)
		// Every VIP of the lab so far, read while the API server is up.
		ips, err := l.vips(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before := l.ownedSnapshot(t, ips)
		p := l.probeHTTP(ip, 100*time.Millisecond)
		if err := l.c.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if now := l.ownedSnapshot(t, ips); !maps2Equal(now, before) {
				t.Errorf("ARP/NDP owners changed with the API server down:\n before %v\n now    %v", before, now)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		restartAPIServer(ctx, t, l.c)
		restarted := metav1.Now()
		// Watches reconnect with backoff; give agents time to flap if
		// they were going to.
		time.Sleep(10 * time.Second)
		if now := l.ownedSnapshot(t, ips); !maps2Equal(now, before) {
			t.Errorf("ARP/NDP owners changed after the API server came back:\n before %v\n now    %v", before, now)
		}
		answers, fails, total := p.finish()
		t.Logf("HTTP probes: %d, failed %d, answered by %v", total, fails, answers)
		if fails > 0 || len(answers) != 1 || answers[owner] == 0 {
			t.Errorf("during the outage %d of %d requests failed and %v answered; want all from %s", fails, total, answers, owner)
		}
		evs, err := l.c.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			if (e.Reason == "Announcing" || e.Reason == "Withdrawn") && e.LastTimestamp.After(restarted.Time) {
				t.Errorf("event after the API server came back: %s %s: %s", e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	})
}

// TestL2ManyVIPs: 100 VIPs spread over 3 nodes roughly evenly, and a node
// dying moves only its share.
func TestL2ManyVIPs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := newL2Lab(t, 3)
	var ips []netip.Addr
	for i := range 100 {
		ips = append(ips, l.createService(ctx, fmt.Sprintf("svc-%03d", i)))
	}
	var before map[netip.Addr]string
	err := lab.Eventually(ctx, 30*time.Second, 200*time.Millisecond, func() error {
		before = l.ownedSnapshot(t, ips)
		for _, ip := range ips {
			if !strings.HasPrefix(before[ip], "node-") || strings.Contains(before[ip], "+") {
				return fmt.Errorf("%s is answered for by %q, want one node", ip, before[ip])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	share := map[string]int{}
	for _, n := range before {
		share[n]++
	}
	t.Logf("VIPs per node: %v", share)
	for _, nd := range l.nodes {
		if c := share[nd.name]; c < 20 || c > 46 {
			t.Errorf("%s owns %d of 100 VIPs; want roughly a third", nd.name, c)
		}
	}

	victim := l.nodes[0]
	if err := victim.agent.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := victim.host.SetLink(false); err != nil {
		t.Fatal(err)
	}
	var after map[netip.Addr][]string
	err = lab.Eventually(ctx, 20*time.Second, 200*time.Millisecond, func() error {
		b, err := l.answering(ips...)
		if err != nil {
			return err
		}
		after = map[netip.Addr][]string{}
		for ip, nodes := range b {
			for _, n := range nodes {
				if n != victim.name {
					after[ip] = append(after[ip], n)
				}
			}
		}
		for _, ip := range ips {
			if len(after[ip]) != 1 {
				return fmt.Errorf("%s is answered for by live nodes %v, want exactly one", ip, after[ip])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, ip := range ips {
		switch {
		case before[ip] == victim.name:
			moved++
		case after[ip][0] != before[ip]:
			t.Errorf("%s moved from %s to %s although %s was not its owner", ip, before[ip], after[ip][0], victim.name)
		}
	}
	t.Logf("%d VIPs moved off %s (it owned %d)", moved, victim.name, share[victim.name])
}

// expectOnlyOwnerAnswers checks, from the client, that exactly one MAC (the
// owner's) answers ARP for ip and that the owner serves it.
func (l *l2Lab) expectOnlyOwnerAnswers(ctx context.Context, t *testing.T, ip netip.Addr, owner string) {
	t.Helper()
	err := lab.Eventually(ctx, 10*time.Second, 200*time.Millisecond, func() error {
		macs := l.arping(ctx, ip)
		if len(macs) != 1 || l.nodeByMAC(macs[0]) != owner {
			return fmt.Errorf("arping %s answered by %v, want only %s (%s)", ip, macs, owner, l.node(owner).host.MAC)
		}
		name, err := l.curl(ctx, ip, 2*time.Second)
		if err != nil {
			return err
		}
		if name != owner {
			return fmt.Errorf("curl %s answered by %s, want %s", ip, name, owner)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ownedSnapshot maps each of ips to the node(s) answering ARP/NDP for it
// (no entry for none).
func (l *l2Lab) ownedSnapshot(t *testing.T, ips []netip.Addr) map[netip.Addr]string {
	t.Helper()
	b, err := l.answering(ips...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]string{}
	for ip, nodes := range b {
		out[ip] = strings.Join(nodes, "+")
	}
	return out
}

func maps2Equal(a, b map[netip.Addr]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// waitEvent waits for an event on svc with reason whose message contains
// substr, and returns the message.
func waitEvent(ctx context.Context, t *testing.T, l *l2Lab, svc, reason, substr string) string {
	t.Helper()
	var msg string
	err := lab.Eventually(ctx, 15*time.Second, 200*time.Millisecond, func() error {
		msgs := l.events(ctx, svc, reason)
		for _, m := range msgs {
			if strings.Contains(m, substr) {
				msg = m
				return nil
			}
		}
		return fmt.Errorf("no %s event on %s containing %q among %q", reason, svc, substr, msgs)
	})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}
