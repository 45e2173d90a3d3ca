package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/packet/mrt"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// BGP benchmarks, run with
//
//	BAREMETAL_BENCH=1 go test ./test/e2e -run TestBGPBench -v -count=1
//
// They time how long a route takes to reach the router: from the moment the
// speaker is told (SIGHUP to bgpspeaker, which re-reads its advertisements
// and calls SetAdvertisements) until zebra installs (or removes) the route
// in the router namespace's kernel table, seen as a netlink event. That is
// later than FRR's RIB, so the numbers are an upper bound for the RIB.
// The same run loads Debian's gobgpd with the same 1,000 prefixes through
// its CLI (`gobgp mrt inject global`), as the floor for gobgp itself.

func benchEnabled(t *testing.T) {
	if os.Getenv("BAREMETAL_BENCH") != "1" {
		t.Skip("benchmark: set BAREMETAL_BENCH=1 to run")
	}
}

// routeWatch records when routes appear in and leave a namespace's kernel table.
type routeWatch struct {
	mu     sync.Mutex
	events map[string][]routeEvent // by destination prefix
	notify chan struct{}
}

type routeEvent struct {
	add bool
	at  time.Time
}

func watchRoutes(t *testing.T, h *lab.Host) *routeWatch {
	t.Helper()
	ns, err := netns.GetFromName(h.Netns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	ch := make(chan netlink.RouteUpdate, 4096)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	err = netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
		Namespace:         &ns,
		ReceiveBufferSize: 8 << 20,
		ErrorCallback: func(err error) {
			select {
			case <-done: // closing the subscription interrupts a read
			default:
				t.Logf("route watch: %v", err)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &routeWatch{events: map[string][]routeEvent{}, notify: make(chan struct{}, 1)}
	go func() {
		for u := range ch {
			if u.Dst == nil {
				continue
			}
			at := time.Now()
			p, ok := netip.AddrFromSlice(u.Dst.IP)
			if !ok {
				continue
			}
			ones, _ := u.Dst.Mask.Size()
			key := netip.PrefixFrom(p.Unmap(), ones).String()
			w.mu.Lock()
			w.events[key] = append(w.events[key], routeEvent{add: u.Type == unix.RTM_NEWROUTE, at: at})
			w.mu.Unlock()
			select {
			case w.notify <- struct{}{}:
			default:
			}
		}
	}()
	return w
}

// waitAll waits until the last event of every prefix is add (or delete)
// and returns the time of the latest of those events.
func (w *routeWatch) waitAll(prefixes []netip.Prefix, add bool, since time.Time, timeout time.Duration) (time.Time, error) {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		var last time.Time
		missing := 0
		for _, p := range prefixes {
			evs := w.events[p.String()]
			if len(evs) == 0 || evs[len(evs)-1].add != add || evs[len(evs)-1].at.Before(since) {
				missing++
				continue
			}
			if at := evs[len(evs)-1].at; at.After(last) {
				last = at
			}
		}
		w.mu.Unlock()
		if missing == 0 {
			return last, nil
		}
		select {
		case <-w.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return time.Time{}, fmt.Errorf("%d of %d routes not %s after %s", missing, len(prefixes), map[bool]string{true: "installed", false: "removed"}[add], timeout)
		}
	}
}

// procUsage is a process's resident memory and CPU time so far.
type procUsage struct {
	rssKB, hwmKB int
	cpu          time.Duration
}

func usage(t *testing.T, pid int) procUsage {
	t.Helper()
	var u procUsage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "VmRSS:" {
			u.rssKB, _ = strconv.Atoi(f[1])
		}
		if len(f) >= 2 && f[0] == "VmHWM:" {
			u.hwmKB, _ = strconv.Atoi(f[1])
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	u.cpu = time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ = 100
	return u
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func summary(ds []time.Duration) string {
	return fmt.Sprintf("n=%d p50=%s p99=%s max=%s", len(ds),
		percentile(ds, 0.5).Round(10*time.Microsecond), percentile(ds, 0.99).Round(10*time.Microsecond), percentile(ds, 1).Round(10*time.Microsecond))
}

func vip6s(block, n int) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	for i := range n {
		out = append(out, netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::%x/128", block, i+1)))
	}
	return out
}

func TestBGPBenchLatency(t *testing.T) {
	benchEnabled(t)
	l := newBGPLab(t)
	watch := watchRoutes(t, l.router.Host)
	n := l.addNode(t, "n1", 11, "")
	n.writeConfig(t, peerYAML{name: "tor", address: routerLAN4.String()})
	n.writeAds(t)
	n.start(t)
	n.waitEstablished(t, "tor")

	const rounds = 50
	var adds, dels []time.Duration
	for i := range rounds {
		vip := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i)}), 32)
		at := n.setAds(t, adJSON{Prefix: vip.String(), Peers: []string{"tor"}})
		got, err := watch.waitAll([]netip.Prefix{vip}, true, at, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, got.Sub(at))
		at = n.setAds(t)
		got, err = watch.waitAll([]netip.Prefix{vip}, false, at, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		dels = append(dels, got.Sub(at))
	}
	t.Logf("announce/bgp: advertise -> route installed at the router: %s", summary(adds))
	t.Logf("announce/bgp: withdraw -> route removed at the router:    %s", summary(dels))

	// The floor: gobgpd, one `gobgp global rib add/del` per round. Timed
	// from when the CLI returns (gobgpd has taken the path by then), so
	// the CLI's own start-up is left out.
	g := l.addNode(t, "gobgpd", 12, "")
	_, cli := startGoBGPd(t, g, routerLAN4, "ipv4-unicast")
	adds, dels = nil, nil
	for i := range rounds {
		vip := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(101 + i)}), 32)
		cli("global", "rib", "add", "-a", "ipv4", vip.String(), "nexthop", g.addr4.String())
		at := time.Now()
		got, err := watch.waitAll([]netip.Prefix{vip}, true, at.Add(-time.Second), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, max(got.Sub(at), 0))
		cli("global", "rib", "del", "-a", "ipv4", vip.String())
		at = time.Now()
		got, err = watch.waitAll([]netip.Prefix{vip}, false, at.Add(-time.Second), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		dels = append(dels, max(got.Sub(at), 0))
	}
	t.Logf("gobgpd: CLI add returned -> route installed at the router: %s", summary(adds))
	t.Logf("gobgpd: CLI del returned -> route removed at the router:   %s", summary(dels))
}

func TestBGPBench1000VIPs(t *testing.T) {
	benchEnabled(t)
	const count = 1000
	l := newBGPLab(t)
	watch := watchRoutes(t, l.router.Host)

	// announce/bgp through bgpspeaker, 1,000 IPv6 VIPs from its RIB (nothing bound).
	n := l.addNode(t, "n1", 11, "")
	n.writeConfig(t, peerYAML{name: "tor6", address: routerLAN6.String()})
	n.writeAds(t)
	n.start(t)
	n.waitEstablished(t, "tor6")
	pid := n.speaker.Cmd.Process.Pid
	ours := vip6s(1, count)
	ads := make([]adJSON, 0, count)
	for _, p := range ours {
		ads = append(ads, adJSON{Prefix: p.String(), Peers: []string{"tor6"}})
	}
	before := usage(t, pid)
	at := n.setAds(t, ads...)
	done, err := watch.waitAll(ours, true, at, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	up := done.Sub(at)
	time.Sleep(time.Second) // let the speaker settle before reading its usage
	after := usage(t, pid)
	at = n.setAds(t)
	done, err = watch.waitAll(ours, false, at, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("announce/bgp (advertise): %d VIPs installed at the router in %s, withdrawn in %s; speaker RSS %d KiB (peak %d KiB, %d KiB before), CPU %s for the load",
		count, up.Round(time.Millisecond), done.Sub(at).Round(time.Millisecond), after.rssKB, after.hwmKB, before.rssKB, (after.cpu - before.cpu))

	// The floor: gobgpd, fed the same number of paths by one CLI call.
	g := l.addNode(t, "gobgpd", 12, "")
	gp, cli := startGoBGPd(t, g, routerLAN6, "ipv6-unicast")
	theirs := vip6s(2, count)
	dump := filepath.Join(t.TempDir(), "paths.mrt")
	// gobgp 3.10's CLI exits without draining its path stream, losing the
	// tail of what it sends: sacrificial paths go last to absorb that.
	pad := make([]netip.Prefix, 0, 64)
	for i := range 64 {
		pad = append(pad, netip.MustParsePrefix(fmt.Sprintf("2001:db8:2::f:%x/128", i)))
	}
	writeMRT(t, dump, g.addr6, append(slices.Clone(theirs), pad...))
	gpid := gp.Cmd.Process.Pid
	before = usage(t, gpid)
	at = time.Now()
	// Should the tail loss reach the real paths, inject the rest again (the
	// stream keeps order, so what arrived is a prefix of the file) until
	// gobgpd holds them all.
	runs, dests := 0, 0
	for {
		runs++
		cli("mrt", "inject", "global", dump, "1000000", strconv.Itoa(dests))
		if _, err := fmt.Sscanf(strings.TrimSpace(strings.SplitAfter(cli("global", "rib", "-a", "ipv6", "summary"), "\n")[1]), "Destination: %d", &dests); err != nil {
			t.Fatalf("reading gobgpd's RIB summary: %v", err)
		}
		if dests >= count {
			break
		}
		if runs == 20 {
			t.Fatalf("gobgpd holds %d paths after %d injections of %d", dests, runs, count+len(pad))
		}
	}
	injected := time.Since(at)
	done, err = watch.waitAll(theirs, true, at, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	up = done.Sub(at)
	time.Sleep(time.Second)
	after = usage(t, gpid)
	at = time.Now()
	cli("global", "rib", "del", "all", "-a", "ipv6")
	done, err = watch.waitAll(theirs, false, at, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gobgpd (gobgp mrt inject x%d, %s for the CLI): %d routes installed at the router in %s, withdrawn in %s; gobgpd RSS %d KiB (peak %d KiB, %d KiB before), CPU %s for the load",
		runs, injected.Round(time.Millisecond), count, up.Round(time.Millisecond), done.Sub(at).Round(time.Millisecond), after.rssKB, after.hwmKB, before.rssKB, (after.cpu - before.cpu))
}

// startGoBGPd runs Debian's gobgpd on node g, peering with the router at
// routerAddr for one address family, and returns it with a function that
// runs the gobgp CLI against it (through its unix socket).
func startGoBGPd(t *testing.T, g *node, routerAddr netip.Addr, family string) (*lab.Process, func(args ...string) string) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "gobgpd.toml")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`[global.config]
  as = %d
  router-id = "%s"
  port = -1
[[neighbors]]
  [neighbors.config]
    neighbor-address = "%s"
    peer-as = %d
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "%s"
`, labASN, g.addr4, routerAddr, labASN, family)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "gobgpd.sock")
	p, err := g.host.Start("gobgpd", "gobgpd", "-f", conf, "--api-hosts", "unix://"+sock, "--log-level", "warn")
	if err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("gobgp", append([]string{"--target", "unix://" + sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("gobgp %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	err = lab.Eventually(context.Background(), 30*time.Second, 200*time.Millisecond, func() error {
		out, err := exec.Command("gobgp", "--target", "unix://"+sock, "neighbor").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Establ") {
			return fmt.Errorf("gobgpd session not established: %v %s", err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, cli
}

// writeMRT writes a TABLE_DUMPv2 file with one path per prefix via nextHop.
// gobgp injects each path as learned from the dump's peer, so that peer has
// another AS than ours: paths learned over iBGP would not be passed on to
// the (iBGP) router. The RIB records carry MP_REACH_NLRI in full (AFI,
// SAFI, next hop), which is what Debian's gobgp 3.10 parses, rather than
// the abbreviated form of RFC 6396 that newer gobgp writes.
func writeMRT(t *testing.T, path string, nextHop netip.Addr, prefixes []netip.Prefix) {
	t.Helper()
	now := uint32(time.Now().Unix())
	var buf bytes.Buffer
	record := func(sub mrt.MRTSubTypeTableDumpv2, body []byte) {
		var h [12]byte
		binary.BigEndian.PutUint32(h[0:], now)
		binary.BigEndian.PutUint16(h[4:], uint16(mrt.TABLE_DUMPv2))
		binary.BigEndian.PutUint16(h[6:], uint16(sub))
		binary.BigEndian.PutUint32(h[8:], uint32(len(body)))
		buf.Write(h[:])
		buf.Write(body)
	}
	pit, err := mrt.NewPeerIndexTable("192.0.2.254", "", []*mrt.Peer{mrt.NewPeer("192.0.2.254", nextHop.String(), 64999, true)}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	record(mrt.PEER_INDEX_TABLE, pit)
	for i, p := range prefixes {
		nlri := bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())
		var attrs []byte
		for _, a := range []bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
			bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{64999})}),
			bgp.NewPathAttributeMpReachNLRI(nextHop.String(), []bgp.AddrPrefixInterface{nlri}),
		} {
			b, err := a.Serialize()
			if err != nil {
				t.Fatal(err)
			}
			attrs = append(attrs, b...)
		}
		pb, err := nlri.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		body := binary.BigEndian.AppendUint32(nil, uint32(i))
		body = append(body, pb...)
		body = binary.BigEndian.AppendUint16(body, 1) // one entry
		body = binary.BigEndian.AppendUint16(body, 0) // peer index
		body = binary.BigEndian.AppendUint32(body, now)
		body = binary.BigEndian.AppendUint16(body, uint16(len(attrs)))
		body = append(body, attrs...)
		record(mrt.RIB_IPV6_UNICAST, body)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBGPBenchAgent times the real path: a Service created (ETP=Local,
// endpoint on n1) until its route is installed at the router, and the
// endpoint removed until the route is gone, through the CCM and agents.
func TestBGPBenchAgent(t *testing.T) {
	benchEnabled(t)
	l := newBGPAgentLab(t)
	watch := watchRoutes(t, l.router.Host)
	n1 := l.nodes[0]
	const rounds = 13 // the pool is a /28; round 0 warms up (sessions, caches)
	var adds, dels []time.Duration
	for i := range rounds {
		name := fmt.Sprintf("bench-%d", i)
		l.setEndpoints(t, name, n1)
		at := time.Now()
		vip := l.createService(t, name, true)
		got, err := watch.waitAll([]netip.Prefix{vip}, true, at, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		add := got.Sub(at)
		at = time.Now()
		l.setEndpoints(t, name)
		got, err = watch.waitAll([]netip.Prefix{vip}, false, at, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			adds, dels = append(adds, add), append(dels, got.Sub(at))
		}
	}
	t.Logf("agent: Service created -> route installed at the router:  %s", summary(adds))
	t.Logf("agent: endpoint removed -> route removed at the router:   %s", summary(dels))
}
