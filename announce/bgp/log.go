package bgp

import (
	"fmt"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// gobgpLogger sends gobgp's logs to logr and remembers, per neighbor, the
// last reason a session could not be opened or went down, so Peers can say
// why a session is not up.
type gobgpLogger struct {
	log  logr.Logger
	errs *peerErrors
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
	switch msg {
	case "failed to connect":
		l.errs.set(addr, fmt.Sprintf("connecting failed: %v", fields["Error"]))
	case "Peer Down":
		l.errs.set(addr, fmt.Sprintf("session went down: %v", fields["Reason"]))
	case "received notification":
		l.errs.set(addr, fmt.Sprintf("the router sent a notification (code %v, subcode %v) %v", fields["Code"], fields["Subcode"], fields["Communicated-Reason"]))
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

// peerErrors holds the last connection problem per neighbor address.
type peerErrors struct {
	mu   sync.Mutex
	last map[string]string
}

func newPeerErrors() *peerErrors { return &peerErrors{last: map[string]string{}} }

func (p *peerErrors) set(addr, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last[addr] = msg
}

func (p *peerErrors) forget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.last, addr)
}

// explain says why the session with addr is not up, as far as is known.
// With TCP MD5, a router that disagrees on the password drops our packets
// without answering, so a timeout is all we see: say what it likely means.
func (p *peerErrors) explain(addr string, md5 bool) string {
	p.mu.Lock()
	msg := p.last[addr]
	p.mu.Unlock()
	if msg == "" {
		return ""
	}
	if md5 && (strings.Contains(msg, "timeout") || strings.Contains(msg, "deadline exceeded")) {
		msg += "; this peer uses TCP MD5 and a router silently drops segments whose MD5 signature does not match, so check that passwordFile holds the router's password"
	}
	return msg
}
