package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestL2FailoverBench measures layer-2 failover in the lab, at the default
// settings (leaseDuration 3s, renewInterval 1s):
//   - crash: SIGKILL of the owner's agent and its link going down, to the
//     first gratuitous ARP from the new owner seen in the client namespace;
//   - graceful: SIGTERM of the owner's agent to the new owner's first
//     gratuitous ARP, with HTTP requests every 20ms counting failures;
//   - creation: Service create call to the first gratuitous ARP for its
//     address (the owner sends it right after binding the VIP).
//
// It runs only with BAREMETAL_BENCH=1 (make bench); BAREMETAL_BENCH_TRIALS
// sets the trials per measurement (default 20).
func TestL2FailoverBench(t *testing.T) {
	if os.Getenv("BAREMETAL_BENCH") != "1" {
		t.Skip("set BAREMETAL_BENCH=1 to run the layer-2 benchmarks")
	}
	trials := 20
	if s := os.Getenv("BAREMETAL_BENCH_TRIALS"); s != "" {
		if _, err := fmt.Sscan(s, &trials); err != nil {
			t.Fatalf("BAREMETAL_BENCH_TRIALS=%q: %v", s, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	l := newL2Lab(t, 3)
	w := watchARP(t, l.client)
	ip := l.createService(ctx, "bench")

	only := os.Getenv("BAREMETAL_BENCH_ONLY") // crash, graceful or creation
	var crash, graceful, creation []time.Duration
	var requests, resets int
	for i := range trials {
		if only != "" && only != "crash" {
			break
		}
		owner := l.waitOwner(ctx, ip, 20*time.Second)
		nd := l.node(owner)
		start := time.Now()
		if err := nd.agent.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := nd.host.SetLink(false); err != nil {
			t.Fatal(err)
		}
		claim, err := w.waitClaim(ctx, ip, start, nd.host.MAC.String(), 15*time.Second)
		if err != nil {
			t.Fatalf("crash trial %d: %v", i, err)
		}
		crash = append(crash, claim.at.Sub(start))
		if err := nd.host.SetLink(true); err != nil {
			t.Fatal(err)
		}
		l.startAgent(nd)
		l.waitOwner(ctx, ip, 20*time.Second, owner)
		time.Sleep(500 * time.Millisecond) // let the handover back settle
	}
	for i := range trials {
		if only != "" && only != "graceful" {
			break
		}
		owner := l.waitOwner(ctx, ip, 20*time.Second)
		nd := l.node(owner)
		p := l.probeHTTP(ip, 20*time.Millisecond)
		time.Sleep(200 * time.Millisecond)
		start := time.Now()
		if err := nd.agent.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		claim, err := w.waitClaim(ctx, ip, start, nd.host.MAC.String(), 10*time.Second)
		if err != nil {
			t.Fatalf("graceful trial %d: %v", i, err)
		}
		graceful = append(graceful, claim.at.Sub(start))
		if err := nd.agent.Wait(10 * time.Second); err != nil {
			t.Errorf("graceful trial %d: agent exit: %v", i, err)
		}
		time.Sleep(300 * time.Millisecond)
		_, fails, total := p.finish()
		requests += total
		resets += p.resets
		if fails > 0 {
			t.Errorf("graceful trial %d (SIGTERM at %s): %d of %d HTTP requests got no answer: %q",
				i, start.Format("15:04:05.000"), fails, total, p.errs)
		}
		l.startAgent(nd)
		l.waitOwner(ctx, ip, 20*time.Second, owner)
		time.Sleep(500 * time.Millisecond)
	}
	for i := range trials {
		if only != "" && only != "creation" {
			break
		}
		start := time.Now()
		vip := l.createService(ctx, fmt.Sprintf("create-%02d", i))
		claim, err := w.waitClaim(ctx, vip, start, "", 20*time.Second)
		if err != nil {
			t.Fatalf("creation trial %d: %v", i, err)
		}
		creation = append(creation, claim.at.Sub(start))
	}
	report(t, "crash failover (SIGKILL + link down -> first gratuitous ARP)", crash)
	report(t, "graceful handover (SIGTERM -> first gratuitous ARP)", graceful)
	if len(graceful) > 0 {
		t.Logf("HTTP requests every 20ms during the handovers: %d, none unanswered, %d reset by the move (connections open at the switch)", requests, resets)
	}
	report(t, "Service creation -> first gratuitous ARP", creation)
}

func report(t *testing.T, what string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	pct := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	t.Logf("%s: n=%d p50=%s p99=%s min=%s max=%s", what, len(s),
		pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond),
		s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}
