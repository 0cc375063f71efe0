package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/herald-router/herald/schemas"
)

// Syslog accepts syslog over TCP, TLS and unix stream sockets (RFC 6587
// framing, see ReadFrames) and one record per datagram over UDP and unix
// datagram sockets.
type Syslog struct {
	env     Env
	opts    SyslogOptions
	unix    string // resolved socket paths
	unixStr string
	tlsConf *tls.Config
	streams *StreamServer
	// multiline is the compiled multiline.start, nil without joining.
	multiline *regexp.Regexp

	tcp, tls, unixStream net.Listener
	udp, unixgram        net.PacketConn
	wg                   sync.WaitGroup // the datagram loops
	shutdown             sync.Once
}

// NewSyslog builds a syslog receiver; it loads the TLS files, so a missing
// certificate fails here, before anything listens.
func NewSyslog(env Env, o *SyslogOptions) (*Syslog, error) {
	s := &Syslog{env: env, opts: *o, unix: o.Unix, unixStr: o.UnixStream}
	if env.Config != nil {
		s.unix, s.unixStr = env.Config.Abs(o.Unix), env.Config.Abs(o.UnixStream)
	}
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
	s.streams = &StreamServer{
		Name: env.Name, MaxConnections: o.MaxConnections, Metrics: env.Metrics,
		Connections: env.Connections, Log: env.Log,
	}
	return s, nil
}

// Listen opens the sockets. It fails at once, naming the address, when one
// cannot be bound, and then leaves none open.
func (s *Syslog) Listen() error {
	if s.opts.Multiline.Start != "" {
		re, err := regexp.Compile(s.opts.Multiline.Start)
		if err != nil {
			return fmt.Errorf("receiver %s: multiline.start: %w", s.env.Name, err)
		}
		s.multiline = re
	}
	err := s.listen()
	if err != nil {
		s.closeAll()
	}
	return err
}

func (s *Syslog) listen() error {
	var err error
	if s.opts.TCP != "" {
		if s.tcp, err = net.Listen("tcp", s.opts.TCP); err != nil {
			return fmt.Errorf("receiver %s: listen tcp %s: %w", s.env.Name, s.opts.TCP, err)
		}
	}
	if s.opts.TLS != "" {
		if s.tls, err = net.Listen("tcp", s.opts.TLS); err != nil {
			return fmt.Errorf("receiver %s: listen tls %s: %w", s.env.Name, s.opts.TLS, err)
		}
	}
	if s.opts.UDP != "" {
		c, err := net.ListenPacket("udp", s.opts.UDP)
		if err != nil {
			return fmt.Errorf("receiver %s: listen udp %s: %w", s.env.Name, s.opts.UDP, err)
		}
		// A big socket buffer absorbs bursts; UDP has no back-pressure.
		_ = c.(*net.UDPConn).SetReadBuffer(8 << 20)
		s.udp = c
	}
	if s.unix != "" {
		if err := removeStaleSocket("unixgram", s.unix); err != nil {
			return fmt.Errorf("receiver %s: unix socket: %w", s.env.Name, err)
		}
		c, err := net.ListenPacket("unixgram", s.unix)
		if err != nil {
			return fmt.Errorf("receiver %s: listen unix %s: %w", s.env.Name, s.unix, err)
		}
		s.unixgram = c
		_ = c.(*net.UnixConn).SetReadBuffer(8 << 20)
		if err := os.Chmod(s.unix, 0o666); err != nil {
			return fmt.Errorf("receiver %s: unix socket: %w", s.env.Name, err)
		}
	}
	if s.unixStr != "" {
		if err := removeStaleSocket("unix", s.unixStr); err != nil {
			return fmt.Errorf("receiver %s: unix_stream socket: %w", s.env.Name, err)
		}
		if s.unixStream, err = net.Listen("unix", s.unixStr); err != nil {
			return fmt.Errorf("receiver %s: listen unix_stream %s: %w", s.env.Name, s.unixStr, err)
		}
		if err := os.Chmod(s.unixStr, 0o666); err != nil {
			return fmt.Errorf("receiver %s: unix_stream socket: %w", s.env.Name, err)
		}
	}
	return nil
}

// removeStaleSocket removes a socket file left by an earlier run (binding
// fails on an existing path). A socket some process still serves (a probe
// of network connects) and any other kind of file are errors, never
// removed.
func removeStaleSocket(network, path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	if c, err := net.Dial(network, path); err == nil {
		_ = c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	return os.Remove(path)
}

// TCPAddress is the bound TCP address (useful with port 0), nil without.
func (s *Syslog) TCPAddress() net.Addr { return lnAddr(s.tcp) }

// TLSAddress is the bound TLS address, nil without.
func (s *Syslog) TLSAddress() net.Addr { return lnAddr(s.tls) }

// UDPAddress is the bound UDP address, nil without.
func (s *Syslog) UDPAddress() net.Addr {
	if s.udp == nil {
		return nil
	}
	return s.udp.LocalAddr()
}

func lnAddr(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

// Serve starts the accept and read loops.
func (s *Syslog) Serve() {
	max := int(s.opts.MaxMessageSize)
	handle := func(nul bool) func(c net.Conn, peer string) {
		fo := FrameOptions{Max: max, NUL: nul}
		return func(c net.Conn, peer string) {
			emit := func(rec []byte) { s.emit(rec, peer) }
			if s.multiline != nil {
				j := newJoiner(s.multiline, s.opts.Multiline, max, emit)
				defer j.close()
				emit = j.line
			}
			err := ReadFrames(c, fo, emit,
				func(reason string) { s.env.Metrics.Rejected(reason, 1) })
			switch {
			case errors.Is(err, ErrBadFrame):
				s.env.Log.Warn("closing the connection: its octet-counted framing is broken; the records before were kept",
					"receiver", s.env.Name, "peer", peer, "err", err)
			case err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded):
				s.env.Log.Debug("connection ended", "receiver", s.env.Name, "peer", peer, "err", err)
			}
		}
	}
	if s.tcp != nil {
		s.streams.Serve(s.tcp, nil, 0, handle(s.opts.NULTerminator))
	}
	if s.tls != nil {
		s.streams.Serve(s.tls, s.tlsConf, s.opts.TLSOptions.HandshakeTimeout.D(), handle(s.opts.NULTerminator))
	}
	if s.unixStream != nil {
		// glibc's syslog(3) ends each record with NUL on a stream socket.
		s.streams.Serve(s.unixStream, nil, 0, handle(true))
	}
	if s.udp != nil {
		s.wg.Add(1)
		go s.datagramLoop(s.udp, "")
	}
	if s.unixgram != nil {
		s.wg.Add(1)
		go s.datagramLoop(s.unixgram, "unix:"+s.unix)
	}
}

// datagramLoop reads one record per datagram; peer overrides the sender's
// address (unix senders are mostly unnamed).
func (s *Syslog) datagramLoop(pc net.PacketConn, peer string) {
	defer s.wg.Done()
	// One byte more than the maximum tells a too long datagram (the kernel
	// cuts it to the buffer) from one exactly at it.
	buf := make([]byte, max(int(s.opts.MaxMessageSize)+1, 64<<10))
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			s.env.Log.Warn("datagram read failed", "receiver", s.env.Name, "err", err)
			continue
		}
		d := buf[:n]
		// A trailing LF, or NUL from old C libraries, is not part of it.
		if n > 0 && (d[n-1] == '\n' || d[n-1] == 0) {
			d = d[:n-1]
		}
		switch {
		case len(d) == 0:
			s.env.Metrics.Rejected(RejectEmpty, 1)
		case len(d) > int(s.opts.MaxMessageSize):
			s.env.Metrics.Rejected(RejectTooLong, 1)
		default:
			p := peer
			if p == "" {
				p = addr.String()
			}
			s.emit(d, p)
		}
	}
}

func (s *Syslog) emit(rec []byte, peer string) {
	ev := &schemas.Event{
		Raw:              append([]byte(nil), rec...),
		Source:           s.env.Name,
		Peer:             peer,
		ReceivedUnixNano: time.Now().UnixNano(),
		TargetMask:       s.opts.TargetMask,
	}
	s.env.Metrics.Received.Inc()
	if !s.env.Batcher.Add(ev) {
		s.env.Metrics.Rejected("shutting_down", 1)
	}
}

func (s *Syslog) closeAll() {
	for _, ln := range []net.Listener{s.tcp, s.tls, s.unixStream} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	for _, pc := range []net.PacketConn{s.udp, s.unixgram} {
		if pc != nil {
			_ = pc.Close()
		}
	}
	if s.unixgram != nil {
		_ = os.Remove(s.unix) // a stream listener removes its own file
	}
}

// drainGrace is how long open connections and datagram sockets may still
// deliver what the kernel holds once Shutdown began.
const drainGrace = 300 * time.Millisecond

// Shutdown stops accepting, lets open connections and datagram sockets
// deliver what the kernel already holds for a short grace period, then
// closes them and waits for every reader. ctx bounds the wait.
func (s *Syslog) Shutdown(ctx context.Context) {
	s.shutdown.Do(func() {
		grace := time.Now().Add(drainGrace)
		for _, pc := range []net.PacketConn{s.udp, s.unixgram} {
			if pc != nil {
				_ = pc.SetReadDeadline(grace)
			}
		}
		s.streams.Shutdown(ctx, drainGrace)
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		s.closeAll()
	})
}

var _ Listener = (*Syslog)(nil)
