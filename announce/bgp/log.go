package bgp

import (
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// gobgpLogger sends gobgp's logs to logr and records, per neighbor, the
// last reason a session could not be opened or went down, so Peers and the
// speaker's events can say why a session is not up.
type gobgpLogger struct {
	log  logr.Logger
	errs *peerErrors
	// info describes a neighbor for the messages; it must not wait on the
	// speaker's lock, which is held while gobgp logs.
	info func(addr string) neighborInfo
}

// neighborInfo is what error messages need to know about a configured peer.
type neighborInfo struct {
	md5             bool
	localAS, peerAS uint32
}

var _ gobgplog.Logger = (*gobgpLogger)(nil)

func (l *gobgpLogger) Panic(msg string, fields gobgplog.Fields) {
	l.log.Error(nil, msg, kv(fields)...)
	panic(msg)
}
func (l *gobgpLogger) Fatal(msg string, fields gobgplog.Fields) { l.log.Error(nil, msg, kv(fields)...) }
func (l *gobgpLogger) Error(msg string, fields gobgplog.Fields) {
	l.record(msg, fields)
	l.log.Error(nil, msg, kv(fields)...)
}
func (l *gobgpLogger) Warn(msg string, fields gobgplog.Fields) {
	l.record(msg, fields)
	l.log.Info(msg, kv(fields)...)
}
func (l *gobgpLogger) Info(msg string, fields gobgplog.Fields) {
	l.record(msg, fields)
	l.log.V(2).Info(msg, kv(fields)...)
}

// Debug is enabled because gobgp reports failed connection attempts only at
// debug level; those are kept, the rest goes to V(6).
func (l *gobgpLogger) Debug(msg string, fields gobgplog.Fields) {
	l.record(msg, fields)
	if l.log.V(6).Enabled() {
		l.log.V(6).Info(msg, kv(fields)...)
	}
}
func (l *gobgpLogger) SetLevel(gobgplog.LogLevel)  {}
func (l *gobgpLogger) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }

// record keeps the messages that explain a session not being up.
func (l *gobgpLogger) record(msg string, fields gobgplog.Fields) {
	if fields["Topic"] != "Peer" {
		return
	}
	addr, _ := fields["Key"].(string)
	if addr == "" {
		return
	}
	var info neighborInfo
	if l.info != nil {
		info = l.info(addr)
	}
	switch msg {
	case "failed to connect":
		l.errs.set(addr, classifyConnectError(fmt.Sprint(fields["Error"]), info.md5, addr))
	case "received notification", "sent notification":
		code, subcode, ok := notificationCodes(fields["Code"], fields["Subcode"], fields["Data"])
		if !ok {
			return
		}
		reason, _ := fields["Communicated-Reason"].(string)
		if msg == "sent notification" && code == bgp.BGP_ERROR_CEASE {
			return // our own shutdown or reset
		}
		l.errs.set(addr, classifyNotification(code, subcode, msg == "sent notification", info.localAS, info.peerAS, reason))
	case "state changed":
		// A router refusing our OPEN answers with a NOTIFICATION that
		// gobgp does not log before the session is established: all
		// that shows is the OPEN exchange ending on an invalid message.
		old, _ := fields["old"].(string)
		if (old == "BGP_FSM_OPENSENT" || old == "BGP_FSM_OPENCONFIRM") && fmt.Sprint(fields["reason"]) == "invalid-msg" {
			if cur := l.errs.get(addr); cur != nil && cur.sent {
				return // we refused the router's OPEN, and said why
			}
			l.errs.set(addr, openRefused(info.localAS))
		}
	case "Peer Up":
		l.errs.forget(addr)
	}
}

func kv(fields gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		out = append(out, strings.ToLower(k), v)
	}
	return out
}
