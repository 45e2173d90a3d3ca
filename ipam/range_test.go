package ipam

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		in          string
		first, last string
		err         string
	}{
		{in: "192.0.2.7", first: "192.0.2.7", last: "192.0.2.7"},
		{in: " 192.0.2.7 ", first: "192.0.2.7", last: "192.0.2.7"},
		{in: "192.0.2.0/24", first: "192.0.2.0", last: "192.0.2.255"},
		{in: "192.0.2.240-192.0.2.250", first: "192.0.2.240", last: "192.0.2.250"},
		{in: "192.0.2.240 - 192.0.2.250", first: "192.0.2.240", last: "192.0.2.250"},
		{in: "2001:db8:1::/120", first: "2001:db8:1::", last: "2001:db8:1::ff"},
		{in: "2001:db8::/64", first: "2001:db8::", last: "2001:db8::ffff:ffff:ffff:ffff"},
		{in: "2001:db8::1-2001:db8::1", first: "2001:db8::1", last: "2001:db8::1"},
		{in: "0.0.0.0/0", first: "0.0.0.0", last: "255.255.255.255"},
		{in: "", err: "empty address"},
		{in: "192.0.2.9-192.0.2.1", err: "first address is after last"},
		{in: "192.0.2.1-2001:db8::1", err: "different families"},
		{in: "192.0.2.7/24", err: "did you mean 192.0.2.0/24?"},
		{in: "192.0.2.0/33", err: "is not a valid CIDR"},
		{in: "192.0.2", err: "is not an IP address"},
		{in: "fe80::1%eth0", err: "zones are not allowed"},
		{in: "fe80::%eth0/64", err: "is not a valid CIDR"},
		{in: "::ffff:192.0.2.1", err: "IPv4-mapped"},
		{in: "::ffff:192.0.2.0/120", err: "IPv4-mapped"},
		{in: "::/80", err: "includes IPv4-mapped addresses"},
		{in: "::fffe:ffff:ffff-::1:0:0:1", err: "includes IPv4-mapped addresses"},
		{in: "192.0.2.1-", err: "is not an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseRange(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseRange(%q) = %v, %v; want an error saying %q", tt.in, r, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Range{First: netip.MustParseAddr(tt.first), Last: netip.MustParseAddr(tt.last)}
			if r != want {
				t.Errorf("ParseRange(%q) = %v, want %v", tt.in, r, want)
			}
		})
	}
}

func TestRangeOverlapsAndContains(t *testing.T) {
	a := mustRange(t, "192.0.2.10-192.0.2.20")
	tests := []struct {
		other string
		want  bool
	}{
		{"192.0.2.20", true},
		{"192.0.2.0/28", true}, // .0-.15
		{"192.0.2.21-192.0.2.30", false},
		{"192.0.2.0-192.0.2.9", false},
		{"::c000:20a/128", false}, // same bytes, other family
	}
	for _, tt := range tests {
		if got := a.Overlaps(mustRange(t, tt.other)); got != tt.want {
			t.Errorf("%s overlaps %s = %v, want %v", a, tt.other, got, tt.want)
		}
	}
	if !a.Contains(netip.MustParseAddr("192.0.2.10")) || a.Contains(netip.MustParseAddr("192.0.2.21")) {
		t.Errorf("Contains is wrong at the edges of %s", a)
	}
}

// FuzzParseRange checks that whatever ParseRange accepts is a well-formed
// range that prints back to itself. The seeds run as a plain test; explore
// with: go test -run x -fuzz FuzzParseRange -fuzztime 30s ./ipam
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"192.0.2.7", "192.0.2.0/24", "192.0.2.240-192.0.2.250", "2001:db8:1::/120",
		"2001:db8::1-2001:db8::ff", "192.0.2.9-192.0.2.1", "192.0.2.7/24", "fe80::1%eth0",
		"::ffff:192.0.2.1", "0.0.0.0/0", "::/0", "1-2-3", "", " - ", "/", "192.0.2.1/32",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if r != (Range{}) {
				t.Fatalf("ParseRange(%q) returned %v with error %v", s, r, err)
			}
			return
		}
		if !r.First.IsValid() || !r.Last.IsValid() {
			t.Fatalf("ParseRange(%q) = %v: invalid address", s, r)
		}
		if r.First.Is4() != r.Last.Is4() || r.Last.Less(r.First) {
			t.Fatalf("ParseRange(%q) = %v: mixed families or reversed", s, r)
		}
		if r.First.Zone() != "" || r.First.Is4In6() || r.Last.Is4In6() {
			t.Fatalf("ParseRange(%q) = %v: zone or IPv4-mapped address accepted", s, r)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) || !r.Overlaps(r) {
			t.Fatalf("ParseRange(%q) = %v does not contain its own ends", s, r)
		}
		again, err := ParseRange(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseRange(%q) = %v, which prints as %q and parses back as %v, %v", s, r, r.String(), again, err)
		}
		if size := newRangeState(r, false).size(); size < 1 {
			t.Fatalf("ParseRange(%q) = %v has size %v", s, r, size)
		}
	})
}
