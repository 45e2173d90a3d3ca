package announce

import (
	"encoding/hex"
	"net/netip"
	"slices"
	"testing"
)

// The weights below were computed outside this code, with
//
//	printf 'node-a#192.0.2.10' | sha256sum
//
// so a change to the formula (separator, address spelling) fails here:
// agents of different versions must agree on owners.
func TestScoreFormula(t *testing.T) {
	tests := []struct {
		node, ip, prefix string
	}{
		{"node-a", "192.0.2.10", "d4b84135501a6622"},
		{"node-b", "192.0.2.10", "6e9fb809c116d8f2"},
		{"node-c", "192.0.2.10", "39f2d7a8f2401847"},
		{"node-d", "192.0.2.10", "1e377524e6a504eb"},
		{"node-a", "2001:db8::1", "3c9f88a7e2ef52a1"},
		{"node-c", "2001:db8::1", "bb833059784d34c0"},
	}
	for _, tt := range tests {
		s := score(tt.node, netip.MustParseAddr(tt.ip))
		if got := hex.EncodeToString(s[:8]); got != tt.prefix {
			t.Errorf("score(%s, %s) starts %s, want %s", tt.node, tt.ip, got, tt.prefix)
		}
	}
}

func names(cs []Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Node
	}
	return out
}

func TestRank(t *testing.T) {
	abcd := []Candidate{{Node: "node-d"}, {Node: "node-b"}, {Node: "node-a"}, {Node: "node-c"}}
	tests := []struct {
		name  string
		ip    string
		cands []Candidate
		want  []string
	}{
		// Orders by the hand-computed weights of TestScoreFormula.
		{"ipv4 by descending weight", "192.0.2.10", abcd, []string{"node-a", "node-b", "node-c", "node-d"}},
		{"ipv6 by descending weight", "2001:db8::1", abcd, []string{"node-c", "node-a", "node-b", "node-d"}},
		{"draining nodes last", "192.0.2.10",
			[]Candidate{{Node: "node-a", Draining: true}, {Node: "node-b"}, {Node: "node-c", Draining: true}, {Node: "node-d"}},
			[]string{"node-b", "node-d", "node-a", "node-c"}},
		{"only draining nodes: the weight decides", "2001:db8::1",
			[]Candidate{{Node: "node-a", Draining: true}, {Node: "node-c", Draining: true}},
			[]string{"node-c", "node-a"}},
		{"one candidate", "192.0.2.10", []Candidate{{Node: "node-d"}}, []string{"node-d"}},
		{"none", "192.0.2.10", nil, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.cands)
			got := names(Rank(netip.MustParseAddr(tt.ip), tt.cands))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Rank = %v, want %v", got, tt.want)
			}
			if !slices.Equal(in, tt.cands) {
				t.Errorf("Rank modified its input: %v", tt.cands)
			}
		})
	}
}

// Removing a node moves only the VIPs it owned (the reason for rendezvous
// hashing): checked over many addresses against the full ranking.
func TestRankRemovingANodeMovesOnlyItsVIPs(t *testing.T) {
	all := []Candidate{{Node: "n1"}, {Node: "n2"}, {Node: "n3"}, {Node: "n4"}}
	without := []Candidate{{Node: "n1"}, {Node: "n2"}, {Node: "n4"}}
	for i := 1; i < 200; i++ {
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		full := Rank(ip, all)
		after := Rank(ip, without)
		if full[0].Node != "n3" && after[0].Node != full[0].Node {
			t.Fatalf("%s: owner moved from %s to %s though n3 did not own it", ip, full[0].Node, after[0].Node)
		}
		if full[0].Node == "n3" && after[0].Node != full[1].Node {
			t.Fatalf("%s: n3's VIP went to %s, not to the next in line %s", ip, after[0].Node, full[1].Node)
		}
	}
}
