package main

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// bgpNextHops returns the active next hops of the selected BGP route to
// prefix in a `show ip route json` table, sorted.
func bgpNextHops(rib map[string][]lab.FRRRoute, prefix netip.Prefix) []netip.Addr {
	var hops []netip.Addr
	for _, r := range rib[prefix.String()] {
		if r.Protocol != "bgp" || !r.Selected {
			continue
		}
		for _, h := range r.Nexthops {
			if a, err := netip.ParseAddr(h.IP); err == nil && h.Active {
				hops = append(hops, a)
			}
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return hops
}

// arpingReply matches a reply line of arping (Thomas Habets'):
// "42 bytes from 02:00:00:00:00:01 (192.0.2.240): index=0 time=1.2 msec".
var arpingReply = regexp.MustCompile(`bytes from ([0-9a-f:]{17}) \(`)

// arpingMACs returns the distinct MACs in arping's output, in order.
func arpingMACs(out string) []string {
	var macs []string
	for _, m := range arpingReply.FindAllStringSubmatch(out, -1) {
		if !slices.Contains(macs, m[1]) {
			macs = append(macs, m[1])
		}
	}
	return macs
}

// arping asks for ip from h's eth0 and returns the MACs that answered. -d
// keeps listening after the first answer, so a second MAC would show.
func arping(ctx context.Context, h *lab.Host, ip netip.Addr) []string {
	out, _ := h.Exec(ctx, "arping", "-d", "-c", "2", "-w", "1", "-i", "eth0", ip.String()) // no answer is an empty list
	return arpingMACs(string(out))
}

// curl fetches http://ip/ from h; lab-echo answers with its node's name.
func curl(ctx context.Context, h *lab.Host, ip netip.Addr, timeout time.Duration) (string, error) {
	out, err := h.Exec(ctx, "curl", "-sS", "--max-time", fmt.Sprintf("%.1f", timeout.Seconds()), "http://"+ip.String()+"/")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// reach shows the clients reaching both addresses.
func (d *demo) reach(ctx context.Context) error {
	d.out.Step("Reaching the addresses from the clients")
	var macs []string
	err := lab.Eventually(ctx, 10*time.Second, 200*time.Millisecond, func() error {
		if macs = arping(ctx, d.client, d.l2VIP); len(macs) != 1 {
			return fmt.Errorf("arping %s answered by %v, want one MAC", d.l2VIP, macs)
		}
		return nil
	})
	if err != nil {
		return err
	}
	d.out.Say("client$ arping %s -> %s, the MAC of %s's eth0", d.l2VIP, macs[0], d.nodeByMAC(macs[0]))
	if err := d.curlEventually(ctx, d.client, "client", d.l2VIP); err != nil {
		return err
	}
	if err := d.curlEventually(ctx, d.remote, "remote-client", d.bgpVIP); err != nil {
		return err
	}
	d.out.Say("(the router picked one of its %d equal BGP paths for the remote client's flow)", len(d.nodes))
	return nil
}

func (d *demo) curlEventually(ctx context.Context, h *lab.Host, who string, ip netip.Addr) error {
	var name string
	err := lab.Eventually(ctx, 10*time.Second, 200*time.Millisecond, func() error {
		var err error
		name, err = curl(ctx, h, ip, 2*time.Second)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s cannot reach %s: %w", who, ip, err)
	}
	d.out.Say("%s$ curl http://%s/ -> %q", who, ip, name)
	return nil
}

// prober curls a VIP from a host in a loop and records who answered when.
type prober struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	answers []answer
}

type answer struct {
	at   time.Time // when the request returned
	node string    // "" when nobody answered
}

func startProber(h *lab.Host, ip netip.Addr, timeout time.Duration) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
			name, err := curl(ctx, h, ip, timeout)
			cancel()
			if err != nil {
				name = ""
			}
			p.mu.Lock()
			p.answers = append(p.answers, answer{at: time.Now(), node: name})
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return p
}

// first returns the first answer after since that ok accepts, and how many
// requests went unanswered before it.
func (p *prober) first(since time.Time, ok func(answer) bool) (answer, int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	unanswered := 0
	for _, a := range p.answers {
		if a.at.Before(since) {
			continue
		}
		if ok(a) {
			return a, unanswered, true
		}
		if a.node == "" {
			unanswered++
		}
	}
	return answer{}, unanswered, false
}

func (p *prober) wait(ctx context.Context, since time.Time, timeout time.Duration, ok func(answer) bool) (answer, int, error) {
	var got answer
	var unanswered int
	err := lab.Eventually(ctx, timeout, 20*time.Millisecond, func() error {
		var found bool
		if got, unanswered, found = p.first(since, ok); !found {
			return fmt.Errorf("no matching answer yet (%d requests unanswered)", unanswered)
		}
		return nil
	})
	return got, unanswered, err
}

func (p *prober) Stop() {
	close(p.stop)
	<-p.done
}

// failover kills the layer-2 owner (its agent with SIGKILL, its link down,
// as if the machine died) and measures how long the client goes without
// an answer.
func (d *demo) failover(ctx context.Context) error {
	old := d.l2Owner
	d.out.Step("Failing over layer 2: %s, the owner of %s, dies", old.name, d.l2VIP)
	probe := startProber(d.client, d.l2VIP, 300*time.Millisecond)
	defer probe.Stop()
	if _, _, err := probe.wait(ctx, time.Now(), 10*time.Second, func(a answer) bool { return a.node == old.name }); err != nil {
		return fmt.Errorf("the client does not reach %s through %s before the failover: %w", d.l2VIP, old.name, err)
	}
	d.out.Say("The client curls http://%s/ in a loop; %s answers.", d.l2VIP, old.name)

	failed := time.Now()
	if err := old.agent.Kill(); err != nil {
		return err
	}
	if err := old.host.SetLink(false); err != nil {
		return err
	}
	d.out.Say("%s: agent killed with SIGKILL and its eth0 taken down (%s).", old.name, failed.Format("15:04:05.000"))
	got, unanswered, err := probe.wait(ctx, failed, 30*time.Second, func(a answer) bool { return a.node != "" && a.node != old.name })
	if err != nil {
		return fmt.Errorf("no other node took over %s (agent logs in %s): %w", d.l2VIP, d.env.Dir, err)
	}
	d.out.Say("%s answered %s after the failure (%d requests unanswered in between).", got.node, seconds(got.at.Sub(failed)), unanswered)
	d.out.Say("%s", d.takeoverReason(d.nodeNamed(got.node), old))

	macs := arping(ctx, d.client, d.l2VIP)
	d.out.Say("client$ arping %s -> %s (%s)", d.l2VIP, strings.Join(macs, ", "), d.macNames(macs))
	name, err := curl(ctx, d.client, d.l2VIP, 2*time.Second)
	if err != nil {
		return fmt.Errorf("the client cannot reach %s after the failover: %w", d.l2VIP, err)
	}
	d.out.Say("client$ curl http://%s/ -> %q", d.l2VIP, name)
	as, err := d.waitAnnouncers(ctx, l2Service, 1, func(a announcement) bool { return a.node == got.node })
	if err != nil {
		return err
	}
	d.out.Say("event on %s from %s: %q", l2Service, got.node, as[len(as)-1].message)
	d.l2Owner = d.nodeNamed(got.node)

	// BGP: the router stops using the dead node once its session ends.
	hops, err := d.waitNextHops(ctx, d.bgpVIP, len(d.nodes)-1, func(a netip.Addr) bool { return a != old.addr4 })
	if err != nil {
		d.out.Say("The router still routes %s via %s (it drops the path when the BGP hold time expires).", d.bgpVIP, old.name)
		return nil
	}
	d.out.Say("BGP: the router dropped %s's path %s after the failure; it routes %s via %s.", old.name, seconds(time.Since(failed)), d.bgpVIP, d.hopNames(hops))
	return d.curlEventually(ctx, d.remote, "remote-client", d.bgpVIP)
}

// takeoverReason says why the new owner took over.
func (d *demo) takeoverReason(newOwner, old *node) string {
	var logs string
	if newOwner != nil && newOwner.agent != nil {
		logs = newOwner.agent.Logs()
	}
	return takeoverReason(logs, d.l2VIP.String(), old.name, d.cfg.NodeAgent.LeaseDuration)
}

// takeoverLog is what an agent logs when it takes a VIP over before the
// owner's Lease expired: the owner stopped sending heartbeats and did not
// answer a probe for the VIP.
const takeoverLog = "Taking a VIP over from a member that is silent and does not answer for it"

// takeoverReason explains a layer-2 takeover from the new owner's log: a
// takeover it logged was triggered by the heartbeats; otherwise the old
// owner's Lease expired.
func takeoverReason(logs, vip, old string, lease time.Duration) string {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, takeoverLog) && strings.Contains(line, fmt.Sprintf("vip=%q", vip)) &&
			strings.Contains(line, fmt.Sprintf("from=%q", old)) {
			return fmt.Sprintf("Why so fast: %s stopped sending heartbeats (UDP 7474) and did not answer an ARP probe for %s; its Lease (%s) had not even expired yet.", old, vip, lease)
		}
	}
	return fmt.Sprintf("Why: %s's Lease went %s without renewal, so the others counted it dead (the heartbeats usually notice sooner).", old, lease)
}

func (d *demo) macNames(macs []string) string {
	var names []string
	for _, m := range macs {
		names = append(names, d.nodeByMAC(m))
	}
	if len(names) == 0 {
		return "no answer"
	}
	return strings.Join(names, ", ")
}

// stayUp brings the failed node back and keeps the lab up until Ctrl-C.
func (d *demo) stayUp(ctx context.Context) error {
	d.out.Step("Keeping the lab up (--keep)")
	for _, n := range d.nodes {
		if !n.agent.Exited() {
			continue
		}
		if err := n.host.SetLink(true); err != nil {
			return err
		}
		if err := d.startAgent(n); err != nil {
			return err
		}
		d.out.Say("%s is back: link up, agent restarted.", n.name)
	}
	if err := recordProcesses(d.dir, d.env); err != nil {
		return err
	}
	ns := func(h *lab.Host) string { return h.Netns }
	d.out.Say("Try:")
	d.out.Say("  export KUBECONFIG=%s", d.cluster.AdminKubeconfig)
	d.out.Say("  kubectl get svc,nodes -o wide; kubectl get events")
	d.out.Say("  go run ./cmd/baremetal-config status --cloud-config %s   # who announces what", d.cfgPath)
	d.out.Say("  ip netns exec %s curl http://%s/", ns(d.client), d.l2VIP)
	d.out.Say("  ip netns exec %s arping -c 3 -i eth0 %s", ns(d.client), d.l2VIP)
	d.out.Say("  ip netns exec %s curl http://%s/", ns(d.remote), d.bgpVIP)
	d.out.Say("  vtysh --vty_socket %s -c 'show ip route' -c 'show bgp summary'", d.router.Dir)
	for _, n := range d.nodes {
		d.out.Say("  ip netns exec %s ip addr   # %s; agent log %s", ns(n.host), n.name, n.agent.LogPath)
	}
	d.out.Say("Logs: %s. Press Ctrl-C to stop and clean up.", d.env.Dir)
	<-ctx.Done()
	return nil
}
