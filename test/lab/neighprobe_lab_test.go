//go:build lab

// Lab tests of the lab itself; they need root (run with -tags lab; `make
// test` does).

package lab

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// The net package caches interface names process-wide for a minute, and
// every lab host has an eth0. A probe that named its interface's zone would
// bind to whichever namespace's eth0 was looked up last (CI failed with
// "bind: no such device").
func TestNeighborProbeFindsItsOwnEth0(t *testing.T) {
	seg := NewSegment(t, "zone")
	client := seg.AddHost("client", netip.MustParsePrefix("2001:db8::c/64"))
	seg.AddHost("node", netip.MustParsePrefix("2001:db8::1/64"))

	// A namespace whose eth0 has another index than the hosts' (2).
	other := uniqueName("zone-other")
	ctx := context.Background()
	if err := addNetns(ctx, other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleteNetns(other) })
	if _, err := run(ctx, "ip", "-n", other, "link", "add", "eth0", "index", "7", "type", "veth", "peer", "name", "v0"); err != nil {
		t.Fatal(err)
	}
	var otherEth0, clientEth0 int
	if err := inNetns(other, func() error {
		ift, err := net.Interfaces() // refreshes the cache from this namespace
		for _, ifi := range ift {
			if ifi.Name == "eth0" {
				otherEth0 = ifi.Index
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := inNetns(client.Netns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err == nil {
			clientEth0 = ifi.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if otherEth0 == clientEth0 {
		t.Fatalf("both namespaces' eth0 have index %d; the test needs them to differ", clientEth0)
	}

	target := netip.MustParseAddr("2001:db8::1")
	p, err := client.StartNeighborProbe([]netip.Addr{target}, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	// The kernel of node answers its own address: the probe must hear it.
	start := time.Now()
	if err := Eventually(context.Background(), 5*time.Second, 20*time.Millisecond, func() error {
		if _, ok := p.FirstAnswer(target, start, ""); !ok {
			return errors.New("no answer yet")
		}
		return nil
	}); err != nil {
		t.Fatalf("no neighbour advertisement for %s reached the probe: %v", target, err)
	}
}
