package protocol

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Topics of the MQTT contract (v1), for one device.
type Topics struct {
	Status, Capture, Result, Cmd, CmdAck, Telemetry string
}

// DefaultBaseTopic is the first levels of every topic of the contract
// unless configured otherwise (palmd's mqtt.base_topic, palm-matcher's
// -base-topic): {base}/{device}/{status,capture,result,cmd,cmd/ack,telemetry}.
const DefaultBaseTopic = "palm/v1"

// MaxBaseTopic bounds a base topic's length in bytes.
const MaxBaseTopic = 64

// ValidBaseTopic checks a base topic: one or more levels of letters,
// digits, '_' and '-' separated by '/'. No wildcards, no '$' (broker
// topics), no empty level, and no '.' or space, which a NATS cluster's
// MQTT side cannot map to its subjects.
func ValidBaseTopic(base string) error {
	if base == "" || len(base) > MaxBaseTopic {
		return fmt.Errorf("protocol: base topic must be 1–%d bytes", MaxBaseTopic)
	}
	for _, level := range strings.Split(base, "/") {
		if level == "" {
			return fmt.Errorf("protocol: base topic %q has an empty level (a leading, trailing or double '/')", base)
		}
		for _, r := range level {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return fmt.Errorf("protocol: base topic %q: %q is not allowed (letters, digits, '_', '-' and '/' between levels)", base, r)
			}
		}
	}
	return nil
}

// NewTopics returns the topics of device id under base ("" means
// DefaultBaseTopic).
func NewTopics(base, id string) Topics {
	if base == "" {
		base = DefaultBaseTopic
	}
	p := base + "/" + id + "/"
	return Topics{Status: p + "status", Capture: p + "capture", Result: p + "result", Cmd: p + "cmd", CmdAck: p + "cmd/ack",
		Telemetry: p + "telemetry"}
}

// TopicsFor returns the topics of device id under DefaultBaseTopic.
func TopicsFor(id string) Topics { return NewTopics(DefaultBaseTopic, id) }

// SharedCaptureFilter is what matchers subscribe to under
// DefaultBaseTopic: every device's captures, shared between the matchers
// of group "matchers".
const SharedCaptureFilter = "$share/matchers/" + DefaultBaseTopic + "/+/capture"

// SharedCaptureFilterFor is SharedCaptureFilter under base.
func SharedCaptureFilterFor(base string) string {
	if base == "" {
		base = DefaultBaseTopic
	}
	return "$share/matchers/" + base + "/+/capture"
}

// CommandFilter is every device's command topic: matchers read the enrol
// commands to know which enrolment sessions exist.
const CommandFilter = DefaultBaseTopic + "/+/cmd"

// CommandFilterFor is CommandFilter under base.
func CommandFilterFor(base string) string {
	if base == "" {
		base = DefaultBaseTopic
	}
	return base + "/+/cmd"
}

// DeviceOfTopic returns the device id of a {base}/{device}/… topic, or
// "" when topic is not under base.
func DeviceOfTopic(base, topic string) string {
	if base == "" {
		base = DefaultBaseTopic
	}
	rest, ok := strings.CutPrefix(topic, base+"/")
	if !ok {
		return ""
	}
	dev, _, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return dev
}

// Decision is the matcher's answer.
type Decision string

// The decisions.
const (
	DecisionMatch    Decision = "match"
	DecisionNoMatch  Decision = "no_match"
	DecisionEnrolled Decision = "enrolled"
	DecisionRetry    Decision = "retry"
	DecisionError    Decision = "error"
)

func (d Decision) valid() bool {
	switch d {
	case DecisionMatch, DecisionNoMatch, DecisionEnrolled, DecisionRetry, DecisionError:
		return true
	}
	return false
}

// Result is the matcher's signed answer to one capture.
type Result struct {
	Device    string   `json:"device"`
	RequestID string   `json:"request_id"` // 32 hex digits
	Decision  Decision `json:"decision"`
	// Subject is the gallery entry matched or enrolled (opaque to the
	// device; empty otherwise). Score is the comparison distance.
	Subject string  `json:"subject,omitempty"`
	Score   float64 `json:"score,omitempty"`
	// Expires is when the device must stop acting on this result (Unix ms).
	Expires int64 `json:"expires"`
}

// CommandKind names a command.
type CommandKind string

// The commands.
const (
	// CommandEnroll starts an enrolment session: the next Samples
	// captures are sealed with purpose enroll and Session.
	CommandEnroll CommandKind = "enroll"
	// CommandSelfTest asks the device to run its self-test.
	CommandSelfTest CommandKind = "selftest"
)

// Command is a signed instruction from the cloud.
type Command struct {
	Device  string      `json:"device"`
	ID      string      `json:"id"` // unique, for replay protection
	Kind    CommandKind `json:"kind"`
	Session string      `json:"session,omitempty"` // 32 hex digits, enroll only
	Samples int         `json:"samples,omitempty"` // enroll only, 1–10
	Expires int64       `json:"expires"`           // Unix ms
	// Boot is the device's boot id (32 hex digits) from its retained
	// status when the command was issued. A device draws a new one every
	// time it starts and refuses commands for another: a command captured
	// on the wire cannot be replayed after a restart, when the device no
	// longer remembers the ids it has seen, and the device stores nothing
	// to know it.
	Boot string `json:"boot"`
}

// signed is the wire form of a signed message: the inner JSON, base64,
// and an Ed25519 signature over a context string and those bytes. Signing
// the exact bytes avoids any question of JSON canonicalisation.
type signed struct {
	Payload string `json:"payload"`
	Sig     string `json:"sig"`
}

// MaxMessage bounds result and command payloads; anything larger is dropped
// unread.
const MaxMessage = 4 << 10

var (
	resultContext  = []byte("palmd result v1\x00")
	commandContext = []byte("palmd command v1\x00")
)

func sign(ctx []byte, key ed25519.PrivateKey, v any) ([]byte, error) {
	inner, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(key, append(append([]byte{}, ctx...), inner...))
	return json.Marshal(signed{Payload: base64.StdEncoding.EncodeToString(inner), Sig: base64.StdEncoding.EncodeToString(sig)})
}

// Errors of verify, each counted separately by the client.
var (
	ErrOversized = errors.New("uplink: message too large")
	ErrMalformed = errors.New("uplink: malformed message")
	ErrBadSig    = errors.New("uplink: bad signature")
)

func verify(ctx []byte, key ed25519.PublicKey, msg []byte, v any) error {
	if len(msg) > MaxMessage {
		return ErrOversized
	}
	var s signed
	if err := json.Unmarshal(msg, &s); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	inner, err1 := base64.StdEncoding.DecodeString(s.Payload)
	sig, err2 := base64.StdEncoding.DecodeString(s.Sig)
	if err1 != nil || err2 != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: bad base64 or signature length", ErrMalformed)
	}
	if len(key) != ed25519.PublicKeySize || !ed25519.Verify(key, append(append([]byte{}, ctx...), inner...), sig) {
		return ErrBadSig
	}
	if err := json.Unmarshal(inner, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// SignResult encodes and signs a result (matcher side).
func SignResult(key ed25519.PrivateKey, r Result) ([]byte, error) { return sign(resultContext, key, r) }

// SignCommand encodes and signs a command (cloud side).
func SignCommand(key ed25519.PrivateKey, c Command) ([]byte, error) {
	return sign(commandContext, key, c)
}

// VerifyResult checks a result's signature and content.
func VerifyResult(key ed25519.PublicKey, msg []byte) (Result, error) {
	var r Result
	if err := verify(resultContext, key, msg, &r); err != nil {
		return Result{}, err
	}
	if !r.Decision.valid() || !validHexID(r.RequestID) || r.Expires <= 0 {
		return Result{}, fmt.Errorf("%w: bad result fields", ErrMalformed)
	}
	return r, nil
}

// VerifyCommand checks a command's signature and content.
func VerifyCommand(key ed25519.PublicKey, msg []byte) (Command, error) {
	var c Command
	if err := verify(commandContext, key, msg, &c); err != nil {
		return Command{}, err
	}
	switch {
	case c.ID == "" || len(c.ID) > 64 || c.Expires <= 0:
		return Command{}, fmt.Errorf("%w: bad command id or expiry", ErrMalformed)
	case !validHexID(c.Boot):
		return Command{}, fmt.Errorf("%w: command without the device's boot id", ErrMalformed)
	case c.Kind == CommandEnroll && (!validHexID(c.Session) || c.Samples < 1 || c.Samples > 10):
		return Command{}, fmt.Errorf("%w: enroll needs a session id and 1–10 samples", ErrMalformed)
	case c.Kind != CommandEnroll && c.Kind != CommandSelfTest:
		return Command{}, fmt.Errorf("%w: unknown command %q", ErrMalformed, c.Kind)
	}
	return c, nil
}

func validHexID(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 16
}

// Status is the retained availability message.
type Status struct {
	State   string `json:"state"` // online, offline, degraded
	Version string `json:"version"`
	// Problems say, in words, why the device is degraded (the camera
	// delivers no frames, the illuminator cannot be driven).
	Problems []string `json:"problems,omitempty"`
	// TS is when the state was published (Unix ms). In the offline Last
	// Will, which the broker publishes when it loses the device, it is
	// when the lost connection was made: the loss itself is the moment
	// the broker publishes it.
	TS int64 `json:"ts"`
	// Boot is this run's boot id: commands must carry it (Command.Boot).
	Boot string `json:"boot,omitempty"`
}

// ParseStatus decodes a status message.
func ParseStatus(b []byte) (Status, error) {
	if len(b) > MaxMessage {
		return Status{}, ErrOversized
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch s.State {
	case "online", "offline", "degraded":
	default:
		return Status{}, fmt.Errorf("%w: status state %q", ErrMalformed, s.State)
	}
	return s, nil
}

// StatusMessage encodes a status message (the retained status and the
// Last Will).
func StatusMessage(state, version, boot string, now time.Time) []byte {
	return StatusMessageWith(Status{State: state, Version: version, Boot: boot}, now)
}

// StatusMessageWith encodes s stamped with now.
func StatusMessageWith(s Status, now time.Time) []byte {
	s.TS = now.UnixMilli()
	b, _ := json.Marshal(s)
	return b
}

// The states of a command acknowledgement.
const (
	AckAccepted = "accepted"
	AckRefused  = "refused"
)

// CommandAck is the device's answer to a command, on Topics.CmdAck: the
// command's id echoed, accepted or refused, and why in a stable word
// (bad_signature, expired, replay, stale_boot, wrong_device, queue_full,
// bad_session, …). A command whose id cannot be read gets no answer.
type CommandAck struct {
	ID     string      `json:"id"`
	Kind   CommandKind `json:"kind,omitempty"`
	Status string      `json:"status"`
	Reason string      `json:"reason,omitempty"`
	// Detail adds figures where a command has them (a self-test's).
	Detail string `json:"detail,omitempty"`
	TS     int64  `json:"ts"`
}

// PeekCommand reads the id and kind of a command message without
// verifying it, so that a refused command can be answered with its id.
// Nothing else may be taken from an unverified command. It returns "" for
// an id it cannot read or that is not 1–64 printable ASCII characters.
func PeekCommand(msg []byte) (id string, kind CommandKind) {
	if len(msg) > MaxMessage {
		return "", ""
	}
	var s signed
	if json.Unmarshal(msg, &s) != nil {
		return "", ""
	}
	inner, err := base64.StdEncoding.DecodeString(s.Payload)
	if err != nil {
		return "", ""
	}
	var c struct {
		ID   string      `json:"id"`
		Kind CommandKind `json:"kind"`
	}
	if json.Unmarshal(inner, &c) != nil || c.ID == "" || len(c.ID) > 64 {
		return "", ""
	}
	for _, r := range c.ID {
		if r < 0x21 || r > 0x7e {
			return "", ""
		}
	}
	if c.Kind != CommandEnroll && c.Kind != CommandSelfTest {
		c.Kind = ""
	}
	return c.ID, c.Kind
}
