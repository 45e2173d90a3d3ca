// Package heartbeat is the authenticated UDP channel between node agents:
// each layer-2 owner and its successors send each other a heartbeat every
// 100 ms, and the liveness verdicts of the planner come from what arrives.
//
// Every message is signed with HMAC-SHA256 under a key the agents share
// (the Secret baremetal-node-agent-heartbeat) and bound to its sender, its
// receiver, the sender's clock and a sequence number within a per-process
// random epoch. A receiver drops a message that fails the signature, is
// addressed to another node, is outside the time window, or does not move
// the sender's (epoch, sequence) forward. So a host that can reach UDP 7474
// but lacks the key cannot make a dead owner look alive, nor make a live
// one yield, by forging or replaying messages.
package heartbeat

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind is a message's type.
type Kind byte

const (
	// Beat is sent every interval to each target.
	Beat Kind = 1
	// Reply answers a Beat, so a sender hears a peer that does not count
	// it among its own targets.
	Reply Kind = 2
)

// Flags of a message.
const (
	// FlagLeaving: the sender is shutting down and hands its VIPs over.
	FlagLeaving byte = 1 << 0
)

// Message is one heartbeat.
type Message struct {
	Kind  Kind
	Flags byte
	Epoch uint64 // random per sender process
	Seq   uint64 // increases with every message of the epoch
	Time  int64  // sender's wall clock, Unix nanoseconds
	From  string
	To    string
}

var magic = [4]byte{'B', 'M', 'H', '2'}

// MaxNameLen bounds node names on the wire (Kubernetes allows 253).
const MaxNameLen = 253

const headerLen = 4 + 1 + 1 + 8 + 8 + 8

// Errors from Decode; the agent counts drops by them.
var (
	ErrMalformed = errors.New("malformed heartbeat")
	ErrSignature = errors.New("heartbeat signature does not verify with any accepted key")
)

// Encode signs m with key.
func Encode(m Message, key []byte) ([]byte, error) {
	if len(m.From) > MaxNameLen || len(m.To) > MaxNameLen {
		return nil, fmt.Errorf("node name longer than %d bytes", MaxNameLen)
	}
	if len(key) == 0 {
		return nil, errors.New("no heartbeat key")
	}
	b := make([]byte, 0, headerLen+2+len(m.From)+len(m.To)+sha256.Size)
	b = append(b, magic[:]...)
	b = append(b, byte(m.Kind), m.Flags)
	b = binary.BigEndian.AppendUint64(b, m.Epoch)
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Time))
	b = append(b, byte(len(m.From)))
	b = append(b, m.From...)
	b = append(b, byte(len(m.To)))
	b = append(b, m.To...)
	mac := hmac.New(sha256.New, key)
	mac.Write(b)
	return mac.Sum(b), nil
}

// Decode checks the signature against each key in turn and parses b.
func Decode(b []byte, keys [][]byte) (Message, error) {
	if len(b) < headerLen+2+sha256.Size || [4]byte(b[:4]) != magic {
		return Message{}, ErrMalformed
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	ok := false
	for _, k := range keys {
		if len(k) == 0 {
			continue
		}
		mac := hmac.New(sha256.New, k)
		mac.Write(body)
		if hmac.Equal(mac.Sum(nil), sum) {
			ok = true
			break
		}
	}
	if !ok {
		return Message{}, ErrSignature
	}
	m := Message{
		Kind:  Kind(body[4]),
		Flags: body[5],
		Epoch: binary.BigEndian.Uint64(body[6:]),
		Seq:   binary.BigEndian.Uint64(body[14:]),
		Time:  int64(binary.BigEndian.Uint64(body[22:])),
	}
	rest := body[headerLen:]
	from, rest, ok := readName(rest)
	if !ok {
		return Message{}, ErrMalformed
	}
	to, rest, ok := readName(rest)
	if !ok || len(rest) != 0 || (m.Kind != Beat && m.Kind != Reply) {
		return Message{}, ErrMalformed
	}
	m.From, m.To = from, to
	return m, nil
}

func readName(b []byte) (string, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}
