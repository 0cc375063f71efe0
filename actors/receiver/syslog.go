package receiver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// Syslog accepts newline-framed syslog over TCP and one record per datagram
// over UDP.
type Syslog struct {
	Name           string
	TCPAddr        string
	UDPAddr        string
	MaxMessageSize int
	MaxConnections int
	TargetMask     uint64
	Batcher        *Batcher
	Metrics        *metrics.Stage
	Connections    interface{ Add(float64) }
	Log            *slog.Logger

	tcp   net.Listener
	udp   *net.UDPConn
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	quit  chan struct{}
}

// Listen opens the sockets. It fails at once, naming the address, when one
// cannot be bound.
func (s *Syslog) Listen() error {
	s.conns = map[net.Conn]struct{}{}
	s.quit = make(chan struct{})
	if s.TCPAddr != "" {
		ln, err := net.Listen("tcp", s.TCPAddr)
		if err != nil {
			return fmt.Errorf("receiver %s: listen tcp %s: %w", s.Name, s.TCPAddr, err)
		}
		s.tcp = ln
	}
	if s.UDPAddr != "" {
		addr, err := net.ResolveUDPAddr("udp", s.UDPAddr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("receiver %s: udp address %s: %w", s.Name, s.UDPAddr, err)
		}
		c, err := net.ListenUDP("udp", addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("receiver %s: listen udp %s: %w", s.Name, s.UDPAddr, err)
		}
		// A big socket buffer absorbs bursts; UDP has no back-pressure.
		_ = c.SetReadBuffer(8 << 20)
		s.udp = c
	}
	return nil
}

// TCPAddress is the bound TCP address (useful with port 0).
func (s *Syslog) TCPAddress() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// Serve starts the accept and read loops.
func (s *Syslog) Serve() {
	if s.tcp != nil {
		s.wg.Add(1)
		go s.acceptLoop()
	}
	if s.udp != nil {
		s.wg.Add(1)
		go s.udpLoop()
	}
}

func (s *Syslog) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			select {
			case <-s.quit:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.Log.Warn("accept failed", "receiver", s.Name, "err", err)
			time.Sleep(50 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		s.mu.Lock()
		if len(s.conns) >= s.MaxConnections {
			s.mu.Unlock()
			s.Metrics.Rejected("max_connections", 1)
			s.Log.Warn("connection refused: max_connections reached", "receiver", s.Name, "peer", c.RemoteAddr().String(), "max", s.MaxConnections)
			_ = c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.Connections.Add(1)
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

func (s *Syslog) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			s.Metrics.Rejected("panic", 1)
			s.Log.Error("connection handler panicked; connection closed", "receiver", s.Name, "panic", fmt.Sprint(r))
		}
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.Connections.Add(-1)
		_ = c.Close()
	}()
	peer := c.RemoteAddr().String()
	err := ReadLines(c, s.MaxMessageSize, func(line []byte) {
		s.emit(line, peer)
	}, func(reason string) { s.Metrics.Rejected(reason, 1) })
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
		s.Log.Debug("connection ended", "receiver", s.Name, "peer", peer, "err", err)
	}
}

// ReadLines calls emit for each newline-terminated line of r (without the
// newline; a final unterminated line counts too). Lines longer than max are
// dropped whole and reported to reject as "too_long"; empty lines as
// "empty". The slice given to emit is only valid during the call.
func ReadLines(r io.Reader, max int, emit func([]byte), reject func(reason string)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	discarding := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !discarding {
				long = append(long, line...)
				if len(long) > max {
					discarding = true
					long = long[:0]
					reject("too_long")
				}
			}
			continue
		}
		if len(line) > 0 {
			switch {
			case discarding:
				discarding = false // the end of a line already rejected
			default:
				full := line
				if len(long) > 0 {
					long = append(long, line...)
					full = long
				}
				if full[len(full)-1] == '\n' {
					full = full[:len(full)-1]
				}
				switch {
				case len(full) == 0 || len(full) == 1 && full[0] == '\r':
					reject("empty")
				case len(full) > max:
					reject("too_long")
				default:
					emit(full)
				}
				long = long[:0]
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (s *Syslog) udpLoop() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := s.udp.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-s.quit:
				return
			default:
			}
			s.Log.Warn("udp read failed", "receiver", s.Name, "err", err)
			continue
		}
		d := buf[:n]
		if n > 0 && d[n-1] == '\n' {
			d = d[:n-1]
		}
		switch {
		case len(d) == 0:
			s.Metrics.Rejected("empty", 1)
		case len(d) > s.MaxMessageSize:
			s.Metrics.Rejected("too_long", 1)
		default:
			s.emit(d, addr.String())
		}
	}
}

func (s *Syslog) emit(line []byte, peer string) {
	ev := &schemas.Event{
		Raw:              append([]byte(nil), line...),
		Source:           s.Name,
		Peer:             peer,
		ReceivedUnixNano: time.Now().UnixNano(),
		TargetMask:       s.TargetMask,
	}
	s.Metrics.Received.Inc()
	if !s.Batcher.Add(ev) {
		s.Metrics.Rejected("shutting_down", 1)
	}
}

func (s *Syslog) closeListeners() {
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	if s.udp != nil {
		_ = s.udp.Close()
	}
}

// Shutdown stops accepting, lets open connections deliver what the kernel
// already holds for a short grace period, then closes them and waits for
// every reader. ctx bounds the wait.
func (s *Syslog) Shutdown(ctx context.Context) {
	close(s.quit)
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	grace := time.Now().Add(300 * time.Millisecond)
	s.mu.Lock()
	for c := range s.conns {
		_ = c.SetReadDeadline(grace)
	}
	s.mu.Unlock()
	if s.udp != nil {
		// Read what is queued in the socket, then stop.
		_ = s.udp.SetReadDeadline(grace)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
	}
	if s.udp != nil {
		_ = s.udp.Close()
	}
}
