package bfd

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// Bytes written out by hand from the field layout of RFC 5880 §4.1.
var (
	// Up, no flags, mult 3, discriminators 1 and 0x12345678, 300 ms TX
	// and RX (0x000493e0 µs), 50 ms echo (0x0000c350 µs).
	upPacket = []byte{
		0x20, 0xc0, 0x03, 0x18,
		0x00, 0x00, 0x00, 0x01,
		0x12, 0x34, 0x56, 0x78,
		0x00, 0x04, 0x93, 0xe0,
		0x00, 0x04, 0x93, 0xe0,
		0x00, 0x00, 0xc3, 0x50,
	}
	// Down, diagnostic 1 (detection time expired), Poll, mult 5, My
	// Discriminator 0xdeadbeef, Your 0, 1 s TX (0x000f4240), 100 ms RX.
	downPollPacket = []byte{
		0x21, 0x60, 0x05, 0x18,
		0xde, 0xad, 0xbe, 0xef,
		0x00, 0x00, 0x00, 0x00,
		0x00, 0x0f, 0x42, 0x40,
		0x00, 0x01, 0x86, 0xa0,
		0x00, 0x00, 0x00, 0x00,
	}
	// AdminDown, diagnostic 7, Final and C bits, mult 1.
	adminDownFinalPacket = []byte{
		0x27, 0x18, 0x01, 0x18,
		0x00, 0x00, 0x00, 0x02,
		0x00, 0x00, 0x00, 0x03,
		0x00, 0x00, 0x03, 0xe8,
		0x00, 0x00, 0x03, 0xe8,
		0x00, 0x00, 0x00, 0x00,
	}
)

func TestControlPacketWireFormat(t *testing.T) {
	tests := []struct {
		name   string
		wire   []byte
		fields ControlPacket
	}{
		{"up", upPacket, ControlPacket{
			State: Up, DetectMult: 3, MyDiscr: 1, YourDiscr: 0x12345678,
			DesiredMinTx: 300 * time.Millisecond, RequiredMinRx: 300 * time.Millisecond, RequiredEcho: 50 * time.Millisecond,
		}},
		{"down with poll", downPollPacket, ControlPacket{
			Diag: DiagDetectionExpired, State: Down, Poll: true, DetectMult: 5, MyDiscr: 0xdeadbeef,
			DesiredMinTx: time.Second, RequiredMinRx: 100 * time.Millisecond,
		}},
		{"admin down with final", adminDownFinalPacket, ControlPacket{
			Diag: DiagAdminDown, State: AdminDown, Final: true, CPI: true, DetectMult: 1, MyDiscr: 2, YourDiscr: 3,
			DesiredMinTx: time.Millisecond, RequiredMinRx: time.Millisecond,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ControlPacket
			if err := got.Unmarshal(tt.wire); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if got != tt.fields {
				t.Errorf("Unmarshal = %+v, want %+v", got, tt.fields)
			}
			if b := tt.fields.Marshal(); !bytes.Equal(b, tt.wire) {
				t.Errorf("Marshal = % x, want % x", b, tt.wire)
			}
		})
	}
}

func TestControlPacketRejects(t *testing.T) {
	with := func(mod func(b []byte) []byte) []byte {
		return mod(append([]byte(nil), upPacket...))
	}
	tests := []struct {
		name string
		wire []byte
		want error
	}{
		{"short", upPacket[:23], ErrShort},
		{"version 0", with(func(b []byte) []byte { b[0] = 0x00; return b }), ErrVersion},
		{"version 2", with(func(b []byte) []byte { b[0] = 0x40; return b }), ErrVersion},
		{"length beyond datagram", with(func(b []byte) []byte { b[3] = 25; return b }), ErrLength},
		{"length under header", with(func(b []byte) []byte { b[3] = 20; return b }), ErrLength},
		{"auth bit with no auth section", with(func(b []byte) []byte { b[1] |= 0x04; return b }), ErrLength},
		{"zero detect multiplier", with(func(b []byte) []byte { b[2] = 0; return b }), ErrDetectMult},
		{"multipoint", with(func(b []byte) []byte { b[1] |= 0x01; return b }), ErrMultipoint},
		{"zero my discriminator", with(func(b []byte) []byte { copy(b[4:8], []byte{0, 0, 0, 0}); return b }), ErrMyDiscr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p ControlPacket
			if err := p.Unmarshal(tt.wire); !errors.Is(err, tt.want) {
				t.Errorf("Unmarshal(% x) = %v, want %v", tt.wire, err, tt.want)
			}
		})
	}
}

func TestControlPacketAuthSectionIsSkipped(t *testing.T) {
	// A bit set, length 26: a two-byte auth header (type, length) follows.
	b := append(append([]byte(nil), upPacket...), 0x01, 0x02)
	b[1] |= 0x04
	b[3] = 26
	var p ControlPacket
	if err := p.Unmarshal(b); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !p.Auth {
		t.Error("Auth = false, want true")
	}
}

func TestIntervalsSaturate(t *testing.T) {
	p := ControlPacket{State: Down, DetectMult: 1, MyDiscr: 1, DesiredMinTx: 2 * time.Hour}
	b := p.Marshal()
	if !bytes.Equal(b[12:16], []byte{0xff, 0xff, 0xff, 0xff}) {
		t.Errorf("2h as microseconds = % x, want ff ff ff ff", b[12:16])
	}
}
