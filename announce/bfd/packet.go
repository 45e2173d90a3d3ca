package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is a session state as carried in the Sta field (RFC 5880 §4.1).
type State uint8

// The four session states, numbered as on the wire.
const (
	AdminDown State = 0
	Down      State = 1
	Init      State = 2
	Up        State = 3
)

func (s State) String() string {
	switch s {
	case AdminDown:
		return "AdminDown"
	case Down:
		return "Down"
	case Init:
		return "Init"
	case Up:
		return "Up"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Diag says why a session last left Up (RFC 5880 §4.1).
type Diag uint8

// Diagnostic codes this package sets or reads.
const (
	DiagNone              Diag = 0
	DiagDetectionExpired  Diag = 1
	DiagEchoFailed        Diag = 2
	DiagNeighborDown      Diag = 3
	DiagForwardingReset   Diag = 4
	DiagPathDown          Diag = 5
	DiagConcatPathDown    Diag = 6
	DiagAdminDown         Diag = 7
	DiagRevConcatPathDown Diag = 8
)

var diagText = [...]string{
	"no diagnostic",
	"control detection time expired",
	"echo function failed",
	"neighbor signaled session down",
	"forwarding plane reset",
	"path down",
	"concatenated path down",
	"administratively down",
	"reverse concatenated path down",
}

func (d Diag) String() string {
	if int(d) < len(diagText) {
		return diagText[d]
	}
	return fmt.Sprintf("diagnostic %d", uint8(d))
}

// Version is the only protocol version (RFC 5880).
const Version = 1

// Sizes of a Control packet without and with the smallest auth section.
const (
	headerLen    = 24
	minAuthedLen = 26
)

// Flag bits in the second byte.
const (
	flagPoll       = 0x20
	flagFinal      = 0x10
	flagCPI        = 0x08 // control plane independent
	flagAuth       = 0x04
	flagDemand     = 0x02
	flagMultipoint = 0x01
)

// ControlPacket is a BFD Control packet (RFC 5880 §4.1). Intervals are
// carried in microseconds on the wire; here they are durations.
type ControlPacket struct {
	Diag          Diag
	State         State
	Poll          bool
	Final         bool
	CPI           bool // control plane independent (the C bit)
	Auth          bool // an authentication section follows; this package never sends one
	Demand        bool
	Multipoint    bool
	DetectMult    uint8
	MyDiscr       uint32
	YourDiscr     uint32
	DesiredMinTx  time.Duration
	RequiredMinRx time.Duration
	RequiredEcho  time.Duration
}

// Errors for packets that RFC 5880 §6.8.6 says to discard.
var (
	ErrShort      = errors.New("BFD packet is shorter than its header")
	ErrVersion    = errors.New("BFD packet has an unknown version")
	ErrLength     = errors.New("BFD packet's length field does not match the datagram")
	ErrDetectMult = errors.New("BFD packet has a zero detect multiplier")
	ErrMultipoint = errors.New("BFD packet has the multipoint bit set")
	ErrMyDiscr    = errors.New("BFD packet has a zero My Discriminator")
)

// Marshal returns the 24-byte wire form of p (no auth section).
func (p *ControlPacket) Marshal() []byte {
	b := make([]byte, headerLen)
	b[0] = Version<<5 | uint8(p.Diag)&0x1f
	flags := uint8(p.State) << 6
	for _, f := range []struct {
		set bool
		bit uint8
	}{{p.Poll, flagPoll}, {p.Final, flagFinal}, {p.CPI, flagCPI}, {p.Demand, flagDemand}, {p.Multipoint, flagMultipoint}} {
		if f.set {
			flags |= f.bit
		}
	}
	b[1] = flags
	b[2] = p.DetectMult
	b[3] = headerLen
	binary.BigEndian.PutUint32(b[4:], p.MyDiscr)
	binary.BigEndian.PutUint32(b[8:], p.YourDiscr)
	binary.BigEndian.PutUint32(b[12:], micros(p.DesiredMinTx))
	binary.BigEndian.PutUint32(b[16:], micros(p.RequiredMinRx))
	binary.BigEndian.PutUint32(b[20:], micros(p.RequiredEcho))
	return b
}

// Unmarshal decodes b and applies the checks of RFC 5880 §6.8.6 that need
// no session state. An auth section is not decoded; Auth reports it.
func (p *ControlPacket) Unmarshal(b []byte) error {
	if len(b) < headerLen {
		return ErrShort
	}
	if b[0]>>5 != Version {
		return fmt.Errorf("%w (%d)", ErrVersion, b[0]>>5)
	}
	flags := b[1]
	length := int(b[3])
	minLen := headerLen
	if flags&flagAuth != 0 {
		minLen = minAuthedLen
	}
	if length < minLen || length > len(b) {
		return fmt.Errorf("%w (length %d, datagram %d bytes)", ErrLength, length, len(b))
	}
	*p = ControlPacket{
		Diag:          Diag(b[0] & 0x1f),
		State:         State(flags >> 6),
		Poll:          flags&flagPoll != 0,
		Final:         flags&flagFinal != 0,
		CPI:           flags&flagCPI != 0,
		Auth:          flags&flagAuth != 0,
		Demand:        flags&flagDemand != 0,
		Multipoint:    flags&flagMultipoint != 0,
		DetectMult:    b[2],
		MyDiscr:       binary.BigEndian.Uint32(b[4:]),
		YourDiscr:     binary.BigEndian.Uint32(b[8:]),
		DesiredMinTx:  time.Duration(binary.BigEndian.Uint32(b[12:])) * time.Microsecond,
		RequiredMinRx: time.Duration(binary.BigEndian.Uint32(b[16:])) * time.Microsecond,
		RequiredEcho:  time.Duration(binary.BigEndian.Uint32(b[20:])) * time.Microsecond,
	}
	switch {
	case p.DetectMult == 0:
		return ErrDetectMult
	case p.Multipoint:
		return ErrMultipoint
	case p.MyDiscr == 0:
		return ErrMyDiscr
	}
	return nil
}

// micros converts d to the wire's microseconds, saturating.
func micros(d time.Duration) uint32 {
	us := d / time.Microsecond
	if us > 0xffffffff {
		return 0xffffffff
	}
	return uint32(us)
}
