package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// Issue 12, edge autonomy: the API server unreachable for every agent (a
// blackhole between each node and the API server: the test, the CCM and the
// service proxy still reach it), as at a remote site whose uplink is down.
// The rows run on TestL2Faults' lab (see edgeRows).

// edgeRows runs issue 12's rows on l, whose Service ip has a settled owner.
func edgeRows(ctx context.Context, t *testing.T, l *l2Lab, ip netip.Addr, binds bool) {
	t.Run("edge: a crashed owner is replaced within a second with the API server unreachable", func(t *testing.T) {
		if binds {
			t.Skip("this agent binds the owner's VIPs (before DESIGN decision 4 v2): it waits for a Lease it cannot read to take over")
		}
		p := l.neighborProbe(t, ip)
		for i := range 3 {
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
				t.Fatalf("trial %d: with the API server unreachable: %v", i, err)
			}
			took := a.At.Sub(crashed)
			// The rest of the outage: exactly one answers.
			settled := a.At.Add(time.Second)
			l.observe(settled.Add(5 * time.Second))
			rest := p.Summarize(ip, settled, time.Time{})
			t.Logf("trial %d: %s answered for %s %s after the crash; for the rest of the outage: %s",
				i, l.nodeByMAC(a.MAC), ip, took.Round(time.Millisecond), rest)
			if took > crashBudget {
				t.Errorf("trial %d: failover with the API server unreachable took %s, want under %s", i, took, crashBudget)
			}
			if len(rest.Answered) != 1 || rest.Unanswered > 0 {
				t.Errorf("trial %d: for the rest of the outage: %s; want exactly one node answering", i, rest)
			}

			// The API server returns with the crashed node still down:
			// the views agree on the successor, nothing flaps.
			back := time.Now()
			outage.end()
			l.observe(back.Add(8 * time.Second))
			after := p.Summarize(ip, back, time.Time{})
			t.Logf("trial %d: after the API server came back: %s", i, after)
			if after.LongestGap > 0 || after.Split > splitBudget || len(after.Last) != 1 {
				t.Errorf("trial %d: after the API server came back: %s; want no gap, at most %s of two answering, one at the end",
					i, after, splitBudget)
			}
			if err := nd.host.SetLink(true); err != nil {
				t.Fatal(err)
			}
			l.startAgent(nd)
			l.waitOwner(ctx, ip, 20*time.Second, owner)
		}
	})

	t.Run("edge: nothing new is decided without the API server", func(t *testing.T) {
		if binds {
			t.Skip("this agent binds the owner's VIPs (before DESIGN decision 4 v2)")
		}
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
		if binds {
			t.Skip("this agent binds the owner's VIPs (before DESIGN decision 4 v2)")
		}
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
		outage.end()
		l.waitOwner(ctx, ip, 20*time.Second, owner)
	})
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
