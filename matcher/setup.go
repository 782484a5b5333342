package matcher

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/palmd/palmd/keyfile"
	"github.com/palmd/palmd/protocol"
)

// DeviceDir is a registry of device public keys: one PKIX Ed25519 file
// per device, named <device-id>.pub, re-read when a device is not known
// yet (so a new terminal can be registered without a restart).
type DeviceDir struct {
	Dir  string
	mu   sync.Mutex
	keys map[string]ed25519.PublicKey
}

// Lookup implements protocol.Opener.Devices.
func (d *DeviceDir) Lookup(id string) (ed25519.PublicKey, bool) {
	if !protocol.ValidDeviceID(id) {
		return nil, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if k, ok := d.keys[id]; ok {
		return k, true
	}
	k, err := keyfile.LoadDevicePublicKey(filepath.Join(d.Dir, id+".pub"))
	if err != nil {
		return nil, false
	}
	if d.keys == nil {
		d.keys = map[string]ed25519.PublicKey{}
	}
	d.keys[id] = k
	return k, true
}

// ReadGalleryKey reads a 32-byte key stored as 64 hex digits in a private
// file (or systemd credential).
func ReadGalleryKey(name string) ([]byte, error) {
	b, err := keyfile.ReadSecret(keyfile.Resolve(name))
	if err != nil {
		return nil, err
	}
	defer clear(b)
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("matcher: %s must hold 64 hex digits (a 32-byte key)", name)
	}
	return k, nil
}

// WriteGalleryKey creates a new random gallery key file (0600).
func WriteGalleryKey(path string, key []byte) error {
	if len(key) != 32 {
		return fmt.Errorf("matcher: gallery key must be 32 bytes")
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("matcher: %s exists", path)
	}
	return keyfile.WriteNew(path, []byte(hex.EncodeToString(key)+"\n"), 0o600)
}
