package bind

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeNetlink is a node's interfaces and addresses in memory.
type fakeNetlink struct {
	links   []netlink.Link
	addrs   map[string][]netlink.Addr
	deleted []string // "iface addr/len", in order
	failDel map[string]error
	listErr error
	addrErr map[string]error // by interface
}

func (f *fakeNetlink) LinkList() ([]netlink.Link, error) { return f.links, f.listErr }

func (f *fakeNetlink) AddrList(l netlink.Link, _ int) ([]netlink.Addr, error) {
	if err := f.addrErr[l.Attrs().Name]; err != nil {
		return nil, err
	}
	return f.addrs[l.Attrs().Name], nil
}

func (f *fakeNetlink) AddrDel(l netlink.Link, a *netlink.Addr) error {
	name := l.Attrs().Name
	if err := f.failDel[a.IPNet.String()]; err != nil {
		return err
	}
	f.deleted = append(f.deleted, name+" "+a.IPNet.String())
	f.addrs[name] = slices.DeleteFunc(f.addrs[name], func(x netlink.Addr) bool { return x.IPNet.String() == a.IPNet.String() })
	return nil
}

func link(name string, flags net.Flags) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name, Flags: flags}}
}

func addr(t *testing.T, cidr string) netlink.Addr {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	return *a
}

// inPools is the predicate the agent passes: addresses inside its pools.
func inPools(ip netip.Addr) bool {
	for _, p := range []string{"192.0.2.240/28", "2001:db8:1::/64", "203.0.113.0/24"} {
		if netip.MustParsePrefix(p).Contains(ip) {
			return true
		}
	}
	return false
}

func node(t *testing.T) *fakeNetlink {
	return &fakeNetlink{
		links: []netlink.Link{link("lo", net.FlagLoopback|net.FlagUp), link("eth0", net.FlagUp), link("kube-lb0", net.FlagUp), link("kube-ipvs0", 0)},
		addrs: map[string][]netlink.Addr{
			"lo": {addr(t, "127.0.0.1/8"), addr(t, "192.0.2.241/32")},
			"eth0": {
				addr(t, "192.0.2.11/24"),     // the node's own address
				addr(t, "192.0.2.240/32"),    // a VIP an older agent bound
				addr(t, "192.0.2.250/24"),    // in a pool, but a subnet address: not a VIP
				addr(t, "198.51.100.7/32"),   // a host address outside every pool
				addr(t, "2001:db8:1::5/128"), // an IPv6 VIP
				addr(t, "fe80::1/64"),
			},
			"kube-lb0":   {addr(t, "203.0.113.0/24"), addr(t, "203.0.113.9/32"), addr(t, "198.51.100.8/32")},
			"kube-ipvs0": {addr(t, "192.0.2.242/32")}, // kube-proxy's
		},
	}
}

func TestRemoveLegacy(t *testing.T) {
	nl := node(t)
	removed, err := RemoveLegacyWith(nl, inPools)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{
		netip.MustParseAddr("192.0.2.240"), netip.MustParseAddr("203.0.113.0"),
		netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("2001:db8:1::5"),
	}
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	wantDeleted := []string{"eth0 192.0.2.240/32", "eth0 2001:db8:1::5/128", "kube-lb0 203.0.113.0/24", "kube-lb0 203.0.113.9/32"}
	if !slices.Equal(nl.deleted, wantDeleted) {
		t.Fatalf("deleted %v, want %v", nl.deleted, wantDeleted)
	}

	// Idempotent: a second run finds nothing.
	nl.deleted = nil
	removed, err = RemoveLegacyWith(nl, inPools)
	if err != nil || len(removed) != 0 || len(nl.deleted) != 0 {
		t.Fatalf("second run removed %v (deleted %v), err %v", removed, nl.deleted, err)
	}
}

func TestRemoveLegacyReportsPartialFailure(t *testing.T) {
	nl := node(t)
	nl.failDel = map[string]error{"192.0.2.240/32": errors.New("operation not permitted")}
	removed, err := RemoveLegacyWith(nl, inPools)
	if err == nil || !strings.Contains(err.Error(), "removing 192.0.2.240 that an older agent bound on eth0: operation not permitted") {
		t.Fatalf("err = %v", err)
	}
	if len(removed) != 3 {
		t.Fatalf("the other addresses must still go: removed %v", removed)
	}
}

func TestRemoveLegacyCannotListLinks(t *testing.T) {
	nl := &fakeNetlink{listErr: errors.New("netlink: permission denied")}
	if _, err := RemoveLegacyWith(nl, inPools); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("err = %v", err)
	}
}

func TestRemoveLegacyWithNoPools(t *testing.T) {
	nl := node(t)
	removed, err := RemoveLegacyWith(nl, func(netip.Addr) bool { return false })
	if err != nil || len(removed) != 0 {
		t.Fatalf("removed %v, err %v", removed, err)
	}
}

// An interface whose addresses cannot be listed is reported; the others are
// still cleaned.
func TestRemoveLegacyCannotListOneInterface(t *testing.T) {
	nl := node(t)
	nl.addrErr = map[string]error{"kube-lb0": errors.New("netlink: message truncated")}
	removed, err := RemoveLegacyWith(nl, inPools)
	if err == nil || !strings.Contains(err.Error(), "listing addresses of kube-lb0: netlink: message truncated") {
		t.Fatalf("err = %v", err)
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.240"), netip.MustParseAddr("2001:db8:1::5")}
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
}

// An address that went away between listing and removing (another agent
// instance, an operator) is gone as wanted: no error.
func TestRemoveLegacyAddressAlreadyGone(t *testing.T) {
	nl := node(t)
	nl.failDel = map[string]error{"192.0.2.240/32": unix.EADDRNOTAVAIL}
	removed, err := RemoveLegacyWith(nl, inPools)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, netip.MustParseAddr("192.0.2.240")) {
		t.Fatalf("removed %v, want 192.0.2.240 counted", removed)
	}
}

// Entries without an address (netlink can return them) or with a malformed
// one are skipped, not removed.
func TestLegacySkipsMalformedAddresses(t *testing.T) {
	la := linkAddrs{name: "eth0", addrs: []netlink.Addr{
		{},
		{IPNet: &net.IPNet{IP: net.IP{192, 0, 2}, Mask: net.CIDRMask(32, 32)}},
		{IPNet: &net.IPNet{IP: net.ParseIP("192.0.2.243"), Mask: net.CIDRMask(32, 32)}}, // 16-byte form
		addr(t, "192.0.2.244/32"),
	}}
	var got []string
	for _, a := range legacy(la, inPools) {
		got = append(got, a.IPNet.String())
	}
	// The 16-byte (IPv4-mapped) form is judged as the IPv4 address it is.
	want := []string{"192.0.2.243/32", "192.0.2.244/32"}
	if !slices.Equal(got, want) {
		t.Fatalf("legacy = %v, want %v", got, want)
	}
}

// On this host's real interfaces, without root: listing works for anyone,
// and with no address claimed nothing is removed. (The removal itself is
// TestRemoveLegacyInANamespace, as root.)
func TestRemoveLegacyOnTheHostClaimingNothing(t *testing.T) {
	removed, err := RemoveLegacy(func(netip.Addr) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 0 {
		t.Fatalf("removed %v", removed)
	}
}
