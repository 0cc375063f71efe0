package bus_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
	dir  string
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	dir := t.TempDir()
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem"), dir: dir}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a certificate for 127.0.0.1 signed by the CA, usable by a
// server and a client, and returns the certificate and key files.
func (ca *testCA) issue(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTLSOnTheEmbeddedListenerIsVerifiedByHeraldsTools(t *testing.T) {
	ca, other := newCA(t, "herald-ca"), newCA(t, "other-ca")
	certFile, keyFile := ca.issue(t, "server")
	clientCert, clientKey := ca.issue(t, "client")
	strangerCert, strangerKey := other.issue(t, "stranger")

	for _, tc := range []struct {
		name   string
		verify bool              // the server requires client certificates
		client func(*config.Bus) // the tool's settings
		refuse func(error) bool  // nil: the connection must succeed
		reason string
	}{
		{"a client that trusts the server's CA connects", false,
			func(b *config.Bus) {}, nil, ""},
		{"a client that trusts another CA is refused", false,
			func(b *config.Bus) { b.TLS.CAFile = other.file }, isUnknownAuthority, "x509: unknown authority"},
		{"a client with a certificate from the CA connects when client certificates are required", true,
			func(b *config.Bus) { b.TLS.CertFile, b.TLS.KeyFile = clientCert, clientKey }, nil, ""},
		{"a client without a certificate is refused when client certificates are required", true,
			func(b *config.Bus) {}, anyError, "any error"},
		{"a client with a certificate from another CA is refused when client certificates are required", true,
			func(b *config.Bus) { b.TLS.CertFile, b.TLS.KeyFile = strangerCert, strangerKey }, anyError, "any error"},
		{"skipping verification connects even to an unknown CA, when asked", false,
			func(b *config.Bus) { b.TLS.InsecureSkipVerify = true }, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := busConfig(t)
			cfg.Embedded.TLS = config.ServerTLS{CertFile: certFile, KeyFile: keyFile, CAFile: ca.file, VerifyClients: tc.verify}
			b := openBus(t, cfg) // herald's in-process connection needs no TLS
			declare(t, b, 10*time.Second)

			// A client that does not speak TLS at all is refused.
			if nc, err := nats.Connect("nats://"+cfg.Embedded.Listen, nats.Timeout(2*time.Second)); err == nil {
				nc.Close()
				t.Fatal("a plain-text client was accepted")
			}
			tool := cfg
			tc.client(&tool)
			nc, js, err := bus.Connect(tool, "herald-test")
			if tc.refuse == nil {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer nc.Close()
				if !nc.TLSRequired() {
					t.Error("the connection is not TLS")
				}
				if _, err := js.Stream(t.Context(), bus.StreamRaw); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				nc.Close()
				t.Fatalf("connected; want %s", tc.reason)
			}
			if !tc.refuse(err) {
				t.Fatalf("err = %v; want %s", err, tc.reason)
			}
		})
	}
}

func isUnknownAuthority(err error) bool {
	var ua x509.UnknownAuthorityError
	return errors.As(err, &ua)
}

func anyError(err error) bool { return err != nil }
