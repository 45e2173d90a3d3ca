package l2

import (
	"net/netip"
	"testing"
)

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
