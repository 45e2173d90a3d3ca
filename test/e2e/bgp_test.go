package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/announce/bgp"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// The BGP lab: a router running FRR (AS 64512, iBGP with the nodes so that
// local-pref is carried) on the nodes' segment "lan", and a client behind
// it on segment "wan". Nodes run test/e2e/bgpspeaker, one announce/bgp
// Speaker each, driven through its files and signals.
var (
	routerLAN4 = netip.MustParseAddr("198.51.100.1")
	routerLAN6 = netip.MustParseAddr("2001:db8:100::1")
	routerWAN4 = netip.MustParseAddr("203.0.113.1")
	routerWAN6 = netip.MustParseAddr("2001:db8:200::1")
	clientWAN4 = netip.MustParsePrefix("203.0.113.10/24")
	clientWAN6 = netip.MustParsePrefix("2001:db8:200::10/64")
	lan4       = netip.MustParsePrefix("198.51.100.0/24")
	lan6       = netip.MustParsePrefix("2001:db8:100::/64")
	vips4      = netip.MustParsePrefix("192.0.2.0/24")
	vips6      = netip.MustParsePrefix("2001:db8:1::/64")
	wan4       = netip.MustParsePrefix("203.0.113.0/24")
	wan6       = netip.MustParsePrefix("2001:db8:200::/64")
)

const (
	labASN      = 64512
	md5Password = "s3cret-md5"
)

// frrConf peers with every node on lan by dynamic neighbors: "nodes" over
// IPv4 and "nodes6" over IPv6 (both families active on the IPv6 group, so
// per-peer targeting can be seen), and with two explicit MD5 neighbors.
func frrConf(md5Nodes ...netip.Addr) string {
	var md5 strings.Builder
	for _, a := range md5Nodes {
		fmt.Fprintf(&md5, " neighbor %s remote-as internal\n neighbor %s password %s\n", a, a, md5Password)
	}
	return fmt.Sprintf(`frr defaults datacenter
hostname router
log stdout informational
debug bgp updates in
debug bgp neighbor-events
!
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp graceful-restart
 neighbor nodes peer-group
 neighbor nodes remote-as internal
 neighbor nodes6 peer-group
 neighbor nodes6 remote-as internal
 bgp listen range %s peer-group nodes
 bgp listen range %s peer-group nodes6
%s !
 address-family ipv4 unicast
  maximum-paths ibgp 8
  neighbor nodes activate
  neighbor nodes6 activate
%s exit-address-family
 address-family ipv6 unicast
  maximum-paths ibgp 8
  neighbor nodes6 activate
 exit-address-family
!
`, labASN, routerLAN4, lan4, lan6, md5.String(), activate(md5Nodes))
}

func activate(addrs []netip.Addr) string {
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "  neighbor %s activate\n", a)
	}
	return b.String()
}

// bgpLab is the shared topology of the BGP tests.
type bgpLab struct {
	dir    string
	lan    *lab.Segment
	router *lab.Router
	client *lab.Host
}

func newBGPLab(t *testing.T, md5Nodes ...netip.Addr) *bgpLab {
	t.Helper()
	return newBGPLabConf(t, frrConf(md5Nodes...))
}

// newBGPLabConf is newBGPLab with the router's configuration given.
func newBGPLabConf(t *testing.T, conf string) *bgpLab {
	t.Helper()
	l := &bgpLab{dir: t.TempDir()}
	l.lan = lab.NewSegment(t, "lan")
	wan := lab.NewSegment(t, "wan")
	r := l.lan.AddHost("router", netip.PrefixFrom(routerLAN4, 24), netip.PrefixFrom(routerLAN6, 64))
	if err := r.AddInterface(wan, "eth1", netip.PrefixFrom(routerWAN4, 24), netip.PrefixFrom(routerWAN6, 64)); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv6.conf.all.forwarding", "1"}} {
		if err := r.Sysctl(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	l.client = wan.AddHost("client", clientWAN4, clientWAN6)
	for _, route := range []struct {
		dst netip.Prefix
		via netip.Addr
	}{{vips4, routerWAN4}, {lan4, routerWAN4}, {vips6, routerWAN6}, {lan6, routerWAN6}} {
		if err := l.client.AddRoute(route.dst, route.via); err != nil {
			t.Fatal(err)
		}
	}
	l.router = lab.StartFRR(t, r, conf)
	return l
}

// node is one node namespace running lab-echo and a bgpspeaker.
type node struct {
	l          *bgpLab
	name       string
	host       *lab.Host
	addr4      netip.Addr
	addr6      netip.Addr
	labels     string
	config     string       // cloud-config path
	kubeconfig string       // the agent's, in the agent lab
	ads        string       // advertisements path
	status     string       // peers' state path
	speaker    *lab.Process // bgpspeaker, or baremetal-node-agent in the agent lab
	detach     bool         // bgpspeaker --detach
}

func (l *bgpLab) addNode(t *testing.T, name string, host byte, labels string) *node {
	t.Helper()
	n := &node{
		l: l, name: name, labels: labels,
		addr4:  netip.AddrFrom4([4]byte{198, 51, 100, host}),
		addr6:  netip.MustParseAddr(fmt.Sprintf("2001:db8:100::%d", host)),
		config: filepath.Join(l.dir, name+"-cloud-config.yaml"),
		ads:    filepath.Join(l.dir, name+"-ads.json"),
		status: filepath.Join(l.dir, name+"-status.json"),
	}
	n.host = l.lan.AddHost(name, netip.PrefixFrom(n.addr4, 24), netip.PrefixFrom(n.addr6, 64))
	if err := n.host.AddRoute(wan4, routerLAN4); err != nil {
		t.Fatal(err)
	}
	if err := n.host.AddRoute(wan6, routerLAN6); err != nil {
		t.Fatal(err)
	}
	if _, err := n.host.Start("echo", bins.Path("lab-echo"), "--name", name, "--listen", ":80"); err != nil {
		t.Fatal(err)
	}
	// The speaker binds nothing: the node takes port 80 of the tests'
	// VIPs as kube-proxy would.
	var ports []lab.ServicePort
	for _, vip := range speakerLabVIPs {
		ports = append(ports, lab.ServicePort{IP: vip, Protocol: "TCP", Port: 80})
	}
	if err := n.host.TakePorts(ports...); err != nil {
		t.Fatal(err)
	}
	return n
}

// speakerLabVIPs are the addresses the bgpspeaker tests advertise.
var speakerLabVIPs = []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8:1::10")}

// peerYAML is one bgp.peers entry of the cloud-config.
type peerYAML struct {
	name, address, extra string
}

func (n *node) writeConfig(t *testing.T, peers ...peerYAML) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "bgp:\n  asn: %d\n  peers:\n", labASN)
	for _, p := range peers {
		fmt.Fprintf(&b, "    - name: %s\n      address: %s\n      asn: %d\n      holdTime: 9s\n      keepaliveTime: 3s\n", p.name, p.address, labASN)
		if p.extra != "" {
			for _, line := range strings.Split(strings.TrimSpace(p.extra), "\n") {
				fmt.Fprintf(&b, "      %s\n", line)
			}
		}
	}
	if err := os.WriteFile(n.config, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// adJSON is one entry of bgpspeaker's advertisements file.
type adJSON struct {
	Prefix      string   `json:"prefix"`
	Peers       []string `json:"peers"`
	Communities []string `json:"communities,omitempty"`
	LocalPref   *uint32  `json:"localPref,omitempty"`
}

func (n *node) writeAds(t *testing.T, ads ...adJSON) {
	t.Helper()
	if ads == nil {
		ads = []adJSON{}
	}
	b, err := json.Marshal(ads)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.ads, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs the speaker; setAds later changes what it advertises.
func (n *node) start(t *testing.T) {
	t.Helper()
	p, err := n.host.Start("bgpspeaker", speakerBinary(t), "-v=2",
		"--cloud-config", n.config, "--node-name", n.name, "--node-labels", n.labels,
		"--next-hop4", n.addr4.String(), "--next-hop6", n.addr6.String(),
		"--ads", n.ads, "--status", n.status, fmt.Sprintf("--detach=%t", n.detach))
	if err != nil {
		t.Fatal(err)
	}
	n.speaker = p
}

// setAds makes the running speaker advertise ads and returns when it was told.
func (n *node) setAds(t *testing.T, ads ...adJSON) time.Time {
	t.Helper()
	n.writeAds(t, ads...)
	at := time.Now()
	if err := n.speaker.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	return at
}

func (n *node) peers() ([]bgp.PeerStatus, error) {
	b, err := os.ReadFile(n.status)
	if err != nil {
		return nil, err
	}
	var ps []bgp.PeerStatus
	return ps, json.Unmarshal(b, &ps)
}

func (n *node) peer(name string) (bgp.PeerStatus, error) {
	ps, err := n.peers()
	if err != nil {
		return bgp.PeerStatus{}, err
	}
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
	}
	return bgp.PeerStatus{}, fmt.Errorf("node %s has no peer %q in %+v", n.name, name, ps)
}

func (n *node) waitEstablished(t *testing.T, peer string) {
	t.Helper()
	err := lab.Eventually(context.Background(), 30*time.Second, 100*time.Millisecond, func() error {
		p, err := n.peer(peer)
		if err != nil {
			return err
		}
		if !p.Established() {
			return fmt.Errorf("node %s: session with %s is %s (%s)", n.name, peer, p.State, p.LastError)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var (
	speakerOnce sync.Once
	speakerPath string
	speakerErr  error
)

// speakerBinary builds test/e2e/bgpspeaker once per test binary.
func speakerBinary(t *testing.T) string {
	t.Helper()
	speakerOnce.Do(func() {
		root, err := lab.RepoRoot()
		if err != nil {
			speakerErr = err
			return
		}
		speakerPath = filepath.Join(bins.Dir, "bgpspeaker")
		cmd := exec.Command("go", "build", "-o", speakerPath, "./test/e2e/bgpspeaker")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			speakerErr = fmt.Errorf("building bgpspeaker: %w\n%s", err, out)
		}
	})
	if speakerErr != nil {
		t.Fatal(speakerErr)
	}
	return speakerPath
}

// FRR's JSON, only the fields the tests read.
type frrBGPPrefix struct {
	Paths []frrBGPPath `json:"paths"`
}

type frrBGPPath struct {
	Valid          bool `json:"valid"`
	Stale          bool `json:"stale"`
	LocPrf         *uint32
	Community      *struct{ String string } `json:"community"`
	LargeCommunity *struct{ String string } `json:"largeCommunity"`
	Nexthops       []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
	Peer struct {
		PeerID string `json:"peerId"`
	} `json:"peer"`
}

// bgpPaths returns FRR's BGP paths for prefix (none when it has no route).
func (l *bgpLab) bgpPaths(prefix netip.Prefix) ([]frrBGPPath, error) {
	afi := "ipv4"
	if prefix.Addr().Is6() {
		afi = "ipv6"
	}
	var out frrBGPPrefix
	if err := l.router.VtyshJSON(context.Background(), fmt.Sprintf("show bgp %s unicast %s json", afi, prefix), &out); err != nil {
		return nil, err
	}
	return out.Paths, nil
}

// ribNextHops returns the active next hops of FRR's selected BGP route to
// prefix, as installed by zebra.
func (l *bgpLab) ribNextHops(prefix netip.Prefix) ([]string, error) {
	cmd := "show ip route %s json"
	if prefix.Addr().Is6() {
		cmd = "show ipv6 route %s json"
	}
	var out map[string][]lab.FRRRoute
	if err := l.router.VtyshJSON(context.Background(), fmt.Sprintf(cmd, prefix), &out); err != nil {
		return nil, err
	}
	var hops []string
	for _, r := range out[prefix.String()] {
		if r.Protocol != "bgp" || !r.Selected {
			continue
		}
		for _, h := range r.Nexthops {
			if h.Active {
				hops = append(hops, h.IP)
			}
		}
	}
	slices.Sort(hops)
	return hops, nil
}

// waitNextHops waits until FRR's RIB routes prefix over exactly want.
func (l *bgpLab) waitNextHops(prefix netip.Prefix, timeout time.Duration, want ...netip.Addr) error {
	w := make([]string, 0, len(want))
	for _, a := range want {
		w = append(w, a.String())
	}
	slices.Sort(w)
	return lab.Eventually(context.Background(), timeout, 20*time.Millisecond, func() error {
		got, err := l.ribNextHops(prefix)
		if err != nil {
			return err
		}
		if !slices.Equal(got, w) {
			return fmt.Errorf("FRR routes %s via %v, want %v", prefix, got, w)
		}
		return nil
	})
}

func (l *bgpLab) curl(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.client.Exec(ctx, "curl", "-sS", "--max-time", "3", "-g", url)
	return string(out), err
}

func u32(v uint32) *uint32 { return &v }

// TestBGPSpeakerAdvertisesToFRR covers advertising, ECMP, attributes,
// reachability, withdrawal, per-peer targeting, IPv6, peer selection by
// node labels and shutdown against one FRR router.
func TestBGPSpeakerAdvertisesToFRR(t *testing.T) {
	l := newBGPLab(t)
	vip := netip.MustParsePrefix("192.0.2.10/32")
	vip6 := netip.MustParsePrefix("2001:db8:1::10/128")
	var nodes []*node
	for i, labels := range []string{"rack=r1,v6=yes", "rack=r2", "rack=r2"} {
		n := l.addNode(t, fmt.Sprintf("n%d", i+1), byte(11+i), labels)
		n.writeConfig(t,
			peerYAML{name: "tor", address: routerLAN4.String()},
			peerYAML{name: "tor6", address: routerLAN6.String(), extra: "nodeSelector:\n  matchLabels: {v6: \"yes\"}"},
		)
		n.writeAds(t, adJSON{Prefix: vip.String(), Peers: []string{"tor"}, Communities: []string{"65000:100", "65000:1:2"}, LocalPref: u32(250)})
		n.start(t)
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.waitEstablished(t, "tor")
	}

	t.Run("ECMP route with communities and local-pref", func(t *testing.T) {
		if err := l.waitNextHops(vip, 20*time.Second, nodes[0].addr4, nodes[1].addr4, nodes[2].addr4); err != nil {
			t.Fatal(err)
		}
		paths, err := l.bgpPaths(vip)
		if err != nil {
			t.Fatal(err)
		}
		if len(paths) != 3 {
			t.Fatalf("FRR has %d paths for %s, want 3: %+v", len(paths), vip, paths)
		}
		for _, p := range paths {
			if p.LocPrf == nil || *p.LocPrf != 250 {
				t.Errorf("path from %s: local-pref %v, want 250", p.Peer.PeerID, p.LocPrf)
			}
			if p.Community == nil || p.Community.String != "65000:100" {
				t.Errorf("path from %s: communities %+v, want 65000:100", p.Peer.PeerID, p.Community)
			}
			// The speaker's private targeting markers must not leave it.
			if p.LargeCommunity == nil || p.LargeCommunity.String != "65000:1:2" {
				t.Errorf("path from %s: large communities %+v, want exactly 65000:1:2", p.Peer.PeerID, p.LargeCommunity)
			}
		}
	})

	t.Run("client reaches a node through the router", func(t *testing.T) {
		out, err := l.curl("http://" + vip.Addr().String() + "/")
		if err != nil {
			t.Fatalf("curl %s from the client: %v: %s", vip.Addr(), err, out)
		}
		if !slices.Contains([]string{"n1", "n2", "n3"}, out) {
			t.Errorf("the VIP answered %q, want a node name", out)
		}
	})

	t.Run("peer selected by nodeSelector peers only with matching nodes", func(t *testing.T) {
		nodes[0].waitEstablished(t, "tor6")
		for _, n := range nodes[1:] {
			if p, err := n.peer("tor6"); err == nil {
				t.Errorf("node %s (no v6=yes label) has peer tor6: %+v", n.name, p)
			}
		}
		var summary struct {
			IPv6Unicast struct {
				Peers map[string]struct{ State string } `json:"peers"`
			} `json:"ipv6Unicast"`
		}
		if err := l.router.VtyshJSON(context.Background(), "show bgp summary json", &summary); err != nil {
			t.Fatal(err)
		}
		var v6 []string
		for addr, p := range summary.IPv6Unicast.Peers {
			if p.State == "Established" {
				v6 = append(v6, addr)
			}
		}
		if want := []string{nodes[0].addr6.String()}; !slices.Equal(v6, want) {
			t.Errorf("FRR's established IPv6 sessions: %v, want %v", v6, want)
		}
	})

	t.Run("IPv6 VIP over the IPv6 session, targeted per peer", func(t *testing.T) {
		n1 := nodes[0]
		n1.setAds(t,
			adJSON{Prefix: vip.String(), Peers: []string{"tor"}, Communities: []string{"65000:100", "65000:1:2"}, LocalPref: u32(250)},
			adJSON{Prefix: vip6.String(), Peers: []string{"tor6"}},
		)
		if err := l.waitNextHops(vip6, 20*time.Second, n1.addr6); err != nil {
			t.Fatal(err)
		}
		out, err := l.curl("http://[" + vip6.Addr().String() + "]/")
		if err != nil || out != "n1" {
			t.Errorf("curl [%s] from the client: %q, %v; want n1", vip6.Addr(), out, err)
		}
		// The IPv4 VIP goes to tor only, so FRR has no copy of it from
		// n1's IPv6 session (which carries IPv4 too).
		fromV6 := func() (int, error) {
			paths, err := l.bgpPaths(vip)
			n := 0
			for _, p := range paths {
				if p.Peer.PeerID == n1.addr6.String() {
					n++
				}
			}
			return n, err
		}
		if n, err := fromV6(); err != nil || n != 0 {
			t.Fatalf("FRR has %d paths for %s from n1's IPv6 session (err %v), want 0", n, vip, err)
		}
		// Naming tor6 too sends it there; dropping it withdraws it there
		// alone, while the IPv4 session keeps its path.
		for _, tc := range []struct {
			peers []string
			want  int
		}{{[]string{"tor", "tor6"}, 1}, {[]string{"tor"}, 0}} {
			n1.setAds(t,
				adJSON{Prefix: vip.String(), Peers: tc.peers, Communities: []string{"65000:100", "65000:1:2"}, LocalPref: u32(250)},
				adJSON{Prefix: vip6.String(), Peers: []string{"tor6"}},
			)
			err := lab.Eventually(context.Background(), 10*time.Second, 50*time.Millisecond, func() error {
				n, err := fromV6()
				if err == nil && n != tc.want {
					err = fmt.Errorf("%d paths for %s from n1's IPv6 session, want %d", n, vip, tc.want)
				}
				return err
			})
			if err != nil {
				t.Fatalf("peers %v: %v", tc.peers, err)
			}
		}
		if err := l.waitNextHops(vip, 5*time.Second, nodes[0].addr4, nodes[1].addr4, nodes[2].addr4); err != nil {
			t.Errorf("after retargeting: %v", err)
		}
	})

	t.Run("removing the advertisement withdraws the path", func(t *testing.T) {
		nodes[0].setAds(t, adJSON{Prefix: vip6.String(), Peers: []string{"tor6"}})
		if err := l.waitNextHops(vip, 10*time.Second, nodes[1].addr4, nodes[2].addr4); err != nil {
			t.Fatal(err)
		}
		// The route came from the speaker's RIB alone: nothing was bound.
		for _, n := range nodes {
			if got, err := n.host.AddrsIn(vips4, vips6); err != nil || len(got) != 0 {
				t.Errorf("node %s holds %v (%v) in the VIP ranges; want nothing bound", n.name, got, err)
			}
		}
	})

	t.Run("killing a speaker removes its next hop", func(t *testing.T) {
		if err := nodes[1].speaker.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := l.waitNextHops(vip, 10*time.Second, nodes[2].addr4); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("SIGTERM withdraws before the session closes", func(t *testing.T) {
		n3 := nodes[2]
		if err := n3.speaker.Stop(10 * time.Second); err != nil {
			t.Fatalf("stopping the speaker: %v", err)
		}
		if err := l.waitNextHops(vip, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		// bgpd logs the UPDATE (debug bgp updates in) before the
		// NOTIFICATION that ends the session.
		logs := l.router.BGPd.Logs()
		withdrawn := lastLineIndex(logs, n3.addr4.String(), "withdrawn")
		notification := lastLineIndex(logs, n3.addr4.String(), "NOTIFICATION")
		if withdrawn < 0 || notification < 0 || withdrawn > notification {
			t.Errorf("bgpd log: withdrawal at %d, notification at %d; want the withdrawal first:\n%s", withdrawn, notification, tail(logs, 40))
		}
	})
}

// lastLineIndex returns the offset of the last line of logs holding all words.
func lastLineIndex(logs string, words ...string) int {
	best, off := -1, 0
	for _, line := range strings.SplitAfter(logs, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			best = off
		}
		off += len(line)
	}
	return best
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestBGPSessionOptions covers TCP MD5 (right, wrong and unreadable
// password files) and graceful restart against one FRR router.
func TestBGPSessionOptions(t *testing.T) {
	good := netip.MustParseAddr("198.51.100.21")
	bad := netip.MustParseAddr("198.51.100.22")
	l := newBGPLab(t, good, bad)
	writePassword := func(name, password string) string {
		path := filepath.Join(l.dir, name)
		if err := os.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("MD5", func(t *testing.T) {
		right := l.addNode(t, "md5-right", 21, "")
		right.writeConfig(t, peerYAML{name: "tor", address: routerLAN4.String(), extra: "passwordFile: " + writePassword("right", md5Password)})
		right.writeAds(t)
		right.start(t)
		wrong := l.addNode(t, "md5-wrong", 22, "")
		wrong.writeConfig(t, peerYAML{name: "tor", address: routerLAN4.String(), extra: "passwordFile: " + writePassword("wrong", "not-"+md5Password)})
		wrong.writeAds(t)
		wrong.start(t)

		right.waitEstablished(t, "tor")
		// A mismatched signature makes the router's kernel drop our SYNs
		// silently; the speaker says what that means.
		err := lab.Eventually(context.Background(), 20*time.Second, 200*time.Millisecond, func() error {
			p, err := wrong.peer("tor")
			if err != nil {
				return err
			}
			if p.Established() {
				t.Fatalf("the session with a wrong MD5 password is established")
			}
			// The speaker names the cause: the router never answers, and
			// this peer signs with MD5.
			if !strings.Contains(p.LastError, "does not answer") || !strings.Contains(p.LastError, "MD5") {
				return fmt.Errorf("peer tor: state %s, last error %q; want silence blamed on MD5", p.State, p.LastError)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		p, _ := wrong.peer("tor")
		t.Logf("wrong password: %s", p.LastError)
		if strings.Contains(p.LastError, md5Password) {
			t.Errorf("the error shows the password: %q", p.LastError)
		}
		if strings.Contains(right.speaker.Logs()+wrong.speaker.Logs(), md5Password) {
			t.Errorf("a speaker logged the password")
		}
	})

	t.Run("unreadable password file fails that peer only", func(t *testing.T) {
		n := l.addNode(t, "md5-missing", 23, "")
		missing := filepath.Join(l.dir, "no-such-password")
		n.writeConfig(t,
			peerYAML{name: "tor", address: routerLAN4.String()},
			peerYAML{name: "tor6", address: routerLAN6.String(), extra: "passwordFile: " + missing},
		)
		n.writeAds(t)
		n.start(t)
		n.waitEstablished(t, "tor")
		p, err := n.peer("tor6")
		if err != nil {
			t.Fatal(err)
		}
		if p.Established() || !strings.Contains(p.LastError, `"tor6"`) || !strings.Contains(p.LastError, missing) {
			t.Errorf("peer tor6: %+v; want not established and an error naming the peer and %s", p, missing)
		}
	})

	t.Run("graceful restart keeps routes across a restart", func(t *testing.T) {
		vip := netip.MustParsePrefix("192.0.2.20/32")
		n := l.addNode(t, "gr", 31, "")
		n.writeConfig(t, peerYAML{name: "tor", address: routerLAN4.String(), extra: "gracefulRestart: true"})
		n.writeAds(t, adJSON{Prefix: vip.String(), Peers: []string{"tor"}})
		n.start(t)
		if err := l.waitNextHops(vip, 20*time.Second, n.addr4); err != nil {
			t.Fatal(err)
		}
		// A crash closes the TCP session without a NOTIFICATION: the
		// router keeps the path, marked stale, and keeps forwarding.
		if err := n.speaker.Kill(); err != nil {
			t.Fatal(err)
		}
		err := lab.Eventually(context.Background(), 10*time.Second, 100*time.Millisecond, func() error {
			paths, err := l.bgpPaths(vip)
			if err != nil {
				return err
			}
			if len(paths) != 1 || !paths[0].Stale {
				return fmt.Errorf("paths %+v, want one stale path", paths)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if err := l.waitNextHops(vip, time.Second, n.addr4); err != nil {
			t.Fatalf("while the speaker is down: %v", err)
		}
		n.start(t)
		err = lab.Eventually(context.Background(), 30*time.Second, 100*time.Millisecond, func() error {
			paths, err := l.bgpPaths(vip)
			if err != nil {
				return err
			}
			if len(paths) != 1 || paths[0].Stale {
				return fmt.Errorf("paths %+v, want one fresh path", paths)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.waitNextHops(vip, 5*time.Second, n.addr4); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Detach on SIGTERM keeps routes with graceful-restart peers", func(t *testing.T) {
		vip := netip.MustParsePrefix("192.0.2.21/32")
		n := l.addNode(t, "gr-detach", 32, "")
		n.detach = true
		n.writeConfig(t, peerYAML{name: "tor", address: routerLAN4.String(), extra: "gracefulRestart: true"})
		n.writeAds(t, adJSON{Prefix: vip.String(), Peers: []string{"tor"}})
		n.start(t)
		if err := l.waitNextHops(vip, 20*time.Second, n.addr4); err != nil {
			t.Fatal(err)
		}
		if err := n.speaker.Stop(10 * time.Second); err != nil {
			t.Fatalf("stopping the speaker: %v", err)
		}
		err := lab.Eventually(context.Background(), 10*time.Second, 100*time.Millisecond, func() error {
			paths, err := l.bgpPaths(vip)
			if err != nil {
				return err
			}
			if len(paths) != 1 || !paths[0].Stale {
				return fmt.Errorf("paths %+v, want one stale path", paths)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.waitNextHops(vip, time.Second, n.addr4); err != nil {
			t.Fatalf("after the speaker detached: %v", err)
		}
	})
}
