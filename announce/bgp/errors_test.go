package bgp

import (
	"errors"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

func TestClassifyConnectError(t *testing.T) {
	const addr = "198.51.100.1"
	tests := []struct {
		err   string
		md5   bool
		cause Cause
		says  string
	}{
		{"dial tcp 198.51.100.1:179: connect: connection refused", false, CauseConnectionRefused, "nothing listens on its BGP port"},
		{"dial tcp 198.51.100.1:179: connect: no route to host", false, CauseNoRoute, "no route to 198.51.100.1"},
		{"dial tcp 198.51.100.1:179: connect: network is unreachable", false, CauseNoRoute, "ebgpMultihop"},
		{"dial tcp 198.51.100.1:179: i/o timeout", true, CauseMD5Mismatch, "passwordFile holds the router's password"},
		{"dial tcp 198.51.100.1:179: i/o timeout", false, CauseNoAnswer, "expects a TCP MD5 password"},
		{"something new", false, CauseOther, "something new"},
	}
	for _, tt := range tests {
		t.Run(string(tt.cause), func(t *testing.T) {
			got := classifyConnectError(tt.err, tt.md5, addr)
			if got.Cause != tt.cause || !strings.Contains(got.Message, tt.says) {
				t.Errorf("classifyConnectError(%q, md5=%v) = %+v; want cause %s saying %q", tt.err, tt.md5, got, tt.cause, tt.says)
			}
		})
	}
}

func TestClassifyNotification(t *testing.T) {
	tests := []struct {
		name          string
		code, subcode uint8
		sent          bool
		cause         Cause
		says          string
	}{
		{"router refuses our AS", 2, 2, false, CauseBadPeerAS, "refused this node's AS number 64512"},
		{"router's AS is not the configured one", 2, 2, true, CauseBadPeerAS, "does not carry AS 64500"},
		{"bad BGP identifier", 2, 3, false, CauseOpenRejected, "router ID"},
		{"hold timer", 4, 0, false, CauseHoldTimerExpired, "keepalives"},
		{"admin shutdown", 6, 2, false, CauseAdminShutdown, `"maintenance"`},
		{"max prefixes", 6, 1, false, CauseNotification, "the router sent a NOTIFICATION"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classifyNotification(tt.code, tt.subcode, tt.sent, 64512, 64500, "maintenance")
			if got.Cause != tt.cause || !strings.Contains(got.Message, tt.says) {
				t.Errorf("classifyNotification(%d, %d, sent=%v) = %+v; want cause %s saying %q", tt.code, tt.subcode, tt.sent, got, tt.cause, tt.says)
			}
		})
	}
}

func TestNotificationCodesFromLogFields(t *testing.T) {
	if c, s, ok := notificationCodes(uint8(2), uint8(2), nil); !ok || c != 2 || s != 2 {
		t.Errorf("from Code and Subcode: %d %d %v", c, s, ok)
	}
	me := bgp.NewMessageError(2, 2, nil, "bad peer AS")
	if c, s, ok := notificationCodes(nil, nil, me); !ok || c != 2 || s != 2 {
		t.Errorf("from a MessageError in Data: %d %d %v", c, s, ok)
	}
	if _, _, ok := notificationCodes(nil, nil, errors.New("x")); ok {
		t.Error("a plain error gave codes")
	}
}

func TestPeerErrorsCountChangesNotRetries(t *testing.T) {
	e := newPeerErrors()
	var changed []string
	e.changed = func(addr string) { changed = append(changed, addr) }
	const a = "198.51.100.1"
	refused := &PeerError{Cause: CauseConnectionRefused, Message: "refused"}
	e.set(a, refused)
	e.set(a, refused) // the next retry, same cause
	e.set(a, &PeerError{Cause: CauseNoRoute, Message: "no route"})
	if got := e.countsOf(a); got[CauseConnectionRefused] != 1 || got[CauseNoRoute] != 1 {
		t.Errorf("counts = %v; want one of each", got)
	}
	if len(changed) != 2 {
		t.Errorf("changed %d times, want 2 (once per new cause)", len(changed))
	}
	e.forget(a)
	if e.get(a) != nil {
		t.Error("forget kept the error")
	}
}
