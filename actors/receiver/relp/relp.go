// Package relp is the receiver of RELP, the Reliable Event Logging Protocol
// rsyslog's omrelp speaks: the server side of a session whose every record
// is acknowledged to the sender only once JetStream has stored it, so a
// sender that keeps what was not acknowledged (omrelp does, in its action
// queue) loses nothing when herald dies.
//
// A session, as librelp's relp.html specifies it: every frame is
//
//	TXNR SP COMMAND SP DATALEN [SP DATA] LF
//
// The client opens it ("open" with its offers), sends "syslog" commands
// whose data is one record, and closes it ("close"); the server answers
// every command with "rsp" and the same TXNR, in order, the data starting
// with a status (200 for success), and says "serverclose" (TXNR 0) before it
// goes away. The client may send up to its window of commands before it
// waits for their responses.
//
// Acknowledgement. A syslog frame is answered "200 OK" only after the
// Batcher reports its batch stored (AddConfirmed). Responses keep the order
// of the commands, so one slow batch holds back the answers behind it (they
// are stored in order anyway). A batch that could not be stored ends the
// session without an answer: the sender sends it again on a new session.
// A sender that vanishes mid-window may have had some of its unanswered
// records stored; it sends them again, so they can arrive twice (never
// zero times). The server reads at most `window` commands ahead of its
// answers; beyond that the sender waits, which is RELP's back-pressure.
package relp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

// Options are the keys of a receiver of type relp.
type Options struct {
	// Listen is the address of plain RELP (host:port). Default none.
	Listen string `yaml:"listen"`
	// TLS is the address of RELP over TLS; needs tls_options.cert_file and
	// key_file. Default none.
	TLS string `yaml:"tls"`
	// TLSOptions are the certificate, key and client verification of the
	// tls listener.
	TLSOptions receiver.TLSOptions `yaml:"tls_options"`
	// MaxMessageSize: longer records are dropped and counted (too_long);
	// the frame is still acknowledged, or the sender would resend it for
	// ever. Default 64KiB.
	MaxMessageSize config.Size `yaml:"max_message_size"`
	// MaxConnections open at once (both listeners); more are refused and
	// counted (max_connections). Default 1024.
	MaxConnections int `yaml:"max_connections"`
	// Window is how many commands of one session are read ahead of their
	// answers; a sender with a larger window waits. Default 1024. Give
	// omrelp a windowSize above its action's batch size too (such as
	// windowSize="1024"): librelp corks its socket while it sends a batch,
	// and with its default window of 128 it waits for answers with frames
	// still corked, which the kernel sends only after 200 ms (about 640
	// records/s, whatever the RELP server).
	Window int `yaml:"window"`
	// TargetMask given to events from this receiver. Default 4 (log).
	TargetMask uint64 `yaml:"target_mask"`
}

// DefaultOptions returns a relp receiver's defaults.
func DefaultOptions() *Options {
	return &Options{MaxMessageSize: 64 << 10, MaxConnections: 1024, Window: 1024, TargetMask: 4,
		TLSOptions: receiver.DefaultTLSOptions()}
}

// Addresses lists the sockets for config's duplicate check.
func (o *Options) Addresses() []config.Address {
	return []config.Address{{Field: "listen", Network: "tcp", Addr: o.Listen}, {Field: "tls", Network: "tcp", Addr: o.TLS}}
}

// Mask is the target mask records get.
func (o *Options) Mask() uint64 { return o.TargetMask }

// Validate checks the values (addresses are checked by config).
func (o *Options) Validate() []config.FieldError {
	var errs []config.FieldError
	if o.Listen == "" && o.TLS == "" {
		errs = append(errs, config.FieldError{Field: "listen", Reason: "give listen, tls or both"})
	}
	if o.MaxMessageSize < 64 || o.MaxMessageSize > 16<<20 {
		errs = append(errs, config.FieldError{Field: "max_message_size", Reason: fmt.Sprintf("want 64B to 16MiB, got %d", o.MaxMessageSize)})
	}
	if o.MaxConnections < 1 {
		errs = append(errs, config.FieldError{Field: "max_connections", Reason: fmt.Sprintf("want at least 1, got %d", o.MaxConnections)})
	}
	if o.Window < 1 || o.Window > 65536 {
		errs = append(errs, config.FieldError{Field: "window", Reason: fmt.Sprintf("want 1 to 65536, got %d", o.Window)})
	}
	errs = append(errs, o.TLSOptions.Check("tls_options.", o.TLS != "")...)
	return errs
}

// Register adds the relp receiver kind to r.
func Register(r *receiver.Registry) {
	r.MustAdd("relp", receiver.Kind{
		Options: func() any { return DefaultOptions() },
		New: func(env receiver.Env, o any) (receiver.Listener, error) {
			return New(env, o.(*Options))
		},
	})
}

// Server is a RELP receiver.
type Server struct {
	env      receiver.Env
	opts     Options
	tlsConf  *tls.Config
	streams  *receiver.StreamServer
	plainLn  net.Listener
	tlsLn    net.Listener
	draining atomic.Bool
}

// New builds a RELP receiver; it loads the TLS files, so a missing
// certificate fails here, before anything listens.
func New(env receiver.Env, o *Options) (*Server, error) {
	s := &Server{env: env, opts: *o}
	if o.TLS != "" {
		var abs func(string) string
		if env.Config != nil {
			abs = env.Config.Abs
		}
		conf, err := o.TLSOptions.ServerConfig(abs)
		if err != nil {
			return nil, err
		}
		s.tlsConf = conf
	}
	s.streams = &receiver.StreamServer{Name: env.Name, MaxConnections: o.MaxConnections, Metrics: env.Metrics,
		Connections: env.Connections, Log: env.Log}
	return s, nil
}

// Listen binds the listeners; on failure none stays open.
func (s *Server) Listen() error {
	var err error
	if s.opts.Listen != "" {
		if s.plainLn, err = net.Listen("tcp", s.opts.Listen); err != nil {
			return fmt.Errorf("receiver %s: listen relp %s: %w", s.env.Name, s.opts.Listen, err)
		}
	}
	if s.opts.TLS != "" {
		if s.tlsLn, err = net.Listen("tcp", s.opts.TLS); err != nil {
			if s.plainLn != nil {
				_ = s.plainLn.Close()
			}
			return fmt.Errorf("receiver %s: listen relp tls %s: %w", s.env.Name, s.opts.TLS, err)
		}
	}
	return nil
}

// Addr is the bound plain address (useful with port 0), nil without.
func (s *Server) Addr() net.Addr {
	if s.plainLn == nil {
		return nil
	}
	return s.plainLn.Addr()
}

// TLSAddr is the bound TLS address, nil without.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// Serve starts accepting sessions.
func (s *Server) Serve() {
	if s.plainLn != nil {
		s.streams.Serve(s.plainLn, nil, 0, s.session)
	}
	if s.tlsLn != nil {
		s.streams.Serve(s.tlsLn, s.tlsConf, s.opts.TLSOptions.HandshakeTimeout.D(), s.session)
	}
}

// drainGrace is how long sessions may still send commands once Shutdown
// began; their answers follow as the records are stored.
const drainGrace = 300 * time.Millisecond

// Shutdown stops accepting, lets sessions deliver what they already sent,
// answers every stored record, says serverclose and waits, bounded by ctx.
func (s *Server) Shutdown(ctx context.Context) {
	s.draining.Store(true)
	s.streams.Shutdown(ctx, drainGrace)
}

// Protocol limits and answers.
const (
	maxTxnr      = 999_999_999
	offers       = "200 OK\nrelp_version=0\nrelp_software=herald\ncommands=syslog"
	statusOK     = "200 OK"
	maxCommand   = 32
	maxOpenBytes = 64 << 10 // data of commands other than syslog
)

// errRELP marks a session that broke the protocol.
var errRELP = errors.New("relp protocol")

// answer is one response owed, in command order. stored is nil for an
// answer known at once; otherwise the batcher's verdict comes on it.
type answer struct {
	txnr   int
	text   string
	stored chan error
	last   bool // the client's close: the session ends after this answer
}

func (s *Server) session(c net.Conn, peer string) {
	queue := make(chan answer, s.opts.Window)
	written := make(chan bool, 1) // true: the session may say serverclose
	go func() { written <- s.answer(c, peer, queue) }()
	closed := s.read(c, peer, queue)
	close(queue)
	if <-written && !closed && s.draining.Load() {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, "0 serverclose 0\n")
	}
}

// read takes commands until the client closes the session (true) or the
// connection ends or breaks (false).
func (s *Server) read(c net.Conn, peer string, queue chan<- answer) (closedByClient bool) {
	r := bufio.NewReaderSize(c, 64<<10)
	var scratch []byte
	open := false
	for {
		txnr, cmd, size, err := readHeader(r)
		if err == nil {
			switch {
			case cmd == "syslog" && size > int(s.opts.MaxMessageSize):
				_, err = r.Discard(size)
				if err == nil {
					err = expectLF(r, size)
				}
				if err == nil {
					s.env.Metrics.Rejected(receiver.RejectTooLong, 1)
					s.env.Log.Warn("relp record over max_message_size dropped", "receiver", s.env.Name, "peer", peer, "bytes", size)
					queue <- answer{txnr: txnr, text: statusOK}
					continue
				}
			case cmd != "syslog" && size > maxOpenBytes:
				err = fmt.Errorf("%s command of %d bytes: %w", cmd, size, errRELP)
			default:
				if cap(scratch) < size+1 {
					scratch = make([]byte, size+1)
				}
				scratch = scratch[:size]
				if _, err = io.ReadFull(r, scratch); err == nil {
					err = expectLF(r, size)
				}
			}
		}
		if err != nil {
			s.ended(peer, err)
			return false
		}
		data := scratch
		switch {
		case cmd == "open":
			open = true
			queue <- answer{txnr: txnr, text: offers}
		case !open:
			s.ended(peer, fmt.Errorf("%s before open: %w", cmd, errRELP))
			return false
		case cmd == "syslog":
			s.record(data, peer, txnr, queue)
		case cmd == "close":
			queue <- answer{txnr: txnr, text: statusOK, last: true}
			return true
		default:
			queue <- answer{txnr: txnr, text: "500 command not supported"}
		}
	}
}

func (s *Server) record(data []byte, peer string, txnr int, queue chan<- answer) {
	if n := len(data); n > 0 && data[n-1] == '\n' {
		data = data[:n-1]
	}
	if len(data) == 0 {
		s.env.Metrics.Rejected(receiver.RejectEmpty, 1)
		queue <- answer{txnr: txnr, text: statusOK}
		return
	}
	a := answer{txnr: txnr, text: statusOK, stored: make(chan error, 1)}
	ev := &schemas.Event{
		Raw:              append([]byte(nil), data...),
		Source:           s.env.Name,
		Peer:             peer,
		ReceivedUnixNano: time.Now().UnixNano(),
		TargetMask:       s.opts.TargetMask,
	}
	s.env.Metrics.Received.Inc()
	// Queue the answer first: the window must hold before more is read.
	queue <- a
	if !s.env.Batcher.AddConfirmed(ev, func(err error) { a.stored <- err }) {
		s.env.Metrics.Rejected("shutting_down", 1)
		a.stored <- errors.New("receiver shutting down")
	}
}

func (s *Server) ended(peer string, err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		s.env.Log.Debug("relp session ended without close", "receiver", s.env.Name, "peer", peer)
	case errors.Is(err, os.ErrDeadlineExceeded):
	case errors.Is(err, errRELP), errors.Is(err, io.ErrUnexpectedEOF):
		s.env.Metrics.Rejected(receiver.RejectBadFrame, 1)
		s.env.Log.Warn("relp session closed: bad frame; records before it were kept", "receiver", s.env.Name, "peer", peer, "err", err)
	default:
		s.env.Log.Debug("relp session ended", "receiver", s.env.Name, "peer", peer, "err", err)
	}
}

// answer writes the responses in order, each once its record is stored,
// until queue is closed. It reports whether the session is still sound
// (every answer written).
func (s *Server) answer(c net.Conn, peer string, queue <-chan answer) bool {
	w := bufio.NewWriterSize(c, 16<<10)
	sound := true
	var frame []byte
	for a := range queue {
		if !sound {
			continue // keep taking answers so that the reader never blocks
		}
		if a.stored != nil {
			var err error
			select {
			case err = <-a.stored:
			default:
				// Waiting: send what is ready first.
				if w.Flush() != nil {
					sound = false
					_ = c.Close()
					continue
				}
				err = <-a.stored
			}
			if err != nil {
				// Not stored: answer nothing more. The sender resends
				// everything unanswered on its next session.
				s.env.Log.Warn("relp records not stored; closing the session so that the sender resends them",
					"receiver", s.env.Name, "peer", peer, "err", err)
				sound = false
				_ = c.Close()
				continue
			}
		}
		frame = appendResponse(frame[:0], a.txnr, a.text)
		if _, err := w.Write(frame); err != nil {
			sound = false
			_ = c.Close()
			continue
		}
		if a.last || len(queue) == 0 {
			if err := w.Flush(); err != nil {
				sound = false
				_ = c.Close()
			}
		}
	}
	if sound && w.Flush() != nil {
		sound = false
	}
	return sound
}

func appendResponse(b []byte, txnr int, text string) []byte {
	b = strconv.AppendInt(b, int64(txnr), 10)
	b = append(b, " rsp "...)
	b = strconv.AppendInt(b, int64(len(text)), 10)
	b = append(b, ' ')
	b = append(b, text...)
	return append(b, '\n')
}

// readHeader reads "TXNR SP COMMAND SP DATALEN" and the separator after
// it; size is the DATALEN, whose bytes and final LF follow (for size 0 the
// LF is already read).
func readHeader(r *bufio.Reader) (txnr int, cmd string, size int, err error) {
	num := func(what string) (int, byte, error) {
		n, digits := 0, 0
		for {
			c, err := r.ReadByte()
			if err != nil {
				if digits > 0 && errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return 0, 0, err
			}
			if c < '0' || c > '9' {
				if digits == 0 {
					return 0, 0, fmt.Errorf("frame %s: unexpected %q: %w", what, c, errRELP)
				}
				return n, c, nil
			}
			n = n*10 + int(c-'0')
			if digits++; digits > 9 {
				return 0, 0, fmt.Errorf("frame %s too large: %w", what, errRELP)
			}
		}
	}
	// LF between frames is tolerated.
	for {
		c, err := r.ReadByte()
		if err != nil {
			return 0, "", 0, err
		}
		if c != '\n' && c != '\r' {
			_ = r.UnreadByte()
			break
		}
	}
	txnr, sep, err := num("txnr")
	if err != nil {
		return 0, "", 0, err
	}
	if sep != ' ' || txnr > maxTxnr {
		return 0, "", 0, fmt.Errorf("frame: bad txnr %d or separator %q: %w", txnr, sep, errRELP)
	}
	var name [maxCommand]byte
	nl := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			return 0, "", 0, noEOF(err)
		}
		if c == ' ' {
			break
		}
		if nl == len(name) || !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return 0, "", 0, fmt.Errorf("frame command: unexpected %q: %w", c, errRELP)
		}
		name[nl] = c
		nl++
	}
	size, sep, err = num("datalen")
	if err != nil {
		return 0, "", 0, noEOF(err)
	}
	switch {
	case size == 0 && sep == '\n':
	case size > 0 && sep == ' ':
	default:
		return 0, "", 0, fmt.Errorf("frame: unexpected %q after datalen %d: %w", sep, size, errRELP)
	}
	return txnr, command(name[:nl]), size, nil
}

// expectLF reads the LF that ends a frame with data.
func expectLF(r *bufio.Reader, size int) error {
	if size == 0 {
		return nil
	}
	c, err := r.ReadByte()
	if err != nil {
		return noEOF(err)
	}
	if c != '\n' {
		return fmt.Errorf("frame: want LF after %d bytes of data, got %q: %w", size, c, errRELP)
	}
	return nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// command returns the command's name, without allocating for the ones a
// client sends.
func command(name []byte) string {
	switch string(name) {
	case "syslog":
		return "syslog"
	case "open":
		return "open"
	case "close":
		return "close"
	}
	return string(name)
}

var _ receiver.Listener = (*Server)(nil)
