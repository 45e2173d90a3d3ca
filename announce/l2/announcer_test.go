package l2

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// A probe that cannot be sent must not leave its waiter behind: a stale
// waiter would swallow every later announcement of the address, and the
// handover that waits for one would never see it.
func TestProbeLeavesNoWaiters(t *testing.T) {
	a := New(Options{ProbeWait: 10 * time.Millisecond})
	defer a.Close()
	batch := []Announcement{
		{Addr: netip.MustParseAddr("192.0.2.10"), Interface: "bm-missing0"},
		{Addr: netip.MustParseAddr("2001:db8::10"), Interface: "bm-missing0"},
	}
	if conflicts := a.probeAll(batch); len(conflicts) != 0 {
		t.Fatalf("conflicts %v from probes that were never sent", conflicts)
	}
	a.probeMu.Lock()
	defer a.probeMu.Unlock()
	if len(a.probes) != 0 {
		t.Fatalf("%d probe waiters left behind", len(a.probes))
	}
}

func TestClaimRouting(t *testing.T) {
	agent := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	other := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	a := New(Options{IsAgentMAC: func(m net.HardwareAddr) bool { return m.String() == agent.String() }})
	defer a.Close()
	ip := netip.MustParseAddr("192.0.2.20")

	// While a probe waits for ip, claims of ip answer it.
	ch := make(chan net.HardwareAddr, 1)
	a.probeMu.Lock()
	a.probes[ip] = ch
	a.probeMu.Unlock()
	a.claim("eth0", ip, other)
	select {
	case got := <-ch:
		if got.String() != other.String() {
			t.Fatalf("probe got %s, want %s", got, other)
		}
	case <-time.After(time.Second):
		t.Fatal("the waiting probe got no answer")
	}
	a.probeMu.Lock()
	delete(a.probes, ip)
	a.probeMu.Unlock()

	// Otherwise an agent's claim is remembered for handovers that start
	// shortly after; a foreign host's is not.
	a.claim("eth0", ip, other)
	a.claim("eth0", ip, agent)
	deadline := time.Now().Add(time.Second)
	for {
		a.mu.Lock()
		c, ok := a.recent[ip]
		a.mu.Unlock()
		if ok {
			if c.mac.String() != agent.String() {
				t.Fatalf("remembered claim by %s, want the agent %s", c.mac, agent)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent's claim was not remembered")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
