package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// UDPDatagram is one IPv4 UDP datagram seen on an interface.
type UDPDatagram struct {
	At       time.Time
	Src, Dst netip.AddrPort
	Payload  []byte
}

// UDPCapture records the IPv4 UDP datagrams from or to one port that cross
// a host's eth0, in both directions.
type UDPCapture struct {
	conn   *packet.Conn
	port   uint16
	done   chan struct{}
	closed atomic.Bool

	mu   sync.Mutex
	seen []UDPDatagram
}

// CaptureUDP starts recording on h's eth0 the IPv4 UDP datagrams whose
// source or destination port is port. Stop it to read them.
func (h *Host) CaptureUDP(port uint16) (*UDPCapture, error) {
	c := &UDPCapture{port: port, done: make(chan struct{})}
	err := inNetns(h.Netns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c.conn, err = packet.Listen(ifi, packet.Datagram, unix.ETH_P_IP, nil)
		return err
	})
	if err != nil {
		if c.conn != nil {
			c.conn.Close()
		}
		return nil, fmt.Errorf("capturing UDP on host %q: %w", h.Name, err)
	}
	go c.read()
	h.onClose(func() { c.Stop() })
	return c, nil
}

func (c *UDPCapture) read() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			// A closed socket says so in more than one way.
			if c.closed.Load() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		if d, ok := parseUDP4(buf[:n]); ok && (d.Src.Port() == c.port || d.Dst.Port() == c.port) {
			d.At = time.Now()
			c.mu.Lock()
			c.seen = append(c.seen, d)
			c.mu.Unlock()
		}
	}
}

// Seen returns what was captured so far.
func (c *UDPCapture) Seen() []UDPDatagram {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]UDPDatagram(nil), c.seen...)
}

// Stop ends the capture and returns everything captured.
func (c *UDPCapture) Stop() []UDPDatagram {
	c.closed.Store(true)
	c.conn.Close()
	<-c.done
	return c.Seen()
}

// parseUDP4 reads an IPv4 packet carrying UDP (not a fragment).
func parseUDP4(b []byte) (UDPDatagram, bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != syscall.IPPROTO_UDP {
		return UDPDatagram{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 || ihl < 20 || total > len(b) || total < ihl+8 {
		return UDPDatagram{}, false
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	u := b[ihl:total]
	return UDPDatagram{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:2])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:4])),
		Payload: append([]byte(nil), u[8:]...),
	}, true
}

// SendUDP sends payload from inside h's namespace to dst, from src, which
// h need not hold (the socket is IP_TRANSPARENT): a forger on the segment
// can claim any source.
func (h *Host) SendUDP(src, dst netip.AddrPort, payload []byte) error {
	return inNetns(h.Netns, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp4", src.String())
		if err != nil {
			return fmt.Errorf("opening a UDP socket on %s in host %q: %w", src, h.Name, err)
		}
		defer pc.Close()
		if _, err := pc.WriteTo(payload, net.UDPAddrFromAddrPort(dst)); err != nil {
			return fmt.Errorf("sending to %s from host %q: %w", dst, h.Name, err)
		}
		return nil
	})
}
