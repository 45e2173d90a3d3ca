package announce

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Heartbeats detect a crashed owner in well under a lease duration, with no
// API writes: the node next in line for a VIP sends a UDP heartbeat to the
// owner's node every interval, and suspects it once no answer came for
// suspectAfter. A suspected node is left out of this agent's elections, so
// the next in line takes its VIPs over; every other agent still waits for
// the lease to expire, and then agrees (rendezvous hashing gives each of
// the dead node's VIPs to its next in line). A node that answers again is
// no longer suspected and takes its VIPs back.
//
// Heartbeats only ever speed a takeover up: a lost heartbeat can at worst
// move a VIP early, and the owner reclaims it (see l2's reannouncement)
// once it answers again.
type Heartbeats struct {
	conn         *net.UDPConn
	port         int
	peerPort     int // every agent uses the same port; tests differ
	interval     time.Duration
	suspectAfter time.Duration
	onChange     func()
	log          logr.Logger

	mu      sync.Mutex
	targets map[string]*hbTarget
}

type hbTarget struct {
	addr      netip.AddrPort
	heard     time.Time // last answer, or when probing started
	suspected bool
}

const (
	hbRequest byte = 0
	hbReply   byte = 1
)

var hbMagic = []byte("bmhb")

// ListenHeartbeats answers heartbeats on UDP port (all addresses) and sends
// its own from the same socket.
func ListenHeartbeats(port int, interval, suspectAfter time.Duration, onChange func(), log logr.Logger) (*Heartbeats, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: port})
	if err != nil {
		return nil, fmt.Errorf("listening for heartbeats on UDP port %d: %w", port, err)
	}
	port = conn.LocalAddr().(*net.UDPAddr).Port // port 0: the one picked
	return &Heartbeats{
		conn: conn, port: port, peerPort: port, interval: interval, suspectAfter: suspectAfter,
		onChange: onChange, log: log, targets: map[string]*hbTarget{},
	}, nil
}

// Run answers and sends heartbeats until ctx is done.
func (h *Heartbeats) Run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		h.conn.Close()
	}()
	go h.read()
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.tick()
	}
}

func (h *Heartbeats) tick() {
	h.mu.Lock()
	changed := false
	now := time.Now()
	for node, tg := range h.targets {
		msg := append(append([]byte{}, hbMagic...), hbRequest)
		if _, err := h.conn.WriteToUDPAddrPort(msg, tg.addr); err != nil {
			h.log.V(4).Info("Sending a heartbeat failed", "node", node, "err", err.Error())
		}
		if !tg.suspected && now.Sub(tg.heard) > h.suspectAfter {
			tg.suspected = true
			changed = true
			h.log.Info("Peer stopped answering heartbeats; taking over the VIPs it owns and this node is next in line for", "node", node, "silentFor", now.Sub(tg.heard))
		}
	}
	h.mu.Unlock()
	if changed {
		h.onChange()
	}
}

func (h *Heartbeats) read() {
	buf := make([]byte, 64)
	for {
		n, from, err := h.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable from a dead agent's node
		}
		if n != len(hbMagic)+1 || !bytes.Equal(buf[:len(hbMagic)], hbMagic) {
			continue
		}
		switch buf[len(hbMagic)] {
		case hbRequest:
			reply := append(append([]byte{}, hbMagic...), hbReply)
			if _, err := h.conn.WriteToUDPAddrPort(reply, from); err != nil {
				h.log.V(4).Info("Answering a heartbeat failed", "from", from.String(), "err", err.Error())
			}
		case hbReply:
			h.heard(from.Addr().Unmap())
		}
	}
}

func (h *Heartbeats) heard(addr netip.Addr) {
	h.mu.Lock()
	changed := false
	for node, tg := range h.targets {
		if tg.addr.Addr() != addr {
			continue
		}
		tg.heard = time.Now()
		if tg.suspected {
			tg.suspected = false
			changed = true
			h.log.Info("Peer answers heartbeats again", "node", node)
		}
	}
	h.mu.Unlock()
	if changed {
		h.onChange()
	}
}

// SetTargets sets the nodes to watch and their addresses. A node already
// watched keeps its state.
func (h *Heartbeats) SetTargets(targets map[string]netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for node, tg := range h.targets {
		if a, ok := targets[node]; !ok || a != tg.addr.Addr() {
			delete(h.targets, node)
		}
	}
	for node, a := range targets {
		if _, ok := h.targets[node]; !ok {
			h.targets[node] = &hbTarget{addr: netip.AddrPortFrom(a, uint16(h.peerPort)), heard: time.Now()}
		}
	}
}

// Suspected returns the watched nodes that stopped answering.
func (h *Heartbeats) Suspected() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]bool{}
	for node, tg := range h.targets {
		if tg.suspected {
			out[node] = true
		}
	}
	return out
}
