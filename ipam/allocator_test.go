package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// step is one call in a scenario: Allocate req (the default), Release a
// key, or Seed req with addresses.
type step struct {
	release string
	seed    []string
	req     Request
	want    []string // addresses expected, in order
	pool    string   // pool expected when not empty
	err     error    // sentinel the error must match
	msg     string   // text the error must contain
}

func TestAllocator(t *testing.T) {
	lan := Pool{Name: "lan", AutoAssign: true, Ranges: ranges(t, "192.0.2.240-192.0.2.250")}
	tiny := Pool{Name: "tiny", AutoAssign: true, Ranges: ranges(t, "192.0.2.1-192.0.2.2")}
	manual := Pool{Name: "manual", AutoAssign: false, Ranges: ranges(t, "198.51.100.0/29")}
	dual := Pool{Name: "dual", AutoAssign: true, Ranges: ranges(t, "203.0.113.10-203.0.113.11", "2001:db8:1::/126")}
	v6 := Pool{Name: "v6", AutoAssign: true, Ranges: ranges(t, "2001:db8:6::/64")}
	buggy := Pool{Name: "buggy", AutoAssign: true, AvoidBuggyIPs: true, Ranges: ranges(t, "192.0.2.254-192.0.3.1")}
	http := []Port{{Protocol: "TCP", Port: 80}}
	https := []Port{{Protocol: "TCP", Port: 443}}
	dns := []Port{{Protocol: "UDP", Port: 53}}
	onlyPool := func(name string) func(string) bool { return func(p string) bool { return p == name } }
	dualFams := []Family{IPv4, IPv6}

	tests := []struct {
		name  string
		pools []Pool
		steps []step
	}{
		{
			name:  "auto-assign hands out the lowest free address of the first pool",
			pools: []Pool{manual, lan, tiny},
			steps: []step{
				{req: Request{Key: "default/a"}, want: []string{"192.0.2.240"}, pool: "lan"},
				{req: Request{Key: "default/b"}, want: []string{"192.0.2.241"}, pool: "lan"},
				{release: "default/a"},
				{req: Request{Key: "default/c"}, want: []string{"192.0.2.240"}},
			},
		},
		{
			name:  "allocation is sticky",
			pools: []Pool{lan},
			steps: []step{
				{req: Request{Key: "default/a"}, want: []string{"192.0.2.240"}},
				{req: Request{Key: "default/b"}, want: []string{"192.0.2.241"}},
				{release: "default/a"},
				// b asks again: it keeps .241 although .240 is free now.
				{req: Request{Key: "default/b", Ports: http}, want: []string{"192.0.2.241"}},
			},
		},
		{
			name:  "pool by name, including one without autoAssign",
			pools: []Pool{lan, manual},
			steps: []step{
				{req: Request{Key: "default/a", Pool: "manual"}, want: []string{"198.51.100.0"}, pool: "manual"},
				{req: Request{Key: "default/b", Pool: "lan"}, want: []string{"192.0.2.240"}, pool: "lan"},
			},
		},
		{
			name:  "unknown pool",
			pools: []Pool{lan},
			steps: []step{
				{req: Request{Key: "default/a", Pool: "nope"}, err: ErrUnknownPool, msg: `pool "nope" does not exist`},
			},
		},
		{
			name:  "requested address picks its pool, even without autoAssign",
			pools: []Pool{lan, manual},
			steps: []step{
				{req: Request{Key: "default/a", IPs: ips("198.51.100.5")}, want: []string{"198.51.100.5"}, pool: "manual"},
				{req: Request{Key: "default/b", IPs: ips("192.0.2.250")}, want: []string{"192.0.2.250"}, pool: "lan"},
				{req: Request{Key: "default/c", Pool: "manual", IPs: ips("198.51.100.6")}, want: []string{"198.51.100.6"}},
			},
		},
		{
			name:  "requested address outside the pools",
			pools: []Pool{lan, manual},
			steps: []step{
				{req: Request{Key: "default/a", IPs: ips("203.0.113.9")}, err: ErrNotInPool, msg: "203.0.113.9 is not in any pool"},
				{req: Request{Key: "default/a", Pool: "lan", IPs: ips("198.51.100.5")}, err: ErrNotInPool, msg: `198.51.100.5 is not in pool "lan"`},
			},
		},
		{
			name:  "requested addresses must come from one pool and match the families",
			pools: []Pool{lan, v6},
			steps: []step{
				{req: Request{Key: "default/a", Families: dualFams, Policy: RequireDualStack, IPs: ips("192.0.2.240", "2001:db8:6::1")},
					err: ErrInvalidRequest, msg: "are in different pools"},
				{req: Request{Key: "default/a", IPs: ips("2001:db8:6::1")}, err: ErrInvalidRequest, msg: "allow only IPv4"},
				{req: Request{Key: "default/a", Families: dualFams, Policy: PreferDualStack, IPs: ips("192.0.2.240", "192.0.2.241")},
					err: ErrInvalidRequest, msg: "at most one per family"},
			},
		},
		{
			name:  "autoAssign false pools are skipped",
			pools: []Pool{manual},
			steps: []step{
				{req: Request{Key: "default/a"}, err: ErrNoPool, msg: "no pool with autoAssign admits this Service"},
			},
		},
		{
			name:  "no pools at all",
			steps: []step{{req: Request{Key: "default/a"}, err: ErrNoPool, msg: "no pools are configured"}},
		},
		{
			name:  "the first pool that admits the Service is used",
			pools: []Pool{tiny, lan},
			steps: []step{
				{req: Request{Key: "team-a/a", Admits: onlyPool("lan")}, want: []string{"192.0.2.240"}, pool: "lan"},
				{req: Request{Key: "team-b/b", Admits: onlyPool("lan"), Pool: "tiny"}, err: ErrPoolNotAllowed, msg: `pool "tiny" does not admit this Service`},
				{req: Request{Key: "team-b/b", Admits: onlyPool("lan"), IPs: ips("192.0.2.1")}, err: ErrPoolNotAllowed},
				{req: Request{Key: "team-c/c", Admits: func(string) bool { return false }}, err: ErrNoPool},
			},
		},
		{
			name:  "a full pool is passed over for the next one with room",
			pools: []Pool{tiny, lan},
			steps: []step{
				{req: Request{Key: "default/a"}, want: []string{"192.0.2.1"}, pool: "tiny"},
				{req: Request{Key: "default/b"}, want: []string{"192.0.2.2"}, pool: "tiny"},
				{req: Request{Key: "default/c"}, want: []string{"192.0.2.240"}, pool: "lan"},
			},
		},
		{
			name:  "exhaustion, then release, then success",
			pools: []Pool{tiny},
			steps: []step{
				{req: Request{Key: "default/a"}, want: []string{"192.0.2.1"}},
				{req: Request{Key: "default/b"}, want: []string{"192.0.2.2"}},
				{req: Request{Key: "default/c"}, err: ErrPoolExhausted, msg: `pool "tiny" has no free IPv4 address (2 of 2 in use)`},
				{req: Request{Key: "default/d", Pool: "tiny"}, err: ErrPoolExhausted},
				{release: "default/a"},
				{req: Request{Key: "default/c"}, want: []string{"192.0.2.1"}},
			},
		},
		{
			name:  "every admitted pool full: each is named",
			pools: []Pool{tiny, {Name: "one", AutoAssign: true, Ranges: ranges(t, "192.0.2.9")}},
			steps: []step{
				{req: Request{Key: "default/a"}}, {req: Request{Key: "default/b"}}, {req: Request{Key: "default/c"}},
				{req: Request{Key: "default/d"}, err: ErrPoolExhausted,
					msg: `pool "tiny" has no free IPv4 address (2 of 2 in use); pool "one" has no free IPv4 address (1 of 1 in use)`},
			},
		},
		{
			name:  "avoidBuggyIPs skips .0 and .255",
			pools: []Pool{buggy},
			steps: []step{
				{req: Request{Key: "default/a"}, want: []string{"192.0.2.254"}},
				{req: Request{Key: "default/b"}, want: []string{"192.0.3.1"}},
				{req: Request{Key: "default/c"}, err: ErrPoolExhausted, msg: "(2 of 2 in use)"},
				{req: Request{Key: "default/c", IPs: ips("192.0.2.255")}, err: ErrNotInPool, msg: "avoidBuggyIPs"},
				{req: Request{Key: "default/c", IPs: ips("192.0.3.0")}, err: ErrNotInPool},
			},
		},
		{
			name:  "sharing a requested address",
			pools: []Pool{lan},
			steps: []step{
				{req: Request{Key: "default/web", IPs: ips("192.0.2.245"), SharingKey: "k", Ports: http}, want: []string{"192.0.2.245"}},
				{req: Request{Key: "default/tls", IPs: ips("192.0.2.245"), SharingKey: "k", Ports: https}, want: []string{"192.0.2.245"}},
				// Same number, other protocol: no collision.
				{req: Request{Key: "default/dns", IPs: ips("192.0.2.245"), SharingKey: "k", Ports: []Port{{Protocol: "UDP", Port: 80}}}, want: []string{"192.0.2.245"}},
				{req: Request{Key: "default/alt", IPs: ips("192.0.2.245"), SharingKey: "k", Ports: http},
					err: ErrAddressInUse, msg: "192.0.2.245 is shared with default/web, which already uses TCP/80"},
				{req: Request{Key: "default/local", IPs: ips("192.0.2.245"), SharingKey: "k", Ports: dns, Backend: "app=x"},
					err: ErrAddressInUse, msg: "externalTrafficPolicy Cluster, or both Local with the same pod selector"},
				{req: Request{Key: "default/other", IPs: ips("192.0.2.245"), SharingKey: "j", Ports: dns},
					err: ErrAddressInUse, msg: `allow-shared-ip key "k"`},
				{req: Request{Key: "default/nokey", IPs: ips("192.0.2.245"), Ports: dns},
					err: ErrAddressInUse, msg: "192.0.2.245 is already used by default/"},
			},
		},
		{
			name:  "an address without a sharing key cannot be shared",
			pools: []Pool{lan},
			steps: []step{
				{req: Request{Key: "default/web", IPs: ips("192.0.2.245"), Ports: http}, want: []string{"192.0.2.245"}},
				{req: Request{Key: "default/tls", IPs: ips("192.0.2.245"), SharingKey: "k", Ports: https},
					err: ErrAddressInUse, msg: "192.0.2.245 is already used by default/web; to share it, give both Services the same allow-shared-ip key"},
			},
		},
		{
			name:  "a sharing key joins a compatible sharer",
			pools: []Pool{lan},
			steps: []step{
				{req: Request{Key: "default/x"}, want: []string{"192.0.2.240"}},
				{req: Request{Key: "default/web", SharingKey: "k", Ports: http}, want: []string{"192.0.2.241"}},
				{req: Request{Key: "default/tls", SharingKey: "k", Ports: https}, want: []string{"192.0.2.241"}},
				// Port 80 collides, so a new address.
				{req: Request{Key: "default/web2", SharingKey: "k", Ports: http}, want: []string{"192.0.2.242"}},
				// Joins the lowest compatible sharer.
				{req: Request{Key: "default/dns", SharingKey: "k", Ports: dns}, want: []string{"192.0.2.241"}},
				{release: "default/web"},
				{release: "default/tls"},
				// dns still holds .241.
				{req: Request{Key: "default/y"}, want: []string{"192.0.2.243"}},
				{release: "default/dns"},
				{req: Request{Key: "default/z"}, want: []string{"192.0.2.241"}},
			},
		},
		{
			name:  "later sharing checks see a Service's current ports",
			pools: []Pool{lan},
			steps: []step{
				{req: Request{Key: "default/a", SharingKey: "k", Ports: http}, want: []string{"192.0.2.240"}},
				{req: Request{Key: "default/a", SharingKey: "k", Ports: https}, want: []string{"192.0.2.240"}},
				{req: Request{Key: "default/b", IPs: ips("192.0.2.240"), SharingKey: "k", Ports: http}, want: []string{"192.0.2.240"}},
				{req: Request{Key: "default/c", IPs: ips("192.0.2.240"), SharingKey: "k", Ports: https}, err: ErrAddressInUse, msg: "default/a, which already uses TCP/443"},
			},
		},
		{
			name:  "a changed sharing key moves a Service off a shared address",
			pools: []Pool{lan},
			steps: []step{
				{req: Request{Key: "default/a", SharingKey: "k", Ports: http}, want: []string{"192.0.2.240"}},
				{req: Request{Key: "default/b", SharingKey: "k", Ports: https}, want: []string{"192.0.2.240"}},
				{req: Request{Key: "default/b", Ports: https}, want: []string{"192.0.2.241"}},
			},
		},
		{
			name:  "RequireDualStack",
			pools: []Pool{lan, dual},
			steps: []step{
				{req: Request{Key: "default/a", Families: dualFams, Policy: RequireDualStack}, want: []string{"203.0.113.10", "2001:db8:1::"}, pool: "dual"},
				{req: Request{Key: "default/b", Families: []Family{IPv6, IPv4}, Policy: RequireDualStack}, want: []string{"2001:db8:1::1", "203.0.113.11"}},
				{req: Request{Key: "default/c", Families: dualFams, Policy: RequireDualStack}, err: ErrPoolExhausted, msg: `pool "dual" has no free IPv4 address (2 of 2 in use)`},
				{req: Request{Key: "default/d", Families: []Family{IPv4}, Policy: RequireDualStack, Pool: "lan"}, err: ErrNoDualStackPool, msg: `pool "lan" has no IPv6 addresses`},
			},
		},
		{
			name:  "RequireDualStack without a dual-stack pool",
			pools: []Pool{lan, v6},
			steps: []step{
				{req: Request{Key: "default/a", Families: dualFams, Policy: RequireDualStack}, err: ErrNoDualStackPool, msg: "no pool can give both IPv4 and IPv6"},
			},
		},
		{
			name:  "PreferDualStack takes both where a pool can, else one",
			pools: []Pool{lan, v6},
			steps: []step{
				{req: Request{Key: "default/a", Families: dualFams, Policy: PreferDualStack}, want: []string{"192.0.2.240"}, pool: "lan"},
				{req: Request{Key: "default/b", Families: []Family{IPv6, IPv4}, Policy: PreferDualStack}, want: []string{"2001:db8:6::"}, pool: "v6"},
				{req: Request{Key: "default/c", Families: dualFams, Policy: PreferDualStack, IPs: ips("2001:db8:6::9")}, want: []string{"2001:db8:6::9"}},
			},
		},
		{
			name:  "PreferDualStack with a dual-stack pool",
			pools: []Pool{lan, dual},
			steps: []step{
				{req: Request{Key: "default/a", Families: dualFams, Policy: PreferDualStack}, want: []string{"203.0.113.10", "2001:db8:1::"}, pool: "dual"},
				{req: Request{Key: "default/b", Families: dualFams, Policy: PreferDualStack, IPs: ips("203.0.113.11")}, want: []string{"203.0.113.11", "2001:db8:1::1"}},
				// dual's IPv4 is used up: fall back to IPv4 alone from lan.
				{req: Request{Key: "default/c", Families: dualFams, Policy: PreferDualStack}, want: []string{"192.0.2.240"}, pool: "lan"},
			},
		},
		{
			name:  "PreferDualStack gains its second family once its pool has room",
			pools: []Pool{{Name: "small", AutoAssign: true, Ranges: ranges(t, "192.0.2.1-192.0.2.2", "2001:db8::1")}},
			steps: []step{
				{req: Request{Key: "default/v6", Families: []Family{IPv6}}, want: []string{"2001:db8::1"}},
				{req: Request{Key: "default/a", Families: dualFams, Policy: PreferDualStack}, want: []string{"192.0.2.1"}},
				{req: Request{Key: "default/b", Families: dualFams, Policy: RequireDualStack}, err: ErrPoolExhausted, msg: `pool "small" has no free IPv6 address (1 of 1 in use)`},
				{release: "default/v6"},
				{req: Request{Key: "default/a", Families: dualFams, Policy: PreferDualStack}, want: []string{"192.0.2.1", "2001:db8::1"}},
			},
		},
		{
			name:  "SingleStack takes the first family only",
			pools: []Pool{dual},
			steps: []step{
				{req: Request{Key: "default/a", Families: []Family{IPv6, IPv4}}, want: []string{"2001:db8:1::"}},
				{req: Request{Key: "default/b", Families: []Family{IPv6}, Pool: "dual", IPs: ips("203.0.113.10")}, err: ErrInvalidRequest},
			},
		},
		{
			name:  "a changed request moves the allocation",
			pools: []Pool{lan, manual},
			steps: []step{
				{req: Request{Key: "default/a"}, want: []string{"192.0.2.240"}},
				{req: Request{Key: "default/a", IPs: ips("192.0.2.249")}, want: []string{"192.0.2.249"}},
				{req: Request{Key: "default/a", IPs: ips("192.0.2.249")}, want: []string{"192.0.2.249"}},
				// Dropping the requested address keeps what it has.
				{req: Request{Key: "default/a"}, want: []string{"192.0.2.249"}},
				{req: Request{Key: "default/a", Pool: "manual"}, want: []string{"198.51.100.0"}, pool: "manual"},
				{req: Request{Key: "default/b"}, want: []string{"192.0.2.240"}},
			},
		},
		{
			name:  "a failed move keeps the old addresses",
			pools: []Pool{lan},
			steps: []step{
				{req: Request{Key: "default/a"}, want: []string{"192.0.2.240"}},
				{req: Request{Key: "default/b"}, want: []string{"192.0.2.241"}},
				{req: Request{Key: "default/a", IPs: ips("192.0.2.241")}, err: ErrAddressInUse, msg: "already used by default/b"},
				{req: Request{Key: "default/a", Pool: "nope"}, err: ErrUnknownPool},
				{req: Request{Key: "default/c"}, want: []string{"192.0.2.242"}},
				{req: Request{Key: "default/a"}, want: []string{"192.0.2.240"}},
			},
		},
		{
			name:  "changing the family policy keeps the address it has",
			pools: []Pool{dual},
			steps: []step{
				{req: Request{Key: "default/a", Families: []Family{IPv4}}, want: []string{"203.0.113.10"}},
				{req: Request{Key: "default/b", Families: []Family{IPv6}}, want: []string{"2001:db8:1::"}},
				{req: Request{Key: "default/a", Families: dualFams, Policy: RequireDualStack}, want: []string{"203.0.113.10", "2001:db8:1::1"}},
				{req: Request{Key: "default/a", Families: []Family{IPv6, IPv4}, Policy: PreferDualStack}, want: []string{"2001:db8:1::1", "203.0.113.10"}},
				{req: Request{Key: "default/a", Families: []Family{IPv4, IPv6}}, want: []string{"203.0.113.10"}},
				// The IPv6 address a dropped is free again.
				{req: Request{Key: "default/c", Families: []Family{IPv6}}, want: []string{"2001:db8:1::1"}},
			},
		},
		{
			name:  "seeding: the first seeded keeps a contested address",
			pools: []Pool{lan},
			steps: []step{
				{seed: []string{"192.0.2.240"}, req: Request{Key: "default/old"}},
				{seed: []string{"192.0.2.240"}, req: Request{Key: "default/new"}, err: ErrAddressInUse, msg: "192.0.2.240 is already used by default/old"},
				{req: Request{Key: "default/old"}, want: []string{"192.0.2.240"}},
				{req: Request{Key: "default/new"}, want: []string{"192.0.2.241"}},
			},
		},
		{
			name:  "seeding shared, orphaned and dual-stack addresses",
			pools: []Pool{lan, dual},
			steps: []step{
				{seed: []string{"192.0.2.245"}, req: Request{Key: "default/a", SharingKey: "k", Ports: http}},
				{seed: []string{"192.0.2.245"}, req: Request{Key: "default/b", SharingKey: "k", Ports: https}},
				{seed: []string{"192.0.2.245"}, req: Request{Key: "default/c", SharingKey: "k", Ports: http}, err: ErrAddressInUse},
				// Outside every pool (the pool shrank while the CCM was down): kept.
				{seed: []string{"10.9.9.9"}, req: Request{Key: "default/orphan"}},
				{req: Request{Key: "default/orphan"}, want: []string{"10.9.9.9"}, pool: ""},
				// Seeded in status order, held in the order of the families.
				{seed: []string{"203.0.113.10", "2001:db8:1::2"}, req: Request{Key: "default/d", Families: []Family{IPv6, IPv4}, Policy: RequireDualStack}},
				{req: Request{Key: "default/d", Families: []Family{IPv6, IPv4}, Policy: RequireDualStack}, want: []string{"2001:db8:1::2", "203.0.113.10"}, pool: "dual"},
				{req: Request{Key: "default/e"}, want: []string{"192.0.2.240"}},
				{seed: []string{"192.0.2.1", "192.0.2.2"}, req: Request{Key: "default/f"}, err: ErrInvalidRequest},
			},
		},
		{
			name:  "invalid requests",
			pools: []Pool{lan},
			steps: []step{
				{req: Request{}, err: ErrInvalidRequest},
				{req: Request{Key: "default/a", Families: []Family{5}}, err: ErrInvalidRequest},
				{req: Request{Key: "default/a", Policy: 7}, err: ErrInvalidRequest},
				{req: Request{Key: "default/a", IPs: []netip.Addr{{}}}, err: ErrInvalidRequest},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(tt.pools)
			for i, s := range tt.steps {
				runStep(t, a, i, s)
				if err := a.checkInvariants(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
		})
	}
}

func runStep(t *testing.T, a *Allocator, i int, s step) {
	t.Helper()
	if s.release != "" {
		a.Release(s.release)
		if _, ok := a.Get(s.release); ok {
			t.Fatalf("step %d: %s still holds addresses after Release", i, s.release)
		}
		return
	}
	var got Allocation
	var err error
	if s.seed != nil {
		err = a.Seed(s.req, ips(s.seed...))
	} else {
		got, err = a.Allocate(s.req)
	}
	if s.err != nil || s.msg != "" {
		if err == nil {
			t.Fatalf("step %d (%s): got %v, want an error", i, s.req.Key, got.IPs)
		}
		if s.err != nil && !errors.Is(err, s.err) {
			t.Fatalf("step %d (%s): error %q does not match %q", i, s.req.Key, err, s.err)
		}
		if !strings.Contains(err.Error(), s.msg) {
			t.Fatalf("step %d (%s): error %q does not say %q", i, s.req.Key, err, s.msg)
		}
		return
	}
	if err != nil {
		t.Fatalf("step %d (%s): %v", i, s.req.Key, err)
	}
	if s.seed != nil {
		return
	}
	if s.want != nil && !slices.Equal(got.IPs, ips(s.want...)) {
		t.Fatalf("step %d (%s): got %v, want %v", i, s.req.Key, got.IPs, s.want)
	}
	if s.pool != "" && got.Pool != s.pool {
		t.Fatalf("step %d (%s): got pool %q, want %q", i, s.req.Key, got.Pool, s.pool)
	}
	if held, ok := a.Get(s.req.Key); !ok || !slices.Equal(held.IPs, got.IPs) || held.Pool != got.Pool {
		t.Fatalf("step %d (%s): Get = %v, %v; Allocate returned %v", i, s.req.Key, held, ok, got)
	}
}

func TestErrorTypes(t *testing.T) {
	a := New([]Pool{{Name: "lan", AutoAssign: true, Ranges: ranges(t, "192.0.2.1")}})
	if _, err := a.Allocate(Request{Key: "default/web", Ports: []Port{{Port: 80}}}); err != nil {
		t.Fatal(err)
	}
	_, err := a.Allocate(Request{Key: "default/api"})
	var exhausted *PoolExhaustedError
	if !errors.As(err, &exhausted) || exhausted.Pool != "lan" || exhausted.Family != IPv4 || exhausted.InUse != 1 || exhausted.Size != 1 {
		t.Errorf("Allocate error = %#v, want a *PoolExhaustedError for lan", err)
	}
	_, err = a.Allocate(Request{Key: "default/api", IPs: ips("192.0.2.1"), SharingKey: "k"})
	var inUse *AddressInUseError
	if !errors.As(err, &inUse) || inUse.Holder != "default/web" || inUse.IP != netip.MustParseAddr("192.0.2.1") || inUse.Conflict != NotShareable {
		t.Errorf("Allocate error = %#v, want an *AddressInUseError naming default/web", err)
	}
	// Why sharing is refused, for callers that pick an event reason.
	b := New([]Pool{{Name: "lan", AutoAssign: true, Ranges: ranges(t, "192.0.2.1")}})
	web := Request{Key: "default/web", SharingKey: "k", Ports: []Port{{Protocol: "TCP", Port: 80}}}
	if _, err := b.Allocate(web); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		req  Request
		want ShareConflict
	}{
		{Request{Key: "default/a", SharingKey: "j"}, SharingKeyDiffers},
		{Request{Key: "default/a", SharingKey: "k", Backend: "app=a"}, BackendDiffers},
		{Request{Key: "default/a", SharingKey: "k", Ports: []Port{{Port: 80}}}, PortCollides},
		{Request{Key: "default/a"}, NotShareable},
	} {
		tt.req.IPs = ips("192.0.2.1")
		_, err := b.Allocate(tt.req)
		if !errors.As(err, &inUse) || inUse.Conflict != tt.want {
			t.Errorf("Allocate(%+v) = %v, want conflict %d", tt.req, err, tt.want)
		}
	}
	if want := "192.0.2.5 is already used by default/web; to share it, give both Services the same allow-shared-ip key"; (&AddressInUseError{IP: netip.MustParseAddr("192.0.2.5"), Holder: "default/web"}).Error() != want {
		t.Errorf("message = %q, want %q", inUse.Error(), want)
	}
}

// TestCallerCannotChangeState checks that what goes in and comes out is
// copied: the provider may reuse its slices.
func TestCallerCannotChangeState(t *testing.T) {
	a := New([]Pool{{Name: "lan", AutoAssign: true, Ranges: ranges(t, "192.0.2.1-192.0.2.9")}})
	ports := []Port{{Protocol: "TCP", Port: 80}}
	got, err := a.Allocate(Request{Key: "default/a", SharingKey: "k", Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	got.IPs[0] = netip.MustParseAddr("192.0.2.9")
	ports[0].Port = 443
	if held, _ := a.Get("default/a"); held.IPs[0] != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("changing the returned slice changed the allocation to %v", held.IPs)
	}
	// default/a still exposes port 80, so a sharer on 80 collides.
	if _, err := a.Allocate(Request{Key: "default/b", IPs: ips("192.0.2.1"), SharingKey: "k", Ports: []Port{{Protocol: "TCP", Port: 80}}}); !errors.Is(err, ErrAddressInUse) {
		t.Errorf("sharing port 80 after the caller changed its slice: %v, want ErrAddressInUse", err)
	}
}

func TestSetPoolsKeepsOrphans(t *testing.T) {
	lan := Pool{Name: "lan", AutoAssign: true, Ranges: ranges(t, "192.0.2.240-192.0.2.250")}
	gone := Pool{Name: "gone", AutoAssign: false, Ranges: ranges(t, "198.51.100.0/30")}
	a := New([]Pool{lan, gone})
	for _, req := range []Request{
		{Key: "default/a"}, {Key: "default/b"}, {Key: "default/c"},
		{Key: "default/d", Pool: "gone"},
		{Key: "default/e", Pool: "gone", SharingKey: "k", Ports: []Port{{Port: 80}}},
		{Key: "default/f", Pool: "gone", SharingKey: "k", Ports: []Port{{Port: 81}}},
	} {
		if _, err := a.Allocate(req); err != nil {
			t.Fatal(err)
		}
	}
	// lan shrinks to .240-.241 and gone disappears.
	shrunk := Pool{Name: "lan", AutoAssign: true, Ranges: ranges(t, "192.0.2.240-192.0.2.241")}
	orphans := a.SetPools([]Pool{shrunk})
	want := []Orphan{
		{Key: "default/c", IP: netip.MustParseAddr("192.0.2.242")},
		{Key: "default/d", IP: netip.MustParseAddr("198.51.100.0")},
		{Key: "default/e", IP: netip.MustParseAddr("198.51.100.1")},
		{Key: "default/f", IP: netip.MustParseAddr("198.51.100.1")},
	}
	if !slices.Equal(orphans, want) {
		t.Fatalf("SetPools orphans = %v, want %v", orphans, want)
	}
	if got := a.Orphans(); !slices.Equal(got, want) {
		t.Fatalf("Orphans() = %v, want %v", got, want)
	}
	if err := a.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	// Asking again with the same request keeps every address.
	for _, tt := range []struct {
		req  Request
		want string
	}{
		{Request{Key: "default/a"}, "192.0.2.240"},
		{Request{Key: "default/c"}, "192.0.2.242"},
		{Request{Key: "default/d", Pool: "gone"}, "198.51.100.0"},
		{Request{Key: "default/e", Pool: "gone", SharingKey: "k", Ports: []Port{{Port: 80}}}, "198.51.100.1"},
	} {
		got, err := a.Allocate(tt.req)
		if err != nil || !slices.Equal(got.IPs, ips(tt.want)) {
			t.Errorf("Allocate(%s) after shrink = %v, %v; want %s", tt.req.Key, got.IPs, err, tt.want)
		}
	}
	// The shrunk pool is full; orphans are never handed out again.
	if _, err := a.Allocate(Request{Key: "default/g"}); !errors.Is(err, ErrPoolExhausted) {
		t.Errorf("Allocate in the full shrunk pool: %v, want ErrPoolExhausted", err)
	}
	wantStats := []PoolStats{{Pool: "lan", Family: IPv4, Size: 2, InUse: 2}}
	if got := a.Stats(); !slices.Equal(got, wantStats) {
		t.Errorf("Stats() = %v, want %v", got, wantStats)
	}
	// Growing the pool back adopts the orphan.
	if orphans := a.SetPools([]Pool{lan, gone}); len(orphans) != 0 {
		t.Errorf("orphans after restoring the pools: %v", orphans)
	}
	if got, _ := a.Get("default/c"); got.Pool != "lan" {
		t.Errorf("default/c is in pool %q after restoring, want lan", got.Pool)
	}
	if got, err := a.Allocate(Request{Key: "default/g"}); err != nil || got.IPs[0] != netip.MustParseAddr("192.0.2.243") {
		t.Errorf("Allocate after restoring = %v, %v; want 192.0.2.243", got.IPs, err)
	}
	if err := a.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

func TestSetPoolsAvoidBuggyChange(t *testing.T) {
	p := Pool{Name: "lan", AutoAssign: true, Ranges: ranges(t, "192.0.2.0/24")}
	a := New([]Pool{p})
	for i := 0; i < 3; i++ {
		if _, err := a.Allocate(Request{Key: fmt.Sprint("default/", i)}); err != nil {
			t.Fatal(err)
		}
	}
	p.AvoidBuggyIPs = true
	a.SetPools([]Pool{p})
	if err := a.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	// .0 stays with its holder; the next is .3.
	if got, _ := a.Get("default/0"); got.IPs[0] != netip.MustParseAddr("192.0.2.0") {
		t.Errorf("default/0 holds %v, want 192.0.2.0", got.IPs)
	}
	if got, err := a.Allocate(Request{Key: "default/x"}); err != nil || got.IPs[0] != netip.MustParseAddr("192.0.2.3") {
		t.Errorf("Allocate = %v, %v; want 192.0.2.3", got.IPs, err)
	}
	a.Release("default/0")
	if err := a.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

func TestStats(t *testing.T) {
	a := New([]Pool{
		{Name: "lan", AutoAssign: true, AvoidBuggyIPs: true, Ranges: ranges(t, "192.0.2.0/24", "2001:db8::/64")},
		{Name: "v6", Ranges: ranges(t, "2001:db8:1::/48")},
	})
	for _, req := range []Request{
		{Key: "default/a", Families: []Family{IPv4, IPv6}, Policy: RequireDualStack},
		{Key: "default/b"},
		{Key: "default/c", IPs: ips("2001:db8:1::5"), Families: []Family{IPv6}},
	} {
		if _, err := a.Allocate(req); err != nil {
			t.Fatal(err)
		}
	}
	want := []PoolStats{
		{Pool: "lan", Family: IPv4, Size: 254, InUse: 2},
		{Pool: "lan", Family: IPv6, Size: 1 << 64, InUse: 1},
		{Pool: "v6", Family: IPv6, Size: 1 << 80, InUse: 1},
	}
	if got := a.Stats(); !slices.Equal(got, want) {
		t.Errorf("Stats() = %v, want %v", got, want)
	}
}

// TestLargeIPv6Pool allocates 100,000 addresses in a /64: nothing may
// enumerate the range or keep a bitmap of it.
func TestLargeIPv6Pool(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	a := New([]Pool{{Name: "v6", AutoAssign: true, Ranges: ranges(t, "2001:db8::/64")}})
	req := Request{Families: []Family{IPv6}}
	for i := 0; i < n; i++ {
		req.Key = fmt.Sprintf("ns/svc-%d", i)
		if _, err := a.Allocate(req); err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
	}
	last, _ := a.Get(fmt.Sprintf("ns/svc-%d", n-1))
	if want := addrAt(t, "2001:db8::", n-1); last.IPs[0] != want {
		t.Fatalf("address %d is %s, want %s", n-1, last.IPs[0], want)
	}
	// Free every other one; new Services fill the lowest holes first.
	for i := 0; i < n; i += 2 {
		a.Release(fmt.Sprintf("ns/svc-%d", i))
	}
	for i := 0; i < 3; i++ {
		req.Key = fmt.Sprintf("ns/new-%d", i)
		got, err := a.Allocate(req)
		if err != nil || got.IPs[0] != addrAt(t, "2001:db8::", 2*i) {
			t.Fatalf("Allocate(%s) = %v, %v; want %s", req.Key, got.IPs, err, addrAt(t, "2001:db8::", 2*i))
		}
	}
	if got := a.Stats(); got[0].InUse != n/2+3 || got[0].Size != 1<<64 {
		t.Errorf("Stats() = %v, want %d of 2^64 in use", got, n/2+3)
	}
	if err := a.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

func addrAt(t *testing.T, base string, i int) netip.Addr {
	t.Helper()
	b := netip.MustParseAddr(base).As16()
	for j := 15; i > 0; j-- {
		sum := int(b[j]) + i&0xff
		b[j] = byte(sum)
		i = i>>8 + sum>>8
	}
	return netip.AddrFrom16(b)
}

func ranges(t testing.TB, specs ...string) []Range {
	t.Helper()
	out := make([]Range, len(specs))
	for i, s := range specs {
		out[i] = mustRange(t, s)
	}
	return out
}

func ips(specs ...string) []netip.Addr {
	out := make([]netip.Addr, len(specs))
	for i, s := range specs {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// checkInvariants verifies the allocator's indexes against each other:
// every holder of an address may share it with the others, keys and
// addresses agree, the range indexes and counts match the held addresses.
func (a *Allocator) checkInvariants() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for key, h := range a.keys {
		if h.key != key {
			return fmt.Errorf("key %s maps to a holding of %s", key, h.key)
		}
		for _, ip := range h.ips {
			use := a.addrs[ip]
			if use == nil || !slices.Contains(use.holders, h) {
				return fmt.Errorf("%s holds %s, but the address does not list it", key, ip)
			}
		}
	}
	var inUse = map[*poolState][2]int{}
	for ip, use := range a.addrs {
		if len(use.holders) == 0 {
			return fmt.Errorf("%s is recorded with no holder", ip)
		}
		for _, h := range use.holders {
			if a.keys[h.key] != h {
				return fmt.Errorf("%s lists %s, which no longer holds it", ip, h.key)
			}
			if err := checkShare(ip, use, h.key, h.share); err != nil {
				return fmt.Errorf("holders of %s may not share it: %v", ip, err)
			}
			if k := h.share.key; k != "" {
				if _, ok := a.shared[k][ip]; !ok {
					return fmt.Errorf("%s held under sharing key %q is missing from the sharing index", ip, k)
				}
			}
		}
		if p := a.poolOf(ip); p != use.pool {
			return fmt.Errorf("%s is recorded in the wrong pool", ip)
		}
		if _, orphan := a.orphans[ip]; orphan != (use.pool == nil) {
			return fmt.Errorf("%s: orphan index is wrong", ip)
		}
		if use.pool != nil {
			c := inUse[use.pool]
			c[famIndex(FamilyOf(ip))]++
			inUse[use.pool] = c
		}
	}
	for k, set := range a.shared {
		for ip := range set {
			use := a.addrs[ip]
			if use == nil || !slices.ContainsFunc(use.holders, func(h *holding) bool { return h.share.key == k }) {
				return fmt.Errorf("sharing index lists %s under %q, but no holder has that key", ip, k)
			}
		}
	}
	for _, p := range a.pools {
		if inUse[p] != p.inUse {
			return fmt.Errorf("pool %s counts %v in use, but %v are held", p.Name, p.inUse, inUse[p])
		}
		for _, r := range p.ranges {
			var err error
			inorder(r.root, func(n *interval) {
				for _, ip := range []netip.Addr{n.start, n.end} {
					if a.addrs[ip] == nil && err == nil {
						err = fmt.Errorf("range %s marks %s used, but nobody holds it", r.Range, ip)
					}
				}
			})
			if err != nil {
				return err
			}
		}
	}
	for ip := range a.addrs {
		for _, p := range a.pools {
			for _, r := range p.ranges {
				if r.Contains(ip) && !r.used(ip) && !r.skippable(ip) {
					return fmt.Errorf("%s is held but range %s does not mark it used", ip, r.Range)
				}
			}
		}
	}
	return nil
}
