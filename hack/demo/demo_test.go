package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/config"
	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// The embedded cloud-config must load with the binaries' own loader and
// agree with the lab's topology and the router's FRR configuration.
func TestCloudConfigMatchesTopology(t *testing.T) {
	cfg, err := config.Parse(cloudConfigYAML)
	if err != nil {
		t.Fatalf("the demo's cloud-config does not load: %v", err)
	}
	tests := []struct {
		pool string
		mode config.Mode
		in   netip.Prefix
	}{
		{"lan", config.ModeLayer2, lanPrefix},
		{"routed", config.ModeBGP, routedPrefix},
	}
	for _, tt := range tests {
		t.Run(tt.pool, func(t *testing.T) {
			p, ok := cfg.Pool(tt.pool)
			if !ok {
				t.Fatalf("no pool %q", tt.pool)
			}
			if p.Mode != tt.mode {
				t.Errorf("pool %s has mode %q, want %q", tt.pool, p.Mode, tt.mode)
			}
			for _, r := range p.Ranges {
				if !tt.in.Contains(r.First) || !tt.in.Contains(r.Last) {
					t.Errorf("pool %s range %v is outside %s, where the lab routes it", tt.pool, r, tt.in)
				}
			}
		})
	}
	if len(cfg.BGP.Peers) != 1 {
		t.Fatalf("want one BGP peer (the router), got %d", len(cfg.BGP.Peers))
	}
	peer := cfg.BGP.Peers[0]
	if peer.Addr != routerLAN.Addr() || peer.ASN != routerASN {
		t.Errorf("BGP peer %s AS %d, want the router %s AS %d", peer.Addr, peer.ASN, routerLAN.Addr(), routerASN)
	}
	for _, want := range []string{
		"router bgp 64500",
		"neighbor nodes remote-as 64512",
		"bgp listen range " + lanPrefix.String() + " peer-group nodes",
		"bgp router-id " + routerLAN.Addr().String(),
	} {
		if !strings.Contains(frrConf, want) {
			t.Errorf("frr.conf lacks %q", want)
		}
	}
	if cfg.BGP.ASN != 64512 {
		t.Errorf("nodes' ASN %d, frr.conf expects 64512", cfg.BGP.ASN)
	}
}

func TestBGPNextHops(t *testing.T) {
	// Trimmed output of FRR 8's `show ip route json`.
	const rib = `{
	  "192.0.2.0/24": [{"prefix": "192.0.2.0/24", "protocol": "connected", "selected": true,
	     "nexthops": [{"interfaceName": "eth0", "active": true}]}],
	  "203.0.113.1/32": [
	    {"prefix": "203.0.113.1/32", "protocol": "bgp", "selected": true, "nexthops": [
	      {"ip": "192.0.2.13", "active": true},
	      {"ip": "192.0.2.11", "active": true},
	      {"ip": "192.0.2.12", "active": false}]},
	    {"prefix": "203.0.113.1/32", "protocol": "static", "selected": false, "nexthops": [
	      {"ip": "192.0.2.99", "active": true}]}]
	}`
	var table map[string][]lab.FRRRoute
	if err := json.Unmarshal([]byte(rib), &table); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"203.0.113.1/32", []string{"192.0.2.11", "192.0.2.13"}},
		{"192.0.2.0/24", nil}, // not a BGP route
		{"203.0.113.2/32", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			var got []string
			for _, h := range bgpNextHops(table, netip.MustParsePrefix(tt.prefix)) {
				got = append(got, h.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("next hops %v, want %v", got, tt.want)
			}
		})
	}
}

func TestArpingMACs(t *testing.T) {
	tests := []struct {
		name, out string
		want      []string
	}{
		{"one owner", "ARPING 192.0.2.240\n" +
			"42 bytes from 6a:eb:ff:df:4a:e8 (192.0.2.240): index=0 time=1.1 msec\n" +
			"42 bytes from 6a:eb:ff:df:4a:e8 (192.0.2.240): index=1 time=0.9 msec\n", []string{"6a:eb:ff:df:4a:e8"}},
		{"two answer", "42 bytes from 6a:eb:ff:df:4a:e8 (192.0.2.240): index=0\n" +
			"42 bytes from 4e:78:5d:d9:8c:b7 (192.0.2.240): index=1\n", []string{"6a:eb:ff:df:4a:e8", "4e:78:5d:d9:8c:b7"}},
		{"nobody", "ARPING 192.0.2.240\nTimeout\nTimeout\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := arpingMACs(tt.out); !slices.Equal(got, tt.want) {
				t.Errorf("arpingMACs = %v, want %v", got, tt.want)
			}
		})
	}
}

// running must recognise a recorded process, also after `ip netns exec`
// exec'd into it, and never a different program under the same pid.
func TestRunning(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	// Start returns once the child has replaced its memory, which can be
	// before the kernel has set up its new argv: until then cmdline reads
	// empty. Wait for it rather than race it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if string(b) == "sleep\x0030\x00" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/proc/%d/cmdline = %q after 5s, want sleep 30", pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tests := []struct {
		name string
		pid  int
		args []string
		want bool
	}{
		{"as started", pid, []string{"sleep", "30"}, true},
		{"through ip netns exec", pid, []string{"ip", "netns", "exec", "bm1x1-node-1", "sleep", "30"}, true},
		{"another program", pid, []string{"etcd", "--name=lab"}, false},
		{"other arguments", pid, []string{"sleep", "31"}, false},
		{"no such pid", 0, []string{"sleep", "30"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := running(tt.pid, tt.args); got != tt.want {
				t.Errorf("running(%d, %q) = %v, want %v", tt.pid, tt.args, got, tt.want)
			}
		})
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if st, err := readState(dir); err != nil || st != nil {
		t.Fatalf("readState of an empty dir = %v, %v; want nothing", st, err)
	}
	want := &state{PID: 42, Args: []string{"demo"}, Processes: []stateProc{{Name: "etcd", PID: 43, Args: []string{"etcd"}}}}
	if err := writeState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != 42 || len(got.Processes) != 1 || got.Processes[0].Name != "etcd" {
		t.Errorf("read back %+v, want %+v", got, want)
	}
	if err := removeState(dir); err != nil {
		t.Fatal(err)
	}
	if err := removeState(dir); err != nil {
		t.Errorf("removing a missing state: %v", err)
	}
	if _, err := os.Stat(dir + "/" + stateFile); !os.IsNotExist(err) {
		t.Errorf("state file still there: %v", err)
	}
}

// TestTakeoverReason: the demo explains a fast takeover from the line the
// agent logs for it, and falls back to the Lease otherwise.
func TestTakeoverReason(t *testing.T) {
	logged := `I1201 22:23:56.034 1 agent.go:629] "Taking a VIP over from a member that is silent and does not answer for it" logger="agent" vip="192.0.2.240" from="node-1"`
	tests := []struct {
		name, logs, want string
	}{
		{"heartbeats", "other line\n" + logged + "\n", "Why so fast: node-1 stopped sending heartbeats"},
		{"another VIP", strings.Replace(logged, "192.0.2.240", "192.0.2.241", 1), "Why: node-1's Lease went 3s without renewal"},
		{"another owner", strings.Replace(logged, `from="node-1"`, `from="node-2"`, 1), "Why: node-1's Lease went 3s"},
		{"nothing logged", "", "Why: node-1's Lease went 3s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := takeoverReason(tt.logs, "192.0.2.240", "node-1", 3*time.Second); !strings.HasPrefix(got, tt.want) {
				t.Errorf("%q, want it to start with %q", got, tt.want)
			}
		})
	}
}
