// Package receivertest gives receiver tests a real embedded JetStream, a
// Batcher and metrics, reads back what reached the raw stream, and writes
// throwaway TLS certificates.
package receivertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// Rig is a bus, a batcher and metrics for one receiver named "test".
type Rig struct {
	Bus     *bus.Bus
	Metrics *metrics.Metrics
	Stage   *metrics.Stage
	Env     receiver.Env
}

// New starts an embedded server and a batcher (5 ms linger) and closes
// them at cleanup.
func New(t testing.TB) *Rig {
	t.Helper()
	b := bustest.Open(t)
	m := metrics.New()
	st := m.Stage("receiver.test")
	bt := receiver.NewBatcher(b, bus.RawSubject("test"), 100, 64<<10, 5*time.Millisecond, st, bustest.Logger(t))
	t.Cleanup(func() { _ = bt.Close(context.Background()) })
	return &Rig{Bus: b, Metrics: m, Stage: st, Env: receiver.Env{Name: "test", Bus: b, Batcher: bt, Metrics: st,
		Connections: m.Connections.WithLabelValues("test"), Log: bustest.Logger(t)}}
}

// Rejected is the count of records rejected for reason.
func (r *Rig) Rejected(reason string) float64 { return testutil.ToFloat64(r.Stage.RejectedBy(reason)) }

// Connections is the number of open connections.
func (r *Rig) Connections() float64 {
	return testutil.ToFloat64(r.Metrics.Connections.WithLabelValues("test"))
}

// Events reads every record published to the raw stream so far, by
// sequence (a work-queue stream allows no second consumer).
func (r *Rig) Events(t testing.TB) []*schemas.Event {
	t.Helper()
	ctx := context.Background()
	st, err := r.Bus.JS.Stream(ctx, bus.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*schemas.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var bt schemas.Batch
		if err := proto.Unmarshal(m.Data, &bt); err != nil {
			t.Fatal(err)
		}
		out = append(out, bt.Events...)
	}
	return out
}

// Records is Events' raw bytes as strings.
func (r *Rig) Records(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, ev := range r.Events(t) {
		out = append(out, string(ev.Raw))
	}
	return out
}

// WaitRecords waits until the raw stream holds at least n records and
// returns them all.
func (r *Rig) WaitRecords(t testing.TB, n int) []string {
	t.Helper()
	var got []string
	bustest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got = r.Records(t); len(got) < n {
			return fmt.Errorf("%d of %d records stored", len(got), n)
		}
		return nil
	})
	return got
}

// Certs are PEM files in one folder: a CA, a server certificate for
// 127.0.0.1 and localhost and a client certificate, both signed by the CA.
type Certs struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	// Pool holds the CA, for clients verifying the server.
	Pool *x509.CertPool
	// Client is the client certificate, for tls.Config.Certificates.
	Client tls.Certificate
}

// WriteCerts writes fresh certificates into a t.TempDir().
func WriteCerts(t testing.TB) *Certs {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "receivertest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	c := &Certs{CA: filepath.Join(dir, "ca.pem"), Pool: x509.NewCertPool()}
	c.Pool.AddCert(ca)
	writePEM(t, c.CA, "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		cert, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		writePEM(t, cert, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
		return cert, keyFile
	}
	c.ServerCert, c.ServerKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	c.ClientCert, c.ClientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	if c.Client, err = tls.LoadX509KeyPair(c.ClientCert, c.ClientKey); err != nil {
		t.Fatal(err)
	}
	return c
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Eventually waits up to 10 s for f to return nil, failing with its last
// explanation.
func Eventually(t testing.TB, f func() error) {
	t.Helper()
	bustest.Eventually(t, 10*time.Second, 10*time.Millisecond, f)
}
