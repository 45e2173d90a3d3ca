package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// TestBGPPeerErrors runs one agent whose peers are each wrong in one way a
// user gets wrong, against FRR (two routers): every failure shows as a Warning event on
// the Node naming the peer and the likely cause, and in the agent's
// baremetal_bgp_peer_errors_total.
func TestBGPPeerErrors(t *testing.T) {
	n1 := netip.MustParseAddr("198.51.100.11") // the lab's first node
	dir := t.TempDir()
	password := filepath.Join(dir, "wrong-password")
	if err := os.WriteFile(password, []byte("not-"+md5Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unreachable := netip.MustParseAddr("2001:db8:ff::1") // no route to it in the node's namespace
	tor2 := netip.MustParseAddr("198.51.100.2")          // a second router, in AS 64502
	cloudConfig := fmt.Sprintf(`pools:
  - name: bgp
    addresses: [192.0.2.64/28]
    mode: bgp
bgp:
  asn: %d
  peers:
    - {name: wrong-password, address: %s, asn: %d, passwordFile: %s, holdTime: 9s}
    - {name: wrong-local-asn, address: %s, asn: %d, localASN: 64999, holdTime: 9s}
    - {name: wrong-asn, address: %s, asn: 64999, holdTime: 9s}
    - {name: refused, address: %s, asn: %d, holdTime: 9s}
    - {name: unreachable, address: %s, asn: %d, holdTime: 9s}
nodeAgent:
  leaseDuration: 3s
  renewInterval: 1s
`, labASN, routerLAN4, labASN, password, routerLAN6, labASN, tor2, clientWAN4.Addr(), labASN, unreachable, labASN)
	// The router wants an MD5 password from n1 and takes any node of
	// AS 64512 over IPv6; tor2 is in AS 64502, not the 64999 the
	// cloud-config says; the client at 203.0.113.10 runs no BGP.
	l := newBGPAgentLabSpec(t, bgpAgentLabSpec{
		cloudConfig: cloudConfig,
		routerConf:  frrConf(n1),
		nodeLabels:  []map[string]string{nil},
		beforeNodes: func(l *bgpAgentLab) {
			lab.StartFRR(t, l.lan.AddHost("tor2", netip.PrefixFrom(tor2, 24)), torConf("tor2", 64502, tor2))
		},
	})
	node := l.nodes[0]
	labUp := time.Now() // the agent started just before

	cases := []struct {
		peer, address, cause string
		words                []string // in the event's message
	}{
		{"wrong-password", routerLAN4.String(), "MD5Mismatch", []string{"TCP MD5", "passwordFile"}},
		// The router's OPEN carries AS 64502, not the peer's asn: this
		// node refuses it with a NOTIFICATION (bad peer AS).
		{"wrong-asn", tor2.String(), "BadPeerAS", []string{"does not carry AS 64999", "bgp.peers[].asn"}},
		// The router refuses this node's AS with a NOTIFICATION (bad peer
		// AS), which gobgp does not decode before a session is up: the
		// agent names the likely cause from the OPEN exchange failing.
		{"wrong-local-asn", routerLAN6.String(), "OpenRejected", []string{"expects another AS number", "AS 64999", "localASN"}},
		{"refused", clientWAN4.Addr().String(), "ConnectionRefused", []string{"connection refused", "nothing listens"}},
		{"unreachable", unreachable.String(), "NoRoute", []string{"no route to " + unreachable.String()}},
	}
	for _, c := range cases {
		t.Run(c.cause, func(t *testing.T) {
			var msg string
			var first time.Time
			err := lab.Eventually(t.Context(), 60*time.Second, 250*time.Millisecond, func() error {
				evs, err := l.c.Client.CoreV1().Events("default").List(t.Context(), metav1.ListOptions{
					FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + node.name + ",reason=" + c.cause,
				})
				if err != nil {
					return err
				}
				for _, e := range evs.Items {
					if strings.Contains(e.Message, fmt.Sprintf("BGP peer %q (%s)", c.peer, c.address)) {
						if e.Type != "Warning" {
							t.Errorf("event %s %q: want a Warning", e.Type, e.Message)
						}
						msg, first = e.Message, e.FirstTimestamp.Time
						return nil
					}
				}
				return fmt.Errorf("no %s event on node %s naming peer %s (%d with that reason)", c.cause, node.name, c.peer, len(evs.Items))
			})
			if err != nil {
				t.Fatalf("%v\nagent log:\n%s", err, tail(node.speaker.Logs(), 30))
			}
			t.Logf("event %s, first %.1fs after the agent started: %s", c.cause, first.Sub(labUp).Seconds(), msg)
			for _, w := range c.words {
				if !strings.Contains(msg, w) {
					t.Errorf("event message %q lacks %q", msg, w)
				}
			}
			if c.cause == "OpenRejected" && !strings.Contains(l.router.BGPd.Logs(), "sent to neighbor "+node.addr6.String()+" 2/2 (OPEN Message Error/Bad Peer AS)") {
				t.Errorf("the router's log shows no bad-peer-AS NOTIFICATION to %s", node.addr6)
			}
			if strings.Contains(msg, md5Password) {
				t.Errorf("the event shows the password")
			}
			errs, up, err := peerMetrics(t.Context(), node, c.peer, c.cause)
			if err != nil {
				t.Fatal(err)
			}
			if errs < 1 || up != 0 {
				t.Errorf("metrics of peer %s: peer_errors_total{cause=%s} %v, session_up %v; want >= 1 and 0", c.peer, c.cause, errs, up)
			}
		})
	}
}

// peerMetrics reads peer's error count for cause and its session_up from
// the agent's metrics endpoint, inside the node's namespace.
func peerMetrics(ctx context.Context, n *node, peer, cause string) (errs, up float64, err error) {
	out, err := n.host.Exec(ctx, "curl", "-sS", "--max-time", "5", "http://127.0.0.1:9101/metrics")
	if err != nil {
		return 0, 0, fmt.Errorf("scraping %s's agent: %w", n.name, err)
	}
	value := func(re string) (float64, error) {
		m := regexp.MustCompile(`(?m)^` + re + ` (\S+)$`).FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("no %s in %s's metrics", re, n.name)
		}
		return strconv.ParseFloat(string(m[1]), 64)
	}
	if errs, err = value(fmt.Sprintf(`baremetal_bgp_peer_errors_total\{cause="%s",peer="%s"\}`, cause, peer)); err != nil {
		return 0, 0, err
	}
	up, err = value(fmt.Sprintf(`baremetal_bgp_session_up\{peer="%s"\}`, peer))
	return errs, up, err
}
