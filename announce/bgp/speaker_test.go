package bgp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"k8s.io/klog/v2"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

// These tests run a Speaker against gobgp "routers" in the same process on
// loopback addresses, so they need no privileges: the speaker connects from
// 127.0.0.1 to routers listening on 127.0.0.2, 127.0.0.3, ... on free ports.

const testASN = 64512

// gobgp sends iBGP paths that have no local-pref with the default, 100.
const plain4, plain6 = "lp=100 nh=198.51.100.11", "lp=100 nh=2001:db8:100::11"

type testRouter struct {
	name   string
	addr   netip.Addr
	port   uint16
	server *server.BgpServer
}

// startRouters starts every router before any session exists: gobgp's
// StartBgp writes package-level settings that running servers read.
func startRouters(t *testing.T, n int) []*testRouter {
	t.Helper()
	ctx := context.Background()
	var rs []*testRouter
	for i := range n {
		addr := netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)})
		port := freePort(t, addr)
		s := server.NewBgpServer(server.LoggerOption(&gobgpLogger{log: logr.Discard(), errs: newPeerErrors()}))
		go s.Serve()
		err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
			Asn: testASN, RouterId: addr.String(), ListenPort: int32(port), ListenAddresses: []string{addr.String()},
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.StopBgp(context.Background(), &api.StopBgpRequest{}); err != nil {
				t.Error(err)
			}
			s.Stop()
		})
		rs = append(rs, &testRouter{name: fmt.Sprintf("tor-%c", 'a'+i), addr: addr, port: port, server: s})
	}
	for _, r := range rs {
		err := r.server.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: testASN},
			Transport: &api.Transport{PassiveMode: true},
			AfiSafis: []*api.AfiSafi{
				{Config: &api.AfiSafiConfig{Family: familyV4, Enabled: true}},
				{Config: &api.AfiSafiConfig{Family: familyV6, Enabled: true}},
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return rs
}

func freePort(t *testing.T, addr netip.Addr) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func (r *testRouter) peer() config.Peer {
	return config.Peer{
		Name: r.name, Address: r.addr.String(), Addr: r.addr, ASN: testASN, Port: r.port,
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second,
		SourceAddress: "127.0.0.1", SourceAddr: netip.MustParseAddr("127.0.0.1"),
	}
}

// routes returns what the router learned: prefix -> a summary of its attributes.
func (r *testRouter) routes(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range []*api.Family{familyV4, familyV6} {
		err := r.server.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: f}, func(d *api.Destination) {
			for _, p := range d.Paths {
				attrs, err := apiutil.GetNativePathAttributes(p)
				if err != nil {
					t.Error(err)
					return
				}
				var parts []string
				for _, a := range attrs {
					switch a := a.(type) {
					case *bgp.PathAttributeNextHop:
						parts = append(parts, "nh="+a.Value.String())
					case *bgp.PathAttributeMpReachNLRI:
						parts = append(parts, "nh="+a.Nexthop.String())
					case *bgp.PathAttributeLocalPref:
						parts = append(parts, fmt.Sprintf("lp=%d", a.Value))
					case *bgp.PathAttributeCommunities:
						for _, c := range a.Value {
							parts = append(parts, fmt.Sprintf("c=%d:%d", c>>16, c&0xffff))
						}
					case *bgp.PathAttributeLargeCommunities:
						for _, c := range a.Values {
							parts = append(parts, "lc="+c.String())
						}
					case *bgp.PathAttributeExtendedCommunities:
						for _, c := range a.Value {
							if lb, ok := c.(*bgp.LinkBandwidthExtended); ok {
								parts = append(parts, fmt.Sprintf("lb=%d:%.0f", lb.AS, lb.Bandwidth))
							}
						}
					}
				}
				slices.Sort(parts)
				out[d.Prefix] = strings.Join(parts, " ")
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// updates returns how many UPDATE messages the router has received.
func (r *testRouter) updates(t *testing.T) uint64 {
	t.Helper()
	var n uint64
	err := r.server.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		n = p.GetState().GetMessages().GetReceived().GetUpdate()
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (r *testRouter) waitRoutes(t *testing.T, want map[string]string) {
	t.Helper()
	var got map[string]string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		got = r.routes(t)
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("router %s has routes %v, want %v", r.name, got, want)
}

func newTestSpeaker(t *testing.T) *Speaker {
	t.Helper()
	s, err := New(context.Background(), Options{
		NodeName: "n1", ASN: testASN, RouterID: netip.MustParseAddr("198.51.100.11"),
		NextHop4: netip.MustParseAddr("198.51.100.11"), NextHop6: netip.MustParseAddr("2001:db8:100::11"),
		Logger: klog.Background(), ConnectRetry: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

func waitEstablished(t *testing.T, s *Speaker, names ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		up := 0
		var last []PeerStatus
		for _, p := range s.Peers() {
			if slices.Contains(names, p.Name) && p.Established() {
				up++
			}
			last = append(last, p)
		}
		if up == len(names) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers %v not all established: %+v", names, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSpeakerTargetsPathsPerPeerAsADiff(t *testing.T) {
	routers := startRouters(t, 2)
	a, b := routers[0], routers[1]
	s := newTestSpeaker(t)
	ctx := context.Background()
	if err := s.SetPeers(ctx, []config.Peer{a.peer(), b.peer()}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "tor-a", "tor-b")

	lp := uint32(200)
	comm := []config.Community{community(t, "65000:100"), community(t, "65000:1:2")}
	vip1 := netip.MustParsePrefix("192.0.2.1/32")
	vip2 := netip.MustParsePrefix("192.0.2.2/32")
	vip6 := netip.MustParsePrefix("2001:db8:1::1/128")
	ads := []Advertisement{
		{Prefix: vip1, Peers: []string{"tor-a", "tor-b"}, Communities: comm, LocalPref: &lp},
		{Prefix: vip2, Peers: []string{"tor-a"}},
		{Prefix: vip6, Peers: []string{"tor-b"}},
	}
	if err := s.SetAdvertisements(ctx, ads); err != nil {
		t.Fatal(err)
	}
	// The markers are stripped: only the configured communities arrive.
	full := "c=65000:100 lc=65000:1:2 lp=200 nh=198.51.100.11"
	a.waitRoutes(t, map[string]string{"192.0.2.1/32": full, "192.0.2.2/32": plain4})
	b.waitRoutes(t, map[string]string{"192.0.2.1/32": full, "2001:db8:1::1/128": plain6})
	for _, p := range s.Peers() {
		if want := 2; p.Advertised != want {
			t.Errorf("peer %s: Advertised = %d, want %d", p.Name, p.Advertised, want)
		}
	}

	t.Run("the same set sends nothing", func(t *testing.T) {
		ua, ub := a.updates(t), b.updates(t)
		shuffled := []Advertisement{ads[2], ads[0], ads[1]}
		shuffled[1].Peers = []string{"tor-b", "tor-a"} // order does not matter
		if err := s.SetAdvertisements(ctx, shuffled); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if a.updates(t) != ua || b.updates(t) != ub {
			t.Errorf("UPDATEs received: tor-a %d -> %d, tor-b %d -> %d; want none", ua, a.updates(t), ub, b.updates(t))
		}
	})

	t.Run("dropping a peer from a path withdraws it there only", func(t *testing.T) {
		ads[0].Peers = []string{"tor-b"}
		if err := s.SetAdvertisements(ctx, ads); err != nil {
			t.Fatal(err)
		}
		a.waitRoutes(t, map[string]string{"192.0.2.2/32": plain4})
		b.waitRoutes(t, map[string]string{"192.0.2.1/32": full, "2001:db8:1::1/128": plain6})
	})

	t.Run("changing one path sends only that path", func(t *testing.T) {
		ua := a.updates(t)
		ads[1].Communities = []config.Community{community(t, "65000:7")}
		if err := s.SetAdvertisements(ctx, ads); err != nil {
			t.Fatal(err)
		}
		a.waitRoutes(t, map[string]string{"192.0.2.2/32": "c=65000:7 " + plain4})
		if got := a.updates(t) - ua; got != 1 {
			t.Errorf("tor-a received %d UPDATEs, want 1", got)
		}
	})

	t.Run("removing an advertisement withdraws it", func(t *testing.T) {
		if err := s.SetAdvertisements(ctx, ads[1:2]); err != nil {
			t.Fatal(err)
		}
		a.waitRoutes(t, map[string]string{"192.0.2.2/32": "c=65000:7 " + plain4})
		b.waitRoutes(t, map[string]string{})
	})

	t.Run("Stop withdraws before closing", func(t *testing.T) {
		if err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		a.waitRoutes(t, map[string]string{})
		if err := s.SetAdvertisements(ctx, ads); err == nil {
			t.Errorf("SetAdvertisements after Stop succeeded")
		}
	})
}

func TestSpeakerSetPeersIsADiff(t *testing.T) {
	routers := startRouters(t, 3)
	a, b, c := routers[0], routers[1], routers[2]
	s := newTestSpeaker(t)
	ctx := context.Background()
	vip := netip.MustParsePrefix("192.0.2.1/32")
	if err := s.SetAdvertisements(ctx, []Advertisement{{Prefix: vip, Peers: []string{"tor-a", "tor-b", "tor-c"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPeers(ctx, []config.Peer{a.peer(), b.peer()}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "tor-a", "tor-b")
	a.waitRoutes(t, map[string]string{vip.String(): plain4})
	b.waitRoutes(t, map[string]string{vip.String(): plain4})

	// tor-b changes, tor-a does not, tor-c appears with an unreadable
	// password file and is reported while the others keep working.
	ua := a.updates(t)
	changed := b.peer()
	changed.HoldTime = 12 * time.Second
	broken := c.peer()
	broken.PasswordFile = filepath.Join(t.TempDir(), "missing")
	err := s.SetPeers(ctx, []config.Peer{a.peer(), changed, broken})
	if err == nil || !strings.Contains(err.Error(), `"tor-c"`) || !strings.Contains(err.Error(), broken.PasswordFile) {
		t.Fatalf("SetPeers error = %v, want one naming tor-c and its password file", err)
	}
	waitEstablished(t, s, "tor-a", "tor-b")
	b.waitRoutes(t, map[string]string{vip.String(): plain4})
	if got := a.updates(t); got != ua {
		t.Errorf("tor-a received %d UPDATEs after an unrelated peer change, want 0", got-ua)
	}
	var st PeerStatus
	for _, p := range s.Peers() {
		if p.Name == "tor-c" {
			st = p
		}
	}
	if st.Established() || !strings.Contains(st.LastError, "missing") {
		t.Errorf("tor-c status %+v; want not established with the password error", st)
	}

	// Once its configuration is fixed, tor-c comes up and gets the path that
	// already named it.
	broken.PasswordFile = ""
	if err := s.SetPeers(ctx, []config.Peer{a.peer(), changed, broken}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "tor-a", "tor-b", "tor-c")
	c.waitRoutes(t, map[string]string{vip.String(): plain4})

	// Removing a peer closes its session; the router drops our path.
	if err := s.SetPeers(ctx, []config.Peer{changed, broken}); err != nil {
		t.Fatal(err)
	}
	a.waitRoutes(t, map[string]string{})
	if len(s.Peers()) != 2 {
		t.Errorf("Peers() = %+v, want tor-b and tor-c", s.Peers())
	}
}

func TestNewValidatesOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no ASN", Options{RouterID: netip.MustParseAddr("192.0.2.1")}, "needs an ASN"},
		{"no router ID", Options{ASN: 1}, "router ID"},
		{"IPv6 router ID", Options{ASN: 1, RouterID: netip.MustParseAddr("2001:db8::1")}, "not an IPv4 address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAdvertisementWithoutNextHopFamily(t *testing.T) {
	s := newTestSpeaker(t)
	s.opts.NextHop6 = netip.Addr{}
	err := s.SetAdvertisements(context.Background(), []Advertisement{
		{Prefix: netip.MustParsePrefix("2001:db8:1::1/128")},
		{Prefix: netip.MustParsePrefix("192.0.2.1/32")},
	})
	if err == nil || !strings.Contains(err.Error(), "no IPv6 address") {
		t.Fatalf("error = %v, want one about the missing IPv6 next hop", err)
	}
	if len(s.paths) != 1 {
		t.Errorf("%d paths advertised, want the IPv4 one", len(s.paths))
	}
}

func TestAggregatedVIPsShareOnePath(t *testing.T) {
	s := newTestSpeaker(t)
	agg := netip.MustParsePrefix("192.0.2.0/24")
	ad := Advertisement{Prefix: agg, Peers: []string{"tor-a"}}
	if err := s.SetAdvertisements(context.Background(), []Advertisement{ad, ad}); err != nil {
		t.Fatal(err)
	}
	if len(s.paths) != 1 || s.paths[agg] == nil {
		t.Fatalf("paths = %v; want one path for %s", s.paths, agg)
	}
	other := ad
	other.Peers = []string{"tor-b"}
	err := s.SetAdvertisements(context.Background(), []Advertisement{ad, other})
	if err == nil || !strings.Contains(err.Error(), "advertised twice with different peers") {
		t.Errorf("conflicting duplicates: error %v", err)
	}
}

func TestDetachKeepsPathsWithGracefulRestartPeers(t *testing.T) {
	routers := startRouters(t, 2)
	a, b := routers[0], routers[1]
	s := newTestSpeaker(t)
	ctx := context.Background()
	gr := a.peer()
	gr.GracefulRestart = true
	if err := s.SetPeers(ctx, []config.Peer{gr, b.peer()}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, "tor-a", "tor-b")
	err := s.SetAdvertisements(ctx, []Advertisement{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Peers: []string{"tor-a", "tor-b"}},
		{Prefix: netip.MustParsePrefix("192.0.2.2/32"), Peers: []string{"tor-b"}},
		{Prefix: netip.MustParsePrefix("192.0.2.3/32"), Peers: []string{"tor-a"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"192.0.2.1/32": plain4, "192.0.2.3/32": plain4}
	a.waitRoutes(t, want)
	b.waitRoutes(t, map[string]string{"192.0.2.1/32": plain4, "192.0.2.2/32": plain4})

	if err := s.Detach(ctx); err != nil {
		t.Fatal(err)
	}
	b.waitRoutes(t, map[string]string{})
	for _, p := range s.Peers() {
		if got := p.Established(); got != (p.Name == "tor-a") {
			t.Errorf("after Detach, %s established = %v; want only the graceful-restart peer up", p.Name, got)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := a.routes(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the graceful-restart peer has %v after Detach, want %v unchanged", got, want)
	}
}
