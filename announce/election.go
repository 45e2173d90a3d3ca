package announce

import (
	"bytes"
	"container/heap"
	"crypto/sha256"
	"net/netip"
)

// Candidate is a node that may announce a VIP.
type Candidate struct {
	Node string
	// Draining nodes (cordoned, or marked ToBeDeletedByClusterAutoscaler)
	// are chosen only when no other node is eligible.
	Draining bool
}

// score is the rendezvous-hash weight of node for ip:
// sha256(node + "#" + ip). Every agent computes the same weights, so they
// agree on owners without talking to each other, and removing a node moves
// only the VIPs it owned.
func score(node string, ip netip.Addr) [sha256.Size]byte {
	return sha256.Sum256([]byte(node + "#" + ip.String()))
}

// Rank orders cands for ip, the owner first: nodes not draining before
// draining ones, then by descending score. It drains the same ranking the
// planner reads lazily, so the two cannot disagree.
func Rank(ip netip.Addr, cands []Candidate) []Candidate {
	r := newRanking(ip, cands)
	out := make([]Candidate, 0, len(cands))
	for c, ok := r.next(); ok; c, ok = r.next() {
		out = append(out, c)
	}
	return out
}

// ranking yields the candidates of a VIP in Rank's order, the owner first,
// ordering only as many as are read: a heap built in O(n), then O(log n)
// per candidate. The planner reads the owner and a few successors of a
// VIP, so it does not sort all members (at 5,000 members a full sort per
// VIP was most of a planner run). Among equal weights (only equal node
// names can tie) the smaller name comes first.
type ranking []rankedCandidate

type rankedCandidate struct {
	Candidate
	s [sha256.Size]byte
}

func newRanking(ip netip.Addr, cands []Candidate) *ranking {
	r := make(ranking, len(cands))
	for i, c := range cands {
		r[i] = rankedCandidate{c, score(c.Node, ip)}
	}
	heap.Init(&r)
	return &r
}

// next returns the next candidate in rank order; false when none is left.
func (r *ranking) next() (Candidate, bool) {
	if len(*r) == 0 {
		return Candidate{}, false
	}
	return heap.Pop(r).(rankedCandidate).Candidate, true
}

func (r ranking) Len() int { return len(r) }
func (r ranking) Less(i, j int) bool {
	a, b := r[i], r[j]
	if a.Draining != b.Draining {
		return !a.Draining
	}
	if c := bytes.Compare(a.s[:], b.s[:]); c != 0 {
		return c > 0
	}
	return a.Node < b.Node
}
func (r ranking) Swap(i, j int) { r[i], r[j] = r[j], r[i] }
func (r *ranking) Push(x any)   { *r = append(*r, x.(rankedCandidate)) }
func (r *ranking) Pop() any {
	old := *r
	x := old[len(old)-1]
	*r = old[:len(old)-1]
	return x
}
