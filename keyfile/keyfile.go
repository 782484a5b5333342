// Package keyfile reads and writes palmd's key files and finds them in
// systemd credentials.
//
// Device keys are Ed25519 in the standard PEM encodings, so that other tools
// can read them: "PRIVATE KEY" (PKCS #8) and "PUBLIC KEY" (PKIX). Matcher
// keys are HPKE keys, which have no standard PEM form; they are PEM blocks
// "PALMD MATCHER PRIVATE KEY" and "PALMD MATCHER PUBLIC KEY" holding the
// RFC 9180 serialised key, with headers "Suite" (mlkem768x25519 or x25519)
// and "Key-Id" (16 hex digits). docs/keys.md describes the files.
//
// Private keys are written with mode 0600 and refused when readable or
// writable by others. No function here logs or returns key material in an
// error.
package keyfile

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/palmd/palmd/protocol"
)

// PEM block types.
const (
	TypePrivateKey        = "PRIVATE KEY"
	TypePublicKey         = "PUBLIC KEY"
	TypeMatcherPrivateKey = "PALMD MATCHER PRIVATE KEY"
	TypeMatcherPublicKey  = "PALMD MATCHER PUBLIC KEY"
)

// maxKeyFile bounds what is read: the largest key file is a hybrid matcher
// public key of about 1.7 KB.
const maxKeyFile = 64 << 10

// ErrPermissions is returned for a private key file others can read.
var ErrPermissions = errors.New("keyfile: private key file is accessible to other users")

// Resolve finds a key or secret: a path as given, or, when name is a bare
// file name and $CREDENTIALS_DIRECTORY is set (systemd LoadCredential=), the
// credential of that name.
func Resolve(name string) string {
	if dir := os.Getenv("CREDENTIALS_DIRECTORY"); dir != "" && !strings.ContainsRune(name, filepath.Separator) {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return name
}

// ReadSecret reads a private file (a key or a token), refusing one that
// users other than the owner and group can read or write.
func ReadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("keyfile: %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v (want 0600 or 0400)", ErrPermissions, path, st.Mode().Perm())
	}
	if st.Size() > maxKeyFile {
		return nil, fmt.Errorf("keyfile: %s is larger than %d bytes", path, maxKeyFile)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("keyfile: reading %s: %w", path, err)
	}
	return b, nil
}

func readPublic(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %w", err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("keyfile: %s is larger than %d bytes", path, maxKeyFile)
	}
	return b, nil
}

// oneBlock decodes exactly one PEM block of the wanted type.
func oneBlock(data []byte, want, path string) (*pem.Block, error) {
	blk, rest := pem.Decode(data)
	if blk == nil {
		return nil, fmt.Errorf("keyfile: %s: no PEM block", path)
	}
	if blk.Type != want {
		return nil, fmt.Errorf("keyfile: %s: PEM type %q, want %q", path, blk.Type, want)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("keyfile: %s: data after the PEM block", path)
	}
	return blk, nil
}

// ParseDevicePrivateKey decodes a PKCS #8 Ed25519 private key in PEM.
func ParseDevicePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	blk, err := oneBlock(data, TypePrivateKey, "device key")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	clear(blk.Bytes)
	if err != nil {
		return nil, errors.New("keyfile: device key is not valid PKCS #8")
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("keyfile: device key is %T, want Ed25519", k)
	}
	return ek, nil
}

// LoadDevicePrivateKey reads a device private key file (see Resolve).
func LoadDevicePrivateKey(name string) (ed25519.PrivateKey, error) {
	path := Resolve(name)
	b, err := ReadSecret(path)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	k, err := ParseDevicePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// LoadDevicePublicKey reads a PKIX Ed25519 public key file.
func LoadDevicePublicKey(path string) (ed25519.PublicKey, error) {
	b, err := readPublic(path)
	if err != nil {
		return nil, err
	}
	return ParseDevicePublicKey(b, path)
}

// ParseDevicePublicKey decodes a PKIX Ed25519 public key in PEM; name
// labels errors.
func ParseDevicePublicKey(data []byte, name string) (ed25519.PublicKey, error) {
	blk, err := oneBlock(data, TypePublicKey, name)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: not a PKIX public key", name)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("keyfile: %s: %T, want Ed25519", name, k)
	}
	return ek, nil
}

func matcherHeaders(blk *pem.Block, path string) (protocol.Suite, protocol.KeyID, error) {
	s, err := protocol.ParseSuite(blk.Headers["Suite"])
	if err != nil || blk.Headers["Suite"] == "" {
		return 0, protocol.KeyID{}, fmt.Errorf("keyfile: %s: missing or unknown Suite header", path)
	}
	id, err := protocol.ParseKeyID(blk.Headers["Key-Id"])
	if err != nil {
		return 0, id, fmt.Errorf("keyfile: %s: missing or bad Key-Id header", path)
	}
	return s, id, nil
}

// LoadMatcherPrivateKey reads a matcher private key file (see Resolve) and
// checks its key id.
func LoadMatcherPrivateKey(name string) (*protocol.MatcherPrivateKey, error) {
	path := Resolve(name)
	b, err := ReadSecret(path)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return ParseMatcherPrivateKey(b, path)
}

// ParseMatcherPrivateKey decodes a matcher private key in PEM and checks
// its key id; name labels errors.
func ParseMatcherPrivateKey(data []byte, name string) (*protocol.MatcherPrivateKey, error) {
	blk, err := oneBlock(data, TypeMatcherPrivateKey, name)
	if err != nil {
		return nil, err
	}
	defer clear(blk.Bytes)
	s, id, err := matcherHeaders(blk, name)
	if err != nil {
		return nil, err
	}
	k, err := protocol.ParseMatcherPrivateKey(s, blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: not a valid %s private key", name, s)
	}
	if k.ID != id {
		return nil, fmt.Errorf("keyfile: %s: Key-Id %s does not match the key (%s)", name, id, k.ID)
	}
	return k, nil
}

// LoadMatcherPublicKey reads a matcher public key file and checks its id.
func LoadMatcherPublicKey(path string) (*protocol.MatcherPublicKey, error) {
	b, err := readPublic(path)
	if err != nil {
		return nil, err
	}
	return ParseMatcherPublicKey(b, path)
}

// ParseMatcherPublicKey decodes a matcher public key in PEM and checks its
// key id; name labels errors.
func ParseMatcherPublicKey(data []byte, name string) (*protocol.MatcherPublicKey, error) {
	blk, err := oneBlock(data, TypeMatcherPublicKey, name)
	if err != nil {
		return nil, err
	}
	s, id, err := matcherHeaders(blk, name)
	if err != nil {
		return nil, err
	}
	k, err := protocol.ParseMatcherPublicKey(s, blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keyfile: %s: not a valid %s public key", name, s)
	}
	if k.ID != id {
		return nil, fmt.Errorf("keyfile: %s: Key-Id %s does not match the key (%s)", name, id, k.ID)
	}
	return k, nil
}

// EncodeDevice returns the PEM encodings of a device key pair.
func EncodeDevice(k ed25519.PrivateKey) (priv, pub []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	defer clear(der)
	pder, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: TypePrivateKey, Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: TypePublicKey, Bytes: pder}), nil
}

// EncodeMatcher returns the PEM encodings of a matcher key pair.
func EncodeMatcher(k *protocol.MatcherPrivateKey) (priv, pub []byte, err error) {
	raw, err := k.Bytes()
	if err != nil {
		return nil, nil, err
	}
	defer clear(raw)
	h := map[string]string{"Suite": k.Suite.String(), "Key-Id": k.ID.String()}
	return pem.EncodeToMemory(&pem.Block{Type: TypeMatcherPrivateKey, Headers: h, Bytes: raw}),
		pem.EncodeToMemory(&pem.Block{Type: TypeMatcherPublicKey, Headers: h, Bytes: k.Public().Bytes()}), nil
}

// WriteNew writes data to a new file with mode perm, refusing to overwrite
// an existing one (a key must never be replaced by accident).
func WriteNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("keyfile: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("keyfile: writing %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil { // the umask may have changed it
		f.Close()
		return fmt.Errorf("keyfile: %w", err)
	}
	return f.Close()
}
