package convert

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

const testdata = "../test/testdata/metallb"

// TestGolden converts MetalLB samples of both formats and compares the
// cloud-config with the golden file next to each sample. Run with -update
// after a deliberate change and review the diff.
func TestGolden(t *testing.T) {
	tests := []struct {
		file      string
		wantNotes []string // substrings, each expected in some note
		check     func(t *testing.T, c *config.Config)
	}{
		{
			file: "legacy-layer2.yaml",
			check: func(t *testing.T, c *config.Config) {
				wantPools(t, c, "default", "expensive")
				if p, _ := c.Pool("expensive"); p.IsAutoAssign() || p.Mode != config.ModeLayer2 {
					t.Errorf("expensive: autoAssign %v mode %s, want false layer2", p.IsAutoAssign(), p.Mode)
				}
			},
		},
		{
			file: "legacy-bgp.yaml",
			wantNotes: []string{
				`the TCP MD5 password (given inline) is not copied`,
				`peers[1]: holdTime 0s (no hold timer, no keepalives) is not supported: written as holdTime 90s`,
				`bfd-profiles "fast": echoMode not carried over`,
				`not carried over for pool "default"`,
			},
			check: func(t *testing.T, c *config.Config) {
				wantPools(t, c, "default", "v6")
				if c.BGP.ASN != 64500 || len(c.BGP.Peers) != 2 {
					t.Fatalf("bgp: asn %d, %d peers; want 64500 and 2", c.BGP.ASN, len(c.BGP.Peers))
				}
				p0, p1 := c.BGP.Peers[0], c.BGP.Peers[1]
				if p0.Name != "peer-10-0-0-1" || p0.HoldTime.String() != "2m0s" || !p0.AdmitsNode(map[string]string{"rack": "frontend"}) || p0.AdmitsNode(map[string]string{"rack": "frontend", "network-speed": "slow"}) {
					t.Errorf("peer 0 = %+v", p0)
				}
				if p1.PasswordFile != "/etc/baremetal/peer-10-0-0-2.password" || p1.EBGPMultihop != 255 {
					t.Errorf("peer 1: passwordFile %q multihop %d", p1.PasswordFile, p1.EBGPMultihop)
				}
				d, _ := c.Pool("default")
				if d.Mode != config.ModeBGP || !d.AvoidBuggyIPs || d.BGP == nil ||
					strings.Join(d.BGP.Communities, ",") != "1234:1,no-advertise" || *d.BGP.LocalPref != 100 || d.BGP.AggregationLength != nil {
					t.Errorf("pool default = %+v bgp %+v", d, d.BGP)
				}
			},
		},
		{
			file: "crd-layer2.yaml",
			wantNotes: []string{
				`address 192.168.20.7/24 written as 192.168.20.0/24`,
				`L2Advertisement nodeSelectors has 2 selectors`,
			},
			check: func(t *testing.T, c *config.Config) {
				wantPools(t, c, "first-pool", "lab")
				p, _ := c.Pool("first-pool")
				if strings.Join(p.Interfaces, ",") != "eth0,eth1" || len(p.Ranges) != 3 {
					t.Errorf("first-pool: interfaces %v, %d ranges", p.Interfaces, len(p.Ranges))
				}
				lab, _ := c.Pool("lab")
				if !lab.AdmitsNode(map[string]string{"kubernetes.io/hostname": "NodeA"}) || lab.AdmitsNode(map[string]string{"kubernetes.io/hostname": "NodeB"}) {
					t.Error("lab: want only the first of the ORed node selectors (NodeA)")
				}
			},
		},
		{
			file: "crd-bgp.yaml",
			wantNotes: []string{
				`in Secret "tor-a-password"`,
				`BGPPeer "tor.b": renamed to "tor-b"`,
				`BGPPeer "spine-vrf": skipped: sessions in VRF "red"`,
				`IPAddressPool "team-b": serviceAllocation.namespaceSelectors cannot be expressed`,
				`BGPAdvertisement "aggregated": not carried over for pool "default"`,
				`peers use different router IDs`,
				`BFDProfile "fast": passiveMode not carried over`,
				`BGPPeer "tor.b": disableMP not carried over`,
				`BGPPeer "tor.b": holdTime 1s is below BGP's minimum of 3s: written as 3s`,
				`BGPAdvertisement "tenants": spec.advertiseVeryFast not carried over: the converter does not know this setting`,
			},
			check: func(t *testing.T, c *config.Config) {
				// Priority 10 first, then 50, then no priority.
				wantPools(t, c, "team-a", "default", "team-b")
				a, _ := c.Pool("team-a")
				if !a.AdmitsService("team-a", map[string]string{"expose": "public"}) || a.AdmitsService("team-a", nil) || a.AdmitsService("default", map[string]string{"expose": "public"}) {
					t.Error("team-a: namespaces or serviceSelector not carried over")
				}
				if got := strings.Join(c.PeerNames(a), ","); got != "tor-a,tor-b" {
					t.Errorf("team-a peers = %s", got)
				}
				if strings.Join(a.BGP.Communities, ",") != "64512:1:2" {
					t.Errorf("team-a communities = %v, want the large community", a.BGP.Communities)
				}
				tor, _ := c.Peer("tor-a")
				if !tor.GracefulRestart || tor.HoldTime.Seconds() != 9 || tor.KeepaliveTime.Seconds() != 3 || tor.PasswordFile == "" {
					t.Errorf("tor-a = %+v", tor)
				}
				b, _ := c.Peer("tor-b")
				if b.Port != 1179 || b.SourceAddress != "198.51.100.10" {
					t.Errorf("tor-b = %+v", b)
				}
				if _, ok := c.Peer("spine-vrf"); ok {
					t.Error("a VRF peer must be skipped, not peered from the default VRF")
				}
				// loadOutput put "team-b" where the placeholder was.
				if b, _ := c.Pool("team-b"); b.AdmitsService("default", nil) || !b.AdmitsService("team-b", nil) {
					t.Error("team-b (namespaceSelectors only) must be limited to the namespaces written in, not open to all")
				}
				if c.BGP.RouterID != "" {
					t.Errorf("routerID = %q, want the per-node default", c.BGP.RouterID)
				}
			},
		},
		{
			file: "crd-mixed.yaml",
			wantNotes: []string{
				`Namespace "metallb-system": skipped`,
				`advertised by both BGP and layer 2`,
			},
			check: func(t *testing.T, c *config.Config) {
				wantPools(t, c, "reserved", "both")
				for _, p := range c.Pools {
					if p.Mode != config.ModeBGP {
						t.Errorf("pool %s mode %s; the spec-less BGPAdvertisement selects every pool", p.Name, p.Mode)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			in := filepath.Join(testdata, tt.file)
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			res, err := FromMetalLB(Source{Name: in, Data: data})
			if err != nil {
				t.Fatalf("FromMetalLB: %v", err)
			}
			golden := strings.TrimSuffix(in, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, res.Config, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(want) != string(res.Config) {
				t.Errorf("output differs from %s (run with -update and review the diff):\n%s", golden, res.Config)
			}
			c, err := loadOutput(res.Config)
			if err != nil {
				t.Fatalf("output does not load: %v", err)
			}
			tt.check(t, c)
			for _, w := range tt.wantNotes {
				if !hasNote(res.Notes, w) {
					t.Errorf("no note contains %q; notes:\n%s", w, notesText(res.Notes))
				}
			}
			if len(tt.wantNotes) == 0 && len(res.Notes) > 0 {
				t.Errorf("unexpected notes:\n%s", notesText(res.Notes))
			}
		})
	}
}

func TestFromMetalLB(t *testing.T) {
	tests := []struct {
		name      string
		inputs    []string
		wantErr   string
		wantNotes []string
		check     func(t *testing.T, c *config.Config)
	}{
		{
			name:    "not yaml",
			inputs:  []string{"kind: [\n"},
			wantErr: "document 1 is not valid YAML",
		},
		{
			name:    "nothing to convert",
			inputs:  []string{"apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"},
			wantErr: ErrNothingToConvert.Error(),
		},
		{
			name:    "overlapping pools are refused by the loader",
			inputs:  []string{poolDoc("a", "192.0.2.0/28"), poolDoc("b", "192.0.2.8-192.0.2.20")},
			wantErr: "overlaps",
		},
		{
			name:    "bgp without peers has no ASN",
			inputs:  []string{poolDoc("a", "192.0.2.0/28") + "---\n" + bgpAdv("")},
			wantErr: "bgp pools need bgp.asn",
		},
		{
			name:      "pool without advertisement is announced by layer 2",
			inputs:    []string{poolDoc("a", "192.0.2.0/28")},
			wantNotes: []string{"allocated from it without announcing"},
			check: func(t *testing.T, c *config.Config) {
				if c.Pools[0].Mode != config.ModeLayer2 {
					t.Errorf("mode %s", c.Pools[0].Mode)
				}
			},
		},
		{
			name: "objects from several files are merged",
			inputs: []string{
				poolDoc("a", "192.0.2.0/28"),
				"apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r}\nspec: {myASN: 64512, peerASN: 64500, peerAddress: 198.51.100.1}\n",
				bgpAdv("a"),
			},
			check: func(t *testing.T, c *config.Config) {
				if c.Pools[0].Mode != config.ModeBGP || c.BGP.ASN != 64512 || len(c.BGP.Peers) != 1 {
					t.Errorf("pools %+v bgp %+v", c.Pools, c.BGP)
				}
			},
		},
		{
			name: "a peer with another myASN keeps it as localASN",
			inputs: []string{
				"apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r1}\nspec: {myASN: 64601, peerASN: 64500, peerAddress: 198.51.100.1}\n",
				"apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r2}\nspec: {myASN: 64602, peerASN: 64500, peerAddress: 198.51.100.2}\n",
			},
			check: func(t *testing.T, c *config.Config) {
				if c.BGP.ASN != 64601 || c.BGP.Peers[0].LocalASN != 0 || c.BGP.Peers[1].LocalASN != 64602 {
					t.Errorf("bgp.asn %d, localASN %d and %d; want 64601, none and 64602", c.BGP.ASN, c.BGP.Peers[0].LocalASN, c.BGP.Peers[1].LocalASN)
				}
			},
		},
		{
			name:      "L2Advertisements for one pool: interfaces merged, node selectors ORed",
			inputs:    []string{poolDoc("a", "192.0.2.0/28") + "---\n" + l2Adv("x", "[eth1]", "[{matchLabels: {rack: r1}}]") + "---\n" + l2Adv("y", "[eth2]", "[]")},
			wantNotes: []string{"the interfaces of 2 L2Advertisements are merged"},
			check: func(t *testing.T, c *config.Config) {
				p := c.Pools[0]
				if strings.Join(p.Interfaces, ",") != "eth1,eth2" {
					t.Errorf("interfaces %v", p.Interfaces)
				}
				if !p.AdmitsNode(map[string]string{"rack": "r2"}) {
					t.Error("advertisement y has no node selector, so every node may announce")
				}
			},
		},
		{
			name:   "an L2Advertisement without interfaces lifts the restriction",
			inputs: []string{poolDoc("a", "192.0.2.0/28") + "---\n" + l2Adv("x", "[eth1]", "[]") + "---\n" + l2Adv("y", "[]", "[]")},
			check: func(t *testing.T, c *config.Config) {
				if len(c.Pools[0].Interfaces) != 0 {
					t.Errorf("interfaces %v, want none (any interface)", c.Pools[0].Interfaces)
				}
			},
		},
		{
			name:      "legacy pool with an unknown protocol",
			inputs:    []string{"address-pools:\n- name: odd\n  protocol: vrrp\n  addresses: [192.0.2.0/28]\n"},
			wantNotes: []string{`protocol "vrrp" is neither layer2 nor bgp`, "allocated from it without announcing"},
		},
		{
			name:      "a router ID shared by all peers is kept, with a note",
			inputs:    []string{strings.Replace(peerDoc, "peerAddress: 198.51.100.1", "peerAddress: 198.51.100.1, routerID: 10.0.0.9", 1)},
			wantNotes: []string{"10.0.0.9 is carried over as bgp.routerID"},
			check: func(t *testing.T, c *config.Config) {
				if c.BGP.RouterID != "10.0.0.9" {
					t.Errorf("routerID %q", c.BGP.RouterID)
				}
			},
		},
		{
			name: "dynamic ASN and unnumbered peers are skipped",
			inputs: []string{
				"apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: dyn}\nspec: {myASN: 64512, dynamicASN: external, peerAddress: 198.51.100.1}\n" +
					"---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: unnum}\nspec: {myASN: 64512, peerASN: 64500, interface: eth1}\n",
			},
			wantNotes: []string{`BGPPeer "dyn": skipped: a peer ASN is required`, `BGPPeer "unnum": skipped: unnumbered BGP`},
			check: func(t *testing.T, c *config.Config) {
				if len(c.BGP.Peers) != 0 {
					t.Errorf("peers %+v", c.BGP.Peers)
				}
			},
		},
		{
			name: "deprecated AddressPool kind",
			inputs: []string{
				peerDoc + "---\napiVersion: metallb.io/v1beta1\nkind: AddressPool\nmetadata: {name: old}\n" +
					"spec: {protocol: bgp, addresses: [192.0.2.0/28], autoAssign: false, bgpAdvertisements: [{localPref: 50, communities: [no-export]}, {aggregationLength: 24}]}\n",
			},
			wantNotes: []string{`AddressPool "old" bgpAdvertisements[1]: not carried over for pool "old"`},
			check: func(t *testing.T, c *config.Config) {
				p := c.Pools[0]
				if p.Name != "old" || p.Mode != config.ModeBGP || p.IsAutoAssign() || *p.BGP.LocalPref != 50 || p.BGP.Communities[0] != "no-export" {
					t.Errorf("pool %+v bgp %+v", p, p.BGP)
				}
			},
		},
		{
			name: "peer timers: 0s, too short, not a duration",
			inputs: []string{
				strings.Replace(peerDoc, "peerAddress: 198.51.100.1", "peerAddress: 198.51.100.1, holdTime: 0s, keepaliveTime: 0s", 1) +
					"---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: s}\nspec: {myASN: 64512, peerASN: 64500, peerAddress: 198.51.100.2, holdTime: soon, keepaliveTime: 20s}\n",
			},
			wantNotes: []string{
				`BGPPeer "r": holdTime 0s (no hold timer, no keepalives) is not supported: written as holdTime 90s`,
				`BGPPeer "r": keepaliveTime 0s not carried over`,
				`BGPPeer "s": holdTime "soon" is not a duration and is not carried over`,
			},
			check: func(t *testing.T, c *config.Config) {
				r, s := c.BGP.Peers[0], c.BGP.Peers[1]
				if r.HoldTime != 90*time.Second || r.KeepaliveTime != 30*time.Second || s.HoldTime != 90*time.Second || s.KeepaliveTime != 20*time.Second {
					t.Errorf("timers r %s/%s s %s/%s", r.HoldTime, r.KeepaliveTime, s.HoldTime, s.KeepaliveTime)
				}
			},
		},
		{
			name: "ORed service selectors: the note speaks of Services",
			inputs: []string{"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\n" +
				"spec: {addresses: [192.0.2.0/28], serviceAllocation: {serviceSelectors: [{matchLabels: {a: b}}, {matchLabels: {c: d}}]}}\n"},
			wantNotes: []string{"serviceAllocation.serviceSelectors has 2 selectors (MetalLB ORs them); a cloud-config has one selector here, so only the first is kept — write one selector that matches all the Services the 2 selected"},
		},
		{
			name:      "a BFD profile that is not in the input",
			inputs:    []string{strings.Replace(peerDoc, "peerAddress: 198.51.100.1", "peerAddress: 198.51.100.1, bfdProfile: slow", 1)},
			wantNotes: []string{`bfdProfile "slow" is not among the inputs, so the peer runs BFD with the defaults`},
			check: func(t *testing.T, c *config.Config) {
				if b := c.BGP.Peers[0].BFD; b == nil || b.ReceiveInterval != config.DefaultBFDInterval {
					t.Errorf("bfd = %+v, want the defaults", b)
				}
			},
		},
		{
			name: "unknown settings in a legacy ConfigMap are noted",
			inputs: []string{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n" +
				"    peers: [{peer-address: 198.51.100.1, peer-asn: 64500, my-asn: 64512, vrf: red}]\n    address-pools: [{name: a, protocol: bgp, addresses: [192.0.2.0/28]}]\n    bgp-extra: 1\n"},
			wantNotes: []string{
				`ConfigMap "config": data.config.peers[0].vrf not carried over: the converter does not know this setting`,
				`ConfigMap "config": data.config.bgp-extra not carried over`,
			},
		},
		{
			name:      "an unknown community is left out",
			inputs:    []string{poolDoc("a", "192.0.2.0/28") + "---\n" + peerDoc + "---\n" + "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: x}\nspec: {communities: [gold]}\n"},
			wantNotes: []string{`community "gold" left out`},
			check: func(t *testing.T, c *config.Config) {
				if c.Pools[0].BGP != nil {
					t.Errorf("bgp %+v", c.Pools[0].BGP)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var srcs []Source
			for i, in := range tt.inputs {
				srcs = append(srcs, Source{Name: "in" + string(rune('0'+i)), Data: []byte(in)})
			}
			res, err := FromMetalLB(srcs...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.wantNotes {
				if !hasNote(res.Notes, w) {
					t.Errorf("no note contains %q; notes:\n%s", w, notesText(res.Notes))
				}
			}
			c, err := loadOutput(res.Config)
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestErrNothingToConvertIsMatchable(t *testing.T) {
	_, err := FromMetalLB(Source{Name: "empty", Data: []byte("---\n")})
	if !errors.Is(err, ErrNothingToConvert) {
		t.Fatalf("err = %v", err)
	}
}

const peerDoc = "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r}\nspec: {myASN: 64512, peerASN: 64500, peerAddress: 198.51.100.1}\n"

func poolDoc(name, addr string) string {
	return "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: " + name + "}\nspec: {addresses: [" + addr + "]}\n"
}

func l2Adv(name, interfaces, nodeSelectors string) string {
	return "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: " + name + "}\nspec: {interfaces: " + interfaces + ", nodeSelectors: " + nodeSelectors + "}\n"
}

func bgpAdv(pool string) string {
	return "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: adv}\nspec: {ipAddressPools: [" + pool + "]}\n"
}

// loadOutput loads a converted cloud-config the way a person would after
// reviewing it: with the namespace placeholder replaced. Before that, the
// placeholder must be the loader's only complaint.
func loadOutput(data []byte) (*config.Config, error) {
	if !bytes.Contains(data, []byte(NamespacePlaceholder)) {
		return config.Parse(data)
	}
	if _, err := config.Parse(data); !errors.Is(err, config.ErrNamespacePlaceholder) || !onlyPlaceholders(err) {
		return nil, fmt.Errorf("with the placeholder, want only placeholder findings, got: %v", err)
	}
	return config.Parse(bytes.ReplaceAll(data, []byte(NamespacePlaceholder), []byte("team-b")))
}

func wantPools(t *testing.T, c *config.Config, names ...string) {
	t.Helper()
	var got []string
	for _, p := range c.Pools {
		got = append(got, p.Name)
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("pools = %v, want %v in this order", got, names)
	}
}

func hasNote(notes []Note, sub string) bool {
	for _, n := range notes {
		if strings.Contains(n.String(), sub) {
			return true
		}
	}
	return false
}

func notesText(notes []Note) string {
	var b strings.Builder
	for _, n := range notes {
		b.WriteString("  " + n.String() + "\n")
	}
	return b.String()
}

// FuzzFromMetalLB: any input either fails with an error or yields a
// cloud-config that loads, and never panics.
func FuzzFromMetalLB(f *testing.F) {
	for _, name := range []string{"legacy-layer2.yaml", "legacy-bgp.yaml", "crd-layer2.yaml", "crd-bgp.yaml", "crd-mixed.yaml"} {
		data, err := os.ReadFile(filepath.Join(testdata, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := FromMetalLB(Source{Name: "fuzz", Data: data})
		if err != nil {
			return
		}
		if _, err := loadOutput(res.Config); err != nil {
			t.Fatalf("FromMetalLB succeeded but its output does not load: %v\n%s", err, res.Config)
		}
	})
}
