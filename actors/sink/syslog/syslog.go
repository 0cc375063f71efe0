// Package syslog is the syslog sink provider: it forwards events to a
// remote collector as RFC 5424 or RFC 3164 lines, over UDP, TCP (RFC 6587
// octet counting or newline framing), TLS, or RELP.
//
// Commit semantics follow what each transport can promise. udp, tcp and
// tls: Do buffers the framed line (Deferred) and End writes the buffer, so
// a transaction is committed once the operating system took its bytes; a
// transaction larger than 64 KiB is written as it grows and Do answers
// PreviousCommitted after each such write. The collector never
// acknowledges, so a collector that dies loses what was in flight (the
// limit of plain syslog). relp: Do sends the message (Deferred) and End
// waits until the collector acknowledged every message of the transaction
// ("rsp 200"); when the window of unacknowledged messages is full Do waits
// for them all and answers PreviousCommitted.
//
// Every write and every wait for an acknowledgement has a deadline, so a
// hung collector is a retryable error (the sink is suspended and retried),
// never a hang. After an error the connection is dropped and the next Begin
// connects again; Begin also notices a connection the collector closed
// while herald was idle and replaces it, so the first transaction after a
// collector restart does not go into a dead socket.
package syslog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
	"unicode/utf8"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/schemas"
)

// CodeTooLong is the dead-letter reason of an event whose line is longer
// than max_message_size (without truncate).
const CodeTooLong = "too_long"

// ErrTooLong is the error inside a too_long dead letter.
var ErrTooLong = errors.New("line longer than max_message_size")

// flushAt is the buffered size at which a transaction is written out
// before its End, bounding the memory a large batch takes.
const flushAt = 64 << 10

// farPast is a deadline that has passed: setting it makes blocked I/O
// return at once.
var farPast = time.Unix(1, 0)

// transport moves framed lines to the collector.
type transport interface {
	begin(ctx context.Context) error
	send(ctx context.Context, line []byte) (sink.Commit, error)
	end(ctx context.Context) error
	close(ctx context.Context) error
}

// Writer is the syslog provider.
type Writer struct {
	opts    Options
	f       Formatter
	limit   int
	escape  bool // newline framing: LF in a line becomes #012
	t       transport
	line    []byte
	escaped []byte
}

// New returns a Writer for opts (validated by the config); it connects at
// the first Begin. It fails when the TLS files cannot be read.
func New(opts Options) (*Writer, error) {
	w := &Writer{
		opts: opts,
		f: Formatter{
			RFC3164:   opts.Format == FormatRFC3164,
			Facility:  opts.Facility,
			Severity:  opts.Severity,
			IDElement: opts.IDElement,
			Hostname:  opts.hostname(),
		},
		limit: int(opts.MaxMessageSize),
	}
	d := &net.Dialer{Timeout: opts.DialTimeout.D(), KeepAlive: 30 * time.Second}
	tcpDial := func(ctx context.Context) (net.Conn, error) {
		c, err := d.DialContext(ctx, "tcp", opts.Address)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", opts.Address, err)
		}
		return c, nil
	}
	switch opts.Transport {
	case TransportUDP:
		w.limit = min(w.limit, maxUDPPayload)
		w.t = &datagram{addr: opts.Address, dialer: d, writeTimeout: opts.WriteTimeout.D()}
	case TransportTLS:
		cfg, err := tlsConfig(opts)
		if err != nil {
			return nil, err
		}
		td := &tls.Dialer{NetDialer: d, Config: cfg}
		dial := func(ctx context.Context) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout.D())
			defer cancel()
			c, err := td.DialContext(ctx, "tcp", opts.Address)
			if err != nil {
				return nil, fmt.Errorf("connect with tls to %s: %w", opts.Address, err)
			}
			return c, nil
		}
		w.escape = opts.Framing == FramingNewline
		w.t = &stream{addr: opts.Address, dial: dial, octet: !w.escape, writeTimeout: opts.WriteTimeout.D()}
	case TransportRELP:
		w.t = &relp{addr: opts.Address, dial: tcpDial, window: opts.Window,
			dialTimeout: opts.DialTimeout.D(), writeTimeout: opts.WriteTimeout.D(), ackTimeout: opts.AckTimeout.D()}
	default:
		w.escape = opts.Framing == FramingNewline
		w.t = &stream{addr: opts.Address, dial: tcpDial, octet: !w.escape, writeTimeout: opts.WriteTimeout.D()}
	}
	return w, nil
}

func tlsConfig(opts Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: opts.TLS.InsecureSkipVerify, ServerName: opts.TLS.ServerName}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(opts.Address)
		if err != nil {
			return nil, fmt.Errorf("address %q: %w", opts.Address, err)
		}
		cfg.ServerName = host
	}
	if opts.TLS.CAFile != "" {
		pem, err := os.ReadFile(opts.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s: no PEM certificate in it", opts.TLS.CAFile)
		}
		cfg.RootCAs = pool
	}
	if opts.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLS.CertFile, opts.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("read tls.cert_file and tls.key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Begin connects if there is no usable connection.
func (w *Writer) Begin(ctx context.Context) error { return w.t.begin(ctx) }

// Do formats ev and hands its line to the transport.
func (w *Writer) Do(ctx context.Context, ev *schemas.Event) (sink.Commit, error) {
	w.line = w.f.Append(w.line[:0], ev)
	line := w.line
	if w.escape {
		w.escaped = escapeNewlines(w.escaped[:0], line)
		line = w.escaped
	}
	if len(line) > w.limit {
		// The message text is the line's tail; cut it, never the header.
		minLen := len(line) - len(ev.Message)
		if !w.opts.Truncate || minLen > w.limit {
			return sink.Deferred, sink.Permanent(CodeTooLong, fmt.Errorf("event %s: %d bytes: %w", ev.Id, len(line), ErrTooLong))
		}
		line = cutUTF8(line, w.limit)
	}
	return w.t.send(ctx, line)
}

// End writes what is buffered (relp: waits for the acknowledgements).
func (w *Writer) End(ctx context.Context) error {
	err := w.t.end(ctx)
	if cap(w.line) > 4<<20 { // do not keep a huge buffer after one huge event
		w.line, w.escaped = nil, nil
	}
	return err
}

// Close drops the connection (relp: after a polite close). It is
// idempotent.
func (w *Writer) Close(ctx context.Context) error { return w.t.close(ctx) }

// escapeNewlines appends line to b with each LF written as "#012", the
// octal escape rsyslog uses for control characters it receives.
func escapeNewlines(b, line []byte) []byte {
	for _, c := range line {
		if c == '\n' {
			b = append(b, "#012"...)
		} else {
			b = append(b, c)
		}
	}
	return b
}

// cutUTF8 shortens line to at most n bytes without splitting a UTF-8
// sequence (bytes that were invalid to begin with are not its concern).
func cutUTF8(line []byte, n int) []byte {
	line = line[:n]
	for j := len(line) - 1; j >= 0 && j >= len(line)-utf8.UTFMax; j-- {
		c := line[j]
		if c < utf8.RuneSelf {
			return line
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(line[j:]) {
				return line[:j]
			}
			return line
		}
	}
	return line
}

// usable reports whether a connection kept from an earlier transaction
// can take the next one: the collector has not closed it. Bytes from the
// collector (a TLS session ticket, a close_notify; a plain collector sends
// nothing) are read and dropped, with a deadline so this never blocks.
func usable(c net.Conn) bool {
	closed, pending := peek(c)
	if closed {
		return false
	}
	if !pending {
		return true
	}
	var scratch [512]byte
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
	defer c.SetReadDeadline(time.Time{})
	for range 16 {
		_, err := c.Read(scratch[:])
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return true
		}
		if err != nil {
			return false
		}
	}
	return true
}

// deadline is now+d, or ctx's deadline when that is earlier.
func deadline(ctx context.Context, d time.Duration) time.Time {
	t := time.Now().Add(d)
	if cd, ok := ctx.Deadline(); ok && cd.Before(t) {
		return cd
	}
	return t
}

// watch makes c's blocked I/O return when ctx ends; call the returned
// function when the I/O is done.
func watch(ctx context.Context, c net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(farPast) })
}

// ioErr wraps err from I/O with addr, saying so when ctx ended it.
func ioErr(ctx context.Context, what, addr string, err error) error {
	cerr := ctx.Err()
	if d, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(d) {
		// The socket's deadline, which is ctx's, fired before ctx's timer.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil {
		return fmt.Errorf("%s %s: %w (%v)", what, addr, cerr, err)
	}
	return fmt.Errorf("%s %s: %w", what, addr, err)
}

// stream is the tcp and tls transport.
type stream struct {
	addr         string
	dial         func(ctx context.Context) (net.Conn, error)
	octet        bool
	writeTimeout time.Duration
	conn         net.Conn
	buf          []byte
}

func (s *stream) begin(ctx context.Context) error {
	s.buf = s.buf[:0]
	if s.conn != nil && !usable(s.conn) {
		s.drop()
	}
	if s.conn == nil {
		c, err := s.dial(ctx)
		if err != nil {
			return err
		}
		s.conn = c
	}
	return nil
}

func (s *stream) send(ctx context.Context, line []byte) (sink.Commit, error) {
	if s.conn == nil {
		return sink.Deferred, fmt.Errorf("send to %s: not connected", s.addr)
	}
	c := sink.Deferred
	if len(s.buf) >= flushAt {
		if err := s.flush(ctx); err != nil {
			return sink.Deferred, err
		}
		c = sink.PreviousCommitted
	}
	if s.octet {
		s.buf = appendInt(s.buf, len(line))
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, line...)
	} else {
		s.buf = append(s.buf, line...)
		s.buf = append(s.buf, '\n')
	}
	return c, nil
}

func (s *stream) end(ctx context.Context) error {
	if s.conn == nil {
		if len(s.buf) == 0 {
			return nil
		}
		return fmt.Errorf("send to %s: not connected", s.addr)
	}
	err := s.flush(ctx)
	if cap(s.buf) > 4<<20 {
		s.buf = nil
	}
	return err
}

func (s *stream) flush(ctx context.Context) error {
	if len(s.buf) == 0 {
		return nil
	}
	_ = s.conn.SetWriteDeadline(deadline(ctx, s.writeTimeout))
	stop := watch(ctx, s.conn)
	_, err := s.conn.Write(s.buf)
	stop()
	s.buf = s.buf[:0]
	if err != nil {
		// Part of a frame may have gone: the stream is out of step.
		s.drop()
		return ioErr(ctx, "write to", s.addr, err)
	}
	return nil
}

func (s *stream) drop() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

func (s *stream) close(ctx context.Context) error {
	if tc, ok := s.conn.(*tls.Conn); ok && ctx.Err() != nil {
		// tls.Conn.Close first sends close_notify, waiting up to 5 s for a
		// collector that may not read: not when ctx has ended.
		_ = tc.NetConn().Close()
		s.conn = nil
	}
	s.drop()
	return nil
}

// datagram is the udp transport: one line per datagram.
type datagram struct {
	addr         string
	dialer       *net.Dialer
	writeTimeout time.Duration
	conn         net.Conn
	buf          []byte
	ends         []int // where each buffered datagram ends in buf
}

func (d *datagram) begin(ctx context.Context) error {
	d.buf, d.ends = d.buf[:0], d.ends[:0]
	if d.conn == nil {
		c, err := d.dialer.DialContext(ctx, "udp", d.addr)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", d.addr, err)
		}
		d.conn = c
	}
	return nil
}

func (d *datagram) send(ctx context.Context, line []byte) (sink.Commit, error) {
	if d.conn == nil {
		return sink.Deferred, fmt.Errorf("send to %s: not connected", d.addr)
	}
	c := sink.Deferred
	if len(d.buf) >= flushAt {
		if err := d.flush(ctx); err != nil {
			return sink.Deferred, err
		}
		c = sink.PreviousCommitted
	}
	d.buf = append(d.buf, line...)
	d.ends = append(d.ends, len(d.buf))
	return c, nil
}

func (d *datagram) end(ctx context.Context) error {
	if d.conn == nil {
		if len(d.ends) == 0 {
			return nil
		}
		return fmt.Errorf("send to %s: not connected", d.addr)
	}
	return d.flush(ctx)
}

func (d *datagram) flush(ctx context.Context) error {
	_ = d.conn.SetWriteDeadline(deadline(ctx, d.writeTimeout))
	stop := watch(ctx, d.conn)
	defer stop()
	start := 0
	for _, end := range d.ends {
		if _, err := d.conn.Write(d.buf[start:end]); err != nil {
			// A refused datagram (nobody listening) is reported on a
			// later write; either way the socket is replaced.
			_ = d.conn.Close()
			d.conn = nil
			d.buf, d.ends = d.buf[:0], d.ends[:0]
			return ioErr(ctx, "send to", d.addr, err)
		}
		start = end
	}
	d.buf, d.ends = d.buf[:0], d.ends[:0]
	return nil
}

func (d *datagram) close(ctx context.Context) error {
	if d.conn != nil {
		_ = d.conn.Close()
		d.conn = nil
	}
	return nil
}

func appendInt(b []byte, n int) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

var (
	_ sink.Provider = (*Writer)(nil)
	_ transport     = (*stream)(nil)
	_ transport     = (*datagram)(nil)
	_ transport     = (*relp)(nil)
)
