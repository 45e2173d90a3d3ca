package announce

import (
	"bytes"
	"crypto/sha256"
	"net/netip"
	"slices"
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
// draining ones, then by descending score. Ties (equal node names) keep
// their order.
func Rank(ip netip.Addr, cands []Candidate) []Candidate {
	type scored struct {
		Candidate
		s [sha256.Size]byte
	}
	ss := make([]scored, len(cands))
	for i, c := range cands {
		ss[i] = scored{c, score(c.Node, ip)}
	}
	slices.SortStableFunc(ss, func(a, b scored) int {
		if a.Draining != b.Draining {
			if a.Draining {
				return 1
			}
			return -1
		}
		return bytes.Compare(b.s[:], a.s[:])
	})
	out := make([]Candidate, len(ss))
	for i := range ss {
		out[i] = ss[i].Candidate
	}
	return out
}
