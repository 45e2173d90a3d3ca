package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// FuzzAllocator runs arbitrary sequences of Allocate, Release, Seed and
// SetPools. After every step the indexes must agree, a request asked twice
// must get the same answer (stickiness), requested addresses must be
// honoured, and every error must be one of the documented kinds. The seeds
// run as a plain test; explore with:
//
//	go test -run x -fuzz FuzzAllocator -fuzztime 30s ./ipam
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0})
	f.Add([]byte{0, 0x13, 0x42, 0x07, 0, 0x23, 0x42, 0x17, 4, 0, 0, 0, 0, 0x33, 0x42, 0x27})
	f.Add([]byte{3, 0x11, 0x85, 0x01, 3, 0x21, 0x85, 0x02, 5, 0, 0, 0, 6, 0, 0, 0, 1, 1, 0, 0})
	f.Add([]byte("\x00\xff\xff\xff\x00\xfe\xfe\xfe\x04\x00\x00\x00\x06\x00\x00\x00\x00\x7f\x3c\x11"))
	poolSets := [][]Pool{
		{
			{Name: "a", AutoAssign: true, AvoidBuggyIPs: true, Ranges: mustRanges("192.0.2.254-192.0.3.2", "2001:db8::/126")},
			{Name: "b", AutoAssign: true, Ranges: mustRanges("198.51.100.0/30")},
			{Name: "m", Ranges: mustRanges("203.0.113.0/30", "2001:db8:1::/127")},
		},
		{ // a shrinks, b disappears, m grows and becomes automatic
			{Name: "a", AutoAssign: true, Ranges: mustRanges("192.0.2.254-192.0.3.0")},
			{Name: "m", AutoAssign: true, Ranges: mustRanges("203.0.113.0/29", "2001:db8:1::/126")},
		},
	}
	addrs := mustAddrs("192.0.2.254", "192.0.2.255", "192.0.3.1", "198.51.100.2", "203.0.113.1", "203.0.113.6",
		"2001:db8::1", "2001:db8:1::1", "10.0.0.1")
	f.Fuzz(func(t *testing.T, data []byte) {
		a := New(poolSets[0])
		for len(data) >= 4 {
			op, x, y, z := data[0], data[1], data[2], data[3]
			data = data[4:]
			req := Request{Key: fmt.Sprintf("ns/s%d", x&7)}
			req.Families = [][]Family{{IPv4}, {IPv6}, {IPv4, IPv6}, {IPv6, IPv4}}[x>>3&3]
			req.Policy = Policy(x >> 5 % 3)
			if y&1 != 0 {
				req.IPs = []netip.Addr{addrs[int(y>>1)%len(addrs)]}
			}
			if y&0x80 != 0 {
				req.Pool = []string{"a", "b", "m", "gone"}[y>>5&3]
			}
			if z&3 != 0 {
				req.SharingKey = fmt.Sprint("k", z&1)
				req.Ports = []Port{{Protocol: "TCP", Port: int32(z >> 2 & 3)}}
				if z&0x10 != 0 {
					req.Backend = "local"
				}
			}
			if z&0x20 != 0 {
				req.Admits = func(pool string) bool { return pool != "a" }
			}
			switch op % 8 {
			case 0, 1, 2, 3:
				got, err := a.Allocate(req)
				if err != nil {
					if !knownError(err) && !errors.Is(err, ErrInvalidRequest) && !errors.Is(err, ErrUnknownPool) && !errors.Is(err, ErrPoolNotAllowed) {
						t.Fatalf("Allocate(%+v): undocumented error %v", req, err)
					}
					break
				}
				for _, ip := range req.IPs {
					if !slices.Contains(got.IPs, ip) {
						t.Fatalf("Allocate(%+v) = %v, without the requested address", req, got)
					}
				}
				again, err := a.Allocate(req)
				if err != nil || !slices.Equal(again.IPs, got.IPs) || again.Pool != got.Pool {
					t.Fatalf("Allocate(%+v) = %v, then %v, %v", req, got, again, err)
				}
			case 4:
				a.Release(req.Key)
			case 5:
				if err := a.Seed(req, req.IPs); err != nil && len(req.IPs) > 0 && !errors.Is(err, ErrAddressInUse) && !errors.Is(err, ErrInvalidRequest) {
					t.Fatalf("Seed(%+v): undocumented error %v", req, err)
				}
			case 6:
				before := a.snapshot()
				a.SetPools(poolSets[x&1])
				if after := a.snapshot(); !maps2Equal(before, after) {
					t.Fatalf("SetPools moved allocations:\n%v\n%v", before, after)
				}
			case 7:
				a.Stats()
			}
			if err := a.checkInvariants(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// snapshot returns every key's addresses.
func (a *Allocator) snapshot() map[string][]netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string][]netip.Addr{}
	for k, h := range a.keys {
		out[k] = slices.Clone(h.ips)
	}
	return out
}

func maps2Equal(x, y map[string][]netip.Addr) bool {
	if len(x) != len(y) {
		return false
	}
	for k, v := range x {
		if !slices.Equal(v, y[k]) {
			return false
		}
	}
	return true
}

func mustRanges(specs ...string) []Range {
	out := make([]Range, len(specs))
	for i, s := range specs {
		r, err := ParseRange(s)
		if err != nil {
			panic(err)
		}
		out[i] = r
	}
	return out
}

func mustAddrs(specs ...string) []netip.Addr {
	out := make([]netip.Addr, len(specs))
	for i, s := range specs {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}
