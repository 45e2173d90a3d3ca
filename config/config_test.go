package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/ipam"
)

// fieldErr is one expected problem: the field path exactly, and text the
// message must contain.
type fieldErr struct{ path, msg string }

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []fieldErr
	}{
		// Strict decoding: unknown fields and wrong types, named by path.
		{
			name: "unknown top-level field",
			yaml: "pools: []\nbogus: 1\n",
			want: []fieldErr{{"bogus", "unknown field (line 2)"}},
		},
		{
			name: "unknown pool field",
			yaml: `pools:
  - name: lan
    addresses: [192.0.2.1]
    bogus: 1
`,
			want: []fieldErr{{"pools[0].bogus", "unknown field (line 4)"}},
		},
		{
			name: "unknown field as the first key of a list item",
			yaml: `pools:
  - name: lan
    addresses: [192.0.2.1]
  - bogus: 1
    name: wan
    addresses: [192.0.2.2]
`,
			want: []fieldErr{{"pools[1].bogus", "unknown field (line 4)"}},
		},
		{
			name: "unknown fields in several places",
			yaml: `pools:
  - name: lan
    addresses: [192.0.2.1]
    nodeSelector:
      matchLabelz: {rack: r1}
    bgp: {peerz: []}
nodeAgent:
  leaseDurtion: 3s
topology:
- cidr: 192.0.2.0/24
  zone: a
  rgion: b
`,
			want: []fieldErr{
				{"pools[0].nodeSelector.matchLabelz", "unknown field; did you mean matchLabels? (line 5)"},
				{"pools[0].bgp.peerz", "unknown field; did you mean peers? (line 6)"},
				{"pools[0].bgp", "only allowed when mode is bgp (line 6)"},
				{"nodeAgent.leaseDurtion", "unknown field; did you mean leaseDuration? (line 8)"},
				{"topology[0].rgion", "unknown field; did you mean region? (line 12)"},
			},
		},
		{
			name: "unknown field inside a flow mapping",
			yaml: `pools:
  - name: lan
    addresses: [192.0.2.1]
    nodeSelector: {matchLabels: {rack: r1}, bogus: 1}
bgp:
  asn: 64512
  peers: [{name: tor-a, address: 198.51.100.1, asn: 64500, bogus: 1}]
`,
			want: []fieldErr{
				{"pools[0].nodeSelector.bogus", "unknown field (line 4)"},
				{"bgp.peers[0].bogus", "unknown field (line 7)"},
			},
		},
		{
			name: "wrong types",
			yaml: `pools:
  - name: lan
    addresses: [192.0.2.1]
    autoAssign: maybe
nodeAgent:
  leaseDuration: banana
`,
			want: []fieldErr{
				{"pools[0].autoAssign", `expected true or false, not "maybe" (line 4)`},
				{"nodeAgent.leaseDuration", `"banana" is not a duration; write a number with a unit, such as 500ms, 3s or 1m30s (line 6)`},
			},
		},
		{
			name: "wrong shapes",
			yaml: `pools:
  - name: lan
    addresses: 192.0.2.1
    namespaces: {a: b}
    nodeSelector: [rack]
  - just-a-string
nodeAgent: 3s
`,
			want: []fieldErr{
				{"pools[0].addresses", `expected a list, not "192.0.2.1" (line 3)`},
				{"pools[0].namespaces", "expected a list, not a mapping (line 4)"},
				{"pools[0].nodeSelector", "expected a mapping (key: value), not a list (line 5)"},
				{"pools[1]", `expected a mapping (key: value), not "just-a-string" (line 6)`},
				{"nodeAgent", `expected a mapping (key: value), not "3s" (line 7)`},
			},
		},
		{
			name: "a type error does not stop the other checks",
			yaml: `pools:
  - name: lan
    addresses: [192.0.2.0/28]
  - name: Bad_Name
    addresses: [192.0.2.100]
  - name: lan
    addresses: [192.0.2.8]
bgp:
  asn: 64512
  peers:
    - name: tor-a
      address: 198.51.100.1
      asn: 64500
      holdTime: soon
`,
			want: []fieldErr{
				{"pools[1].name", `"Bad_Name" must be a DNS-1123 label (lower-case letters, digits and '-') (line 4)`},
				{"pools[2].name", `"lan" is already the name of pools[0] (line 6)`},
				{"pools[2].addresses[0]", `192.0.2.8 overlaps pools[0].addresses[0] (192.0.2.0-192.0.2.15, pool "lan") (line 7)`},
				{"bgp.peers[0].holdTime", `"soon" is not a duration; write a number with a unit, such as 500ms, 3s or 1m30s (line 14)`},
			},
		},
		{
			name: "a number where a duration belongs",
			yaml: `bgp:
  asn: 64512
  peers:
    - {name: tor-a, address: 198.51.100.1, asn: 64500, holdTime: 90, keepaliveTime: 1.5}
pools:
  - {name: r, addresses: [203.0.113.1], mode: bgp}
nodeAgent:
  garpInterval: 0
  leaseDuration: 3
`,
			want: []fieldErr{
				{"bgp.peers[0].holdTime", "90 has no unit: write 90s (or ms, m, h) (line 4)"},
				{"bgp.peers[0].keepaliveTime", "1.5 has no unit: write 1.5s (or ms, m, h) (line 4)"},
				{"nodeAgent.leaseDuration", "3 has no unit: write 3s (or ms, m, h) (line 9)"},
			},
		},
		{
			name: "numbers out of range keep their path in flow style",
			yaml: `pools:
  - {name: r, addresses: [203.0.113.1], mode: bgp, bgp: {localPref: -5}}
bgp:
  asn: 4294967296
  peers: [{name: tor-a, address: 198.51.100.1, asn: -1, port: 70000, ebgpMultihop: 256}]
`,
			want: []fieldErr{
				{"pools[0].bgp.localPref", "-5 is out of range (0 to 4294967295) (line 2)"},
				{"bgp.asn", "4294967296 is out of range (0 to 4294967295) (line 4)"},
				{"pools[0].mode", "bgp pools need bgp.asn to be set (line 2)"},
				{"bgp.peers[0].asn", "-1 is out of range (0 to 4294967295) (line 5)"},
				{"bgp.peers[0].port", "70000 is out of range (0 to 65535) (line 5)"},
				{"bgp.peers[0].ebgpMultihop", "256 is out of range (0 to 255) (line 5)"},
			},
		},
		{
			name: "a key given twice",
			yaml: `pools:
  - name: lan
    addresses: [192.0.2.1]
    name: wan
`,
			want: []fieldErr{{"pools[0].name", "given twice (first on line 2) (line 4)"}},
		},
		// Pools.
		{
			name: "pool names: required, DNS-1123, unique",
			yaml: `pools:
  - addresses: [192.0.2.1]
  - name: Lan_1
    addresses: [192.0.2.2]
  - name: lan
    addresses: [192.0.2.3]
  - name: lan
    addresses: [192.0.2.4]
`,
			want: []fieldErr{
				{"pools[0].name", "required"},
				{"pools[1].name", `"Lan_1" must be a DNS-1123 label`},
				{"pools[3].name", `"lan" is already the name of pools[2]`},
			},
		},
		{
			name: "addresses required",
			yaml: "pools:\n  - name: lan\n",
			want: []fieldErr{{"pools[0].addresses", "required: at least one IP, CIDR or FIRST-LAST range"}},
		},
		{
			name: "unparsable ranges",
			yaml: `pools:
  - name: lan
    addresses:
      - 192.0.2
      - 192.0.2.7/24
      - 192.0.2.1-2001:db8::1
      - fe80::1%eth0
      - ""
  - name: wan
    addresses: [192.0.2.9-192.0.2.1]
`,
			want: []fieldErr{
				{"pools[0].addresses[0]", `"192.0.2" is not an IP address`},
				{"pools[0].addresses[1]", `"192.0.2.7/24" is not a network address (did you mean 192.0.2.0/24?)`},
				{"pools[0].addresses[2]", "different families"},
				{"pools[0].addresses[3]", "zones are not allowed"},
				{"pools[0].addresses[4]", "empty address"},
				{"pools[1].addresses[0]", `"192.0.2.9-192.0.2.1": first address is after last`},
			},
		},
		{
			name: "overlapping pools and ranges",
			yaml: `pools:
  - name: lan
    addresses: [192.0.2.0/28, 2001:db8::/120]
  - name: wan
    addresses: [192.0.2.20, 192.0.2.15-192.0.2.16, "2001:db8::ff"]
  - name: dup
    addresses: [198.51.100.1, 198.51.100.1]
`,
			want: []fieldErr{
				{"pools[1].addresses[1]", `overlaps pools[0].addresses[0] (192.0.2.0-192.0.2.15, pool "lan")`},
				{"pools[2].addresses[1]", `198.51.100.1 overlaps pools[2].addresses[0]`},
				{"pools[1].addresses[2]", `overlaps pools[0].addresses[1]`},
			},
		},
		{
			name: "addresses nobody can reach",
			yaml: `pools:
  - name: a
    addresses:
      - 0.0.0.0/0
      - 0.0.0.0
      - 127.0.0.1
      - 126.255.255.250-127.0.0.3
      - 169.254.10.0/24
      - 224.0.0.1
      - 255.255.255.255
  - name: b
    addresses: ["::/0", "::", "::1", fe80::/64, "ff02::1", "fe80::/9"]
  - name: ok
    addresses: [1.0.0.0/24, 126.255.255.0/24, 223.255.255.255, "2001:db8::/64", "fec0::/10", "fe7f:ffff::/32", "::2-::3"]
`,
			want: []fieldErr{
				{"pools[0].addresses[0]", `0.0.0.0/0 includes 0.0.0.0/8 ("this network", with the unspecified address 0.0.0.0); a pool needs unicast addresses that other hosts can reach (line 4)`},
				{"pools[0].addresses[1]", `0.0.0.0 includes 0.0.0.0/8`},
				{"pools[0].addresses[2]", `127.0.0.1 includes 127.0.0.0/8 (loopback)`},
				{"pools[0].addresses[3]", `126.255.255.250-127.0.0.3 includes 127.0.0.0/8 (loopback)`},
				{"pools[0].addresses[4]", `169.254.10.0/24 includes 169.254.0.0/16 (link-local)`},
				{"pools[0].addresses[5]", `224.0.0.1 includes 224.0.0.0/4 (multicast)`},
				{"pools[0].addresses[6]", `255.255.255.255 includes 240.0.0.0/4 (reserved, with the broadcast address 255.255.255.255)`},
				{"pools[1].addresses[0]", `"::/0" includes IPv4-mapped addresses`},
				{"pools[1].addresses[1]", `:: includes :: (the unspecified address)`},
				{"pools[1].addresses[2]", `::1 includes ::1 (loopback)`},
				{"pools[1].addresses[3]", `fe80::/64 includes fe80::/10 (link-local)`},
				{"pools[1].addresses[4]", `ff02::1 includes ff00::/8 (multicast)`},
				{"pools[1].addresses[5]", `fe80::/9 includes fe80::/10 (link-local)`},
			},
		},
		{
			name: "the namespace placeholder of convert",
			yaml: `pools:
  - name: a
    addresses: [192.0.2.1]
    namespaces: [team-a, replace-with-namespaces]
`,
			want: []fieldErr{
				{"pools[0].namespaces[1]", "\"replace-with-namespaces\" is the placeholder `baremetal-config convert` writes for MetalLB's namespaceSelectors: replace it with the names of the namespaces those selectors matched (line 4)"},
			},
		},
		{
			name: "modes",
			yaml: `pools:
  - name: lan
    addresses: [192.0.2.1]
    mode: arp
  - name: l2
    addresses: [192.0.2.2]
    bgp: {localPref: 100}
`,
			want: []fieldErr{
				{"pools[0].mode", `"arp" is not a mode; use layer2 or bgp`},
				{"pools[1].bgp", "only allowed when mode is bgp"},
			},
		},
		{
			name: "bgp pool without bgp.asn",
			yaml: `pools:
  - name: routed
    addresses: [192.0.2.1]
    mode: bgp
    interfaces: [eth0]
`,
			want: []fieldErr{
				{"pools[0].interfaces", "only allowed when mode is layer2"},
				{"pools[0].mode", "bgp pools need bgp.asn to be set"},
			},
		},
		{
			name: "bgp pool without peers",
			yaml: `pools:
  - name: routed
    addresses: [192.0.2.1]
    mode: bgp
bgp:
  asn: 64512
`,
			want: []fieldErr{
				{"pools[0].mode", "bgp pool but bgp.peers is empty: its addresses would be handed out and never announced; add a peer or use mode: layer2 (line 4)"},
			},
		},
		{
			name: "pool bgp options: unknown peer, bad communities, aggregation lengths",
			yaml: `pools:
  - name: routed
    addresses: [192.0.2.1]
    mode: bgp
    bgp:
      peers: [tor-a, tor-z]
      communities: ["65000:100", "65536:1", "1:2:3:4", "abc", "1:4294967296:1", "no-export", "65000:1:2"]
      aggregationLength: 33
      aggregationLengthV6: -1
bgp:
  asn: 64512
  peers:
    - {name: tor-a, address: 198.51.100.1, asn: 64500}
`,
			want: []fieldErr{
				{"pools[0].bgp.peers[1]", `no peer named "tor-z" in bgp.peers`},
				{"pools[0].bgp.communities[1]", `"65536:1": a standard community is two numbers 0-65535`},
				{"pools[0].bgp.communities[2]", `"1:2:3:4" is not a community`},
				{"pools[0].bgp.communities[3]", `"abc" is not a community`},
				{"pools[0].bgp.communities[4]", "a large community is three numbers"},
				{"pools[0].bgp.aggregationLength", "33 is not between 0 and 32"},
				{"pools[0].bgp.aggregationLengthV6", "-1 is not between 0 and 128"},
			},
		},
		{
			name: "namespaces, selectors and interfaces",
			yaml: `pools:
  - name: lan
    addresses: [192.0.2.1]
    namespaces: [team-a, Team_B]
    serviceSelector:
      matchExpressions: [{key: tier, operator: Sometimes, values: [web]}]
    nodeSelector:
      matchLabels: {"b@d": x}
    interfaces: ["", eth0, "a/b", "averyveryverylongname"]
  - name: wan
    addresses: [192.0.2.2]
    serviceSelector:
      matchExpressions: [{key: tier, operator: In}]
`,
			want: []fieldErr{
				{"pools[0].namespaces[1]", `"Team_B" is not a valid namespace name`},
				{"pools[0].serviceSelector", `"Sometimes" is not a valid label selector operator`},
				{"pools[0].nodeSelector", `"b@d"`},
				{"pools[0].interfaces[0]", `"" is not a valid interface name`},
				{"pools[0].interfaces[2]", `"a/b" is not a valid interface name`},
				{"pools[0].interfaces[3]", `"averyveryverylongname" is not a valid interface name`},
				{"pools[1].serviceSelector", "values"},
			},
		},
		// BGP.
		{
			name: "bgp speaker settings",
			yaml: `bgp:
  routerID: 2001:db8::1
  peers:
    - {name: tor-a, address: 198.51.100.1, asn: 64500}
`,
			want: []fieldErr{
				{"bgp.routerID", `"2001:db8::1" is not an IPv4 address`},
				{"bgp.asn", "required when bgp.peers are set"},
			},
		},
		{
			name: "bgp peers",
			yaml: `bgp:
  asn: 64512
  peers:
    - {address: 198.51.100.1, asn: 64500}
    - {name: Tor_B, address: 198.51.100.2, asn: 64500}
    - {name: tor-c, address: 198.51.100.300, asn: 64500}
    - {name: tor-c, address: "fe80::1%eth0", asn: 64500}
    - {name: tor-e, address: 198.51.100.5}
    - {name: tor-f, address: 198.51.100.6, asn: 64500, holdTime: 2s}
    - {name: tor-g, address: 198.51.100.7, asn: 64500, holdTime: 9s, keepaliveTime: 9s}
    - {name: tor-h, address: 198.51.100.8, asn: 64500, sourceAddress: nope}
    - {name: tor-i, address: 198.51.100.9, asn: 64500, sourceAddress: "2001:db8::9"}
    - {name: tor-j, address: 198.51.100.10, asn: 64500, nodeSelector: {matchLabels: {"b@d": x}}}
`,
			want: []fieldErr{
				{"bgp.peers[0].name", "required"},
				{"bgp.peers[1].name", `"Tor_B" must be a DNS-1123 label`},
				{"bgp.peers[2].address", `"198.51.100.300" is not an IP address`},
				{"bgp.peers[3].name", `"tor-c" is already the name of bgp.peers[2]`},
				{"bgp.peers[3].address", `"fe80::1%eth0" is not an IP address`},
				{"bgp.peers[4].asn", "required"},
				{"bgp.peers[5].holdTime", "2s is too short; BGP needs at least 3s"},
				{"bgp.peers[6].keepaliveTime", "9s must be positive and shorter than holdTime (9s)"},
				{"bgp.peers[7].sourceAddress", `"nope" is not an IP address`},
				{"bgp.peers[8].sourceAddress", "2001:db8::9 is not of the same family as address 198.51.100.9"},
				{"bgp.peers[9].nodeSelector", `"b@d"`},
			},
		},
		// Node agent and topology.
		{
			name: "node agent timing",
			yaml: `nodeAgent:
  leaseDuration: 2s
  renewInterval: 2s
  garpInterval: -1s
`,
			want: []fieldErr{
				{"nodeAgent.renewInterval", "2s must be positive and shorter than leaseDuration (2s)"},
				{"nodeAgent.garpInterval", "-1s must not be negative (0 turns the refresh off)"},
			},
		},
		{
			name: "failure detection",
			yaml: `nodeAgent:
  heartbeatInterval: 5ms
  suspectAfter: 10ms
  probeWait: 6s
  stalledAgentGrace: -1s
`,
			want: []fieldErr{
				{"nodeAgent.heartbeatInterval", "5ms must be between 10ms and 10s"},
				{"nodeAgent.suspectAfter", "10ms must be at least three heartbeatIntervals (15ms)"},
				{"nodeAgent.probeWait", "6s must be between 10ms and 5s"},
				{"nodeAgent.stalledAgentGrace", "-1s must be between 0 and 10s"},
			},
		},
		{
			name: "suspicion shorter than three default beats",
			yaml: "nodeAgent: {suspectAfter: 250ms}\n",
			want: []fieldErr{
				{"nodeAgent.suspectAfter", "250ms must be at least three heartbeatIntervals (300ms)"},
			},
		},
		{
			name: "negative lease",
			yaml: "nodeAgent:\n  leaseDuration: -3s\n  renewInterval: -1s\n",
			want: []fieldErr{
				{"nodeAgent.leaseDuration", "-3s must be positive"},
				{"nodeAgent.renewInterval", "-1s must be positive"},
			},
		},
		{
			name: "topology",
			yaml: `topology:
  - {cidr: 192.0.2.0/33, zone: a}
  - {cidr: 192.0.2.0/26}
`,
			want: []fieldErr{
				{"topology[0].cidr", `"192.0.2.0/33" is not a CIDR`},
				{"topology[1]", "needs a zone, a region or both"},
			},
		},
		{
			name: "topology names are label values",
			yaml: `topology:
  - {cidr: 192.0.2.0/26, zone: "rack 1/bad label", region: dc-1}
  - cidr: 192.0.2.64/26
    zone: rack-2
    region: -dc2-
  - {cidr: 192.0.2.128/26, zone: r_3.b, region: DC.3}
`,
			want: []fieldErr{
				{"topology[0].zone", `"rack 1/bad label" is not a valid label value: a valid label must be an empty string or consist of alphanumeric characters`},
				{"topology[1].region", `"-dc2-" is not a valid label value`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", c)
			}
			var verrs ValidationErrors
			if !errors.As(err, &verrs) {
				t.Fatalf("Parse error %q is not a ValidationErrors", err)
			}
			var got []fieldErr
			for _, e := range verrs {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %q is not a *FieldError", e)
				}
				if fe.Line <= 0 {
					t.Errorf("%s has no line", fe)
				}
				got = append(got, fieldErr{fe.Path, fmt.Sprintf("%s (line %d)", fe.Msg, fe.Line)})
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(got, func(g fieldErr) bool { return g.path == w.path && strings.Contains(g.msg, w.msg) }) {
					t.Errorf("no error %s: …%s…", w.path, w.msg)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(got), len(tt.want), strings.ReplaceAll(err.Error(), "; ", "\n"))
			}
			// The whole message names every field, for the CCM's exit.
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w.path+": ") {
					t.Errorf("message %q does not name %s", err, w.path)
				}
			}
			if tt.name == "the namespace placeholder of convert" && !errors.Is(err, ErrNamespacePlaceholder) {
				t.Errorf("errors.Is(%v, ErrNamespacePlaceholder) = false", err)
			}
		})
	}
}

func TestParseAliases(t *testing.T) {
	c := mustParse(t, `pools:
  - &base
    name: lan
    addresses: [192.0.2.1]
    nodeSelector: &rack1 {matchLabels: {rack: r1}}
    namespaces: &teams [team-a, team-b]
  - <<: *base
    name: wan
    addresses: [192.0.2.2]
    namespaces: *teams
`)
	wan, ok := c.Pool("wan")
	if !ok || !wan.AdmitsNode(map[string]string{"rack": "r1"}) || wan.AdmitsNode(nil) || !slices.Equal(wan.Namespaces, []string{"team-a", "team-b"}) {
		t.Errorf("merged pool = %+v", wan)
	}
	if lan, _ := c.Pool("lan"); !slices.Equal(lan.Addresses, []string{"192.0.2.1"}) {
		t.Errorf("the anchored pool changed: %+v", lan)
	}

	// A few lines that expand to millions of values are refused early.
	var b strings.Builder
	b.WriteString("pools:\n  - &p\n    name: a\n    addresses: [192.0.2.1]\n    serviceSelector:\n      matchExpressions: &e\n")
	for i := 0; i < 30; i++ {
		b.WriteString("        - &r {key: k, operator: In, values: &v [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r]}\n")
	}
	for i := 0; i < 300; i++ {
		b.WriteString("  - *p\n")
	}
	_, err := Parse([]byte(b.String()))
	var verrs ValidationErrors
	if !errors.As(err, &verrs) || len(verrs) != 1 || !strings.Contains(err.Error(), "expands to too much data through YAML aliases") {
		t.Errorf("Parse of an alias bomb = %v, want one error about aliases", err)
	}
}

func TestParseRejectsYAML(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"syntax", "pools: [\n", "invalid YAML"},
		{"tab indentation", "\tpools: []\n", "invalid YAML"},
		{"two documents", "pools: []\n---\npools:\n  - name: lan\n    addresses: [192.0.2.1]\n", "a second YAML document (after ---): put all settings in one (line 2)"},
		{"not a mapping", "- a\n- b\n", "expected a mapping (key: value), not a list (line 1)"},
		{"empty", "", "the file is empty or holds only comments"},
		{"blank", "\n  \n", "the file is empty or holds only comments"},
		{"only comments", "# pools:\n#   - name: lan\n", "the file is empty or holds only comments"},
		{"only a document marker", "---\n", "the file is empty or holds only comments"},
		{"null", "~\n", "the file is empty or holds only comments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error = %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	for _, c := range []*Config{Default(), mustParse(t, "{}\n"), mustParse(t, "pools: []\n")} {
		if len(c.Pools) != 0 || c.NodeAgent.LeaseDuration != DefaultLeaseDuration || c.NodeAgent.RenewInterval != DefaultRenewInterval {
			t.Errorf("%+v, want no pools and default timing", c)
		}
	}
	c, err := Parse([]byte(`pools:
  - name: lan
    addresses: [192.0.2.1]
  - name: manual
    addresses: [192.0.2.2]
    autoAssign: false
bgp:
  asn: 64512
  peers:
    - {name: tor-a, address: 198.51.100.1, asn: 64500}
    - {name: tor-b, address: 198.51.100.2, asn: 64500, holdTime: 9s}
nodeAgent:
  garpInterval: 0s
`))
	if err != nil {
		t.Fatal(err)
	}
	lan, manual := &c.Pools[0], &c.Pools[1]
	if lan.Mode != ModeLayer2 || !lan.IsAutoAssign() || manual.IsAutoAssign() {
		t.Errorf("pool defaults: mode %q, autoAssign %v/%v; want layer2, true/false", lan.Mode, lan.IsAutoAssign(), manual.IsAutoAssign())
	}
	a, b := c.BGP.Peers[0], c.BGP.Peers[1]
	if a.Port != DefaultBGPPort || a.HoldTime != DefaultHoldTime || a.KeepaliveTime != 30*time.Second {
		t.Errorf("peer defaults: port %d, hold %s, keepalive %s", a.Port, a.HoldTime, a.KeepaliveTime)
	}
	if b.KeepaliveTime != 3*time.Second {
		t.Errorf("keepalive for holdTime 9s = %s, want a third (3s)", b.KeepaliveTime)
	}
	if c.NodeAgent.LeaseDuration != DefaultLeaseDuration || c.NodeAgent.RenewInterval != DefaultRenewInterval {
		t.Errorf("node agent defaults: %+v", c.NodeAgent)
	}
	if c.NodeAgent.GARP() != 0 {
		t.Errorf("garpInterval: 0s gives %s, want 0 (off)", c.NodeAgent.GARP())
	}
	if n := (NodeAgent{}); n.Heartbeat() != DefaultHeartbeatInterval || n.Suspect() != DefaultSuspectAfter || n.TakeoverProbe() != DefaultProbeWait {
		t.Errorf("unset failure detection gives %s/%s/%s, want %s/%s/%s", n.Heartbeat(), n.Suspect(), n.TakeoverProbe(),
			DefaultHeartbeatInterval, DefaultSuspectAfter, DefaultProbeWait)
	}
	if (NodeAgent{}).GARP() != DefaultGARPInterval {
		t.Errorf("unset garpInterval gives %s, want %s", (NodeAgent{}).GARP(), DefaultGARPInterval)
	}
}

// TestLoadFullExample loads testdata/full.yaml, which uses every field of
// the schema in DESIGN.md, and checks what the helpers make of it.
func TestLoadFullExample(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	names := func(pools []ipam.Pool) []string {
		var out []string
		for _, p := range pools {
			out = append(out, p.Name)
		}
		return out
	}
	if got := names(c.IPAMPools()); !slices.Equal(got, []string{"lan", "routed", "routed-v6", "defaults"}) {
		t.Fatalf("pools = %v", got)
	}
	lan, _ := c.Pool("lan")
	wantRanges := []ipam.Range{
		{First: netip.MustParseAddr("192.0.2.240"), Last: netip.MustParseAddr("192.0.2.250")},
		{First: netip.MustParseAddr("2001:db8:1::"), Last: netip.MustParseAddr("2001:db8:1::ff")},
	}
	if !slices.Equal(lan.Ranges, wantRanges) {
		t.Errorf("lan ranges = %v, want %v", lan.Ranges, wantRanges)
	}
	if ip := lan.IPAMPool(); !ip.AutoAssign || ip.AvoidBuggyIPs || len(ip.Ranges) != 2 {
		t.Errorf("lan as an ipam pool = %+v", ip)
	}
	routed, _ := c.Pool("routed")
	if ip := routed.IPAMPool(); ip.AutoAssign || !ip.AvoidBuggyIPs || routed.Mode != ModeBGP {
		t.Errorf("routed = %+v, mode %s", ip, routed.Mode)
	}

	for _, tt := range []struct {
		ip, pool string
	}{
		{"192.0.2.245", "lan"}, {"2001:db8:1::80", "lan"}, {"203.0.113.77", "routed"},
		{"2001:db8:5::1:2", "routed-v6"}, {"198.51.100.7", "defaults"}, {"198.51.100.8", ""},
	} {
		p, ok := c.PoolFor(netip.MustParseAddr(tt.ip))
		if got := ""; ok {
			got = p.Name
			if got != tt.pool {
				t.Errorf("PoolFor(%s) = %s, want %q", tt.ip, got, tt.pool)
			}
		} else if tt.pool != "" {
			t.Errorf("PoolFor(%s) found nothing, want %s", tt.ip, tt.pool)
		}
	}

	admits := []struct {
		pool, ns string
		labels   map[string]string
		want     bool
	}{
		{"lan", "team-a", map[string]string{"expose": "public"}, true},
		{"lan", "team-b", map[string]string{"expose": "public"}, false},
		{"lan", "team-a", nil, false},
		{"routed", "any", map[string]string{"tier": "api"}, true},
		{"routed", "any", map[string]string{"tier": "db"}, false},
		{"defaults", "any", nil, true},
	}
	for _, tt := range admits {
		p, _ := c.Pool(tt.pool)
		if got := p.AdmitsService(tt.ns, tt.labels); got != tt.want {
			t.Errorf("%s.AdmitsService(%s, %v) = %v, want %v", tt.pool, tt.ns, tt.labels, got, tt.want)
		}
	}
	if !lan.AdmitsNode(map[string]string{"rack": "r1"}) || lan.AdmitsNode(map[string]string{"rack": "r2"}) || !routed.AdmitsNode(nil) {
		t.Error("AdmitsNode does not follow the pools' nodeSelector")
	}

	routedV6, _ := c.Pool("routed-v6")
	if got := c.PeerNames(routed); !slices.Equal(got, []string{"tor-a"}) {
		t.Errorf("PeerNames(routed) = %v, want [tor-a]", got)
	}
	if got := c.PeerNames(routedV6); !slices.Equal(got, []string{"tor-a", "tor-b"}) {
		t.Errorf("PeerNames(routed-v6) = %v, want every peer", got)
	}
	torA, _ := c.Peer("tor-a")
	torB, _ := c.Peer("tor-b")
	if torA.Addr != netip.MustParseAddr("198.51.100.1") || torA.Port != 179 || torA.HoldTime != 90*time.Second ||
		torA.PasswordFile != "/etc/baremetal/tor-a.password" || !torA.AdmitsNode(map[string]string{"rack": "r1"}) || torA.AdmitsNode(nil) {
		t.Errorf("tor-a = %+v", torA)
	}
	if torB.SourceAddr != netip.MustParseAddr("2001:db8:ff::10") || torB.KeepaliveTime != 3*time.Second ||
		torB.EBGPMultihop != 2 || !torB.GracefulRestart || !torB.AdmitsNode(nil) {
		t.Errorf("tor-b = %+v", torB)
	}
	if routed.BGP == nil || *routed.BGP.LocalPref != 100 || *routed.BGP.AggregationLength != 32 || *routed.BGP.AggregationLengthV6 != 128 {
		t.Errorf("routed bgp = %+v", routed.BGP)
	}
	if c.NodeAgent.GARP() != 10*time.Second || c.NodeAgent.LeaseDuration != 3*time.Second {
		t.Errorf("nodeAgent = %+v", c.NodeAgent)
	}

	for _, tt := range []struct{ ip, zone, region string }{
		{"192.0.2.5", "rack-1", "dc-1"},
		{"2001:db8:2::7", "rack-2", ""},
		{"::ffff:192.0.2.5", "rack-1", "dc-1"},
		{"192.0.2.200", "", ""},
	} {
		zone, region, ok := c.TopologyFor(netip.MustParseAddr(tt.ip))
		if zone != tt.zone || region != tt.region || ok != (tt.zone != "") {
			t.Errorf("TopologyFor(%s) = %q, %q, %v; want %q, %q", tt.ip, zone, region, ok, tt.zone, tt.region)
		}
	}
}

func TestLoadAndRead(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "reading cloud-config") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("pools:\n  - name: lan\n    addresses: [192.0.2.9-192.0.2.1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "cloud-config " + bad + `: pools[0].addresses[0]: "192.0.2.9-192.0.2.1": first address is after last (line 3)`
	if _, err := Load(bad); err == nil || err.Error() != want {
		t.Errorf("Load(bad) = %v\nwant %s", err, want)
	}
	c, err := Read(strings.NewReader("pools:\n  - name: lan\n    addresses: [192.0.2.1]\n"))
	if err != nil || len(c.Pools) != 1 {
		t.Errorf("Read = %+v, %v", c, err)
	}
}

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		in   string
		want Community
		str  string
		err  bool
	}{
		{in: "65000:100", want: Community{Value: 65000<<16 | 100}, str: "65000:100"},
		{in: "0:0", want: Community{}, str: "0:0"},
		{in: "65535:65535", want: Community{Value: 0xFFFFFFFF}, str: "65535:65535"},
		{in: "65000:1:2", want: Community{Large: true, Values: [3]uint32{65000, 1, 2}}, str: "65000:1:2"},
		{in: "4294967295:4294967295:4294967295", want: Community{Large: true, Values: [3]uint32{1<<32 - 1, 1<<32 - 1, 1<<32 - 1}}, str: "4294967295:4294967295:4294967295"},
		{in: "no-export", want: Community{Value: 0xFFFFFF01}, str: "65535:65281"},
		{in: "NO-ADVERTISE", want: Community{Value: 0xFFFFFF02}, str: "65535:65282"},
		{in: "blackhole", want: Community{Value: 0xFFFF029A}, str: "65535:666"},
		{in: "65536:1", err: true},
		{in: "1:-1", err: true},
		{in: "1:2:4294967296", err: true},
		{in: "1", err: true},
		{in: "", err: true},
		{in: "1:2:3:4", err: true},
		{in: "a:b", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCommunity(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseCommunity(%q) = %+v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want || got.String() != tt.str {
				t.Errorf("ParseCommunity(%q) = %+v (%s), %v; want %+v (%s)", tt.in, got, got, err, tt.want, tt.str)
			}
		})
	}
}

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("Parse(%q): %v", yaml, err)
	}
	return c
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each warning's Error(): path, message, line
	}{
		{name: "none", yaml: "pools: [{name: a, addresses: [192.0.2.1]}]\n"},
		{
			name: "no pools",
			yaml: "nodeAgent: {garpInterval: 0s}\n",
			want: []string{"pools: no pools: the CCM hands out no addresses, so LoadBalancer Services stay pending (line 1)"},
		},
		{
			name: "no pool assigns automatically",
			yaml: "pools:\n  - {name: a, addresses: [192.0.2.1], autoAssign: false}\n",
			want: []string{"pools: every pool has autoAssign: false, so only Services that name a pool or an address get one (line 1)"},
		},
		{
			name: "peers but no bgp pool",
			yaml: "pools: [{name: a, addresses: [192.0.2.1]}]\nbgp:\n  asn: 64512\n  peers: [{name: r, address: 198.51.100.1, asn: 64500}]\n",
			want: []string{"bgp.peers: no pool has mode: bgp, so the sessions to these peers announce nothing (line 4)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.yaml)
			var got []string
			for _, w := range c.Warnings {
				got = append(got, w.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
