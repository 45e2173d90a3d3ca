package announce

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
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
var weights = []struct{ node, ip, sha256 string }{
	{"node-a", "192.0.2.10", "d4b84135501a6622f43f01422f65d768d1a4637914be8add4e31f107336b8068"},
	{"node-b", "192.0.2.10", "6e9fb809c116d8f27df8ac49a804ddcf00101a76d602d91312d91548ae06abbf"},
	{"node-c", "192.0.2.10", "39f2d7a8f2401847a848a92e8435873a10a277cabe7bc275e797deb43bd7cd0c"},
	{"node-d", "192.0.2.10", "1e377524e6a504eb800c63f4de322b58b66f804f8da7b72f8fe52e9d89594adc"},
	{"node-a", "192.0.2.11", "0b9c2b4ed37c0786039d1f95b7cc267e458b8adb1f7d8e774c8d37bba409cf85"},
	{"node-b", "192.0.2.11", "dd50598fe01de5214be98a1d4d77a67831e1a39058747974101bdee76de877e3"},
	{"node-c", "192.0.2.11", "cceb0431dbc90507732cf0f95ab41c9389ec4324914677bcde3dfb97685b1bae"},
	{"node-d", "192.0.2.11", "0772243ea025c0359ef913a47215415f542810eed764f6b45393777cf58769fd"},
	{"node-a", "2001:db8::1", "3c9f88a7e2ef52a1c015be314124ea3ab99785b842ce9ee37afdf6470837efbe"},
	{"node-b", "2001:db8::1", "1aee61dde2bd8a0c8b0177a52ced9e0a52e8108284e6e3f14220d9f9d98cbc2e"},
	{"node-c", "2001:db8::1", "bb833059784d34c0c3dfacf003bec741b65be19b7102e7316af458b26d6ed31a"},
	{"node-d", "2001:db8::1", "1151f1967d299feaf0d64d55e21a28c5c7513b0f139ea2a2d80632b5afc942b6"},
}

func TestScoreFormula(t *testing.T) {
	for _, w := range weights {
		s := score(w.node, netip.MustParseAddr(w.ip))
		if got := hex.EncodeToString(s[:]); got != w.sha256 {
			t.Errorf("score(%s, %s) = %s, want %s", w.node, w.ip, got, w.sha256)
		}
	}
	// The address is hashed in its canonical spelling, however it was written.
	if score("node-a", netip.MustParseAddr("2001:0db8:0:0::0001")) != score("node-a", netip.MustParseAddr("2001:db8::1")) {
		t.Error("two spellings of one IPv6 address weigh differently")
	}
}

func names(cs []Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Node
	}
	return out
}

// drain reads a ranking to the end, as the planner would read it.
func drain(r *ranking) []Candidate {
	out := []Candidate{}
	for c, ok := r.next(); ok; c, ok = r.next() {
		out = append(out, c)
	}
	return out
}

// The expected orders are read off the hand-computed weights above (for
// 192.0.2.10: a d4b8.. > b 6e9f.. > c 39f2.. > d 1e37..), not recomputed.
func TestRank(t *testing.T) {
	abcd := []Candidate{{Node: "node-d"}, {Node: "node-b"}, {Node: "node-a"}, {Node: "node-c"}}
	tests := []struct {
		name  string
		ip    string
		cands []Candidate
		want  []string
	}{
		{"ipv4 by descending weight", "192.0.2.10", abcd, []string{"node-a", "node-b", "node-c", "node-d"}},
		{"another ipv4 address, another order", "192.0.2.11", abcd, []string{"node-b", "node-c", "node-a", "node-d"}},
		{"ipv6 by descending weight", "2001:db8::1", abcd, []string{"node-c", "node-a", "node-b", "node-d"}},
		{"input order does not matter", "192.0.2.11",
			[]Candidate{{Node: "node-a"}, {Node: "node-b"}, {Node: "node-c"}, {Node: "node-d"}},
			[]string{"node-b", "node-c", "node-a", "node-d"}},
		{"draining nodes last", "192.0.2.10",
			[]Candidate{{Node: "node-a", Draining: true}, {Node: "node-b"}, {Node: "node-c", Draining: true}, {Node: "node-d"}},
			[]string{"node-b", "node-d", "node-a", "node-c"}},
		{"only draining nodes: the weight decides", "2001:db8::1",
			[]Candidate{{Node: "node-a", Draining: true}, {Node: "node-c", Draining: true}},
			[]string{"node-c", "node-a"}},
		{"tie: a name listed twice keeps both places", "192.0.2.10",
			[]Candidate{{Node: "node-c"}, {Node: "node-a"}, {Node: "node-c"}},
			[]string{"node-a", "node-c", "node-c"}},
		{"one candidate", "192.0.2.10", []Candidate{{Node: "node-d"}}, []string{"node-d"}},
		{"none", "192.0.2.10", nil, []string{}},
		{"empty", "2001:db8::1", []Candidate{}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip := netip.MustParseAddr(tt.ip)
			in := slices.Clone(tt.cands)
			if got := names(Rank(ip, tt.cands)); !slices.Equal(got, tt.want) {
				t.Errorf("Rank = %v, want %v", got, tt.want)
			}
			if !slices.Equal(in, tt.cands) {
				t.Errorf("Rank modified its input: %v", tt.cands)
			}
			// The planner reads the ranking lazily: the same order.
			if got := names(drain(newRanking(ip, tt.cands))); !slices.Equal(got, tt.want) {
				t.Errorf("ranking = %v, want %v", got, tt.want)
			}
		})
	}
}

// A tie between a draining and a non-draining entry of one name is not a
// tie: the one not draining ranks first.
func TestRankSameNameDrainingLast(t *testing.T) {
	got := Rank(netip.MustParseAddr("192.0.2.10"), []Candidate{{Node: "node-a", Draining: true}, {Node: "node-d"}, {Node: "node-a"}})
	want := []Candidate{{Node: "node-a"}, {Node: "node-d"}, {Node: "node-a", Draining: true}}
	if !slices.Equal(got, want) {
		t.Errorf("Rank = %v, want %v", got, want)
	}
}

// Rank against a naive model over random candidate sets: sort by the
// formula, hashed here with crypto/sha256 directly (the vectors above pin
// that this is the formula).
func TestRankMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 300 {
		var ip netip.Addr
		if trial%2 == 0 {
			ip = netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(256))})
		} else {
			ip = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", rng.IntN(1<<16)))
		}
		cands := make([]Candidate, rng.IntN(12))
		for i := range cands {
			cands[i] = Candidate{Node: fmt.Sprintf("n%d", rng.IntN(40)), Draining: rng.IntN(4) == 0}
		}
		want := slices.Clone(cands)
		weight := func(c Candidate) []byte {
			h := sha256.Sum256([]byte(c.Node + "#" + ip.String()))
			return h[:]
		}
		slices.SortStableFunc(want, func(a, b Candidate) int {
			if a.Draining != b.Draining {
				if a.Draining {
					return 1
				}
				return -1
			}
			return bytes.Compare(weight(b), weight(a))
		})
		if got := Rank(ip, cands); !slices.Equal(got, want) {
			t.Fatalf("%s %v: Rank = %v, model %v", ip, cands, names(got), names(want))
		}
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
