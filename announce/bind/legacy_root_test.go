package bind

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// TestRemoveLegacyInANamespace runs RemoveLegacy against a real kernel, in
// a network namespace of its own. Root only.
func TestRemoveLegacyInANamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ns := fmt.Sprintf("bmbind%d", os.Getpid())
	ip := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
	// This kernel has no dummy links: a veth pair stands in for eth0 and
	// the kube-lb0 an older agent created.
	ip("link", "add", "eth0", "type", "veth", "peer", "name", "kube-lb0")
	ip("addr", "add", "192.0.2.10/24", "dev", "eth0")
	ip("addr", "add", "192.0.2.240/32", "dev", "eth0")
	ip("addr", "add", "2001:db8:1::5/128", "dev", "eth0", "nodad")
	ip("addr", "add", "203.0.113.9/32", "dev", "kube-lb0")
	ip("addr", "add", "198.51.100.8/32", "dev", "kube-lb0")
	ip("addr", "add", "192.0.2.241/32", "dev", "lo")

	run := func() ([]netip.Addr, error) {
		type result struct {
			removed []netip.Addr
			err     error
		}
		ch := make(chan result)
		go func() {
			// The thread enters the namespace and dies with the goroutine.
			runtime.LockOSThread()
			h, err := netns.GetFromName(ns)
			if err == nil {
				err = netns.Set(h)
				h.Close()
			}
			if err != nil {
				ch <- result{err: err}
				return
			}
			r, err := RemoveLegacy(inPools)
			ch <- result{r, err}
		}()
		r := <-ch
		return r.removed, r.err
	}
	removed, err := run()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("192.0.2.240"), netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("2001:db8:1::5")}
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	addrs := ip("-br", "addr", "show")
	for _, gone := range []string{"192.0.2.240/32", "203.0.113.9/32", "2001:db8:1::5/128"} {
		if strings.Contains(addrs, gone) {
			t.Errorf("%s still bound:\n%s", gone, addrs)
		}
	}
	for _, kept := range []string{"192.0.2.10/24", "198.51.100.8/32", "192.0.2.241/32"} {
		if !strings.Contains(addrs, kept) {
			t.Errorf("%s removed:\n%s", kept, addrs)
		}
	}
	if removed, err := run(); err != nil || len(removed) != 0 {
		t.Fatalf("second run: removed %v, err %v", removed, err)
	}
}
