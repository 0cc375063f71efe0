package receiver

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/herald-router/herald/config"
)

// SyslogOptions are the keys of a receiver of type syslog. Each address key
// opens one listener; give at least one. Stream listeners (tcp, tls,
// unix_stream) frame records per RFC 6587, detected per connection: a
// connection whose first frame starts with a number and a space is read as
// octet counted ("LEN SP MSG"), any other as one record per line.
type SyslogOptions struct {
	// TCP listen address (host:port). Empty disables plain TCP. Default none.
	TCP string `yaml:"tcp"`
	// UDP listen address, one record per datagram. Empty disables UDP.
	// Default none.
	UDP string `yaml:"udp"`
	// TLS listen address: syslog over TLS (RFC 5425), framed as TCP.
	// Needs tls_options.cert_file and key_file. Default none.
	TLS string `yaml:"tls"`
	// Unix is the path of a unix datagram socket, as /dev/log: one record
	// per datagram. A stale socket file there is replaced; the socket is
	// writable by every local user, as /dev/log is. Relative paths are
	// relative to the config file. Default none.
	Unix string `yaml:"unix"`
	// UnixStream is the path of a unix stream socket, framed as TCP.
	// Default none.
	UnixStream string `yaml:"unix_stream"`
	// TLSOptions are the certificate, key and client verification of the
	// tls listener.
	TLSOptions TLSOptions `yaml:"tls_options"`
	// NULTerminator lets a NUL byte end a record in newline framing, as
	// some senders end theirs with NUL instead of LF. Default false: NUL
	// is data, kept in the record.
	NULTerminator bool `yaml:"nul_terminator"`
	// MaxMessageSize: longer records are rejected and counted (too_long).
	// Default 64KiB.
	MaxMessageSize config.Size `yaml:"max_message_size"`
	// MaxConnections open at once on the stream listeners (tcp, tls and
	// unix_stream together); more are refused and counted
	// (max_connections). Default 1024.
	MaxConnections int `yaml:"max_connections"`
	// TargetMask given to events from this receiver. Default 4 (log).
	TargetMask uint64 `yaml:"target_mask"`
	// Multiline joins the lines of each stream connection (tcp, tls,
	// unix_stream) into records, such as stack traces. Default off.
	Multiline MultilineOptions `yaml:"multiline"`
}

// DefaultSyslogOptions returns a syslog receiver's defaults.
func DefaultSyslogOptions() *SyslogOptions {
	return &SyslogOptions{
		MaxMessageSize: 64 << 10, MaxConnections: 1024, TargetMask: 4,
		TLSOptions: DefaultTLSOptions(), Multiline: DefaultMultilineOptions(),
	}
}

// Addresses lists the sockets for config's duplicate check.
func (o *SyslogOptions) Addresses() []config.Address {
	return []config.Address{
		{Field: "tcp", Network: "tcp", Addr: o.TCP},
		{Field: "udp", Network: "udp", Addr: o.UDP},
		{Field: "tls", Network: "tcp", Addr: o.TLS},
		{Field: "unix", Network: "unix", Addr: o.Unix},
		{Field: "unix_stream", Network: "unix", Addr: o.UnixStream},
	}
}

// Mask is the target mask records get.
func (o *SyslogOptions) Mask() uint64 { return o.TargetMask }

// Validate checks the values (addresses are checked by config).
func (o *SyslogOptions) Validate() []config.FieldError {
	var errs []config.FieldError
	if o.TCP == "" && o.UDP == "" && o.TLS == "" && o.Unix == "" && o.UnixStream == "" {
		errs = append(errs, config.FieldError{Field: "tcp", Reason: "give at least one of tcp, udp, tls, unix and unix_stream"})
	}
	if o.MaxMessageSize < 64 || o.MaxMessageSize > 16<<20 {
		errs = append(errs, config.FieldError{Field: "max_message_size", Reason: fmt.Sprintf("want 64B to 16MiB, got %d", o.MaxMessageSize)})
	}
	if o.MaxConnections < 1 {
		errs = append(errs, config.FieldError{Field: "max_connections", Reason: fmt.Sprintf("want at least 1, got %d", o.MaxConnections)})
	}
	if o.Unix != "" && o.Unix == o.UnixStream {
		errs = append(errs, config.FieldError{Field: "unix_stream", Reason: "must differ from unix: one path holds one socket"})
	}
	errs = append(errs, o.TLSOptions.Check("tls_options.", o.TLS != "")...)
	errs = append(errs, o.Multiline.check()...)
	return errs
}

// TLSOptions configure a TLS listener: its certificate and whether and how
// clients must show theirs.
type TLSOptions struct {
	// CertFile is the PEM certificate (chain) the listener presents.
	// Required with TLS. Default none.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile. Required with TLS.
	// Default none.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile is a PEM bundle of the CAs that client certificates
	// must chain to; required unless client_auth is none. Default none.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth: none (no client certificate asked for), verify (a client
	// certificate, if given, must chain to client_ca_file) or require (a
	// client without such a certificate is refused). Default none.
	ClientAuth string `yaml:"client_auth"`
	// HandshakeTimeout bounds the TLS handshake: a client that stalls in it
	// is disconnected, counted (tls_handshake) and its connection slot
	// freed. Default 10s.
	HandshakeTimeout config.Duration `yaml:"handshake_timeout"`
}

// DefaultTLSOptions returns the TLS defaults.
func DefaultTLSOptions() TLSOptions {
	return TLSOptions{ClientAuth: "none", HandshakeTimeout: config.Duration(10 * time.Second)}
}

// Check checks o for a receiver's Validate; used says whether a TLS
// listener needs it. prefix is the key path of o relative to the receiver.
func (o *TLSOptions) Check(prefix string, used bool) []config.FieldError {
	var errs []config.FieldError
	if used && o.CertFile == "" {
		errs = append(errs, config.FieldError{Field: prefix + "cert_file", Reason: "required for a TLS listener"})
	}
	if used && o.KeyFile == "" {
		errs = append(errs, config.FieldError{Field: prefix + "key_file", Reason: "required for a TLS listener"})
	}
	switch o.ClientAuth {
	case "none":
	case "verify", "require":
		if o.ClientCAFile == "" {
			errs = append(errs, config.FieldError{Field: prefix + "client_ca_file", Reason: "required with client_auth " + o.ClientAuth})
		}
	default:
		errs = append(errs, config.FieldError{Field: prefix + "client_auth", Reason: fmt.Sprintf("want none, verify or require, got %q", o.ClientAuth)})
	}
	if o.HandshakeTimeout.D() <= 0 || o.HandshakeTimeout.D() > 5*time.Minute {
		errs = append(errs, config.FieldError{Field: prefix + "handshake_timeout", Reason: fmt.Sprintf("want more than 0 and at most 5m, got %s", o.HandshakeTimeout.D())})
	}
	return errs
}

// ServerConfig loads the files (resolved with abs, which may be nil) into a
// TLS server configuration.
func (o *TLSOptions) ServerConfig(abs func(string) string) (*tls.Config, error) {
	if abs == nil {
		abs = func(p string) string { return p }
	}
	cert, err := tls.LoadX509KeyPair(abs(o.CertFile), abs(o.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("tls certificate %s and key %s: %w", o.CertFile, o.KeyFile, err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.ClientAuth == "none" || o.ClientAuth == "" {
		return conf, nil
	}
	pem, err := os.ReadFile(abs(o.ClientCAFile))
	if err != nil {
		return nil, fmt.Errorf("tls client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls client CA file %s: no PEM certificate in it", o.ClientCAFile)
	}
	conf.ClientCAs = pool
	conf.ClientAuth = tls.VerifyClientCertIfGiven
	if o.ClientAuth == "require" {
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}
