// Package protocol is what crosses the wire between a terminal and the
// cloud, imported by both sides: the sealed envelope that carries a
// template (HPKE to the matcher's key, Ed25519 by the device's; Sealer on
// the device, Opener on the matcher, every rejection counted by reason;
// docs/envelope-format.md), its sequence numbers that survive restarts and
// clock steps (sequence.go), the key types and ids, the MQTT contract's
// topics and signed messages (results, commands, status), and the packet
// limits both sides enforce before reading (MaxPacket, Dialer).
//
// The template inside an envelope, and how two templates compare, are
// package template's.
package protocol
