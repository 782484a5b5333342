// Package orchestratortest provides a fake of the orchestrator's link to
// the matcher (orchestrator.Uplink) for tests: it answers in process —
// through a real matcher, or not at all — and can be held to stand in for
// a matcher that does not answer. Its exported fields may be set directly.
package orchestratortest

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/uplink"
)

// Uplink implements orchestrator.Uplink in process.
type Uplink struct {
	// Decide answers a capture (for example matcher.Matcher.Handle); nil
	// answers every capture with uplink.ErrNoResult.
	Decide func(env []byte) (protocol.Result, error)
	// Delay is added before each answer (a slow network or matcher).
	Delay time.Duration
	// Stall, when set, holds every Submit until it is closed or the
	// Submit's context ends; Sent, when set, receives each held capture's
	// request id (hex) as it is held.
	Stall chan struct{}
	Sent  chan string
	// Cmds delivers commands to the orchestrator; Acks, when set,
	// receives every acknowledgement the orchestrator makes.
	Cmds chan protocol.Command
	Acks chan protocol.CommandAck
}

// AckCommand implements orchestrator.Uplink.
func (u *Uplink) AckCommand(cmd protocol.Command, accepted bool, reason, detail string) {
	if u.Acks == nil {
		return
	}
	a := protocol.CommandAck{ID: cmd.ID, Kind: cmd.Kind, Status: protocol.AckAccepted, Reason: reason, Detail: detail}
	if !accepted {
		a.Status = protocol.AckRefused
	}
	u.Acks <- a
}

// Commands implements orchestrator.Uplink.
func (u *Uplink) Commands() <-chan protocol.Command { return u.Cmds }

// Submit implements orchestrator.Uplink.
func (u *Uplink) Submit(ctx context.Context, env []byte, h protocol.Header) (protocol.Result, error) {
	if u.Stall != nil {
		if u.Sent != nil {
			u.Sent <- hex.EncodeToString(h.RequestID[:])
		}
		select {
		case <-u.Stall:
		case <-ctx.Done():
			return protocol.Result{}, ctx.Err()
		}
	}
	if u.Delay > 0 {
		select {
		case <-time.After(u.Delay):
		case <-ctx.Done():
			return protocol.Result{}, ctx.Err()
		}
	}
	defer clear(env)
	if u.Decide == nil {
		return protocol.Result{}, uplink.ErrNoResult
	}
	return u.Decide(env)
}
