package ipam

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentAllocateRelease hammers one allocator from many goroutines
// with requests for the same keys (run it with -race). Pools are smaller
// than the number of keys so that exhaustion, sharing and contested
// requested addresses all happen. After every call the result must be
// consistent, and at the end no address may be held by two keys that may
// not share it.
func TestConcurrentAllocateRelease(t *testing.T) {
	a := New([]Pool{
		{Name: "v4", AutoAssign: true, AvoidBuggyIPs: true, Ranges: ranges(t, "192.0.2.250-192.0.3.5")},
		{Name: "dual", AutoAssign: true, Ranges: ranges(t, "203.0.113.0/29", "2001:db8::/125")},
		{Name: "manual", Ranges: ranges(t, "198.51.100.0/30")},
	})
	const (
		workers = 8
		keys    = 40
		calls   = 1500
	)
	requestFor := func(rnd *rand.Rand, key int) Request {
		req := Request{Key: fmt.Sprintf("ns/svc-%d", key)}
		switch rnd.IntN(4) {
		case 0:
			req.Families, req.Policy = []Family{IPv4, IPv6}, RequireDualStack
		case 1:
			req.Families, req.Policy = []Family{IPv6, IPv4}, PreferDualStack
		}
		switch rnd.IntN(5) {
		case 0:
			req.Pool = "manual"
		case 1:
			req.IPs = []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(250 + rnd.IntN(5))})}
		}
		if rnd.IntN(2) == 0 {
			req.SharingKey = fmt.Sprint("k", rnd.IntN(2))
			req.Ports = []Port{{Protocol: "TCP", Port: int32(80 + rnd.IntN(3))}}
			if rnd.IntN(4) == 0 {
				req.Backend = "app=db"
			}
		}
		return req
	}
	var wg sync.WaitGroup
	var allocated, refused atomic.Int64
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(seed, 7))
			for i := 0; i < calls; i++ {
				key := rnd.IntN(keys)
				switch op := rnd.IntN(10); {
				case op < 2:
					a.Release(fmt.Sprintf("ns/svc-%d", key))
				case op < 3:
					req := requestFor(rnd, key)
					if len(req.IPs) == 0 {
						continue
					}
					if err := a.Seed(req, req.IPs); err != nil && !errors.Is(err, ErrAddressInUse) {
						errs <- fmt.Errorf("Seed(%s, %v): unexpected error %v", req.Key, req.IPs, err)
						return
					}
				default:
					req := requestFor(rnd, key)
					got, err := a.Allocate(req)
					if err != nil {
						if !knownError(err) {
							errs <- fmt.Errorf("Allocate(%s): unexpected error %v", req.Key, err)
							return
						}
						refused.Add(1)
						continue
					}
					if len(got.IPs) == 0 || len(req.IPs) > 0 && !slices.Contains(got.IPs, req.IPs[0]) {
						errs <- fmt.Errorf("Allocate(%+v) = %v", req, got)
						return
					}
					allocated.Add(1)
				}
				if i%100 == 0 {
					if err := a.checkInvariants(); err != nil {
						errs <- err
						return
					}
				}
			}
		}(uint64(w))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := a.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	// The mix must have both succeeded and run into full pools or taken addresses.
	if allocated.Load() == 0 || refused.Load() == 0 {
		t.Errorf("%d allocations and %d refusals; the test needs both", allocated.Load(), refused.Load())
	}
	t.Logf("%d allocations, %d refusals", allocated.Load(), refused.Load())
	// Releasing everything leaves nothing behind.
	for k := 0; k < keys; k++ {
		a.Release(fmt.Sprintf("ns/svc-%d", k))
	}
	for _, s := range a.Stats() {
		if s.InUse != 0 {
			t.Errorf("pool %s %s has %d in use after releasing every key", s.Pool, s.Family, s.InUse)
		}
	}
	if len(a.addrs) != 0 || len(a.shared) != 0 || len(a.orphans) != 0 {
		t.Errorf("indexes not empty after releasing every key: %d addresses, %d sharing keys, %d orphans", len(a.addrs), len(a.shared), len(a.orphans))
	}
	for _, p := range a.pools {
		for _, r := range p.ranges {
			if r.root != nil {
				t.Errorf("range %s still marks [%s,%s] used", r.Range, r.root.start, r.root.end)
			}
		}
	}
}

func knownError(err error) bool {
	for _, known := range []error{ErrPoolExhausted, ErrAddressInUse, ErrNoDualStackPool, ErrNoPool, ErrNotInPool} {
		if errors.Is(err, known) {
			return true
		}
	}
	return false
}
