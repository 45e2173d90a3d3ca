package ipam

import (
	"fmt"
	"net/netip"
	"strings"
)

// Range is an inclusive span of addresses of one family.
type Range struct {
	First netip.Addr
	Last  netip.Addr
}

// ipv4Mapped is ::ffff:0:0/96: IPv4 addresses written as IPv6. No VIP may
// be one of them; an IPv4 address belongs in an IPv4 range.
var ipv4Mapped = Range{First: netip.MustParseAddr("::ffff:0.0.0.0"), Last: netip.MustParseAddr("::ffff:255.255.255.255")}

// ParseRange parses "IP", "CIDR" or "FIRST-LAST". A CIDR must be given by its
// network address so that a typo like 192.0.2.7/24 is caught, not widened.
func ParseRange(s string) (Range, error) {
	r, err := parseRange(s)
	if err != nil {
		return Range{}, err
	}
	if r.Overlaps(ipv4Mapped) {
		return Range{}, fmt.Errorf("%q includes IPv4-mapped addresses (::ffff:0:0/96); write IPv4 addresses in IPv4 form", strings.TrimSpace(s))
	}
	return r, nil
}

func parseRange(s string) (Range, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Range{}, fmt.Errorf("empty address")
	}
	if first, last, ok := strings.Cut(s, "-"); ok {
		f, err := parseAddr(first)
		if err != nil {
			return Range{}, err
		}
		l, err := parseAddr(last)
		if err != nil {
			return Range{}, err
		}
		if f.Is4() != l.Is4() {
			return Range{}, fmt.Errorf("%q: first and last address are of different families", s)
		}
		if l.Less(f) {
			return Range{}, fmt.Errorf("%q: first address is after last", s)
		}
		return Range{First: f, Last: l}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Range{}, fmt.Errorf("%q is not a valid CIDR", s)
		}
		if p.Addr().Zone() != "" {
			return Range{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		if p.Addr().Is4In6() {
			return Range{}, fmt.Errorf("%q: IPv4-mapped IPv6 addresses are not allowed; write the IPv4 form", s)
		}
		if p.Masked() != p {
			return Range{}, fmt.Errorf("%q is not a network address (did you mean %s?)", s, p.Masked())
		}
		return Range{First: p.Addr(), Last: lastInPrefix(p)}, nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return Range{}, err
	}
	return Range{First: a, Last: a}, nil
}

func parseAddr(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q: IPv4-mapped IPv6 addresses are not allowed; write the IPv4 form", s)
	}
	return a, nil
}

func lastInPrefix(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Is4 reports whether the range holds IPv4 addresses.
func (r Range) Is4() bool { return r.First.Is4() }

// Contains reports whether a lies in the range.
func (r Range) Contains(a netip.Addr) bool {
	return a.Is4() == r.First.Is4() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// Overlaps reports whether the two ranges share an address.
func (r Range) Overlaps(o Range) bool {
	return r.Is4() == o.Is4() && r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}
