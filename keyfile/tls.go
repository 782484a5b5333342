package keyfile

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// LoadTLS builds the client TLS configuration for mutual TLS: the CA bundle
// that signs the broker's certificate, and this device's certificate and
// key (the key through keyfile, so systemd credentials work and a
// world-readable key is refused). TLS 1.2 is the minimum.
func LoadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("keyfile: CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("keyfile: %s holds no PEM certificates", caFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile == "" && keyFile == "" {
		return cfg, nil
	}
	certPEM, err := os.ReadFile(Resolve(certFile))
	if err != nil {
		return nil, fmt.Errorf("keyfile: client certificate: %w", err)
	}
	keyPEM, err := ReadSecret(Resolve(keyFile))
	if err != nil {
		return nil, err
	}
	defer clear(keyPEM)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("keyfile: client certificate and key do not form a pair: %w", err)
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}
