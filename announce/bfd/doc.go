// Package bfd is a small BFD (Bidirectional Forwarding Detection)
// implementation for the node agent's BGP sessions: RFC 5880 asynchronous
// mode, RFC 5881 single hop (UDP 3784, TTL 255 checked on receipt, one
// source port per session in 49152-65535) and RFC 5883 multihop (UDP 4784)
// for peers reached with eBGP multihop.
//
// The parts are kept apart so each can be read and tested alone:
// packet.go is the wire codec, session.go the state machine of one session
// (pure: it reads an injected clock and returns what to send), manager.go
// runs one goroutine per session and routes received packets to it, and
// conn.go is the UDP socket code.
//
// Not implemented, because the routers this talks to do not need them for
// BGP: demand mode, the echo function and authentication (an authenticated
// packet is dropped).
package bfd
