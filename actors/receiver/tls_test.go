package receiver_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/actors/receiver/receivertest"
	"github.com/herald-router/herald/config"
)

func TestTLSClientCertificatesAreCheckedAsConfigured(t *testing.T) {
	certs := receivertest.WriteCerts(t)
	for _, tc := range []struct {
		name       string
		clientAuth string
		withCert   bool
		served     bool
	}{
		{"without client authentication anyone is served", "none", false, true},
		{"verify serves a client without a certificate", "verify", false, true},
		{"verify serves a client with a good certificate", "verify", true, true},
		{"require refuses a client without a certificate", "require", false, false},
		{"require serves a client with a good certificate", "require", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := receivertest.New(t)
			s := startSyslog(t, r, func(o *receiver.SyslogOptions) {
				o.TLS = "127.0.0.1:0"
				o.TLSOptions.CertFile, o.TLSOptions.KeyFile = certs.ServerCert, certs.ServerKey
				o.TLSOptions.ClientAuth = tc.clientAuth
				if tc.clientAuth != "none" {
					o.TLSOptions.ClientCAFile = certs.CA
				}
			})
			conf := &tls.Config{RootCAs: certs.Pool, ServerName: "127.0.0.1"}
			if tc.withCert {
				conf.Certificates = []tls.Certificate{certs.Client}
			}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.TLSAddress().String(), conf)
			if err != nil {
				t.Fatal(err)
			}
			// TLS 1.3 reports a refused client certificate on the first read.
			_, _ = fmt.Fprintf(c, "12 <13>over tls")
			_ = c.CloseWrite()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, rerr := c.Read(make([]byte, 1))
			_ = c.Close()
			if tc.served {
				if got := r.WaitRecords(t, 1); got[0] != "<13>over tls" {
					t.Errorf("record = %q (read: %v)", got[0], rerr)
				}
				return
			}
			if n := r.Rejected("tls_handshake"); n != 1 {
				t.Errorf("rejected tls_handshake = %v, want 1 (read: %v)", n, rerr)
			}
			if n := len(r.Records(t)); n != 0 {
				t.Errorf("%d records from a refused client", n)
			}
		})
	}
}

func TestAClientStallingInTheTLSHandshakeIsDroppedAndFreesItsSlot(t *testing.T) {
	certs := receivertest.WriteCerts(t)
	r := receivertest.New(t)
	s := startSyslog(t, r, func(o *receiver.SyslogOptions) {
		o.TLS, o.MaxConnections = "127.0.0.1:0", 1
		o.TLSOptions.CertFile, o.TLSOptions.KeyFile = certs.ServerCert, certs.ServerKey
		o.TLSOptions.HandshakeTimeout = config.Duration(200 * time.Millisecond)
	})
	addr := s.TLSAddress().String()
	// Connects and sends nothing: the handshake never starts.
	staller := dial(t, "tcp", addr)
	_ = staller.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := staller.Read(make([]byte, 1)); err == nil {
		t.Fatal("a stalled handshake was answered")
	}
	// The server counts the rejection as it closes the connection; the
	// client may see the close first.
	for deadline := time.Now().Add(5 * time.Second); r.Rejected("tls_handshake") != 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := r.Rejected("tls_handshake"); n != 1 {
		t.Errorf("rejected tls_handshake = %v, want 1", n)
	}
	// Its slot (the only one) is free again.
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: certs.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fmt.Fprintf(c, "<13>after the staller\n")
	_ = c.Close()
	if got := r.WaitRecords(t, 1); got[0] != "<13>after the staller" {
		t.Errorf("record = %q", got[0])
	}
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(o *receiver.SyslogOptions)
		field string
	}{
		{"a receiver needs a listener", func(o *receiver.SyslogOptions) {}, "tcp"},
		{"tls needs a certificate", func(o *receiver.SyslogOptions) { o.TLS = ":6514"; o.TLSOptions.KeyFile = "k" }, "tls_options.cert_file"},
		{"tls needs a key", func(o *receiver.SyslogOptions) { o.TLS = ":6514"; o.TLSOptions.CertFile = "c" }, "tls_options.key_file"},
		{"client verification needs a CA", func(o *receiver.SyslogOptions) { o.TCP = ":514"; o.TLSOptions.ClientAuth = "require" }, "tls_options.client_ca_file"},
		{"client_auth has three values", func(o *receiver.SyslogOptions) { o.TCP = ":514"; o.TLSOptions.ClientAuth = "maybe" }, "tls_options.client_auth"},
		{"a handshake needs time", func(o *receiver.SyslogOptions) { o.TCP = ":514"; o.TLSOptions.HandshakeTimeout = 0 }, "tls_options.handshake_timeout"},
		{"one path holds one socket", func(o *receiver.SyslogOptions) { o.Unix, o.UnixStream = "log", "log" }, "unix_stream"},
		{"a tiny maximum is refused", func(o *receiver.SyslogOptions) { o.TCP = ":514"; o.MaxMessageSize = 10 }, "max_message_size"},
		{"at least one connection", func(o *receiver.SyslogOptions) { o.TCP = ":514"; o.MaxConnections = 0 }, "max_connections"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := receiver.DefaultSyslogOptions()
			tc.edit(o)
			errs := o.Validate()
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Errorf("errors = %+v, want one for %s", errs, tc.field)
			}
		})
	}
}
