package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// BenchmarkSetAdvertisements1000 measures the speaker's own cost of
// advertising, then withdrawing, 1,000 VIPs (no sessions, no binding).
func BenchmarkSetAdvertisements1000(b *testing.B) {
	s, err := New(context.Background(), Options{
		ASN: testASN, RouterID: netip.MustParseAddr("198.51.100.11"),
		NextHop4: netip.MustParseAddr("198.51.100.11"), NextHop6: netip.MustParseAddr("2001:db8:100::11"),
		Logger: logr.Discard(), ConnectRetry: time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop(context.Background())
	ads := make([]Advertisement, 0, 1000)
	for i := range 1000 {
		ads = append(ads, Advertisement{Prefix: netip.MustParsePrefix(fmt.Sprintf("2001:db8:1::%x/128", i+1)), Peers: []string{"tor"}})
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if err := s.SetAdvertisements(ctx, ads); err != nil {
			b.Fatal(err)
		}
		if err := s.SetAdvertisements(ctx, nil); err != nil {
			b.Fatal(err)
		}
	}
}
