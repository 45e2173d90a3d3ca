package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// A pool with weightByEndpoints: each node's path carries the
// link-bandwidth extended community in proportion to its ready endpoints
// of an externalTrafficPolicy: Local Service, and FRR turns it into
// next-hop weights in the kernel (UCMP).
const bgpWeightCloudConfig = `pools:
  - name: bgp
    addresses: [192.0.2.64/28]
    mode: bgp
    bgp:
      weightByEndpoints: true
bgp:
  asn: 64512
  peers:
    - name: tor
      address: 198.51.100.1
      asn: 64512
      holdTime: 9s
      keepaliveTime: 3s
nodeAgent:
  leaseDuration: 3s
  renewInterval: 1s
`

// kernelWeights reads the router kernel's next hops for prefix and their
// weights (`ip -j route show PREFIX`), by gateway.
func kernelWeights(h *lab.Host, prefix netip.Prefix) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := h.Exec(ctx, "ip", "-j", "route", "show", prefix.String())
	if err != nil {
		return nil, fmt.Errorf("ip route show %s: %w: %s", prefix, err, out)
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
			Weight  int    `json:"weight"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("decoding %q: %w", out, err)
	}
	w := map[string]int{}
	for _, r := range routes {
		if r.Gateway != "" {
			w[r.Gateway] = 1
		}
		for _, h := range r.Nexthops {
			w[h.Gateway] = max(h.Weight, 1)
		}
	}
	return w, nil
}

// waitWeights waits until the kernel routes prefix over exactly the
// nodes in want, with weights in the ratios want gives (within 10%).
func waitWeights(h *lab.Host, prefix netip.Prefix, timeout time.Duration, want map[*node]int) (map[string]int, error) {
	var got map[string]int
	err := lab.Eventually(context.Background(), timeout, 20*time.Millisecond, func() error {
		var err error
		if got, err = kernelWeights(h, prefix); err != nil {
			return err
		}
		if len(got) != len(want) {
			return fmt.Errorf("kernel routes %s via %v, want %d next hops", prefix, got, len(want))
		}
		var base *node
		for n := range want {
			if _, ok := got[n.addr4.String()]; !ok {
				return fmt.Errorf("kernel routes %s via %v, not via %s", prefix, got, n.name)
			}
			if base == nil || n.name < base.name {
				base = n
			}
		}
		for n, w := range want {
			ratio := float64(got[n.addr4.String()]) / float64(got[base.addr4.String()])
			if wantRatio := float64(w) / float64(want[base]); math.Abs(ratio-wantRatio) > 0.1*wantRatio {
				return fmt.Errorf("kernel weights %v; %s:%s is %.2f, want %.2f", got, n.name, base.name, ratio, wantRatio)
			}
		}
		return nil
	})
	return got, err
}

// updatesFrom is how many UPDATEs the router received from addr.
func (l *bgpLab) updatesFrom(addr netip.Addr) (int, error) {
	var out map[string]struct {
		MessageStats struct {
			UpdatesRecv int `json:"updatesRecv"`
		} `json:"messageStats"`
	}
	if err := l.router.VtyshJSON(context.Background(), "show bgp neighbors "+addr.String()+" json", &out); err != nil {
		return 0, err
	}
	return out[addr.String()].MessageStats.UpdatesRecv, nil
}

// TestBGPWeightedECMP: endpoints 2:1 give kernel weights 2:1 at the
// router, a node without endpoints does not advertise, 2:4 re-weights
// within 2 s, and a rolling update of 10 pods costs few UPDATEs.
func TestBGPWeightedECMP(t *testing.T) {
	l := newBGPAgentLabConf(t, bgpWeightCloudConfig)
	n1, n2 := l.nodes[0], l.nodes[1] // n3 has no endpoint
	l.setEndpointCounts(t, "web", map[*node]int{n1: 2, n2: 1})
	vip := l.createService(t, "web", true)

	t.Run("2:1 endpoints give 2:1 kernel weights; no endpoints, no path", func(t *testing.T) {
		got, err := waitWeights(l.router.Host, vip, 30*time.Second, map[*node]int{n1: 2, n2: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kernel weights at 2:1: %v", got)
		if err := l.waitNextHops(vip, 5*time.Second, n1.addr4, n2.addr4); err != nil {
			t.Errorf("n3 has no endpoint and must not advertise: %v", err)
		}
		out, err := l.curl("http://" + vip.Addr().String() + "/")
		if err != nil || !slices.Contains([]string{"n1", "n2"}, out) {
			t.Errorf("curl %s: %q, %v; want n1 or n2", vip.Addr(), out, err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("2:4 re-weights within 2 s", func(t *testing.T) {
		at := time.Now()
		l.setEndpointCounts(t, "web", map[*node]int{n1: 2, n2: 4})
		got, err := waitWeights(l.router.Host, vip, 10*time.Second, map[*node]int{n1: 2, n2: 4})
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(at)
		t.Logf("re-weighted to %v in %s", got, took.Round(time.Millisecond))
		if took > 2*time.Second {
			t.Errorf("re-weighting took %s, want within 2s", took)
		}
	})

	t.Run("a rolling update of 10 pods costs few UPDATEs", func(t *testing.T) {
		l.setEndpointCounts(t, "web", map[*node]int{n1: 10, n2: 4})
		if _, err := waitWeights(l.router.Host, vip, 10*time.Second, map[*node]int{n1: 10, n2: 4}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond) // past the speaker's weight hold
		before, err := l.updatesFrom(n1.addr4)
		if err != nil {
			t.Fatal(err)
		}
		// Each pod in turn: the old one stops being ready, then its
		// replacement becomes ready, 150 ms apart: 20 endpoint changes.
		changes := 0
		for range 10 {
			for _, c := range []int{9, 10} {
				l.setEndpointCounts(t, "web", map[*node]int{n1: c, n2: 4})
				changes++
				time.Sleep(150 * time.Millisecond)
			}
		}
		if _, err := waitWeights(l.router.Host, vip, 10*time.Second, map[*node]int{n1: 10, n2: 4}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		after, err := l.updatesFrom(n1.addr4)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("rolling update: %d endpoint changes on n1 -> %d UPDATEs from n1 at the router", changes, after-before)
		// Without the hold every change is an UPDATE; with the 1 s hold
		// about one per second of rollout (3 s here) plus the last.
		if after-before >= changes/2 {
			t.Errorf("%d UPDATEs for %d endpoint changes; want them merged", after-before, changes)
		}
	})
}
