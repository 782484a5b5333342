package protocol

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palmd/palmd/clock"
	"github.com/palmd/palmd/template"
)

// Suite names an HPKE ciphersuite for sealing templates.
type Suite uint8

// The suites. Both use HKDF-SHA256 and AES-256-GCM.
const (
	// SuiteHybrid is ML-KEM-768 + X25519 (post-quantum hybrid): the
	// default, so that captures recorded today stay secret when large
	// quantum computers arrive.
	SuiteHybrid Suite = 1
	// SuiteX25519 is classical DHKEM(X25519), for matchers that cannot do
	// the hybrid yet.
	SuiteX25519 Suite = 2
)

// String returns the suite's configuration name.
func (s Suite) String() string {
	switch s {
	case SuiteHybrid:
		return "mlkem768x25519"
	case SuiteX25519:
		return "x25519"
	}
	return fmt.Sprintf("suite(%d)", uint8(s))
}

// ParseSuite parses a suite's configuration name.
func ParseSuite(name string) (Suite, error) {
	switch name {
	case "mlkem768x25519", "":
		return SuiteHybrid, nil
	case "x25519":
		return SuiteX25519, nil
	}
	return 0, fmt.Errorf("template: unknown suite %q (want mlkem768x25519 or x25519)", name)
}

func (s Suite) kem() (hpke.KEM, error) {
	switch s {
	case SuiteHybrid:
		return hpke.MLKEM768X25519(), nil
	case SuiteX25519:
		return hpke.DHKEM(ecdh.X25519()), nil
	}
	return nil, fmt.Errorf("template: unknown suite %d", uint8(s))
}

func (s Suite) kdf() hpke.KDF   { return hpke.HKDFSHA256() }
func (s Suite) aead() hpke.AEAD { return hpke.AES256GCM() }

// KeyID identifies a matcher key: the first 8 bytes of SHA-256 over the
// suite and the public key. Devices name the key they sealed to, so a
// matcher can hold several keys during a rotation.
type KeyID [8]byte

func (k KeyID) String() string { return hex.EncodeToString(k[:]) }

// ParseKeyID parses the hex form of a KeyID.
func ParseKeyID(s string) (KeyID, error) {
	var k KeyID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, fmt.Errorf("template: key id %q is not 16 hex digits", s)
	}
	copy(k[:], b)
	return k, nil
}

func keyIDOf(s Suite, pub []byte) KeyID {
	h := sha256.New()
	h.Write([]byte{byte(s)})
	h.Write(pub)
	var k KeyID
	copy(k[:], h.Sum(nil))
	return k
}

// MatcherPublicKey is what a device seals to.
type MatcherPublicKey struct {
	Suite Suite
	ID    KeyID
	key   hpke.PublicKey
}

// Bytes returns the serialised public key (RFC 9180 SerializePublicKey).
func (k *MatcherPublicKey) Bytes() []byte { return k.key.Bytes() }

// ParseMatcherPublicKey deserialises a matcher public key.
func ParseMatcherPublicKey(s Suite, b []byte) (*MatcherPublicKey, error) {
	kem, err := s.kem()
	if err != nil {
		return nil, err
	}
	pk, err := kem.NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("template: %s public key: %w", s, err)
	}
	return &MatcherPublicKey{Suite: s, ID: keyIDOf(s, b), key: pk}, nil
}

// MatcherPrivateKey opens envelopes sealed to its public key.
type MatcherPrivateKey struct {
	Suite Suite
	ID    KeyID
	key   hpke.PrivateKey
}

// GenerateMatcherKey makes a new matcher key pair.
func GenerateMatcherKey(s Suite) (*MatcherPrivateKey, error) {
	kem, err := s.kem()
	if err != nil {
		return nil, err
	}
	k, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("template: generating %s key: %w", s, err)
	}
	return &MatcherPrivateKey{Suite: s, ID: keyIDOf(s, k.PublicKey().Bytes()), key: k}, nil
}

// ParseMatcherPrivateKey deserialises a matcher private key.
func ParseMatcherPrivateKey(s Suite, b []byte) (*MatcherPrivateKey, error) {
	kem, err := s.kem()
	if err != nil {
		return nil, err
	}
	k, err := kem.NewPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("template: %s private key: %w", s, err)
	}
	return &MatcherPrivateKey{Suite: s, ID: keyIDOf(s, k.PublicKey().Bytes()), key: k}, nil
}

// Bytes returns the serialised private key (RFC 9180 SerializePrivateKey).
// It is secret.
func (k *MatcherPrivateKey) Bytes() ([]byte, error) { return k.key.Bytes() }

// Public returns the public half.
func (k *MatcherPrivateKey) Public() *MatcherPublicKey {
	return &MatcherPublicKey{Suite: k.Suite, ID: k.ID, key: k.key.PublicKey()}
}

// Purpose says what a capture is for.
type Purpose uint8

// The purposes.
const (
	PurposeIdentify Purpose = 1
	PurposeEnroll   Purpose = 2
)

func (p Purpose) String() string {
	switch p {
	case PurposeIdentify:
		return "identify"
	case PurposeEnroll:
		return "enroll"
	}
	return fmt.Sprintf("purpose(%d)", uint8(p))
}

// Header is the authenticated, non-secret part of an envelope.
type Header struct {
	Suite        Suite
	Purpose      Purpose
	DeviceID     string
	MatcherKeyID KeyID
	// SessionID is the enrolment session (zero for identify).
	SessionID [16]byte
	// RequestID correlates the matcher's result with this capture.
	RequestID [16]byte
	// Sequence increases with every envelope a device seals, across
	// restarts (it starts from the clock), for replay detection.
	Sequence    uint64
	CaptureTime time.Time // millisecond precision
	Expiry      time.Time // millisecond precision
}

// Envelope wire format, version 1 (docs/envelope-format.md). Multi-byte
// integers are big-endian.
const (
	EnvelopeVersion = 1
	MaxDeviceID     = 64
	maxSealed       = 16 << 10
	sigSize         = ed25519.SignatureSize
)

var (
	envMagic = [4]byte{'P', 'E', 'N', 'V'}
	// sigContext separates envelope signatures from anything else a device
	// key might ever sign.
	sigContext = []byte("palmd envelope v1\x00")
)

// ValidDeviceID reports whether id may name a device: 1–64 bytes of
// letters, digits, '.', '_' and '-' (it is also an MQTT topic level).
func ValidDeviceID(id string) bool {
	if len(id) == 0 || len(id) > MaxDeviceID {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (h *Header) appendTo(b []byte) []byte {
	b = append(b, envMagic[:]...)
	b = append(b, EnvelopeVersion, byte(h.Suite), byte(h.Purpose), byte(len(h.DeviceID)))
	b = append(b, h.DeviceID...)
	b = append(b, h.MatcherKeyID[:]...)
	b = append(b, h.SessionID[:]...)
	b = append(b, h.RequestID[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Sequence)
	b = binary.BigEndian.AppendUint64(b, uint64(h.CaptureTime.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Expiry.UnixMilli()))
	return b
}

// parsed is an envelope split into its parts (slices of the input).
type parsed struct {
	h      Header
	header []byte // the encoded header (HPKE info, signed)
	sealed []byte
	sig    []byte
}

// parseEnvelope splits an envelope strictly: every length must match and
// nothing may follow the signature.
func parseEnvelope(b []byte) (*parsed, error) {
	const fixed = 8
	if len(b) < fixed {
		return nil, errors.New("shorter than the fixed header")
	}
	if [4]byte(b[0:4]) != envMagic {
		return nil, errors.New("bad magic")
	}
	if b[4] != EnvelopeVersion {
		return nil, fmt.Errorf("version %d, want %d", b[4], EnvelopeVersion)
	}
	p := &parsed{}
	p.h.Suite, p.h.Purpose = Suite(b[5]), Purpose(b[6])
	if p.h.Suite != SuiteHybrid && p.h.Suite != SuiteX25519 {
		return nil, fmt.Errorf("unknown suite %d", b[5])
	}
	if p.h.Purpose != PurposeIdentify && p.h.Purpose != PurposeEnroll {
		return nil, fmt.Errorf("unknown purpose %d", b[6])
	}
	n := int(b[7])
	rest := len(b) - fixed
	const after = 8 + 16 + 16 + 8 + 8 + 8
	if rest < n+after+4 {
		return nil, errors.New("truncated header")
	}
	p.h.DeviceID = string(b[fixed : fixed+n])
	if !ValidDeviceID(p.h.DeviceID) {
		return nil, errors.New("invalid device id")
	}
	o := fixed + n
	copy(p.h.MatcherKeyID[:], b[o:])
	copy(p.h.SessionID[:], b[o+8:])
	copy(p.h.RequestID[:], b[o+24:])
	p.h.Sequence = binary.BigEndian.Uint64(b[o+40:])
	p.h.CaptureTime = time.UnixMilli(int64(binary.BigEndian.Uint64(b[o+48:])))
	p.h.Expiry = time.UnixMilli(int64(binary.BigEndian.Uint64(b[o+56:])))
	if p.h.Purpose == PurposeIdentify && p.h.SessionID != ([16]byte{}) {
		return nil, errors.New("identify envelope with an enrolment session id")
	}
	if p.h.Purpose == PurposeEnroll && p.h.SessionID == ([16]byte{}) {
		return nil, errors.New("enrol envelope without a session id")
	}
	o += after
	p.header = b[:o]
	sl := int(binary.BigEndian.Uint32(b[o:]))
	o += 4
	if sl == 0 || sl > maxSealed {
		return nil, fmt.Errorf("sealed length %d outside 1..%d", sl, maxSealed)
	}
	if len(b) != o+sl+sigSize {
		return nil, fmt.Errorf("%d bytes, header and lengths say %d", len(b), o+sl+sigSize)
	}
	p.sealed = b[o : o+sl]
	p.sig = b[o+sl:]
	return p, nil
}

// PeekHeader parses an envelope's header without verifying anything: for
// routing and logging before Open. Never trust it before Open succeeds.
func PeekHeader(env []byte) (Header, error) {
	p, err := parseEnvelope(env)
	if err != nil {
		return Header{}, fmt.Errorf("template: %w: %v", ErrMalformed, err)
	}
	return p.h, nil
}

func signedMessage(envNoSig []byte) []byte {
	return append(append(make([]byte, 0, len(sigContext)+len(envNoSig)), sigContext...), envNoSig...)
}

// Sealer seals a device's templates. It is safe for concurrent use.
type Sealer struct {
	DeviceID  string
	DeviceKey ed25519.PrivateKey
	// Matcher is the key to seal to.
	Matcher *MatcherPublicKey
	// Lifetime is how long an envelope stays valid; zero means
	// DefaultLifetime.
	Lifetime time.Duration
	// Clock tells the time; nil means the system clock.
	Clock clock.Clock
	// Sequence keeps the sequence numbers growing across restarts
	// (sequence.go); nil numbers from the clock alone, which a restart
	// with a clock that is behind breaks.
	Sequence SequenceStore
	// ClockSynced, when set, reports whether the clock is known to be
	// synchronised (NTP); when it is, the sealer trusts it even if it is
	// behind the time the store was last written (that earlier clock was
	// the wrong one). Nil: never known.
	ClockSynced func() bool

	mu       sync.Mutex
	loaded   bool
	last     uint64    // last sequence number used
	reserved uint64    // bound saved in Sequence
	floor    time.Time // wall time of the last save: the clock is not behind it
}

// DefaultLifetime is how long a capture stays useful: a shopper waits
// seconds, not minutes.
const DefaultLifetime = 10 * time.Second

func (s *Sealer) now() time.Time {
	return clock.Or(s.Clock).Now()
}

// Seal encrypts t to the matcher, signs the envelope with the device key
// and returns it with its header. It consumes t: the template and its
// plaintext encoding are zeroed before Seal returns, whether it succeeds or
// not. session is the enrolment session for PurposeEnroll and must be zero
// for PurposeIdentify.
func (s *Sealer) Seal(t *template.Template, purpose Purpose, session [16]byte) ([]byte, Header, error) {
	defer t.Zero()
	var h Header
	if !ValidDeviceID(s.DeviceID) {
		return nil, h, fmt.Errorf("template: invalid device id %q", s.DeviceID)
	}
	if len(s.DeviceKey) != ed25519.PrivateKeySize || s.Matcher == nil {
		return nil, h, errors.New("template: sealer has no device key or matcher key")
	}
	if (purpose == PurposeEnroll) == (session == [16]byte{}) {
		return nil, h, fmt.Errorf("template: purpose %v with session %x", purpose, session)
	}
	now := s.now().Truncate(time.Millisecond)
	life := s.Lifetime
	if life <= 0 {
		life = DefaultLifetime
	}
	s.mu.Lock()
	seq, err := s.nextSequence(now)
	s.mu.Unlock()
	if err != nil {
		return nil, h, err
	}
	h = Header{
		Suite: s.Matcher.Suite, Purpose: purpose, DeviceID: s.DeviceID, MatcherKeyID: s.Matcher.ID,
		SessionID: session, Sequence: seq, CaptureTime: now, Expiry: now.Add(life),
	}
	if _, err := rand.Read(h.RequestID[:]); err != nil {
		return nil, h, fmt.Errorf("template: request id: %w", err)
	}
	var plain [template.WireSize]byte
	sealed, err := sealPlain(&plain, t, s.Matcher, h.appendTo(nil))
	if err != nil {
		return nil, h, err
	}
	env := h.appendTo(make([]byte, 0, 128+len(sealed)+sigSize))
	env = binary.BigEndian.AppendUint32(env, uint32(len(sealed)))
	env = append(env, sealed...)
	env = append(env, ed25519.Sign(s.DeviceKey, signedMessage(env))...)
	return env, h, nil
}

// sealPlain encodes t into plain, seals it with the header as HPKE info
// and AAD, and wipes plain. It runs inside protectSecrets, which on builds
// with GOEXPERIMENT=runtimesecret also erases the registers and stack the
// encryption used.
func sealPlain(plain *[template.WireSize]byte, t *template.Template, to *MatcherPublicKey, header []byte) (sealed []byte, err error) {
	protectSecrets(func() {
		defer clear(plain[:])
		var b []byte
		if b, err = t.AppendBinary(plain[:0]); err != nil {
			return
		}
		var enc []byte
		var snd *hpke.Sender
		enc, snd, err = hpke.NewSender(to.key, to.Suite.kdf(), to.Suite.aead(), header)
		if err != nil {
			err = fmt.Errorf("template: hpke: %w", err)
			return
		}
		var ct []byte
		if ct, err = snd.Seal(header, b); err != nil {
			err = fmt.Errorf("template: hpke seal: %w", err)
			return
		}
		sealed = append(enc, ct...)
	})
	return sealed, err
}

// Reason is why Open rejected an envelope.
type Reason int

// The reasons, in the order Open checks them.
const (
	ReasonFormat        Reason = iota // not a well-formed envelope
	ReasonUnknownDevice               // device not registered
	ReasonSignature                   // signature does not verify
	ReasonMatcherKey                  // sealed to a key this matcher does not hold
	ReasonExpired                     // past its expiry
	ReasonClockSkew                   // captured in the future, or an implausible lifetime
	ReasonReplay                      // sequence number already seen or too old
	ReasonDecrypt                     // HPKE decryption failed
	ReasonTemplate                    // decrypted body is not a valid template
	NumReasons
)

var reasonNames = [...]string{"format", "unknown_device", "signature", "matcher_key", "expired", "clock_skew", "replay", "decrypt", "template"}

func (r Reason) String() string {
	if r >= 0 && r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// RejectError is the error Open returns for a bad envelope. It never
// contains secret material.
type RejectError struct {
	Reason Reason
	Detail string
}

func (e *RejectError) Error() string {
	return "envelope rejected: " + e.Reason.String() + ": " + e.Detail
}

// Is lets errors.Is(err, &RejectError{Reason: r}) match on the reason.
func (e *RejectError) Is(target error) bool {
	t, ok := target.(*RejectError)
	return ok && t.Reason == e.Reason
}

func reject(r Reason, format string, args ...any) error {
	return &RejectError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Opener opens envelopes on the matcher side. Configure the exported fields
// before the first Open; it is safe for concurrent use afterwards.
type Opener struct {
	// Keys are the matcher private keys, by ID (several during rotation).
	Keys map[KeyID]*MatcherPrivateKey
	// Devices returns a device's public key, or false when the device is
	// not registered.
	Devices func(deviceID string) (ed25519.PublicKey, bool)
	// MaxSkew is how far a device's clock may run ahead; zero means 30 s.
	MaxSkew time.Duration
	// MaxLifetime bounds expiry − capture time; zero means 5 min.
	MaxLifetime time.Duration
	// Clock tells the time; nil means the system clock.
	Clock clock.Clock

	mu       sync.Mutex
	windows  map[string]*replayWindow
	rejected [NumReasons]atomic.Uint64
	opened   atomic.Uint64
}

// replayWindow remembers the highest sequence number seen from a device and
// which of the 64 below it were seen (as IPsec does).
type replayWindow struct {
	used bool // anything seen yet (top may be 0: a sequence number like any other)
	top  uint64
	seen uint64 // bit i: top − i seen
}

const replayWindowSize = 64

func (w *replayWindow) check(seq uint64) bool {
	if !w.used || seq > w.top {
		return true
	}
	d := w.top - seq
	return d < replayWindowSize && w.seen&(1<<d) == 0
}

func (w *replayWindow) mark(seq uint64) {
	switch {
	case !w.used:
		w.used, w.top, w.seen = true, seq, 1
	case seq > w.top:
		shift := seq - w.top
		if shift >= replayWindowSize {
			w.seen = 0
		} else {
			w.seen <<= shift
		}
		w.top = seq
		w.seen |= 1
	default:
		w.seen |= 1 << (w.top - seq)
	}
}

// Counts returns how many envelopes were opened and how many were rejected
// for each reason.
func (o *Opener) Counts() (opened uint64, rejected [NumReasons]uint64) {
	for i := range rejected {
		rejected[i] = o.rejected[i].Load()
	}
	return o.opened.Load(), rejected
}

// Open verifies and decrypts an envelope, checking in order: format, known
// device, signature, matcher key, expiry and clock skew, replay, decryption
// and template decoding. A rejection is a *RejectError, counted by reason.
// Nothing on this path panics on any input. The template's offset is as
// the device sent it (zero from a device older than template algorithm
// 6); the matcher measures its own (template.Centre).
func (o *Opener) Open(env []byte) (*template.Template, Header, error) {
	t, h, err := o.open(env)
	var re *RejectError
	if errors.As(err, &re) {
		o.rejected[re.Reason].Add(1)
	} else if err == nil {
		o.opened.Add(1)
	}
	return t, h, err
}

// Authenticate checks an envelope's format, device and signature only,
// counting a rejection by reason as Open does: enough to tell a genuine
// republished copy of a capture from a tampered one without decrypting it
// again.
func (o *Opener) Authenticate(env []byte) (Header, error) {
	_, h, err := o.authenticate(env)
	var re *RejectError
	if errors.As(err, &re) {
		o.rejected[re.Reason].Add(1)
	}
	return h, err
}

func (o *Opener) authenticate(env []byte) (*parsed, Header, error) {
	p, err := parseEnvelope(env)
	if err != nil {
		return nil, Header{}, reject(ReasonFormat, "%v", err)
	}
	h := p.h
	var pub ed25519.PublicKey
	ok := false
	if o.Devices != nil {
		pub, ok = o.Devices(h.DeviceID)
	}
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, h, reject(ReasonUnknownDevice, "device %q is not registered", h.DeviceID)
	}
	if !ed25519.Verify(pub, signedMessage(env[:len(env)-sigSize]), p.sig) {
		return nil, h, reject(ReasonSignature, "signature of device %q does not verify", h.DeviceID)
	}
	return p, h, nil
}

func (o *Opener) open(env []byte) (*template.Template, Header, error) {
	p, h, err := o.authenticate(env)
	if err != nil {
		return nil, h, err
	}
	key, ok := o.Keys[h.MatcherKeyID]
	if !ok || key.Suite != h.Suite {
		return nil, h, reject(ReasonMatcherKey, "no %s matcher key %s", h.Suite, h.MatcherKeyID)
	}
	now := clock.Or(o.Clock).Now()
	skew, life := o.MaxSkew, o.MaxLifetime
	if skew <= 0 {
		skew = 30 * time.Second
	}
	if life <= 0 {
		life = 5 * time.Minute
	}
	switch {
	case !now.Before(h.Expiry):
		return nil, h, reject(ReasonExpired, "expired %v ago", now.Sub(h.Expiry).Round(time.Millisecond))
	case h.CaptureTime.After(now.Add(skew)):
		return nil, h, reject(ReasonClockSkew, "captured %v in the future", h.CaptureTime.Sub(now).Round(time.Millisecond))
	case !h.Expiry.After(h.CaptureTime) || h.Expiry.Sub(h.CaptureTime) > life:
		return nil, h, reject(ReasonClockSkew, "lifetime %v outside (0, %v]", h.Expiry.Sub(h.CaptureTime), life)
	}
	o.mu.Lock()
	if o.windows == nil {
		o.windows = map[string]*replayWindow{}
	}
	w := o.windows[h.DeviceID]
	if w == nil {
		w = &replayWindow{}
		o.windows[h.DeviceID] = w
	}
	fresh := w.check(h.Sequence)
	o.mu.Unlock()
	if !fresh {
		return nil, h, reject(ReasonReplay, "sequence %d from device %q already seen or too old", h.Sequence, h.DeviceID)
	}
	plain, err := openSealed(key, p.header, p.sealed)
	if err != nil {
		return nil, h, reject(ReasonDecrypt, "%v", err)
	}
	defer clear(plain)
	t := &template.Template{}
	// Uncentred: the offset is the matcher's to measure (template.Centre),
	// whatever the device's algorithm version.
	if err := t.UnmarshalUncentred(plain); err != nil {
		return nil, h, reject(ReasonTemplate, "%v", err)
	}
	// Only an envelope that opened completely uses up its sequence
	// number; two goroutines racing with the same envelope are settled
	// here.
	o.mu.Lock()
	fresh = w.check(h.Sequence)
	if fresh {
		w.mark(h.Sequence)
	}
	o.mu.Unlock()
	if !fresh {
		t.Zero()
		return nil, h, reject(ReasonReplay, "sequence %d from device %q already seen", h.Sequence, h.DeviceID)
	}
	return t, h, nil
}

// openSealed splits enc from the ciphertext and decrypts with the header as
// info and AAD.
func openSealed(key *MatcherPrivateKey, header, sealed []byte) ([]byte, error) {
	kem, err := key.Suite.kem()
	if err != nil {
		return nil, err
	}
	n := encSize(kem)
	if len(sealed) <= n {
		return nil, fmt.Errorf("sealed body of %d bytes is shorter than the %d-byte encapsulated key", len(sealed), n)
	}
	r, err := hpke.NewRecipient(sealed[:n], key.key, key.Suite.kdf(), key.Suite.aead(), header)
	if err != nil {
		return nil, fmt.Errorf("hpke: %w", err)
	}
	return r.Open(header, sealed[n:])
}

// encSize is the length of a KEM's encapsulated key.
func encSize(k hpke.KEM) int {
	switch k.ID() {
	case 0x0020: // DHKEM(X25519, HKDF-SHA256)
		return 32
	default: // ML-KEM-768 + X25519
		return 1088 + 32
	}
}
