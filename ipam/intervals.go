package ipam

import (
	"math/rand/v2"
	"net/netip"
)

// rangeState indexes the used addresses of one configured range as a set of
// disjoint, maximal intervals kept in a treap ordered by first address. The
// first free address is found in O(log n) in the number of intervals, which
// is at most the number of allocated addresses: the size of the range never
// matters, so a /64 costs what a /29 does.
//
// With avoidBuggy, IPv4 addresses ending in .0 and .255 are never part of the
// index; two intervals separated only by such addresses are merged, so the
// address after an interval (skipping them) is always free.
type rangeState struct {
	Range
	avoidBuggy bool
	root       *interval
}

// interval is a treap node: [start, end] are all in use (bar skipped
// addresses); no other interval starts at next(end).
type interval struct {
	start, end  netip.Addr
	prio        uint64
	left, right *interval
}

func newRangeState(r Range, avoidBuggy bool) *rangeState {
	return &rangeState{Range: r, avoidBuggy: avoidBuggy && r.Is4()}
}

// isBuggy reports whether a is an IPv4 address that some old firmware
// mistakes for a network or broadcast address.
func isBuggy(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	last := a.As4()[3]
	return last == 0 || last == 255
}

// skippable reports whether the range never hands out or indexes a.
func (r *rangeState) skippable(a netip.Addr) bool { return r.avoidBuggy && isBuggy(a) }

// next returns the first usable address after a, invalid past the end of
// the address space.
func (r *rangeState) next(a netip.Addr) netip.Addr {
	for a = a.Next(); a.IsValid() && r.skippable(a); a = a.Next() {
	}
	return a
}

// prev returns the last usable address before a.
func (r *rangeState) prev(a netip.Addr) netip.Addr {
	for a = a.Prev(); a.IsValid() && r.skippable(a); a = a.Prev() {
	}
	return a
}

// firstUsable returns the lowest usable address at or after a.
func (r *rangeState) firstUsable(a netip.Addr) netip.Addr {
	if r.skippable(a) {
		return r.next(a)
	}
	return a
}

// firstFree returns the lowest address of the range that is neither used
// nor skipped.
func (r *rangeState) firstFree() (netip.Addr, bool) {
	c := r.firstUsable(r.First)
	if !c.IsValid() || r.Last.Less(c) {
		return netip.Addr{}, false
	}
	if n := r.floor(c); n != nil && c.Compare(n.end) <= 0 {
		c = r.next(n.end)
	}
	if !c.IsValid() || r.Last.Less(c) {
		return netip.Addr{}, false
	}
	return c, true
}

// add marks a (inside the range) as used.
func (r *rangeState) add(a netip.Addr) {
	if r.skippable(a) {
		return
	}
	left := r.floor(a)
	if left != nil && a.Compare(left.end) <= 0 {
		return // already used
	}
	right := r.after(a)
	joinLeft := left != nil && r.next(left.end) == a
	joinRight := right != nil && r.next(a) == right.start
	switch {
	case joinLeft && joinRight:
		left.end = right.end
		r.root = deleteNode(r.root, right.start)
	case joinLeft:
		left.end = a
	case joinRight:
		// No interval starts between a and right.start, so moving the key
		// down to a keeps the tree ordered.
		right.start = a
	default:
		r.root = insertNode(r.root, &interval{start: a, end: a, prio: rand.Uint64()})
	}
}

// remove marks a as free again.
func (r *rangeState) remove(a netip.Addr) {
	n := r.floor(a)
	if n == nil || n.end.Less(a) || r.skippable(a) {
		return // not used
	}
	switch {
	case n.start == a && n.end == a:
		r.root = deleteNode(r.root, a)
	case n.start == a:
		n.start = r.next(a) // still below the next interval's start
	case n.end == a:
		n.end = r.prev(a)
	default:
		end := n.end
		n.end = r.prev(a)
		r.root = insertNode(r.root, &interval{start: r.next(a), end: end, prio: rand.Uint64()})
	}
}

// used reports whether a is marked used.
func (r *rangeState) used(a netip.Addr) bool {
	n := r.floor(a)
	return n != nil && a.Compare(n.end) <= 0 && !r.skippable(a)
}

// floor returns the interval with the greatest start <= a.
func (r *rangeState) floor(a netip.Addr) *interval {
	var best *interval
	for n := r.root; n != nil; {
		if n.start.Compare(a) <= 0 {
			best, n = n, n.right
		} else {
			n = n.left
		}
	}
	return best
}

// after returns the interval with the smallest start > a.
func (r *rangeState) after(a netip.Addr) *interval {
	var best *interval
	for n := r.root; n != nil; {
		if a.Less(n.start) {
			best, n = n, n.left
		} else {
			n = n.right
		}
	}
	return best
}

func insertNode(n, nn *interval) *interval {
	if n == nil {
		return nn
	}
	if nn.start.Less(n.start) {
		n.left = insertNode(n.left, nn)
		if n.left.prio > n.prio {
			l := n.left
			n.left, l.right = l.right, n
			return l
		}
		return n
	}
	n.right = insertNode(n.right, nn)
	if n.right.prio > n.prio {
		r := n.right
		n.right, r.left = r.left, n
		return r
	}
	return n
}

func deleteNode(n *interval, start netip.Addr) *interval {
	if n == nil {
		return nil
	}
	switch c := start.Compare(n.start); {
	case c < 0:
		n.left = deleteNode(n.left, start)
	case c > 0:
		n.right = deleteNode(n.right, start)
	default:
		return mergeNodes(n.left, n.right)
	}
	return n
}

// mergeNodes joins two treaps where every key of l is below every key of r.
func mergeNodes(l, r *interval) *interval {
	switch {
	case l == nil:
		return r
	case r == nil:
		return l
	case l.prio > r.prio:
		l.right = mergeNodes(l.right, r)
		return l
	default:
		r.left = mergeNodes(l, r.left)
		return r
	}
}

// size is the number of addresses the range can hand out, as a float
// because an IPv6 range may hold more than 2^64.
func (r *rangeState) size() float64 {
	if r.Is4() {
		f, l := v4(r.First), v4(r.Last)
		n := float64(l - f + 1)
		if r.avoidBuggy {
			n -= float64(countMod256(f, l, 0) + countMod256(f, l, 255))
		}
		return n
	}
	fb, lb := r.First.As16(), r.Last.As16()
	fhi, flo := be64(fb[:8]), be64(fb[8:])
	lhi, llo := be64(lb[:8]), be64(lb[8:])
	lo := llo - flo
	hi := lhi - fhi
	if llo < flo {
		hi--
	}
	return float64(hi)*(1<<64) + float64(lo) + 1
}

func v4(a netip.Addr) int64 {
	b := a.As4()
	return int64(b[0])<<24 | int64(b[1])<<16 | int64(b[2])<<8 | int64(b[3])
}

func be64(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// countMod256 counts the x in [f, l] with x%256 == rem.
func countMod256(f, l, rem int64) int64 {
	return floorDiv(l-rem, 256) - floorDiv(f-1-rem, 256)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
