package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPeerBFDAndLocalASN(t *testing.T) {
	c, err := Parse([]byte(`pools:
  - name: routed
    addresses: [192.0.2.0/28]
    mode: bgp
    bgp: {weightByEndpoints: true}
bgp:
  asn: 64512
  peers:
    - {name: plain, address: 198.51.100.1, asn: 64500}
    - {name: defaults, address: 198.51.100.2, asn: 64500, bfd: {}}
    - name: fast
      address: 198.51.100.3
      asn: 64500
      localASN: 64601
      bfd: {receiveInterval: 100ms, transmitInterval: 50ms, detectMultiplier: 5}
`))
	if err != nil {
		t.Fatal(err)
	}
	plain, defaults, fast := c.BGP.Peers[0], c.BGP.Peers[1], c.BGP.Peers[2]
	if plain.BFD != nil || plain.LocalASN != 0 {
		t.Errorf("peer without bfd or localASN: bfd %+v, localASN %d; want none", plain.BFD, plain.LocalASN)
	}
	if want := (PeerBFD{300 * time.Millisecond, 300 * time.Millisecond, 3}); defaults.BFD == nil || *defaults.BFD != want {
		t.Errorf("bfd: {} = %+v, want FRR's defaults %+v", defaults.BFD, want)
	}
	if want := (PeerBFD{100 * time.Millisecond, 50 * time.Millisecond, 5}); fast.BFD == nil || *fast.BFD != want || fast.LocalASN != 64601 {
		t.Errorf("fast peer: bfd %+v localASN %d; want %+v and 64601", fast.BFD, fast.LocalASN, want)
	}
	if !c.Pools[0].BGP.WeightByEndpoints {
		t.Error("weightByEndpoints: true was not read")
	}
}

func TestPeerBFDRejects(t *testing.T) {
	_, err := Parse([]byte(`bgp:
  asn: 64512
  peers:
    - name: tor
      address: 198.51.100.1
      asn: 64500
      bfd: {receiveInterval: 5ms, transmitInterval: 2m}
`))
	var verrs ValidationErrors
	if !errors.As(err, &verrs) {
		t.Fatalf("Parse error = %v, want ValidationErrors", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"bgp.peers[0].bfd.receiveInterval: 5ms is not between 10ms and 1m0s",
		"bgp.peers[0].bfd.transmitInterval: 2m0s is not between 10ms and 1m0s",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}
