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
			if tok := c.Subscribe(uplink.SharedCaptureFilter, 1, handler); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
				log.Error("subscribe", "err", tok.Error())
			}
			log.Info("matcher subscribed", "filter", uplink.SharedCaptureFilter)
		}()
	})
	c := mqtt.NewClient(o)
	c.Connect()
	<-ctx.Done()
	c.Disconnect(250)
	return nil
}

// Gallery file: magic "PGAL" 1, then AES-256-GCM(nonce ‖ ciphertext) of
// the entries: for each, u16 subject length, subject, u16 count, count ×
// template wire encoding.
var galleryMagic = []byte("PGAL\x01")

// SaveGallery writes the gallery encrypted with key (32 bytes), atomically.
func (m *Matcher) SaveGallery(path string, key []byte) error {
	aead, err := galleryAEAD(key)
	if err != nil {
		return err
	}
	m.mu.RLock()
	var plain []byte
	for _, e := range m.gallery {
		plain = binary.BigEndian.AppendUint16(plain, uint16(len(e.Subject)))
		plain = append(plain, e.Subject...)
		plain = binary.BigEndian.AppendUint16(plain, uint16(len(e.Templates)))
		for _, t := range e.Templates {
			if plain, err = t.AppendBinary(plain); err != nil {
				m.mu.RUnlock()
				return err
			}
		}
	}
	m.mu.RUnlock()
	defer clear(plain)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	out := append(append([]byte{}, galleryMagic...), nonce...)
	out = aead.Seal(out, nonce, plain, galleryMagic)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".gallery-*")
	if err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return fmt.Errorf("matcher: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// LoadGallery replaces the gallery with the encrypted file's entries.
func (m *Matcher) LoadGallery(path string, key []byte) error {
	aead, err := galleryAEAD(key)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("matcher: %w", err)
	}
	n := len(galleryMagic) + aead.NonceSize()
	if len(b) < n || string(b[:len(galleryMagic)]) != string(galleryMagic) {
		return errors.New("matcher: not a gallery file")
	}
	plain, err := aead.Open(nil, b[len(galleryMagic):n], b[n:], galleryMagic)
	if err != nil {
		return errors.New("matcher: gallery file does not decrypt with this key")
	}
	defer clear(plain)
	var entries []Entry
	for p := plain; len(p) > 0; {
		if len(p) < 2 {
			return errors.New("matcher: gallery file truncated")
		}
		sl := int(binary.BigEndian.Uint16(p))
		if len(p) < 2+sl+2 {
			return errors.New("matcher: gallery file truncated")
		}
		e := Entry{Subject: string(p[2 : 2+sl])}
		cnt := int(binary.BigEndian.Uint16(p[2+sl:]))
		p = p[4+sl:]
		for i := 0; i < cnt; i++ {
			if len(p) < template.WireSize {
				return errors.New("matcher: gallery file truncated")
			}
			t := &template.Template{}
			if err := t.UnmarshalBinary(p[:template.WireSize]); err != nil {
				return fmt.Errorf("matcher: gallery: %w", err)
			}
			e.Templates = append(e.Templates, t)
			p = p[template.WireSize:]
		}
		entries = append(entries, e)
	}
	m.mu.Lock()
	m.gallery = entries
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
