package ipam

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestRangeStateMatchesModel drives the interval index with random adds and
// removes and compares every answer with a plain set of addresses.
func TestRangeStateMatchesModel(t *testing.T) {
	tests := []struct {
		name       string
		rng        string
		avoidBuggy bool
	}{
		{"ipv4", "192.0.2.0/23", false},
		{"ipv4 avoiding buggy addresses", "10.0.0.0/22", true},
		{"ipv4 range not aligned", "198.51.100.250-198.51.101.9", true},
		{"ipv6", "2001:db8::ff00/120", false},
		{"ipv6 ignores avoidBuggy", "2001:db8::ff00/120", true},
		{"single address", "203.0.113.7", false},
		{"end of the address space", "255.255.255.250-255.255.255.255", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRangeState(mustRange(t, tt.rng), tt.avoidBuggy)
			var all []netip.Addr
			for a := r.First; a.IsValid() && a.Compare(r.Last) <= 0; a = a.Next() {
				all = append(all, a)
			}
			model := map[netip.Addr]bool{}
			rnd := rand.New(rand.NewPCG(1, uint64(len(tt.name))))
			for i := 0; i < 20000; i++ {
				a := all[rnd.IntN(len(all))]
				// Bias towards filling up so that exhaustion is reached too.
				if rnd.IntN(3) > 0 {
					r.add(a)
					if !r.skippable(a) {
						model[a] = true
					}
				} else {
					r.remove(a)
					delete(model, a)
				}
				if i%97 == 0 || i > 19900 {
					checkRangeState(t, r, all, model)
				}
			}
			// Fill completely through firstFree, then empty again.
			for {
				a, ok := r.firstFree()
				if !ok {
					break
				}
				if model[a] || r.skippable(a) {
					t.Fatalf("firstFree returned %s, which is used or skipped", a)
				}
				r.add(a)
				model[a] = true
			}
			checkRangeState(t, r, all, model)
			for a := range model {
				r.remove(a)
				delete(model, a)
			}
			if r.root != nil {
				t.Fatalf("index not empty after removing everything: [%s, %s]", r.root.start, r.root.end)
			}
		})
	}
}

func checkRangeState(t *testing.T, r *rangeState, all []netip.Addr, model map[netip.Addr]bool) {
	t.Helper()
	var want netip.Addr
	for _, a := range all {
		if got := r.used(a); got != model[a] {
			t.Fatalf("used(%s) = %v, want %v", a, got, model[a])
		}
		if !want.IsValid() && !model[a] && !r.skippable(a) {
			want = a
		}
	}
	got, ok := r.firstFree()
	if ok != want.IsValid() || got != want {
		t.Fatalf("firstFree() = %s, %v; want %s", got, ok, want)
	}
	if err := checkTreap(r, r.root, netip.Addr{}, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	// Intervals are maximal: the usable address after one is never the
	// start of the next.
	var prev *interval
	inorder(r.root, func(n *interval) {
		if prev != nil && r.next(prev.end) == n.start {
			t.Fatalf("intervals [%s,%s] and [%s,%s] should have been merged", prev.start, prev.end, n.start, n.end)
		}
		if r.skippable(n.start) || r.skippable(n.end) {
			t.Fatalf("interval [%s,%s] starts or ends on a skipped address", n.start, n.end)
		}
		prev = n
	})
}

// checkTreap verifies search-tree order, heap order of priorities and that
// intervals do not overlap.
func checkTreap(r *rangeState, n *interval, lo, hi netip.Addr) error {
	if n == nil {
		return nil
	}
	if n.end.Less(n.start) {
		return fmt.Errorf("interval [%s,%s] is reversed", n.start, n.end)
	}
	if lo.IsValid() && n.start.Compare(lo) <= 0 || hi.IsValid() && hi.Compare(n.end) <= 0 {
		return fmt.Errorf("interval [%s,%s] out of order (bounds %s, %s)", n.start, n.end, lo, hi)
	}
	for _, c := range []*interval{n.left, n.right} {
		if c != nil && c.prio > n.prio {
			return fmt.Errorf("heap order broken below [%s,%s]", n.start, n.end)
		}
	}
	if err := checkTreap(r, n.left, lo, n.start); err != nil {
		return err
	}
	return checkTreap(r, n.right, n.end, hi)
}

func inorder(n *interval, fn func(*interval)) {
	if n == nil {
		return
	}
	inorder(n.left, fn)
	fn(n)
	inorder(n.right, fn)
}

func TestRangeSize(t *testing.T) {
	tests := []struct {
		rng        string
		avoidBuggy bool
		want       float64
	}{
		{"192.0.2.7", false, 1},
		{"192.0.2.0/24", false, 256},
		{"192.0.2.0/24", true, 254},
		{"192.0.2.240-192.0.2.250", false, 11},
		{"192.0.2.250-192.0.3.5", true, 10}, // .250-.254 and .1-.5
		{"10.0.0.0/16", true, 65536 - 512},
		{"0.0.0.0/0", false, 1 << 32},
		{"2001:db8::/120", true, 256},
		{"2001:db8::/64", false, 1 << 64},
		{"2001:db8::/32", false, 1 << 96},
		{"2001:db8::ffff:ffff:ffff:ffff-2001:db8::1:0:0:0:0", false, 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s avoidBuggy=%v", tt.rng, tt.avoidBuggy), func(t *testing.T) {
			if got := newRangeState(mustRange(t, tt.rng), tt.avoidBuggy).size(); got != tt.want {
				t.Errorf("size() = %v, want %v", got, tt.want)
			}
		})
	}
}

func mustRange(t testing.TB, s string) Range {
	t.Helper()
	r, err := ParseRange(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
