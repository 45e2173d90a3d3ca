package l2

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var testMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01}

func TestGratuitousARPBytes(t *testing.T) {
	pkts, err := gratuitousARP(testMAC, netip.MustParseAddr("192.0.2.240"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 2 {
		t.Fatalf("got %d packets, want a request and a reply", len(pkts))
	}
	// htype 1, ptype 0x0800, hlen 6, plen 4, op, sha, spa, tha, tpa.
	want := []string{
		"0001080006040001" + "02005e000001" + "c00002f0" + "000000000000" + "c00002f0",
		"0001080006040002" + "02005e000001" + "c00002f0" + "ffffffffffff" + "c00002f0",
	}
	for i, p := range pkts {
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(b); got != want[i] {
			t.Errorf("packet %d:\n got %s\nwant %s", i, got, want[i])
		}
	}
}

func TestARPProbeHasNoSenderAddress(t *testing.T) {
	p, err := arpProbe(testMAC, netip.MustParseAddr("192.0.2.241"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.MarshalBinary()
	want := "0001080006040001" + "02005e000001" + "00000000" + "000000000000" + "c00002f1"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("probe\n got %s\nwant %s", got, want)
	}
	// A probe must never be taken for an announcement (RFC 5227 §2.1.1).
	if ip, _, ok := announcedBy(p); ok {
		t.Fatalf("probe read as a claim of %s", ip)
	}
}

func TestARPFrame(t *testing.T) {
	pkts, _ := gratuitousARP(testMAC, netip.MustParseAddr("192.0.2.240"))
	b, err := arpFrame(testMAC, pkts[0])
	if err != nil {
		t.Fatal(err)
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Destination, ethernet.Broadcast) || !bytes.Equal(f.Source, testMAC) || f.EtherType != ethernet.EtherTypeARP {
		t.Fatalf("frame dst %s src %s type %s; want broadcast from %s, ARP", f.Destination, f.Source, f.EtherType, testMAC)
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		t.Fatal(err)
	}
	ip, mac, ok := announcedBy(&p)
	if !ok || ip != netip.MustParseAddr("192.0.2.240") || !bytes.Equal(mac, testMAC) {
		t.Fatalf("announcedBy = %s %s %v", ip, mac, ok)
	}
}

func TestFamilyMismatchIsAnError(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	if _, err := gratuitousARP(testMAC, v6); err == nil {
		t.Error("gratuitous ARP for an IPv6 address: no error")
	}
	if _, err := arpProbe(testMAC, v6); err == nil {
		t.Error("ARP probe for an IPv6 address: no error")
	}
	if _, err := unsolicitedNA(testMAC, v4); err == nil {
		t.Error("neighbour advertisement for an IPv4 address: no error")
	}
	if _, err := neighborProbe(testMAC, v4); err == nil {
		t.Error("neighbour solicitation for an IPv4 address: no error")
	}
}

func TestUnsolicitedNA(t *testing.T) {
	ip := netip.MustParseAddr("2001:db8::10")
	na, err := unsolicitedNA(testMAC, ip)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ndp.MarshalMessage(na)
	if err != nil {
		t.Fatal(err)
	}
	// type 136, code 0, checksum (left to the kernel), flags: override
	// only (not router, not solicited), target, then the target
	// link-layer address option (type 2, length 1 = 8 bytes).
	want := "8800" + "0000" + "20000000" + "20010db8000000000000000000000010" + "0201" + "02005e000001"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("NA\n got %s\nwant %s", got, want)
	}
	m, err := ndp.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	mac, ok := targetLinkLayer(m.(*ndp.NeighborAdvertisement))
	if !ok || !bytes.Equal(mac, testMAC) {
		t.Fatalf("target link-layer address %s %v, want %s", mac, ok, testMAC)
	}
}

func TestNeighborProbe(t *testing.T) {
	ns, err := neighborProbe(testMAC, netip.MustParseAddr("2001:db8::10"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ndp.MarshalMessage(ns)
	if err != nil {
		t.Fatal(err)
	}
	want := "8700" + "0000" + "00000000" + "20010db8000000000000000000000010" + "0101" + "02005e000001"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("NS\n got %s\nwant %s", got, want)
	}
}

func TestInterfaceFor(t *testing.T) {
	ls := Links{
		{Name: "eth0", Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
			Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8::11")}},
		{Name: "eth1", Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.11")}},
	}
	nodeIPs := []netip.Addr{netip.MustParseAddr("2001:db8::11"), netip.MustParseAddr("192.0.2.11")}
	tests := []struct {
		name   string
		vip    string
		pool   []string
		want   string
		wantOK bool
	}{
		{"pool interface wins over subnet", "192.0.2.240", []string{"eth1"}, "eth1", true},
		{"first pool interface the node has", "192.0.2.240", []string{"bond0", "eth1"}, "eth1", true},
		{"pool interfaces the node lacks: none", "192.0.2.240", []string{"bond0"}, "", false},
		{"subnet holding the VIP", "198.51.100.200", nil, "eth1", true},
		{"else the InternalIP interface of the same family", "203.0.113.5", nil, "eth0", true},
		{"IPv6 VIP off every subnet: the InternalIP interface", "2001:db8:ffff::5", nil, "eth0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ok := ls.InterfaceFor(netip.MustParseAddr(tt.vip), tt.pool, nodeIPs)
			if ok != tt.wantOK || l.Name != tt.want {
				t.Fatalf("got %q %v, want %q %v", l.Name, ok, tt.want, tt.wantOK)
			}
		})
	}
	if _, ok := (Links{}).InterfaceFor(netip.MustParseAddr("203.0.113.5"), nil, nodeIPs); ok {
		t.Error("a node with no interfaces found one")
	}
}
