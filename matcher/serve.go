package matcher

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/palmd/palmd/template"
	"github.com/palmd/palmd/uplink"
)

// ServeConfig connects a matcher to a broker.
type ServeConfig struct {
	Brokers  []string
	TLS      *tls.Config
	ClientID string
	Username string
	Password string
	// Workers bounds the captures handled at once; 2 × CPUs.
	Workers int
	Logger  *slog.Logger
	// OnDecision, when set, is called after each answered capture.
	OnDecision func(uplink.Result, time.Duration)
	// OnSubscribed, when set, is called each time the shared capture
	// subscription is confirmed by the broker (first connect and every
	// reconnect): from then on, captures reach this instance.
	OnSubscribed func()
}

// Serve subscribes to every device's captures through the shared
// subscription and answers until ctx is done. Bad envelopes are counted
// (Opener.Counts) and dropped; valid traffic keeps flowing.
func (m *Matcher) Serve(ctx context.Context, sc ServeConfig) error {
	if len(sc.Brokers) == 0 || sc.ClientID == "" {
		return errors.New("matcher: brokers and client id are required")
	}
	log := sc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	workers := sc.Workers
	if workers <= 0 {
		workers = 2 * m.cfg.Workers
	}
	sem := make(chan struct{}, workers)
	o := mqtt.NewClientOptions().SetClientID(sc.ClientID).SetUsername(sc.Username).SetPassword(sc.Password).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(500 * time.Millisecond).
		SetMaxReconnectInterval(2 * time.Second).SetOrderMatters(false).SetStore(mqtt.NewMemoryStore()).SetCleanSession(true)
	for _, b := range sc.Brokers {
		o.AddBroker(b)
	}
	if sc.TLS != nil {
		o.SetTLSConfig(sc.TLS)
	}
	handler := func(c mqtt.Client, msg mqtt.Message) {
		env := append([]byte(nil), msg.Payload()...)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		go func() {
			defer func() { <-sem }()
			start := time.Now()
			signed, res, err := m.Handle(env)
			clear(env)
			if err != nil {
				var re *template.RejectError
				if errors.As(err, &re) || errors.Is(err, ErrDuplicate) {
					log.Debug("capture rejected", "topic", msg.Topic(), "err", err)
				} else {
					log.Warn("capture", "err", err)
				}
				return
			}
			// Reply only on the topic of the device the envelope names.
			if !strings.HasPrefix(msg.Topic(), "palm/v1/"+res.Device+"/") {
				log.Warn("capture published under another device's topic", "topic", msg.Topic())
				return
			}
			c.Publish(uplink.TopicsFor(res.Device).Result, 1, false, signed)
			if sc.OnDecision != nil {
				sc.OnDecision(res, time.Since(start))
			}
		}()
	}
	o.SetOnConnectHandler(func(c mqtt.Client) {
		go func() {
			tok := c.Subscribe(uplink.SharedCaptureFilter, 1, handler)
			if !tok.WaitTimeout(10 * time.Second) {
				log.Error("subscribe: no answer from the broker in 10 s")
				return
			}
			if err := tok.Error(); err != nil {
				log.Error("subscribe", "err", err)
				return
			}
			log.Info("matcher subscribed", "filter", uplink.SharedCaptureFilter)
			if sc.OnSubscribed != nil {
				sc.OnSubscribed()
			}
		}()
	})
	c := mqtt.NewClient(o)
	c.Connect()
	<-ctx.Done()
	c.Disconnect(250)
	return nil
}

// Gallery file: magic "PGAL\x02", nonce, then AES-256-GCM of: u32 entry
// count, entries (u16 subject length, subject, u16 count, count × template
// wire encoding), u32 session count, sessions (16-byte session id, u16
// count, templates). The sessions are in the file too so that several
// instances sharing the file (and the load) complete each other's
// enrolments.
var galleryMagic = []byte("PGAL\x02")

func encodeGallery(entries []Entry, sessions map[[16]byte][]*template.Template) ([]byte, error) {
	var p []byte
	var err error
	appendTemplates := func(ts []*template.Template) {
		p = binary.BigEndian.AppendUint16(p, uint16(len(ts)))
		for _, t := range ts {
			if err == nil {
				p, err = t.AppendBinary(p)
			}
		}
	}
	p = binary.BigEndian.AppendUint32(p, uint32(len(entries)))
	for _, e := range entries {
		p = binary.BigEndian.AppendUint16(p, uint16(len(e.Subject)))
		p = append(p, e.Subject...)
		appendTemplates(e.Templates)
	}
	p = binary.BigEndian.AppendUint32(p, uint32(len(sessions)))
	for id, ts := range sessions {
		p = append(p, id[:]...)
		appendTemplates(ts)
	}
	return p, err
}

var errTruncated = errors.New("matcher: gallery file truncated")

func decodeGallery(p []byte) ([]Entry, map[[16]byte][]*template.Template, error) {
	need := func(n int) error {
		if len(p) < n {
			return errTruncated
		}
		return nil
	}
	readTemplates := func() ([]*template.Template, error) {
		if err := need(2); err != nil {
			return nil, err
		}
		cnt := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		var ts []*template.Template
		for i := 0; i < cnt; i++ {
			if err := need(template.WireSize); err != nil {
				return nil, err
			}
			t := &template.Template{}
			if err := t.UnmarshalBinary(p[:template.WireSize]); err != nil {
				return nil, fmt.Errorf("matcher: gallery: %w", err)
			}
			ts = append(ts, t)
			p = p[template.WireSize:]
		}
		return ts, nil
	}
	if err := need(4); err != nil {
		return nil, nil, err
	}
	n := int(binary.BigEndian.Uint32(p))
	p = p[4:]
	var entries []Entry
	for i := 0; i < n; i++ {
		if err := need(2); err != nil {
			return nil, nil, err
		}
		sl := int(binary.BigEndian.Uint16(p))
		if err := need(2 + sl); err != nil {
			return nil, nil, err
		}
		e := Entry{Subject: string(p[2 : 2+sl])}
		p = p[2+sl:]
		ts, err := readTemplates()
		if err != nil {
			return nil, nil, err
		}
		e.Templates = ts
		entries = append(entries, e)
	}
	if err := need(4); err != nil {
		return nil, nil, err
	}
	ns := int(binary.BigEndian.Uint32(p))
	p = p[4:]
	sessions := map[[16]byte][]*template.Template{}
	for i := 0; i < ns; i++ {
		if err := need(16); err != nil {
			return nil, nil, err
		}
		var id [16]byte
		copy(id[:], p)
		p = p[16:]
		ts, err := readTemplates()
		if err != nil {
			return nil, nil, err
		}
		sessions[id] = ts
	}
	if len(p) != 0 {
		return nil, nil, errors.New("matcher: trailing bytes in gallery file")
	}
	return entries, sessions, nil
}

// SaveGallery writes the gallery and open sessions encrypted with key (32
// bytes), atomically (temporary file, then rename).
func (m *Matcher) SaveGallery(path string, key []byte) error {
	_, err := m.saveGallery(path, key)
	return err
}

// saveGallery is SaveGallery, returning the written file's version.
func (m *Matcher) saveGallery(path string, key []byte) (version []byte, err error) {
	m.mu.RLock()
	plain, err := encodeGallery(m.gallery, m.sessions)
	m.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	return writeGallery(path, key, plain)
}

// writeGallery encrypts plain (then zeroes it) and atomically replaces the
// file at path, durably: the data and the rename are synced before it
// returns. It returns the file's version (its random nonce), which every
// write changes; readers compare versions instead of modification times,
// whose granularity can hide a second write in the same clock tick.
func writeGallery(path string, key, plain []byte) (version []byte, err error) {
	defer clear(plain)
	aead, err := galleryAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append(append([]byte{}, galleryMagic...), nonce...)
	out = aead.Seal(out, nonce, plain, galleryMagic)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".gallery-*")
	if err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("matcher: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("matcher: %w", err)
	}
	// Sync before rename so a power cut leaves the old or the new gallery,
	// never an empty file under the real name.
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("matcher: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		_ = dir.Sync() // makes the rename durable; not all file systems support it
		dir.Close()
	}
	return nonce, nil
}

// galleryVersion reads only the header of the gallery file at path and
// returns its version (see writeGallery).
func galleryVersion(path string, key []byte) ([]byte, error) {
	aead, err := galleryAEAD(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("matcher: %w", err)
	}
	defer f.Close()
	head := make([]byte, len(galleryMagic)+aead.NonceSize())
	if _, err := io.ReadFull(f, head); err != nil || string(head[:len(galleryMagic)]) != string(galleryMagic) {
		return nil, errors.New("matcher: not a gallery file")
	}
	return head[len(galleryMagic):], nil
}

// readGallery decrypts and decodes the gallery file at path; version is
// the file's version (see writeGallery).
func readGallery(path string, key []byte) (entries []Entry, sessions map[[16]byte][]*template.Template, version []byte, err error) {
	aead, err := galleryAEAD(key)
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("matcher: %w", err)
	}
	n := len(galleryMagic) + aead.NonceSize()
	if len(b) < n || string(b[:len(galleryMagic)]) != string(galleryMagic) {
		return nil, nil, nil, errors.New("matcher: not a gallery file")
	}
	plain, err := aead.Open(nil, b[len(galleryMagic):n], b[n:], galleryMagic)
	if err != nil {
		return nil, nil, nil, errors.New("matcher: gallery file does not decrypt with this key")
	}
	defer clear(plain)
	entries, sessions, err = decodeGallery(plain)
	return entries, sessions, b[len(galleryMagic):n], err
}

// LoadGallery replaces the gallery and sessions with the file's.
func (m *Matcher) LoadGallery(path string, key []byte) error {
	entries, sessions, _, err := readGallery(path, key)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.gallery, m.sessions = entries, sessions
	m.mu.Unlock()
	return nil
}

func galleryAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("matcher: gallery key must be 32 bytes, got %d", len(key))
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}
