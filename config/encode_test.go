package config

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestMarshal(t *testing.T) {
	no, zero := false, uint32(0)
	hold := 0 * time.Second
	tests := []struct {
		name string
		in   *Config
		want string
	}{
		{name: "empty", in: &Config{}, want: "{}\n"},
		{
			name: "zero values are left out, set pointers are not",
			in: &Config{
				Pools: []Pool{{
					Name: "lan", Addresses: []string{"192.0.2.0/28", "2001:db8::1"}, Mode: ModeLayer2, AutoAssign: &no,
					NodeSelector: &Selector{MatchLabels: map[string]string{"rack": "r1", "os": "linux"}},
				}, {
					Name: "routed", Addresses: []string{"203.0.113.1"}, Mode: ModeBGP,
					BGP: &PoolBGP{Communities: []string{"65000:1", "no-export"}, LocalPref: &zero},
				}},
				BGP: BGP{ASN: 64512, Peers: []Peer{{
					Name: "tor-a", Address: "198.51.100.1", ASN: 64500, HoldTime: 90 * time.Second, KeepaliveTime: 1500 * time.Millisecond,
					BFD: &PeerBFD{ReceiveInterval: 300 * time.Millisecond},
				}}},
				NodeAgent: NodeAgent{GARPInterval: &hold},
				Warnings:  []*FieldError{{Msg: "never written"}},
			},
			want: `pools:
  - name: lan
    addresses:
      - 192.0.2.0/28
      - 2001:db8::1
    mode: layer2
    autoAssign: false
    nodeSelector:
      matchLabels:
        os: linux
        rack: r1
  - name: routed
    addresses:
      - 203.0.113.1
    mode: bgp
    bgp:
      communities:
        - "65000:1"
        - no-export
      localPref: 0
bgp:
  asn: 64512
  peers:
    - name: tor-a
      address: 198.51.100.1
      asn: 64500
      holdTime: 90s
      keepaliveTime: 1500ms
      bfd:
        receiveInterval: 300ms
nodeAgent:
  garpInterval: 0s
`,
		},
		{
			name: "a set but empty section is written empty",
			in:   &Config{Pools: []Pool{{Name: "a", Addresses: []string{"192.0.2.1"}, BGP: &PoolBGP{}}}},
			want: "pools:\n  - name: a\n    addresses:\n      - 192.0.2.1\n    bgp: {}\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Marshal:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestMarshalRoundTrip: what Marshal writes, Parse reads back as the same
// configuration, for a file using every field.
func TestMarshalRoundTrip(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(Marshal(full.yaml)): %v\n%s", err, data)
	}
	if !reflect.DeepEqual(c, again) {
		t.Errorf("round trip changed the config:\n%+v\n%+v\nYAML:\n%s", c, again, data)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 90 * time.Second: "90s", time.Hour: "3600s", 300 * time.Millisecond: "300ms",
		1500 * time.Millisecond: "1500ms", 1500 * time.Microsecond: "1.5ms", -2 * time.Second: "-2s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%s) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("ParseDuration(FormatDuration(%s)) = %s, %v", d, back, err)
		}
	}
}
