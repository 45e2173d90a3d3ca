package e2e

import (
	"context"
	"testing"
	"time"
)

// TestL2Announce: a Service gets an address from the CCM and exactly one
// node, the elected owner, answers ARP for it and serves it.
func TestL2Announce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := newL2Lab(t, 3)
	start := time.Now()
	ip := l.createService(ctx, "web")
	owner := l.waitOwner(ctx, ip, 10*time.Second)
	t.Logf("%s owned by %s after %s", ip, owner, time.Since(start))
	macs := l.arping(ctx, ip)
	if len(macs) != 1 || l.nodeByMAC(macs[0]) != owner {
		t.Fatalf("arping %s answered by %v, want only %s (%s)", ip, macs, owner, l.node(owner).host.MAC)
	}
	name, err := l.curl(ctx, ip, 2*time.Second)
	if err != nil || name != owner {
		t.Fatalf("curl %s = %q, %v; want %s", ip, name, err, owner)
	}
}
