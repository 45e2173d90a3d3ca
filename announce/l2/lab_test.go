//go:build lab

// Lab tests of the responder on real sockets: two network namespaces joined
// by a veth, the responder on one side, arping/ndisc6 on the other. They need
// root (run with -tags lab; `make test` does).

package l2

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netns"
)

const (
	labVIP4 = "192.0.2.240"
	labVIP6 = "2001:db8::240"
)

// labPair is a veth between namespace "node" (the responder's side, link
// "n0") and namespace "client" (link "c0").
type labPair struct {
	node, client string
	nodeMAC      net.HardwareAddr
}

func labRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLabPair(t testing.TB) *labPair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the layer-2 lab needs root (network namespaces, raw sockets)")
	}
	for _, tool := range []string{"ip", "arping", "ndisc6"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps)", tool)
		}
	}
	p := &labPair{node: fmt.Sprintf("bml2%d-node", os.Getpid()), client: fmt.Sprintf("bml2%d-client", os.Getpid())}
	for _, ns := range []string{p.node, p.client} {
		labRun(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
		labRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
		for _, k := range []string{"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"} {
			labRun(t, "ip", "netns", "exec", ns, "sysctl", "-qw", k)
		}
	}
	labRun(t, "ip", "link", "add", "n0", "netns", p.node, "address", "02:00:00:00:aa:01", "type", "veth",
		"peer", "name", "c0", "netns", p.client, "address", "02:00:00:00:cc:01")
	labRun(t, "ip", "-n", p.node, "addr", "add", "192.0.2.1/24", "dev", "n0")
	labRun(t, "ip", "-n", p.node, "addr", "add", "2001:db8::1/64", "dev", "n0", "nodad")
	labRun(t, "ip", "-n", p.client, "addr", "add", "192.0.2.2/24", "dev", "c0")
	labRun(t, "ip", "-n", p.client, "addr", "add", "2001:db8::2/64", "dev", "c0", "nodad")
	labRun(t, "ip", "-n", p.node, "link", "set", "n0", "up")
	labRun(t, "ip", "-n", p.client, "link", "set", "c0", "up")
	p.nodeMAC = net.HardwareAddr{2, 0, 0, 0, 0xaa, 1}
	// Until the kernel's link watcher marks the veth up, its queue drops
	// what is sent: wait for that (kernel state, polled).
	for _, l := range [][2]string{{p.node, "n0"}, {p.client, "c0"}} {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(labRun(t, "ip", "-n", l[0], "link", "show", l[1]), "state UP") {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not come up", l[1])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p
}

// inNS runs functions on one OS thread that lives in a namespace, so that
// the sockets they open belong to it. The thread is never handed back to
// the scheduler (it ends with the goroutine).
type inNS struct{ work chan func() }

func enter(t testing.TB, ns string) *inNS {
	t.Helper()
	w := &inNS{work: make(chan func())}
	ready := make(chan error)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err == nil {
			err = netns.Set(h)
			h.Close()
		}
		ready <- err
		if err != nil {
			return
		}
		for f := range w.work {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatalf("entering namespace %s: %v", ns, err)
	}
	t.Cleanup(func() { close(w.work) })
	return w
}

func (w *inNS) do(f func()) {
	done := make(chan struct{})
	w.work <- func() { f(); close(done) }
	<-done
}

var arpingFrom = regexp.MustCompile(`bytes from ([0-9a-f:]{17}) \(`)

// arping asks once from the client and returns the MACs that answered.
func (p *labPair) arping(t testing.TB, ip string) []string {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "exec", p.client, "arping", "-c", "1", "-w", "1", "-i", "c0", ip).CombinedOutput()
	var macs []string
	for _, m := range arpingFrom.FindAllStringSubmatch(string(out), -1) {
		macs = append(macs, m[1])
	}
	return macs
}

var ndiscFrom = regexp.MustCompile(`Target link-layer address: ([0-9A-Fa-f:]{17})`)

// ndisc asks once from the client (a multicast solicitation) and returns
// the MACs that answered.
func (p *labPair) ndisc(t testing.TB, ip string) []string {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "exec", p.client, "ndisc6", "-1", "-r", "1", "-w", "1000", ip, "c0").CombinedOutput()
	var macs []string
	for _, m := range ndiscFrom.FindAllStringSubmatch(string(out), -1) {
		macs = append(macs, strings.ToLower(m[1]))
	}
	return macs
}

// labAnnouncer starts an Announcer inside the node namespace.
func labAnnouncer(t testing.TB, p *labPair, node *inNS, changes chan Change) *Announcer {
	t.Helper()
	var a *Announcer
	node.do(func() {
		a = New(Options{
			Logger:       testr.New(t.(*testing.T)),
			GARPInterval: time.Minute,
			OnChange: func(c Change) {
				select {
				case changes <- c:
				default:
				}
			},
		})
	})
	t.Cleanup(func() { a.Close() })
	return a
}

func waitChange(t testing.TB, changes chan Change, kind ChangeKind, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for n > 0 {
		select {
		case c := <-changes:
			if c.Kind == kind {
				n--
			}
		case <-timeout:
			t.Fatalf("still waiting for %d %s changes", n, kind)
		}
	}
}

// garpWatcher records, in the client namespace, the gratuitous ARPs and
// unsolicited advertisements for ip from mac.
type garpWatcher struct {
	mu   sync.Mutex
	seen int
	want int
	done chan struct{} // closed when want were seen
	c    *packet.Conn
}

func watchAnnouncements(t *testing.T, client *inNS, ip netip.Addr, from net.HardwareAddr, want int) *garpWatcher {
	t.Helper()
	w := &garpWatcher{want: want, done: make(chan struct{})}
	var err error
	client.do(func() {
		var ifi *net.Interface
		ifi, err = net.InterfaceByName("c0")
		if err == nil {
			w.c, err = packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
		}
	})
	if err != nil {
		t.Fatalf("listening for ARP in the client namespace: %v", err)
	}
	t.Cleanup(func() { w.c.Close() })
	go func() {
		buf := make([]byte, 1600)
		for {
			n, _, err := w.c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, p, err := parseARPFrame(buf[:n])
			if err != nil {
				continue
			}
			if claimed, mac, ok := announcedBy(p); ok && claimed == ip && bytes.Equal(mac, from) && p.SenderIP.Equal(p.TargetIP) {
				w.mu.Lock()
				if w.seen++; w.seen == w.want {
					close(w.done)
				}
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *garpWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

func TestLabResponder(t *testing.T) {
	p := newLabPair(t)
	node, client := enter(t, p.node), enter(t, p.client)
	mac := p.nodeMAC.String()

	// Nothing answers before the responder does: the kernel holds no VIP.
	if got := p.arping(t, labVIP4); len(got) != 0 {
		t.Fatalf("before Set, %s answered by %v", labVIP4, got)
	}
	if got := p.ndisc(t, labVIP6); len(got) != 0 {
		t.Fatalf("before Set, %s answered by %v", labVIP6, got)
	}

	garps := watchAnnouncements(t, client, netip.MustParseAddr(labVIP4), p.nodeMAC, 2*DefaultBurstCount)
	changes := make(chan Change, 16)
	a := labAnnouncer(t, p, node, changes)
	var err error
	node.do(func() {
		err = a.Set(t.Context(), []Announcement{
			{Addr: netip.MustParseAddr(labVIP4), Interface: "n0"},
			{Addr: netip.MustParseAddr(labVIP6), Interface: "n0"},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitChange(t, changes, Announced, 2)

	// Gratuitous ARP on takeover: the burst reaches the client.
	select {
	case <-garps.done:
	case <-time.After(5 * time.Second):
		t.Errorf("client saw %d gratuitous ARP packets for %s, want %d (a request and a reply per announcement)", garps.count(), labVIP4, 2*DefaultBurstCount)
	}

	if got := p.arping(t, labVIP4); len(got) != 1 || got[0] != mac {
		t.Errorf("arping %s: answered by %v, want only %s", labVIP4, got, mac)
	}
	if got := p.ndisc(t, labVIP6); len(got) != 1 || got[0] != mac {
		t.Errorf("ndisc6 %s: answered by %v, want only %s", labVIP6, got, mac)
	}
	// The client's kernel accepted the answers (checksum, hop limit):
	// its neighbour table resolves both VIPs to the responder.
	_ = exec.Command("ip", "netns", "exec", p.client, "ping", "-c", "1", "-W", "1", labVIP4).Run() // no reply: nothing listens
	if out := labRun(t, "ip", "-n", p.client, "neigh", "show", labVIP4); !strings.Contains(out, mac) {
		t.Errorf("client neighbour entry for %s: %q, want lladdr %s", labVIP4, out, mac)
	}
	_ = exec.Command("ip", "netns", "exec", p.client, "ping", "-6", "-c", "1", "-W", "1", labVIP6).Run()
	if out := labRun(t, "ip", "-n", p.client, "-6", "neigh", "show", labVIP6); !strings.Contains(out, mac) {
		t.Errorf("client neighbour entry for %s: %q, want lladdr %s", labVIP6, out, mac)
	}

	// Neighbour unreachability detection asks the cached MAC directly
	// (unicast ARP request, unicast solicitation to the VIP): answered too.
	for _, vip := range []string{labVIP4, labVIP6} {
		labRun(t, "ip", "-n", p.client, "neigh", "replace", vip, "lladdr", mac, "dev", "c0", "nud", "probe")
		deadline := time.Now().Add(5 * time.Second)
		for {
			out := labRun(t, "ip", "-n", p.client, "neigh", "show", vip)
			if strings.Contains(out, "REACHABLE") {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("unicast probe of %s not answered: %q", vip, out)
				break
			}
			time.Sleep(20 * time.Millisecond) // kernel state, polled
		}
	}

	// No address was bound for it.
	if out := labRun(t, "ip", "-n", p.node, "addr", "show"); strings.Contains(out, labVIP4) || strings.Contains(out, labVIP6) {
		t.Errorf("a VIP is bound in the node namespace:\n%s", out)
	}

	// Stopping the responder stops the answers at once.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := p.arping(t, labVIP4); len(got) != 0 {
		t.Errorf("after Close, %s answered by %v", labVIP4, got)
	}
	if got := p.ndisc(t, labVIP6); len(got) != 0 {
		t.Errorf("after Close, %s answered by %v", labVIP6, got)
	}
	// And the unicast probe check above can fail: now it does.
	labRun(t, "ip", "-n", p.client, "neigh", "replace", labVIP4, "lladdr", mac, "dev", "c0", "nud", "probe")
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := labRun(t, "ip", "-n", p.client, "neigh", "show", labVIP4)
		if strings.Contains(out, "REACHABLE") {
			t.Errorf("after Close, a unicast probe of %s was answered: %q", labVIP4, out)
		}
		if strings.Contains(out, "FAILED") || out == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // kernel state, polled
	}
}

func TestLabProbe(t *testing.T) {
	p := newLabPair(t)
	node := enter(t, p.node)
	changes := make(chan Change, 16)
	a := labAnnouncer(t, p, node, changes)
	// The client's own address answers; a free one does not.
	for _, tt := range []struct {
		ip   string
		want string
	}{
		{"192.0.2.2", "02:00:00:00:cc:01"},
		{"2001:db8::2", "02:00:00:00:cc:01"},
		{"192.0.2.99", ""},
		{"2001:db8::99", ""},
	} {
		var (
			got net.HardwareAddr
			err error
		)
		node.do(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			got, err = a.Probe(ctx, "n0", netip.MustParseAddr(tt.ip))
		})
		if err != nil || got.String() != tt.want {
			t.Errorf("Probe(%s) = %q, %v; want %q", tt.ip, got, err, tt.want)
		}
	}
	// A Set of the client's address is a conflict, not an announcement.
	var err error
	node.do(func() {
		err = a.Set(t.Context(), []Announcement{{Addr: netip.MustParseAddr("192.0.2.2"), Interface: "n0"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitChange(t, changes, Conflict, 1)
}

// labSegment is a bridge in the client namespace with two node namespaces
// attached: node A (link a0, MAC 02:00:00:00:aa:01) and node B (link b0,
// MAC 02:00:00:00:bb:01). The client asks from br0.
func newLabSegment(t *testing.T) (client string, nodes [2]string, macs [2]net.HardwareAddr) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the layer-2 lab needs root (network namespaces, raw sockets)")
	}
	if _, err := exec.LookPath("arping"); err != nil {
		t.Skip("arping not installed (make deps)")
	}
	client = fmt.Sprintf("bml2%d-seg", os.Getpid())
	nodes = [2]string{fmt.Sprintf("bml2%d-a", os.Getpid()), fmt.Sprintf("bml2%d-b", os.Getpid())}
	macs = [2]net.HardwareAddr{{2, 0, 0, 0, 0xaa, 1}, {2, 0, 0, 0, 0xbb, 1}}
	for _, ns := range []string{client, nodes[0], nodes[1]} {
		labRun(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
		labRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	labRun(t, "ip", "-n", client, "link", "add", "br0", "type", "bridge")
	labRun(t, "ip", "-n", client, "addr", "add", "192.0.2.2/24", "dev", "br0")
	labRun(t, "ip", "-n", client, "link", "set", "br0", "up")
	for i, name := range []string{"a0", "b0"} {
		port := "p" + name
		labRun(t, "ip", "link", "add", name, "netns", nodes[i], "address", macs[i].String(), "type", "veth", "peer", "name", port, "netns", client)
		labRun(t, "ip", "-n", client, "link", "set", port, "master", "br0", "up")
		labRun(t, "ip", "-n", nodes[i], "addr", "add", fmt.Sprintf("192.0.2.%d/24", 11+i), "dev", name)
		labRun(t, "ip", "-n", nodes[i], "link", "set", name, "up")
	}
	for _, l := range [][2]string{{nodes[0], "a0"}, {nodes[1], "b0"}, {client, "br0"}} {
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(labRun(t, "ip", "-n", l[0], "link", "show", l[1]), "state UP") {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not come up", l[1])
			}
			time.Sleep(20 * time.Millisecond) // kernel state, polled
		}
	}
	return client, nodes, macs
}

// TestLabHandover moves a VIP between two responders the way the agent
// does: the new owner's probe is answered by the old owner (an agent, so a
// handover, not a conflict), the new owner announces, and the old owner,
// handing over, stops when it hears that. A client asking all along gets
// an answer to every request, from exactly one MAC at the end.
func TestLabHandover(t *testing.T) {
	client, nodes, macs := newLabSegment(t)
	isAgent := func(m net.HardwareAddr) bool { return bytes.Equal(m, macs[0]) || bytes.Equal(m, macs[1]) }
	vip := netip.MustParseAddr(labVIP4)
	var (
		ann     [2]*Announcer
		changes [2]chan Change
		ns      [2]*inNS
	)
	for i := range nodes {
		ns[i] = enter(t, nodes[i])
		changes[i] = make(chan Change, 16)
		ch := changes[i]
		ns[i].do(func() {
			ann[i] = New(Options{Logger: testr.New(t), GARPInterval: time.Minute, IsAgentMAC: isAgent,
				OnChange: func(c Change) { ch <- c }})
		})
		t.Cleanup(func() { ann[i].Close() })
	}
	set := func(i int, want ...Announcement) {
		t.Helper()
		var err error
		ns[i].do(func() { err = ann[i].Set(t.Context(), want) })
		if err != nil {
			t.Fatal(err)
		}
	}
	set(0, Announcement{Addr: vip, Interface: "a0"})
	waitChange(t, changes[0], Announced, 1)

	// The client asks every 10 ms throughout the move.
	cmd := exec.Command("ip", "netns", "exec", client, "arping", "-c", "300", "-W", "0.01", "-i", "br0", labVIP4)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	start := time.Now()
	set(1, Announcement{Addr: vip, Interface: "b0"}) // B becomes the owner...
	waitChange(t, changes[1], Announced, 1)
	took := time.Since(start)
	set(0) // ...and A learns it lost the address
	waitChange(t, changes[0], Withdrawn, 1)
	t.Logf("B answered %s after its Set (probe answered by A: no 200 ms wait); A withdrew %s after B's Set", took, time.Since(start))
	if took >= DefaultProbeWait {
		t.Errorf("B took %s to take over: it waited for its probe although A, an agent, answered", took)
	}

	_ = cmd.Wait()
	replies := arpingFrom.FindAllStringSubmatch(out.String(), -1)
	if len(replies) < 300 {
		t.Errorf("%d of 300 requests answered during the move:\n%s", len(replies), out.String())
	}
	last := map[string]bool{}
	for _, m := range replies[max(0, len(replies)-20):] {
		last[m[1]] = true
	}
	if len(last) != 1 || !last[macs[1].String()] {
		t.Errorf("after the move, answered by %v; want only B (%s)", last, macs[1])
	}
}
