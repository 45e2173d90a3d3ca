package bgp

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// Cause is why a session is not up, as far as the speaker can tell. The
// values are CamelCase so they serve as event reasons and metric labels.
type Cause string

// Causes the speaker recognises. The agent turns them into Warning events
// on the Node naming the peer; the metric baremetal_bgp_peer_errors_total
// counts them per peer.
const (
	CauseConnectionRefused Cause = "ConnectionRefused" // nothing listens on the router's BGP port
	CauseNoRoute           Cause = "NoRoute"           // this node cannot reach the router
	CauseNoAnswer          Cause = "NoAnswer"          // connecting times out
	CauseMD5Mismatch       Cause = "MD5Mismatch"       // times out with TCP MD5 set: likely a password mismatch
	CauseBadPeerAS         Cause = "BadPeerAS"         // one side has the other's ASN wrong
	CauseOpenRejected      Cause = "OpenRejected"      // another OPEN error (router ID, hold time, capability)
	CauseHoldTimerExpired  Cause = "HoldTimerExpired"  // keepalives stopped arriving
	CauseAdminShutdown     Cause = "AdminShutdown"     // the router shut the session down
	CauseNotification      Cause = "Notification"      // any other NOTIFICATION
	CauseBFDDown           Cause = "BFDDown"           // BFD took the session down
	CauseConfig            Cause = "InvalidPeerConfig" // the peer could not be configured (e.g. its passwordFile)
	CauseOther             Cause = "Other"
)

// PeerError is the last reason a session is not up.
type PeerError struct {
	Cause   Cause
	Message string // a sentence for the Node event: what happened and what to check

	sent bool // from a NOTIFICATION this node sent
}

func (e *PeerError) Error() string { return e.Message }

// classifyConnectError reads the error gobgp got opening the TCP connection.
func classifyConnectError(err string, md5 bool, addr string) *PeerError {
	switch {
	case strings.Contains(err, "connection refused"):
		return &PeerError{Cause: CauseConnectionRefused, Message: fmt.Sprintf(
			"connection refused by %s: nothing listens on its BGP port, so check that the router runs BGP there and has this node as a neighbor", addr)}
	case strings.Contains(err, "no route to host"), strings.Contains(err, "network is unreachable"), strings.Contains(err, "host is down"):
		return &PeerError{Cause: CauseNoRoute, Message: fmt.Sprintf(
			"no route to %s from this node (%s): check the node's addresses and routes, or set ebgpMultihop if the router is not directly connected", addr, lastPart(err))}
	case strings.Contains(err, "timeout"), strings.Contains(err, "deadline exceeded"):
		if md5 {
			return &PeerError{Cause: CauseMD5Mismatch, Message: fmt.Sprintf(
				"%s does not answer: this peer uses TCP MD5 and a router silently drops segments whose signature does not match, so check that passwordFile holds the router's password for this node", addr)}
		}
		return &PeerError{Cause: CauseNoAnswer, Message: fmt.Sprintf(
			"%s does not answer on its BGP port: a firewall may drop it, or the router expects a TCP MD5 password (set passwordFile)", addr)}
	}
	return &PeerError{Cause: CauseOther, Message: fmt.Sprintf("connecting to %s failed: %s", addr, err)}
}

// classifyNotification reads a NOTIFICATION, received from the router
// (sent=false) or sent to it because of what it said (sent=true).
func classifyNotification(code, subcode uint8, sent bool, localAS, peerAS uint32, reason string) *PeerError {
	what := bgp.NewNotificationErrorCode(code, subcode).String()
	switch {
	case code == bgp.BGP_ERROR_OPEN_MESSAGE_ERROR && subcode == bgp.BGP_ERROR_SUB_BAD_PEER_AS:
		if sent {
			return &PeerError{Cause: CauseBadPeerAS, sent: true, Message: fmt.Sprintf(
				"the router's OPEN does not carry AS %d, the peer's configured asn: check bgp.peers[].asn against the router's own AS number", peerAS)}
		}
		return &PeerError{Cause: CauseBadPeerAS, Message: fmt.Sprintf(
			"the router refused this node's AS number %d (bad peer AS): its neighbor statement for this node expects another remote-as; check bgp.asn or the peer's localASN", localAS)}
	case code == bgp.BGP_ERROR_OPEN_MESSAGE_ERROR:
		return &PeerError{Cause: CauseOpenRejected, sent: sent, Message: fmt.Sprintf("the OPEN was refused (%s): check the router ID, hold time and capabilities on both sides", what)}
	case code == bgp.BGP_ERROR_HOLD_TIMER_EXPIRED:
		return &PeerError{Cause: CauseHoldTimerExpired, Message: "keepalives stopped arriving before the hold time ran out"}
	case code == bgp.BGP_ERROR_CEASE && (subcode == bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN || subcode == bgp.BGP_ERROR_SUB_ADMINISTRATIVE_RESET) && !sent:
		msg := fmt.Sprintf("the router shut the session down (%s)", what)
		if reason != "" {
			msg += fmt.Sprintf(": %q", reason)
		}
		return &PeerError{Cause: CauseAdminShutdown, Message: msg}
	}
	if sent {
		return &PeerError{Cause: CauseNotification, sent: true, Message: "this node sent a NOTIFICATION: " + what}
	}
	return &PeerError{Cause: CauseNotification, Message: "the router sent a NOTIFICATION: " + what}
}

// openRefused is what a NOTIFICATION during the OPEN exchange most likely
// means when its code is not known.
func openRefused(localAS uint32) *PeerError {
	return &PeerError{Cause: CauseOpenRejected, Message: fmt.Sprintf(
		"the router refused this node's OPEN with a NOTIFICATION: most often its neighbor statement for this node expects another AS number (this node uses AS %d on this session: bgp.asn or the peer's localASN), else a router ID it already knows", localAS)}
}

func lastPart(err string) string {
	if i := strings.LastIndex(err, ": "); i >= 0 {
		return err[i+2:]
	}
	return err
}

// notificationCodes pulls the code and subcode out of gobgp's log fields,
// which carry them as numbers or inside a *bgp.MessageError.
func notificationCodes(code, subcode, data any) (uint8, uint8, bool) {
	c, ok1 := code.(uint8)
	s, ok2 := subcode.(uint8)
	if ok1 && ok2 {
		return c, s, true
	}
	if err, ok := data.(error); ok {
		var me *bgp.MessageError
		if errors.As(err, &me) {
			return me.TypeCode, me.SubTypeCode, true
		}
	}
	return 0, 0, false
}

// peerErrors holds the last error per neighbor address, and how many
// times each cause was seen, for metrics.
type peerErrors struct {
	mu     sync.Mutex
	last   map[string]*PeerError
	counts map[string]map[Cause]int
	// changed is told the address whose error changed; it must not block.
	changed func(addr string)
}

func newPeerErrors() *peerErrors {
	return &peerErrors{last: map[string]*PeerError{}, counts: map[string]map[Cause]int{}, changed: func(string) {}}
}

// set records e for addr; a repeat of the same cause only replaces the
// message, so the count and the events follow changes, not retries.
func (p *peerErrors) set(addr string, e *PeerError) {
	p.mu.Lock()
	old := p.last[addr]
	p.last[addr] = e
	fresh := old == nil || old.Cause != e.Cause
	if fresh {
		if p.counts[addr] == nil {
			p.counts[addr] = map[Cause]int{}
		}
		p.counts[addr][e.Cause]++
	}
	p.mu.Unlock()
	if fresh {
		p.changed(addr)
	}
}

func (p *peerErrors) forget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.last, addr)
}

func (p *peerErrors) get(addr string) *PeerError {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last[addr]
}

func (p *peerErrors) countsOf(addr string) map[Cause]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[Cause]int, len(p.counts[addr]))
	for c, n := range p.counts[addr] {
		out[c] = n
	}
	return out
}
