package ipam

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAllocateRelease measures one Allocate plus one Release of a new
// Service while n addresses are already allocated. "contiguous" allocates
// the first n addresses (one interval); "fragmented" allocates 2n and frees
// every other one, the worst case for the interval index (n intervals).
// live-B/held is the heap the allocator keeps per address held; cpu-ns/op
// is the process's CPU time per operation (GC included), which stays
// meaningful on a shared machine where wall-clock ns/op does not.
//
//	go test -run x -bench . -benchmem ./ipam
func BenchmarkAllocateRelease(b *testing.B) {
	cases := []struct {
		cidr       string
		family     Family
		n          int
		fragmented bool
	}{
		{"2001:db8::/64", IPv6, 1_000, false},
		{"2001:db8::/64", IPv6, 100_000, false},
		{"2001:db8::/64", IPv6, 1_000_000, false},
		{"2001:db8::/64", IPv6, 1_000, true},
		{"2001:db8::/64", IPv6, 100_000, true},
		{"10.0.0.0/16", IPv4, 1_000, false},
		{"10.0.0.0/16", IPv4, 60_000, false},
		{"10.0.0.0/16", IPv4, 30_000, true},
	}
	for _, c := range cases {
		layout := "contiguous"
		if c.fragmented {
			layout = "fragmented"
		}
		b.Run(fmt.Sprintf("%s/%d-allocated/%s", c.cidr, c.n, layout), func(b *testing.B) {
			before := liveHeap()
			a := New([]Pool{{Name: "bench", AutoAssign: true, Ranges: ranges(b, c.cidr)}})
			req := Request{Families: []Family{c.family}}
			total := c.n
			if c.fragmented {
				total = 2 * c.n
			}
			for i := 0; i < total; i++ {
				req.Key = fmt.Sprintf("ns/svc-%d", i)
				if _, err := a.Allocate(req); err != nil {
					b.Fatal(err)
				}
			}
			if c.fragmented {
				for i := 0; i < total; i += 2 {
					a.Release(fmt.Sprintf("ns/svc-%d", i))
				}
			}
			// Collect the setup's garbage now, so that the loop measures the
			// steady state rather than one collection of a large heap.
			held := float64(int64(liveHeap())-int64(before)) / float64(c.n)
			req.Key = "ns/bench"
			b.ReportAllocs()
			cpu := processCPU(b)
			for b.Loop() {
				if _, err := a.Allocate(req); err != nil {
					b.Fatal(err)
				}
				a.Release(req.Key)
			}
			// After the loop, which resets metrics.
			b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(held, "live-B/held")
		})
	}
}

// liveHeap returns the bytes in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// processCPU returns the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
