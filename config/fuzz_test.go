package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary files to the loader: it must never panic, must
// say the same thing twice, and whatever it accepts must hold what
// validation promises. The seeds run as a plain test; explore with:
//
//	go test -run x -fuzz FuzzParse -fuzztime 30s ./config
func FuzzParse(f *testing.F) {
	full, err := os.ReadFile(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	for _, s := range []string{
		"",
		"pools: []\n",
		"pools:\n  - name: lan\n    addresses: [192.0.2.240-192.0.2.250, 2001:db8:1::/120]\n",
		"pools:\n  - name: lan\n    addresses: [192.0.2.9-192.0.2.1]\n",
		"pools:\n  - name: a\n    addresses: [192.0.2.0/30]\n  - name: b\n    addresses: [192.0.2.3]\n",
		"pools:\n  - name: r\n    addresses: [192.0.2.1]\n    mode: bgp\n    bgp: {peers: [x], communities: [\"1:2\"]}\n",
		"bgp:\n  asn: 1\n  peers: [{name: p, address: 198.51.100.1, asn: 2, holdTime: 3s}]\n",
		"nodeAgent: {leaseDuration: 1s, renewInterval: 2s, garpInterval: 0s}\n",
		"topology: [{cidr: 192.0.2.0/24, zone: a}]\n",
		"pools: [{name: a, bogus: 1}]\n",
		"a: &a [*a]\n",
		"---\n---\n",
		"# only a comment\n",
		"pools: [{name: a, addresses: [0.0.0.0/0, fe80::/64, ff02::1, \"::1\", \"::\"]}]\n",
		"bgp: {asn: 1, peers: [{name: p, address: 198.51.100.1, asn: -1, holdTime: 90}]}\n",
		"pools:\n  - &b {name: a, addresses: [192.0.2.1]}\n  - {<<: *b, name: b, addresses: [192.0.2.2]}\n",
		"pools: [{name: a, addresses: [192.0.2.1], namespaces: [replace-with-namespaces]}]\n",
		"topology: [{cidr: 192.0.2.0/24, zone: \"rack 1/bad label\"}]\n",
		"pools: [{name: a, adresses: [192.0.2.1], name: b}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		_, err2 := Parse(data)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("Parse is not deterministic: %v, then %v", err, err2)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			var errs ValidationErrors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v is not a ValidationErrors", err)
			}
			for _, e := range errs {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("finding %v is not a *FieldError", e)
				}
				if fe.Path != "" && fe.Line <= 0 {
					t.Fatalf("finding %v names a field but no line", fe)
				}
			}
			return
		}
		checkValid(t, c)
	})
}

// checkValid asserts what a successful Parse promises its callers.
func checkValid(t *testing.T, c *Config) {
	t.Helper()
	names := map[string]bool{}
	for i := range c.Pools {
		p := &c.Pools[i]
		if p.Name == "" || names[p.Name] {
			t.Fatalf("pool %d has an empty or duplicate name %q", i, p.Name)
		}
		names[p.Name] = true
		if len(p.Ranges) == 0 || len(p.Ranges) != len(p.Addresses) {
			t.Fatalf("pool %s: %d addresses parsed into %d ranges", p.Name, len(p.Addresses), len(p.Ranges))
		}
		if p.Mode != ModeLayer2 && p.Mode != ModeBGP {
			t.Fatalf("pool %s has mode %q", p.Name, p.Mode)
		}
		if p.Mode == ModeBGP && c.BGP.ASN == 0 {
			t.Fatalf("bgp pool %s accepted without bgp.asn", p.Name)
		}
		for _, name := range c.PeerNames(p) {
			if _, ok := c.Peer(name); !ok {
				t.Fatalf("pool %s names unknown peer %q", p.Name, name)
			}
		}
		for j := range c.Pools[:i+1] {
			for x, r := range p.Ranges {
				for y, o := range c.Pools[j].Ranges {
					if (j != i || x != y) && r.Overlaps(o) {
						t.Fatalf("pools %s and %s overlap: %s, %s", p.Name, c.Pools[j].Name, r, o)
					}
				}
			}
		}
	}
	for _, peer := range c.BGP.Peers {
		if !peer.Addr.IsValid() || peer.ASN == 0 || peer.KeepaliveTime <= 0 || peer.KeepaliveTime >= peer.HoldTime {
			t.Fatalf("peer %+v accepted", peer)
		}
	}
	n := c.NodeAgent
	if n.RenewInterval <= 0 || n.RenewInterval >= n.LeaseDuration || n.GARP() < 0 {
		t.Fatalf("node agent timing %+v accepted", n)
	}
	for _, tr := range c.Topology {
		if !tr.Prefix.IsValid() || tr.Zone == "" && tr.Region == "" {
			t.Fatalf("topology rule %+v accepted", tr)
		}
	}
}
