package sinkstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs is a test CA and a server and a client certificate it signed,
// written as PEM files in Dir. The server certificate is for 127.0.0.1,
// ::1 and localhost.
type Certs struct {
	Dir                   string
	CA                    string // CA certificate file
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	// RequireClientCert makes ServerTLS refuse a client without a
	// certificate the CA signed.
	RequireClientCert bool
	pool              *x509.CertPool
	server, client    tls.Certificate
}

// NewCerts makes certificates in a new temporary directory.
func NewCerts(t testing.TB) *Certs {
	t.Helper()
	dir := t.TempDir()
	c := &Certs{Dir: dir}
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "echowatch test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	c.pool = x509.NewCertPool()
	c.pool.AddCert(ca)
	c.CA = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (cert, key string, pair tls.Certificate) {
		k := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		cert = writePEM(t, dir, name+".pem", "CERTIFICATE", der)
		key = writePEM(t, dir, name+"-key.pem", "PRIVATE KEY", kder)
		pair, err = tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key, pair
	}
	c.ServerCert, c.ServerKey, c.server = issue("server", 2, x509.ExtKeyUsageServerAuth)
	c.ClientCert, c.ClientKey, c.client = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return c
}

// ClientTLS trusts the CA and presents the client certificate.
func (c *Certs) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: c.pool, Certificates: []tls.Certificate{c.client}, ServerName: "localhost"}
}

// ServerTLS presents the server certificate.
func (c *Certs) ServerTLS() *tls.Config {
	tc := &tls.Config{Certificates: []tls.Certificate{c.server}, ClientCAs: c.pool}
	if c.RequireClientCert {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
