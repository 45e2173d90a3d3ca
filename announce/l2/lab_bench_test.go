//go:build lab

package l2

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// benchVIPs returns n documentation addresses, IPv4 first (754 of them fit
// in the three IPv4 documentation ranges), then IPv6. The first is
// 192.0.2.240, the one the benchmark asks for.
func benchVIPs(n int) []netip.Addr {
	out := []netip.Addr{netip.MustParseAddr(labVIP4)}
	for _, r := range []struct {
		base     string
		from, to int
	}{{"192.0.2.", 10, 255}, {"198.51.100.", 1, 254}, {"203.0.113.", 1, 254}} {
		for i := r.from; i <= r.to && len(out) < n; i++ {
			ip := netip.MustParseAddr(r.base + strconv.Itoa(i))
			if ip != out[0] {
				out = append(out, ip)
			}
		}
	}
	for i := 1; len(out) < n; i++ {
		out = append(out, netip.MustParseAddr(fmt.Sprintf("2001:db8::1:%x", i)))
	}
	return out[:n]
}

var arpingTime = regexp.MustCompile(`time=([0-9.]+) (usec|msec|sec)`)

// arpingRun sends count requests for ip, interval apart, from the client
// and returns the reply times arping measured and the wall time it took.
func (p *labPair) arpingRun(t *testing.T, ip string, count int, interval time.Duration) ([]time.Duration, time.Duration) {
	t.Helper()
	// arping writes to a file, not a pipe: reading its output would count
	// as the responder's CPU.
	f, err := os.CreateTemp(t.TempDir(), "arping")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("ip", "netns", "exec", p.client, "arping", "-c", strconv.Itoa(count),
		"-W", strconv.FormatFloat(interval.Seconds(), 'f', 4, 64), "-i", "c0", ip)
	cmd.Stdout, cmd.Stderr = f, f
	start := time.Now()
	_ = cmd.Run() // the replies are the result; a lost one is counted below
	wall := time.Since(start)
	out, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	var ds []time.Duration
	for _, m := range arpingTime.FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		unit := map[string]float64{"usec": 1e3, "msec": 1e6, "sec": 1e9}[m[2]]
		ds = append(ds, time.Duration(v*unit))
	}
	if len(ds) == 0 {
		t.Fatalf("arping %s: no replies\n%s", ip, out)
	}
	slices.Sort(ds)
	return ds, wall
}

func pct(ds []time.Duration, q float64) time.Duration {
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}

func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestLabBenchResponder measures, at the client, the ARP reply latency of
// the responder with 1 and 1,000 VIPs owned next to the kernel's own reply
// for the node's address in the same run, and the responder's CPU while
// it answers about 1,000 requests a second.
func TestLabBenchResponder(t *testing.T) {
	if os.Getenv("BAREMETAL_BENCH") == "" {
		t.Skip("set BAREMETAL_BENCH=1 (make bench)")
	}
	const (
		requests = 5000
		// arping's own loop adds about 0.5 ms to the interval it is given:
		// 0.5 ms gives about 1,000 requests a second here.
		interval = 500 * time.Microsecond
	)
	for _, n := range []int{1, 1000} {
		t.Run(fmt.Sprintf("%dVIPs", n), func(t *testing.T) {
			p := newLabPair(t)
			node := enter(t, p.node)
			changes := make(chan Change, n)
			var a *Announcer
			node.do(func() {
				a = New(Options{
					GARPInterval: time.Hour, BurstCount: 1, // announcements out of the window
					OnChange: func(c Change) { changes <- c },
				})
			})
			t.Cleanup(func() { a.Close() })
			var want []Announcement
			for _, ip := range benchVIPs(n) {
				want = append(want, Announcement{Addr: ip, Interface: "n0"})
			}
			var err error
			node.do(func() { err = a.Set(t.Context(), want) })
			if err != nil {
				t.Fatal(err)
			}
			waitChange(t, changes, Announced, n)

			kernel, _ := p.arpingRun(t, "192.0.2.1", 1000, interval)
			cpu0 := cpuTime(t)
			ours, wall := p.arpingRun(t, labVIP4, requests, interval)
			cpu := cpuTime(t) - cpu0
			rate := float64(len(ours)) / wall.Seconds()
			t.Logf("BENCH l2 responder, %d VIPs owned: ARP reply at the client p50 %s p99 %s (kernel, same run: p50 %s p99 %s; ratio p50 %.2f); %d replies in %s = %.0f requests/s; responder CPU %s = %.2f%% of one core, %.2f%% per 1,000 requests/s",
				n, pct(ours, 0.5), pct(ours, 0.99), pct(kernel, 0.5), pct(kernel, 0.99),
				float64(pct(ours, 0.5))/float64(pct(kernel, 0.5)),
				len(ours), wall.Round(time.Millisecond), rate, cpu, 100*cpu.Seconds()/wall.Seconds(),
				100*cpu.Seconds()/wall.Seconds()*1000/rate)
			if len(ours) < requests*99/100 {
				t.Errorf("%d of %d requests answered", len(ours), requests)
			}
		})
	}
}
