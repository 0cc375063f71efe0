package syslog

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/config"
)

// Option keys, for error messages.
const (
	fieldAddress        = "address"
	fieldTransport      = "transport"
	fieldFraming        = "framing"
	fieldFormat         = "format"
	fieldFacility       = "facility"
	fieldSeverity       = "severity"
	fieldMaxMessageSize = "max_message_size"
	fieldWindow         = "window"
	fieldIDElement      = "id_element"
	fieldTLS            = "tls"
)

// Transports, framings and formats.
const (
	TransportUDP  = "udp"
	TransportTCP  = "tcp"
	TransportTLS  = "tls"
	TransportRELP = "relp"

	FramingOctet   = "octet"
	FramingNewline = "newline"

	FormatRFC5424 = "rfc5424"
	FormatRFC3164 = "rfc3164"
)

// maxUDPPayload is the largest UDP datagram over IPv4 (65535 - 8 - 20).
const maxUDPPayload = 65507

// Options are the keys of a sink of type syslog.
type Options struct {
	// Address of the collector, host:port. Required.
	Address string `yaml:"address"`
	// Transport is udp, tcp, tls or relp. Default tcp. With udp, tcp and tls
	// an event is committed once the operating system took its bytes: the
	// collector does not acknowledge, so what is in flight when it dies is
	// lost. relp (the Reliable Event Logging Protocol, rsyslog's imrelp)
	// commits an event only when the collector acknowledged it.
	Transport string `yaml:"transport"`
	// Framing of tcp and tls (RFC 6587): octet (octet counting, "LEN SP
	// LINE", which carries newlines in messages) or newline (each line ends
	// in LF; a newline inside an event becomes the four characters "#012",
	// which is how rsyslog itself escapes control characters it receives).
	// Default octet. udp sends one line per datagram and relp its own
	// frames, so neither uses this key.
	Framing string `yaml:"framing"`
	// Format of the lines: rfc5424 or rfc3164 (the BSD format: no year, no
	// time zone, no MSGID, no structured data and no event id; its time is
	// in herald's local zone). Default rfc5424.
	Format string `yaml:"format"`
	// Facility (0-23) of an event without an integer field "facility".
	// Default 1 (user).
	Facility int `yaml:"facility"`
	// Severity (0-7) of an event without an integer field "severity".
	// Default 5 (notice).
	Severity int `yaml:"severity"`
	// Hostname written for an event without a host. Default "": the name of
	// the machine herald runs on.
	Hostname string `yaml:"hostname"`
	// IDElement is the SD-ID of the structured-data element that carries
	// herald's event id in rfc5424 lines, `[herald@32473 id="..."]`, so a
	// collector can drop the repeats at-least-once delivery may bring.
	// 32473 is the private enterprise number reserved for documentation
	// (RFC 5612); put your own here. "" leaves the element out. Default
	// herald@32473.
	IDElement string `yaml:"id_element"`
	// MaxMessageSize is the largest line sent, framing excluded. A longer
	// event is dead-lettered with reason too_long, or cut to this size with
	// truncate. With udp at most 65507 bytes are sent in any case (the
	// largest UDP datagram). Keep it at or below the collector's limit
	// (rsyslog's maxMessageSize, 8k by default, which truncates). Default
	// 64KiB.
	MaxMessageSize config.Size `yaml:"max_message_size"`
	// Truncate cuts the message text of a line longer than
	// max_message_size instead of dead-lettering the event. Default false.
	Truncate bool `yaml:"truncate"`
	// DialTimeout bounds connecting, TLS handshake and the RELP open
	// included. Default 5s.
	DialTimeout config.Duration `yaml:"dial_timeout"`
	// WriteTimeout bounds each write to the collector; a collector that
	// stops reading makes the write fail after it and the sink is
	// suspended and retried. Default 10s.
	WriteTimeout config.Duration `yaml:"write_timeout"`
	// AckTimeout bounds the wait for each RELP acknowledgement (relp only).
	// Default 10s.
	AckTimeout config.Duration `yaml:"ack_timeout"`
	// Window is how many RELP messages may await their acknowledgement at
	// once (relp only). When it is full herald waits for all of them, and
	// what they carried is committed. Default 128.
	Window int `yaml:"window"`
	// TLS settings, for transport tls.
	TLS TLSOptions `yaml:"tls"`
}

// TLSOptions configure the tls transport.
type TLSOptions struct {
	// CAFile is a PEM file of the certificate authorities that sign the
	// collector's certificate, relative to the config file's folder.
	// Default "": the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are herald's client certificate and key (PEM),
	// for collectors that authenticate their clients. Both or neither.
	// Default "": no client certificate.
	CertFile string `yaml:"cert_file"`
	// KeyFile: see cert_file. Default "".
	KeyFile string `yaml:"key_file"`
	// ServerName is the name the collector's certificate must carry.
	// Default "": the host part of address.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate of the collector: the
	// traffic is encrypted but the peer is not authenticated. For tests
	// only. Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// DefaultOptions returns the defaults a config's keys override.
func DefaultOptions() *Options {
	return &Options{
		Transport:      TransportTCP,
		Framing:        FramingOctet,
		Format:         FormatRFC5424,
		Facility:       1,
		Severity:       5,
		IDElement:      "herald@32473",
		MaxMessageSize: 64 << 10,
		DialTimeout:    config.Duration(5 * time.Second),
		WriteTimeout:   config.Duration(10 * time.Second),
		AckTimeout:     config.Duration(10 * time.Second),
		Window:         128,
	}
}

// Validate reports bad option values; config.Load calls it.
func (o *Options) Validate() []config.FieldError {
	var errs []config.FieldError
	bad := func(field, format string, a ...any) {
		errs = append(errs, config.FieldError{Field: field, Reason: fmt.Sprintf(format, a...)})
	}
	if o.Address == "" {
		bad(fieldAddress, "required: host:port of the collector")
	} else if _, port, err := net.SplitHostPort(o.Address); err != nil || port == "" {
		bad(fieldAddress, "want host:port, got %q", o.Address)
	}
	switch o.Transport {
	case TransportUDP, TransportTCP, TransportTLS, TransportRELP:
	default:
		bad(fieldTransport, "want udp, tcp, tls or relp, got %q", o.Transport)
	}
	if o.Framing != FramingOctet && o.Framing != FramingNewline {
		bad(fieldFraming, "want octet or newline, got %q", o.Framing)
	}
	if o.Format != FormatRFC5424 && o.Format != FormatRFC3164 {
		bad(fieldFormat, "want rfc5424 or rfc3164, got %q", o.Format)
	}
	if o.Facility < 0 || o.Facility > 23 {
		bad(fieldFacility, "want 0 to 23, got %d", o.Facility)
	}
	if o.Severity < 0 || o.Severity > 7 {
		bad(fieldSeverity, "want 0 to 7, got %d", o.Severity)
	}
	if o.MaxMessageSize < 480 {
		// RFC 5424 section 6.1: receivers must take at least 480 octets.
		bad(fieldMaxMessageSize, "want at least 480 bytes, got %d", o.MaxMessageSize)
	}
	if o.Window < 1 {
		bad(fieldWindow, "want at least 1, got %d", o.Window)
	}
	for i := 0; i < len(o.IDElement); i++ {
		if c := o.IDElement[i]; c < 33 || c > 126 || c == '=' || c == ']' || c == '"' || len(o.IDElement) > maxSDName {
			bad(fieldIDElement, "want an SD-ID of at most 32 printable ASCII characters without = ] \" and space, got %q", o.IDElement)
			break
		}
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		bad(fieldTLS+".cert_file", "cert_file and key_file go together")
	}
	for _, d := range []struct {
		field string
		v     config.Duration
	}{{"dial_timeout", o.DialTimeout}, {"write_timeout", o.WriteTimeout}, {"ack_timeout", o.AckTimeout}} {
		if d.v <= 0 {
			bad(d.field, "want a positive duration, got %s", d.v.D())
		}
	}
	return errs
}

// Register adds the syslog provider to r.
func Register(r *sink.Registry) {
	r.MustAdd("syslog", sink.Kind{
		Options: func() any { return DefaultOptions() },
		New: func(env sink.Env, o any) (sink.Provider, error) {
			opts := *o.(*Options)
			for _, p := range []*string{&opts.TLS.CAFile, &opts.TLS.CertFile, &opts.TLS.KeyFile} {
				if *p != "" {
					*p = env.Config.Abs(*p)
				}
			}
			return New(opts)
		},
	})
}

// hostname is the stand-in for events without a host.
func (o *Options) hostname() string {
	if o.Hostname != "" {
		return o.Hostname
	}
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}
