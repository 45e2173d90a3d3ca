package bgp

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
)

func TestPeerSpec(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "hunter2\r\n")
	empty := write("empty", "\n")
	long := write("long", strings.Repeat("x", 81))
	base := config.Peer{Name: "tor-a", Address: "198.51.100.1", Addr: netip.MustParseAddr("198.51.100.1"), ASN: 64500}

	tests := []struct {
		name    string
		change  func(*config.Peer)
		check   func(*testing.T, *api.Peer)
		wantErr []string // substrings of the error
	}{{
		name:   "defaults",
		change: func(*config.Peer) {},
		check: func(t *testing.T, s *api.Peer) {
			if s.Conf.NeighborAddress != "198.51.100.1" || s.Conf.PeerAsn != 64500 || s.Conf.AuthPassword != "" {
				t.Errorf("conf = %v", s.Conf)
			}
			if s.Transport.RemotePort != 179 || s.Transport.PassiveMode || s.Transport.LocalAddress != "" {
				t.Errorf("transport = %v", s.Transport)
			}
			if c := s.Timers.Config; c.HoldTime != 90 || c.KeepaliveInterval != 30 || c.ConnectRetry != 5 {
				t.Errorf("timers = %v", c)
			}
			if s.EbgpMultihop != nil || s.GracefulRestart != nil {
				t.Errorf("multihop %v, graceful restart %v; want neither", s.EbgpMultihop, s.GracefulRestart)
			}
			if len(s.AfiSafis) != 2 || s.AfiSafis[0].MpGracefulRestart != nil {
				t.Errorf("afi-safis = %v; want IPv4 and IPv6 unicast without graceful restart", s.AfiSafis)
			}
		},
	}, {
		name: "every option",
		change: func(p *config.Peer) {
			p.Port = 1179
			p.PasswordFile = good
			p.HoldTime = 9 * time.Second
			p.KeepaliveTime = 3 * time.Second
			p.EBGPMultihop = 4
			p.SourceAddr = netip.MustParseAddr("198.51.100.11")
			p.GracefulRestart = true
		},
		check: func(t *testing.T, s *api.Peer) {
			if s.Conf.AuthPassword != "hunter2" {
				t.Errorf("password not read, or not trimmed of its line ending")
			}
			if s.Transport.RemotePort != 1179 || s.Transport.LocalAddress != "198.51.100.11" {
				t.Errorf("transport = %v", s.Transport)
			}
			if c := s.Timers.Config; c.HoldTime != 9 || c.KeepaliveInterval != 3 {
				t.Errorf("timers = %v", c)
			}
			if m := s.EbgpMultihop; m == nil || !m.Enabled || m.MultihopTtl != 4 {
				t.Errorf("multihop = %v", m)
			}
			if g := s.GracefulRestart; g == nil || !g.Enabled || g.RestartTime != gracefulRestartTime {
				t.Errorf("graceful restart = %v", g)
			}
			for _, af := range s.AfiSafis {
				if af.MpGracefulRestart == nil || !af.MpGracefulRestart.Config.Enabled {
					t.Errorf("family %v lacks graceful restart", af.Config.Family)
				}
			}
		},
	}, {
		name:    "missing password file",
		change:  func(p *config.Peer) { p.PasswordFile = filepath.Join(dir, "nope") },
		wantErr: []string{`"tor-a"`, filepath.Join(dir, "nope"), "no such file"},
	}, {
		name:    "empty password file",
		change:  func(p *config.Peer) { p.PasswordFile = empty },
		wantErr: []string{`"tor-a"`, empty, "empty"},
	}, {
		name:    "password too long for TCP MD5",
		change:  func(p *config.Peer) { p.PasswordFile = long },
		wantErr: []string{`"tor-a"`, "81 bytes", "at most 80"},
	}, {
		name:    "no address",
		change:  func(p *config.Peer) { p.Addr = netip.Addr{} },
		wantErr: []string{`"tor-a"`, "no valid address"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			tt.change(&p)
			spec, err := peerSpec(p, defaultConnectRetry)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("peerSpec() succeeded, want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "x"+"xxxxxxx") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, spec)
		})
	}
}

func TestSameSession(t *testing.T) {
	p := config.Peer{Name: "a", Addr: netip.MustParseAddr("198.51.100.1"), ASN: 1}
	mk := func(change func(*config.Peer)) *peerEntry {
		q := p
		change(&q)
		s, err := peerSpec(q, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return &peerEntry{cfg: q, spec: s}
	}
	a := mk(func(*config.Peer) {})
	if !sameSession(a, mk(func(*config.Peer) {})) {
		t.Errorf("identical peers differ")
	}
	if sameSession(a, mk(func(q *config.Peer) { q.HoldTime = 30 * time.Second })) {
		t.Errorf("a new hold time keeps the session")
	}
	if sameSession(a, &peerEntry{cfg: p}) {
		t.Errorf("an unconfigurable peer matches a running one")
	}
}
