package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// Issue 12, edge autonomy: the API server unreachable for every agent (a
// blackhole between each node and the API server: the test, the CCM and the
// service proxy still reach it), as at a remote site whose uplink is down.
// The rows run on TestL2Faults' lab (see edgeRows).

// edgeRows runs issue 12's rows on l, whose Service ip has a settled owner.
func edgeRows(ctx context.Context, t *testing.T, l *l2Lab, ip netip.Addr) {
	t.Run("edge: a crashed owner is replaced within a second with the API server unreachable", func(t *testing.T) {
		p := l.neighborProbe(t, ip)
		for i := range 3 {
			r := l.edgeCrashTrial(ctx, t, ip, p)
			t.Logf("trial %d: %s answered for %s %s after the crash; for the rest of the outage: %s; after the API server came back: %s",
				i, r.by, ip, r.took.Round(time.Millisecond), r.rest, r.after)
			r.check(t, fmt.Sprintf("trial %d", i))
		}
	})

	t.Run("edge: nothing new is decided without the API server", func(t *testing.T) {
		owner := l.settledOwner(ctx, t, ip)
		outage := l.cutAllFromAPI(t)
		// The CCM still reaches the API server and gives the new Service
		// an address; the agents cannot know.
		fresh := l.createService(ctx, "edge-new")
		p := l.neighborProbe(t, ip, fresh)
		from := time.Now()
		l.observe(from.Add(5 * time.Second))
		if s := p.Summarize(fresh, from, time.Time{}); len(s.Answered) > 0 {
			t.Errorf("%s, created during the outage, was answered for: %s", fresh, s)
		}
		if s := p.Summarize(ip, from, time.Time{}); len(s.Answered) != 1 || s.Answered[l.node(owner).host.MAC.String()] == 0 {
			t.Errorf("%s during the outage: %s; want only %s", ip, s, owner)
		}
		outage.end()
		// Once the agents hear the API server again, it is announced.
		l.waitOwner(ctx, fresh, 30*time.Second)
	})

	t.Run("edge: an agent restarted during the outage changes nothing", func(t *testing.T) {
		owner := l.settledOwner(ctx, t, ip)
		var other *l2Node
		for _, nd := range l.nodes {
			if nd.name != owner {
				other = nd
				break
			}
		}
		p := l.neighborProbe(t, ip)
		outage := l.cutAllFromAPI(t)
		from := time.Now()
		if err := other.agent.Kill(); err != nil {
			t.Fatal(err)
		}
		l.startAgent(other)
		l.observe(from.Add(8 * time.Second))
		s := p.Summarize(ip, from, time.Time{})
		t.Logf("%s restarted during the outage: %s", other.name, s)
		if len(s.Answered) != 1 || s.Answered[l.node(owner).host.MAC.String()] == 0 || s.LongestGap > gapBudget {
			t.Errorf("with %s restarted during the outage: %s; want only %s answering throughout", other.name, s, owner)
		}
		if other.agent.Exited() {
			t.Errorf("%s's agent, restarted without the API server, exited instead of waiting for it:\n%s", other.name, other.agent.Logs())
		}
		expectSilentForLackOfView(t, other)
		outage.end()
		l.waitOwner(ctx, ip, 20*time.Second, owner)
	})

	t.Run("edge: the owner's agent restarted during the outage stays silent and its successor takes over", func(t *testing.T) {
		owner := l.settledOwner(ctx, t, ip)
		nd := l.node(owner)
		p := l.neighborProbe(t, ip)
		outage := l.cutAllFromAPI(t)
		killed := time.Now()
		if err := nd.agent.Kill(); err != nil {
			t.Fatal(err)
		}
		l.startAgent(nd)
		// The restarted agent has nothing to act on: it answers for
		// nothing, so the successor finds the owner silent and takes over.
		a, err := l.waitAnswer(ctx, p, ip, killed, nd.host.MAC.String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		settled := a.At.Add(time.Second)
		l.observe(settled.Add(5 * time.Second))
		rest := p.Summarize(ip, settled, time.Time{})
		t.Logf("%s answered %s after %s's agent was restarted without the API server; then: %s",
			l.nodeByMAC(a.MAC), a.At.Sub(killed).Round(time.Millisecond), owner, rest)
		if len(rest.Answered) != 1 || rest.Answered[nd.host.MAC.String()] > 0 || rest.LongestGap > answerSlack {
			t.Errorf("after %s's agent restarted during the outage: %s; want exactly one other node answering", owner, rest)
		}
		expectSilentForLackOfView(t, nd)
		outage.end()
		l.waitOwner(ctx, ip, 20*time.Second, owner)
	})
}

// expectSilentForLackOfView checks that nd's agent, started while the API
// server was unreachable, says in its log that it announces nothing until
// it has listed what it needs (the behaviour the agent defines for a
// restart during an outage; docs/edge.md).
func expectSilentForLackOfView(t *testing.T, nd *l2Node) {
	t.Helper()
	if lines := logLines(nd.agent, "Not announcing anything"); len(lines) == 0 {
		t.Errorf("%s's agent, restarted without the API server, did not log why it announces nothing:\n%s", nd.name, nd.agent.Logs())
	}
}

// edgeTrial is one crash of a VIP's owner with the API server unreachable
// for every agent.
type edgeTrial struct {
	took  time.Duration // crash to the first answer from another node
	by    string        // that node
	rest  lab.Summary   // from a second after that to the end of the outage
	after lab.Summary   // after the API server came back
}

// check holds a trial to issue 12's bounds.
func (r edgeTrial) check(t *testing.T, what string) {
	t.Helper()
	if r.took > crashBudget {
		t.Errorf("%s: failover with the API server unreachable took %s, want under %s", what, r.took, crashBudget)
	}
	if len(r.rest.Answered) != 1 || r.rest.LongestGap > answerSlack {
		t.Errorf("%s: for the rest of the outage: %s; want exactly one node answering", what, r.rest)
	}
	if r.after.LongestGap > answerSlack || r.after.Split > splitBudget || len(r.after.Last) != 1 {
		t.Errorf("%s: after the API server came back: %s; want no gap, at most %s of two answering, one at the end",
			what, r.after, splitBudget)
	}
}

// edgeCrashTrial cuts every node off from the API server, crashes ip's
// owner (kill -9 of its agent, link down), watches the rest of the outage,
// ends it with the node still down, then brings the node back and waits
// until it owns ip again.
func (l *l2Lab) edgeCrashTrial(ctx context.Context, t *testing.T, ip netip.Addr, p *lab.NeighborProbe) edgeTrial {
	t.Helper()
	owner := l.settledOwner(ctx, t, ip)
	nd := l.node(owner)
	outage := l.cutAllFromAPI(t)
	crashed := time.Now()
	if err := nd.agent.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := nd.host.SetLink(false); err != nil {
		t.Fatal(err)
	}
	a, err := l.waitAnswer(ctx, p, ip, crashed, nd.host.MAC.String(), 10*time.Second)
	if err != nil {
		t.Fatalf("with the API server unreachable: %v", err)
	}
	r := edgeTrial{took: a.At.Sub(crashed), by: l.nodeByMAC(a.MAC)}
	settled := a.At.Add(time.Second)
	l.observe(settled.Add(5 * time.Second))
	r.rest = p.Summarize(ip, settled, time.Time{})
	// The API server returns with the crashed node still down: the
	// views agree on the successor, nothing flaps.
	back := time.Now()
	outage.end()
	l.observe(back.Add(8 * time.Second))
	r.after = p.Summarize(ip, back, time.Time{})
	if err := nd.host.SetLink(true); err != nil {
		t.Fatal(err)
	}
	l.startAgent(nd)
	l.waitOwner(ctx, ip, 20*time.Second, owner)
	return r
}

// apiOutage is every node cut off from the API server.
type apiOutage struct {
	t     *testing.T
	l     *l2Lab
	ended bool
}

// cutAllFromAPI blackholes the API server from every node namespace until
// end (or the end of the test).
func (l *l2Lab) cutAllFromAPI(t *testing.T) *apiOutage {
	t.Helper()
	o := &apiOutage{t: t, l: l}
	for _, nd := range l.nodes {
		if err := l.c.SetAPIReachable(nd.host, false); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(o.end)
	return o
}

func (o *apiOutage) end() {
	if o.ended {
		return
	}
	o.ended = true
	for _, nd := range o.l.nodes {
		if err := o.l.c.SetAPIReachable(nd.host, true); err != nil {
			o.t.Error(fmt.Errorf("ending the outage: %w", err))
		}
	}
}

// TestL2EdgeBench measures issue 12's failover over 20 trials (or
// BAREMETAL_BENCH_TRIALS): the owner crashes (kill -9, link down) while
// every agent is cut off from the API server; p99 must stay under a second.
func TestL2EdgeBench(t *testing.T) {
	trials := l2BenchTrials(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	l := newL2Lab(t, 3)
	ip := l.createService(ctx, "edge-bench")
	l.settledOwner(ctx, t, ip)
	l.expectModel(ctx, t, ip)
	p := l.neighborProbe(t, ip)
	var took []time.Duration
	for i := range trials {
		r := l.edgeCrashTrial(ctx, t, ip, p)
		took = append(took, r.took)
		r.check(t, fmt.Sprintf("trial %d", i))
	}
	report(t, "crash failover with the API server unreachable (SIGKILL + link down -> first ARP reply from the new owner)", took)
	if p99 := rankPercentile(took, 0.99); p99 >= time.Second {
		t.Errorf("p99 %s, want under 1s", p99)
	}
}
