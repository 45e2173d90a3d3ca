package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// The fault table of issue 8, one subtest per row, against one lab: three
// nodes with real agents, the CCM, the lab's service proxy, and a client on
// the segment asking who has the VIP every probeInterval (lab.NeighborProbe)
// and timing every answer. Each subtest leaves the lab as it found it:
// agents running, links up, one owner answering.
const (
	probeInterval = 20 * time.Millisecond
	// heartbeatPort is the agents' default --heartbeat-port.
	heartbeatPort = 7474
	// The bounds of the fault table. Crash failover is measured over 20
	// trials by TestL2FailoverBench (p99 < 800 ms); make test runs a few
	// and holds each to crashBudget.
	crashBudget   = time.Second
	sigtermBudget = 200 * time.Millisecond
	splitBudget   = time.Second // two MACs answering, in total
	gapBudget     = time.Second // nobody answering, at a stretch
	// answerSlack is how late an answer may come before the rounds it
	// missed count as a gap ("no gap" means none longer): on this loaded
	// machine a reply can take longer than probeInterval.
	answerSlack     = 100 * time.Millisecond
	killSettleBound = 3 * time.Second
)

// TestL2Faults runs the fault table, then issue 12's edge rows (edgeRows)
// on the same lab.
func TestL2Faults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	l := newL2Lab(t, 3)
	ip := l.createService(ctx, "faults")
	owner := l.waitOwner(ctx, ip, 15*time.Second)
	l.expectOnlyOwnerAnswers(ctx, t, ip, owner)
	l.expectModel(ctx, t, ip)

	t.Run("owner crash: link down and kill -9, another node answers within the bound", func(t *testing.T) {
		p := l.neighborProbe(t, ip)
		for i := range 3 {
			took, by := l.crashTrial(ctx, t, ip, p)
			t.Logf("trial %d: %s answered for %s %s after the crash", i, by, ip, took.Round(time.Millisecond))
			if took > crashBudget {
				t.Errorf("trial %d: failover took %s, want under %s", i, took, crashBudget)
			}
		}
	})

	t.Run("owner agent kill -9 with the link up: the dead agent's node stops answering", func(t *testing.T) {
		owner := l.settledOwner(ctx, t, ip)
		nd := l.node(owner)
		p := l.neighborProbe(t, ip)
		killed := time.Now()
		if err := nd.agent.Kill(); err != nil {
			t.Fatal(err)
		}
		l.observe(killed.Add(killSettleBound + time.Second))
		whole := p.Summarize(ip, killed, time.Time{})
		tail := p.Summarize(ip, killed.Add(killSettleBound), time.Time{})
		t.Logf("after the kill: %s", whole)
		if len(tail.Answered) != 1 || tail.LongestGap > answerSlack || tail.Answered[nd.host.MAC.String()] > 0 {
			t.Errorf("%s after the kill: %s; want exactly one node answering, not %s (%s)", killSettleBound, tail, owner, nd.host.MAC)
		}
		if whole.Split > splitBudget {
			t.Errorf("two MACs answered for %s in total, want at most %s", whole.Split, splitBudget)
		}
		l.expectNothingHeld(ctx, t)

		// "killed agent restarted": still exactly one.
		restarted := time.Now()
		l.startAgent(nd)
		l.observe(restarted.Add(5 * time.Second))
		after := p.Summarize(ip, restarted, time.Time{})
		last := p.Summarize(ip, time.Now().Add(-time.Second), time.Time{})
		t.Logf("after the restart: %s", after)
		if after.Split > splitBudget || len(last.Answered) != 1 || last.LongestGap > answerSlack {
			t.Errorf("after %s restarted: %s; in the last second %s; want one node answering", owner, after, last)
		}
	})

	t.Run("owner agent stalled (SIGSTOP) with its node up: no takeover, never two answering", func(t *testing.T) {
		// Stopped past suspectAfter but within it plus stalledAgentGrace,
		// as an agent starved of CPU is: its node still answers for its
		// own address, so the successor waits, and the owner resumes.
		stall := config.DefaultSuspectAfter + config.DefaultStalledAgentGrace/2
		owner := l.settledOwner(ctx, t, ip)
		nd := l.node(owner)
		p := l.neighborProbe(t, ip)
		before := l.failovers(ctx, t)
		stopped := time.Now()
		if err := nd.agent.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(stall)
		if err := nd.agent.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		l.observe(time.Now().Add(3 * time.Second))
		s := p.Summarize(ip, stopped, time.Time{})
		t.Logf("%s's agent stopped for %s: %s", owner, stall, s)
		if len(s.Answered) != 1 || s.Answered[nd.host.MAC.String()] == 0 || s.SplitRounds > 0 {
			t.Errorf("with %s's agent stalled %s: %s; want only %s answering, before and after", owner, stall, s, nd.host.MAC)
		}
		for name, n := range l.failovers(ctx, t) {
			if n != before[name] {
				t.Errorf("%s took %v VIPs over from a stalled agent", name, n-before[name])
			}
		}
	})

	t.Run("a host service listening on all addresses of the owner is not reachable through the VIP", func(t *testing.T) {
		owner := l.settledOwner(ctx, t, ip)
		nd := l.node(owner)
		svc, err := nd.host.Start("sshd-stand-in", bins.Path("lab-echo"), "--name", "host-service-of-"+owner, "--listen", ":2222")
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Stop(5 * time.Second)
		err = lab.Eventually(ctx, 10*time.Second, 100*time.Millisecond, func() error {
			out, err := l.client.Exec(ctx, "curl", "-sS", "--max-time", "2", fmt.Sprintf("http://%s:2222/", nd.addr4))
			if err != nil || !strings.HasPrefix(string(out), "host-service-of-") {
				return fmt.Errorf("the host service on %s:2222 does not answer: %q, %v", nd.addr4, out, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if name, err := l.curl(ctx, ip, 2*time.Second); err != nil || name != owner {
			t.Errorf("curl %s:80 = %q, %v; want %s", ip, name, err, owner)
		}
		if out, err := l.client.Exec(ctx, "curl", "-sS", "--max-time", "2", fmt.Sprintf("http://%s:2222/", ip)); err == nil {
			t.Errorf("the host service on %s answered through the VIP %s:2222: %q", owner, ip, out)
		}
	})

	t.Run("owner cut off from the API server only: one node answers after settling", func(t *testing.T) {
		owner := l.settledOwner(ctx, t, ip)
		nd := l.node(owner)
		p := l.neighborProbe(t, ip)
		cut := time.Now()
		if err := l.c.SetAPIReachable(nd.host, false); err != nil {
			t.Fatal(err)
		}
		restore := func() {
			if err := l.c.SetAPIReachable(nd.host, true); err != nil {
				t.Error(err)
			}
		}
		defer restore()
		// Long enough for its Lease to expire in every other agent's view.
		l.observe(cut.Add(15 * time.Second))
		during := p.Summarize(ip, cut, time.Time{})
		last := p.Summarize(ip, time.Now().Add(-2*time.Second), time.Time{})
		t.Logf("cut off: %s", during)
		if during.Split > splitBudget || during.LongestGap > gapBudget || len(last.Answered) != 1 || last.LongestGap > answerSlack {
			t.Errorf("with %s cut off from the API server: %s; in the last 2s %s; want one node answering, two for at most %s",
				owner, during, last, splitBudget)
		}
		back := time.Now()
		restore()
		l.observe(back.Add(10 * time.Second))
		after := p.Summarize(ip, back, time.Time{})
		last = p.Summarize(ip, time.Now().Add(-2*time.Second), time.Time{})
		t.Logf("after the API server came back for %s: %s", owner, after)
		if during.Split+after.Split > splitBudget || after.LongestGap > gapBudget || len(last.Answered) != 1 || last.LongestGap > answerSlack {
			t.Errorf("after the API server came back for %s: %s; in the last 2s %s; want one node answering, two for at most %s in all",
				owner, after, last, splitBudget)
		}
	})

	t.Run("API server frozen (SIGSTOP) 20s: the same single owner answers throughout", func(t *testing.T) {
		owner := l.settledOwner(ctx, t, ip)
		mac := l.node(owner).host.MAC.String()
		p := l.neighborProbe(t, ip)
		api := l.c.APIServer()
		frozen := time.Now()
		if err := api.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		thaw := func() {
			if err := api.Signal(syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
		defer thaw()
		l.observe(frozen.Add(20 * time.Second))
		thawed := time.Now()
		thaw()
		l.observe(thawed.Add(10 * time.Second))
		s := p.Summarize(ip, frozen, time.Time{})
		t.Logf("frozen for 20s and 10s after: %s", s)
		if len(s.Answered) != 1 || s.Answered[mac] == 0 || s.LongestGap > gapBudget {
			t.Errorf("with the API server frozen and after: %s; want only %s (%s) throughout, no gap over %s", s, owner, mac, gapBudget)
		}
	})

	t.Run("heartbeats between the owner and the other nodes lost: no takeover, never two answering", func(t *testing.T) {
		owner := l.settledOwner(ctx, t, ip)
		nd := l.node(owner)
		p := l.neighborProbe(t, ip)
		var others []*l2Node
		for _, o := range l.nodes {
			if o != nd {
				others = append(others, o)
			}
		}
		dropped := time.Now()
		l.dropHeartbeats(ctx, t, nd, others...)
		l.observe(dropped.Add(10 * time.Second))
		s := p.Summarize(ip, dropped, time.Time{})
		t.Logf("heartbeats dropped between %s and the others: %s", owner, s)
		if len(s.Answered) != 1 || s.Answered[nd.host.MAC.String()] == 0 || s.SplitRounds > 0 || s.LongestGap > gapBudget {
			t.Errorf("with heartbeats lost: %s; want only %s answering throughout", s, owner)
		}
	})

	t.Run("SIGTERM of the owner: handover within the bound, no unanswered request", func(t *testing.T) {
		p := l.neighborProbe(t, ip)
		for i := range 3 {
			owner := l.settledOwner(ctx, t, ip)
			nd := l.node(owner)
			h := l.probeHTTP(ip, 20*time.Millisecond)
			l.observe(time.Now().Add(200 * time.Millisecond))
			termed := time.Now()
			if err := nd.agent.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			a, err := l.waitAnswer(ctx, p, ip, termed, nd.host.MAC.String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := nd.agent.Wait(10 * time.Second); err != nil {
				t.Errorf("trial %d: agent after SIGTERM: %v", i, err)
			}
			l.observe(time.Now().Add(300 * time.Millisecond))
			answers, fails, total := h.finish()
			took := a.At.Sub(termed)
			t.Logf("trial %d: %s answered for %s %s after SIGTERM; HTTP %d requests, %d unanswered, %d reset, by %v",
				i, l.nodeByMAC(a.MAC), ip, took.Round(time.Millisecond), total, fails, h.resets, answers)
			if took > sigtermBudget {
				t.Errorf("trial %d: handover took %s, want under %s", i, took, sigtermBudget)
			}
			if fails > 0 {
				t.Errorf("trial %d: %d of %d requests got no answer: %q", i, fails, total, h.errs)
			}
			l.startAgent(nd)
			l.waitOwner(ctx, ip, 15*time.Second, owner)
		}
	})

	t.Run("forged and replayed heartbeats from the client change nothing", func(t *testing.T) {
		owner := l.settledOwner(ctx, t, ip)
		nd := l.node(owner)
		// Real heartbeats, as the owner's link carries them.
		capture, err := nd.host.CaptureUDP(heartbeatPort)
		if err != nil {
			t.Fatal(err)
		}
		l.observe(time.Now().Add(2 * time.Second))
		real := capture.Stop()
		if len(real) == 0 {
			t.Fatalf("no heartbeat crossed %s's link in 2s", owner)
		}
		p := l.neighborProbe(t, ip)
		stop := l.forge(t, nd, real)
		from := time.Now()
		l.observe(from.Add(5 * time.Second))
		s := p.Summarize(ip, from, time.Time{})
		t.Logf("%d real heartbeats captured; while forging and replaying: %s", len(real), s)
		if len(s.Answered) != 1 || s.Answered[nd.host.MAC.String()] == 0 || s.LongestGap > gapBudget || s.SplitRounds > 0 {
			t.Errorf("while forged and replayed heartbeats arrived: %s; want only %s answering", s, owner)
		}
		// Replays of the owner's messages must not keep a dead owner
		// looking alive: crash it while they go on.
		took, by := l.crashTrial(ctx, t, ip, p)
		stop()
		t.Logf("crash while replaying %s's heartbeats: %s answered %s after", owner, by, took.Round(time.Millisecond))
		if took > crashBudget {
			t.Errorf("failover with replayed heartbeats took %s, want under %s", took, crashBudget)
		}
	})

	edgeRows(ctx, t, l, ip)
}

// heartbeatKeySecret is where the agents keep their shared heartbeat key
// (created by the first agent when missing).
const heartbeatKeySecret = announce.HeartbeatSecretName

// expectModel fails t unless the agents under test are issue 8's: the
// owner of ip holds it on no interface (DESIGN decision 6), and the agents
// keep a heartbeat key (authenticated heartbeats). A row that fails later
// then fails for what it is about.
func (l *l2Lab) expectModel(ctx context.Context, t *testing.T, ip netip.Addr) {
	t.Helper()
	if ip.IsValid() {
		held, err := l.heldOnInterfaces(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(held[ip]) > 0 {
			t.Fatalf("%s is held on an interface of %v: the agents under test bind VIPs", ip, held[ip])
		}
	}
	err := lab.Eventually(ctx, 20*time.Second, 100*time.Millisecond, func() error {
		_, err := l.c.Client.CoreV1().Secrets(agentNamespace).Get(ctx, heartbeatKeySecret, metav1.GetOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("the agents keep no heartbeat key (Secret %s/%s): %v", agentNamespace, heartbeatKeySecret, err)
	}
}

// expectNothingHeld fails t if any node holds a Service's VIP on any
// interface.
func (l *l2Lab) expectNothingHeld(ctx context.Context, t *testing.T) {
	t.Helper()
	held, err := l.heldOnInterfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ips, err := l.vips(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range ips {
		if len(held[ip]) > 0 {
			t.Errorf("%s is held on an interface of %v", ip, held[ip])
		}
	}
}

// settledOwner waits for one owner answering and serving ip.
func (l *l2Lab) settledOwner(ctx context.Context, t *testing.T, ip netip.Addr) string {
	t.Helper()
	owner := l.waitOwner(ctx, ip, 20*time.Second)
	l.expectOnlyOwnerAnswers(ctx, t, ip, owner)
	return owner
}

// neighborProbe starts asking from the client who has ips every
// probeInterval, until the end of the (sub)test.
func (l *l2Lab) neighborProbe(t testing.TB, ips ...netip.Addr) *lab.NeighborProbe {
	t.Helper()
	p, err := l.client.StartNeighborProbe(ips, probeInterval)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// observe lets the probes record until the given time: the length of an
// observation window, not a wait for a condition.
func (l *l2Lab) observe(until time.Time) {
	time.Sleep(time.Until(until))
}

// waitAnswer waits for the first answer for ip after since from a MAC other
// than notMAC.
func (l *l2Lab) waitAnswer(ctx context.Context, p *lab.NeighborProbe, ip netip.Addr, since time.Time, notMAC string, timeout time.Duration) (lab.ProbeAnswer, error) {
	var a lab.ProbeAnswer
	err := lab.Eventually(ctx, timeout, 5*time.Millisecond, func() error {
		var ok bool
		if a, ok = p.FirstAnswer(ip, since, notMAC); !ok {
			return fmt.Errorf("no host other than %s answered for %s", notMAC, ip)
		}
		return nil
	})
	return a, err
}

// crashTrial crashes ip's owner (kill -9 of its agent and its link down),
// returns how long until another node answered the client's ARP/NDP and
// which, then brings the node back and waits until it owns ip again.
func (l *l2Lab) crashTrial(ctx context.Context, t testing.TB, ip netip.Addr, p *lab.NeighborProbe) (time.Duration, string) {
	t.Helper()
	owner := l.waitOwner(ctx, ip, 20*time.Second)
	nd := l.node(owner)
	start := time.Now()
	if err := nd.agent.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := nd.host.SetLink(false); err != nil {
		t.Fatal(err)
	}
	a, err := l.waitAnswer(ctx, p, ip, start, nd.host.MAC.String(), 15*time.Second)
	if err != nil {
		t.Fatalf("crash of %s: %v", owner, err)
	}
	if err := nd.host.SetLink(true); err != nil {
		t.Fatal(err)
	}
	l.startAgent(nd)
	l.waitOwner(ctx, ip, 20*time.Second, owner)
	return a.At.Sub(start), l.nodeByMAC(a.MAC)
}

// dropHeartbeats makes the kernels of a and each of others refuse UDP to or
// from the heartbeat port between them (a policy rule per direction, as the
// lab has no packet filter), until the end of the test.
func (l *l2Lab) dropHeartbeats(ctx context.Context, t *testing.T, a *l2Node, others ...*l2Node) {
	t.Helper()
	rule := func(from, to *l2Node, verb string) error {
		for _, dir := range []string{"dport", "sport"} {
			out, err := from.host.Exec(ctx, "ip", "rule", verb, "to", to.addr4.String(), "ipproto", "udp", dir, fmt.Sprint(heartbeatPort), "prohibit", "pref", "100")
			if err != nil {
				return fmt.Errorf("%s: %w: %s", from.name, err, out)
			}
		}
		return nil
	}
	for _, o := range others {
		for _, pair := range [][2]*l2Node{{a, o}, {o, a}} {
			if err := rule(pair[0], pair[1], "add"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := rule(pair[0], pair[1], "del"); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// forge sends, from the client every 50 ms until the returned stop, to the
// heartbeat port of nd and of every other node: random bytes from the
// client's address, and each captured heartbeat again, both from the
// client's address and from the address it was first sent from.
func (l *l2Lab) forge(t *testing.T, nd *l2Node, captured []lab.UDPDatagram) (stop func()) {
	t.Helper()
	client := netip.AddrPortFrom(l2Client4.Addr(), heartbeatPort)
	var targets []netip.AddrPort
	for _, n := range l.nodes {
		targets = append(targets, netip.AddrPortFrom(n.addr4, heartbeatPort))
	}
	// The distinct messages, at most a few of each sender.
	var msgs []lab.UDPDatagram
	for _, d := range captured {
		if !slices.ContainsFunc(msgs, func(m lab.UDPDatagram) bool { return string(m.Payload) == string(d.Payload) }) && len(msgs) < 8 {
			msgs = append(msgs, d)
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		junk := make([]byte, 64)
		for {
			rand.Read(junk)
			for _, dst := range targets {
				_ = l.client.SendUDP(client, dst, junk) // a lost forgery is no finding
			}
			for _, m := range msgs {
				_ = l.client.SendUDP(client, m.Dst, m.Payload)
				_ = l.client.SendUDP(m.Src, m.Dst, m.Payload)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once bool
	stop = func() {
		if !once {
			once = true
			close(done)
			<-finished
		}
	}
	t.Cleanup(stop)
	return stop
}
