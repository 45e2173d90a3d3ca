package announce

import (
	"fmt"
	"net/netip"
	"testing"
)

func vipN(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
}

func TestOwnerMatchesRank(t *testing.T) {
	cands := []Candidate{{Node: "a"}, {Node: "b", Draining: true}, {Node: "c"}, {Node: "d"}}
	for i := 1; i <= 50; i++ {
		ip := vipN(i)
		owner, ok := Owner(ip, cands)
		if !ok {
			t.Fatalf("%s: no owner among %d candidates", ip, len(cands))
		}
		if ranked := Rank(ip, cands); ranked[0].Node != owner {
			t.Errorf("%s: Owner says %s, Rank puts %s first", ip, owner, ranked[0].Node)
		}
	}
}

func TestOwnerDrainingLast(t *testing.T) {
	tests := []struct {
		name  string
		cands []Candidate
		want  []string // acceptable owners
	}{
		{"no candidates", nil, nil},
		{"only a draining node still announces", []Candidate{{Node: "a", Draining: true}}, []string{"a"}},
		{"a healthy node beats every draining one", []Candidate{{Node: "a", Draining: true}, {Node: "b"}, {Node: "c", Draining: true}}, []string{"b"}},
		{"among draining nodes the hash decides", []Candidate{{Node: "a", Draining: true}, {Node: "c", Draining: true}}, []string{"a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 1; i <= 20; i++ {
				owner, ok := Owner(vipN(i), tt.cands)
				if len(tt.want) == 0 {
					if ok {
						t.Fatalf("got owner %q, want none", owner)
					}
					continue
				}
				found := false
				for _, w := range tt.want {
					found = found || owner == w
				}
				if !found {
					t.Fatalf("%s: owner %q, want one of %v", vipN(i), owner, tt.want)
				}
			}
		})
	}
}

func TestOwnerIsTheHighestHash(t *testing.T) {
	// Pin the function itself: sha256(node + "#" + ip), highest wins.
	ip := netip.MustParseAddr("192.0.2.10")
	cands := []Candidate{{Node: "node-1"}, {Node: "node-2"}, {Node: "node-3"}}
	owner, _ := Owner(ip, cands)
	best := ""
	var bestScore [32]byte
	for _, c := range cands {
		s := score(c.Node, ip)
		if best == "" || string(s[:]) > string(bestScore[:]) {
			best, bestScore = c.Node, s
		}
	}
	if owner != best {
		t.Fatalf("owner %s, highest hash %s", owner, best)
	}
}

func TestSpreadAndMinimalMovement(t *testing.T) {
	nodes := []Candidate{{Node: "node-1"}, {Node: "node-2"}, {Node: "node-3"}}
	owners := map[netip.Addr]string{}
	count := map[string]int{}
	for i := 1; i <= 100; i++ {
		o, _ := Owner(vipN(i), nodes)
		owners[vipN(i)] = o
		count[o]++
	}
	for _, n := range nodes {
		// 100 VIPs over 3 nodes: 33 each on average; a share outside
		// 20..46 would mean the hash is not spreading.
		if c := count[n.Node]; c < 20 || c > 46 {
			t.Errorf("%s owns %d of 100 VIPs; want roughly a third (%v)", n.Node, c, count)
		}
	}
	for _, killed := range nodes {
		t.Run(fmt.Sprintf("without %s", killed.Node), func(t *testing.T) {
			var rest []Candidate
			for _, n := range nodes {
				if n != killed {
					rest = append(rest, n)
				}
			}
			moved := 0
			for ip, before := range owners {
				after, _ := Owner(ip, rest)
				switch {
				case before == killed.Node:
					moved++
				case after != before:
					t.Errorf("%s moved from %s to %s though %s was not its owner", ip, before, after, killed.Node)
				}
			}
			if moved != count[killed.Node] {
				t.Errorf("%d VIPs moved, want exactly %s's %d", moved, killed.Node, count[killed.Node])
			}
		})
	}
}
