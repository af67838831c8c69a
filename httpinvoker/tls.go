package httpinvoker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles describes a TLS client configuration by its files, as the
// configuration's n8n.tls section gives it.
type TLSFiles struct {
	// CAFile adds the PEM certificates of a private CA to the system's.
	CAFile string
	// CertFile and KeyFile are a client certificate for mTLS.
	CertFile, KeyFile string
	// ServerName overrides the name the certificate must prove.
	ServerName string
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string
	// InsecureSkipVerify turns certificate verification off.
	InsecureSkipVerify bool
}

// TLSConfig builds a TLS configuration: verification on (unless
// InsecureSkipVerify), the system's CAs plus CAFile, a client
// certificate for mTLS, TLS 1.2 or 1.3 at least.
func TLSConfig(t TLSFiles) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // an explicit, logged opt-in
	if t.MinVersion == "1.3" {
		c.MinVersion = tls.VersionTLS13
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("n8n.tls.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("n8n.tls.ca_file: no PEM certificate in " + t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("n8n.tls.cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
