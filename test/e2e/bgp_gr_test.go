package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// The agent lab's cloud-config with graceful restart on the router.
var bgpGRCloudConfig = strings.Replace(bgpAgentCloudConfig, "      keepaliveTime: 3s\n",
	"      keepaliveTime: 3s\n      gracefulRestart: true\n", 1)

// requestLoop is a client asking url's host:port for "/" every interval
// from inside a namespace, one new connection per request, and counting
// the requests that failed.
type requestLoop struct {
	mu       sync.Mutex
	sent     int
	failures []string
	stop     chan struct{}
	done     chan struct{}
}

func startRequests(h *lab.Host, addr string, interval time.Duration) *requestLoop {
	r := &requestLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			err := get(h, addr)
			r.mu.Lock()
			r.sent++
			if err != nil {
				r.failures = append(r.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func get(h *lab.Host, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := h.DialTCP(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(b), "HTTP/1.") || !strings.Contains(string(b), " 200 ") {
		return fmt.Errorf("answer %.40q", b)
	}
	return nil
}

func (r *requestLoop) halt() (sent int, failures []string) {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent, r.failures
}

// TestBGPGracefulRestart: with gracefulRestart, restarting an agent (a
// DaemonSet rollout: SIGTERM on a node that stays) keeps its path at the
// router throughout and a client requesting every 20 ms through the router
// loses nothing; SIGTERM on a cordoned node withdraws its path instead.
func TestBGPGracefulRestart(t *testing.T) {
	l := newBGPAgentLabConf(t, bgpGRCloudConfig)
	n1, n2, n3 := l.nodes[0], l.nodes[1], l.nodes[2]
	vip := l.createService(t, "web", false)
	if err := l.waitNextHops(vip, 30*time.Second, n1.addr4, n2.addr4, n3.addr4); err != nil {
		t.Fatal(err)
	}

	t.Run("agent restart: no path lost, no request lost", func(t *testing.T) {
		// Watch the router's RIB: n1 must be a next hop in every sample.
		stopWatch := make(chan struct{})
		watchDone := make(chan []string)
		go func() {
			var missing []string
			for {
				select {
				case <-stopWatch:
					watchDone <- missing
					return
				case <-time.After(50 * time.Millisecond):
				}
				hops, err := l.ribNextHops(vip)
				if err == nil && !slices.Contains(hops, n1.addr4.String()) {
					missing = append(missing, fmt.Sprintf("%s %v", time.Now().Format("15:04:05.000"), hops))
				}
			}
		}()
		reqs := startRequests(l.client, netip.AddrPortFrom(vip.Addr(), 80).String(), 20*time.Millisecond)

		time.Sleep(500 * time.Millisecond)
		if err := n1.speaker.Stop(15 * time.Second); err != nil {
			t.Fatalf("stopping n1's agent: %v", err)
		}
		// The router keeps n1's path, stale, while no agent runs.
		err := lab.Eventually(context.Background(), 10*time.Second, 50*time.Millisecond, func() error {
			paths, err := l.bgpPaths(vip)
			if err != nil {
				return err
			}
			for _, p := range paths {
				if p.Peer.PeerID == n1.addr4.String() && p.Stale {
					return nil
				}
			}
			return fmt.Errorf("no stale path from n1: %+v", paths)
		})
		if err != nil {
			t.Error(err)
		}
		time.Sleep(time.Second)
		l.startAgent(t, n1)
		// The new agent's paths replace the stale one.
		err = lab.Eventually(context.Background(), 60*time.Second, 100*time.Millisecond, func() error {
			paths, err := l.bgpPaths(vip)
			if err != nil {
				return err
			}
			for _, p := range paths {
				if p.Peer.PeerID == n1.addr4.String() && !p.Stale {
					return nil
				}
			}
			return fmt.Errorf("no fresh path from n1 yet: %+v", paths)
		})
		if err != nil {
			t.Error(err)
		}
		time.Sleep(time.Second)
		sent, failures := reqs.halt()
		close(stopWatch)
		missing := <-watchDone
		t.Logf("agent restart: %d requests every 20 ms through the router, %d failed; n1 missing from the RIB in %d samples", sent, len(failures), len(missing))
		if len(failures) > 0 {
			t.Errorf("%d of %d requests failed; the first: %v", len(failures), sent, failures[:min(5, len(failures))])
		}
		if len(missing) > 0 {
			t.Errorf("n1's path left the router during the restart: %v", missing[:min(5, len(missing))])
		}
	})
	if t.Failed() {
		return
	}

	t.Run("SIGTERM on a cordoned node withdraws", func(t *testing.T) {
		patch := []byte(`{"spec":{"unschedulable":true}}`)
		if _, err := l.c.Client.CoreV1().Nodes().Patch(t.Context(), n2.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := n2.speaker.Stop(15 * time.Second); err != nil {
			t.Fatalf("stopping n2's agent: %v", err)
		}
		if err := l.waitNextHops(vip, 10*time.Second, n1.addr4, n3.addr4); err != nil {
			t.Fatal(err)
		}
		paths, err := l.bgpPaths(vip)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if p.Peer.PeerID == n2.addr4.String() {
				t.Errorf("the router still has a path from the cordoned n2: %+v", p)
			}
		}
	})
}
