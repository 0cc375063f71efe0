package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/herald-router/herald/internal/metrics"
)

// StreamServer accepts connections on stream listeners (TCP, TLS, unix)
// under one connection limit, serves each in its own goroutine and shuts
// them down gracefully. Receivers of stream protocols (syslog, RELP) share
// it, so that limits, TLS handshakes and draining behave alike.
type StreamServer struct {
	Name           string
	MaxConnections int
	Metrics        *metrics.Stage
	Connections    interface{ Add(float64) }
	Log            *slog.Logger

	mu       sync.Mutex
	conns    map[net.Conn]struct{} // the raw connections, TLS or not
	lns      []net.Listener
	draining time.Time // set by Shutdown: read deadline of every connection
	wg       sync.WaitGroup
}

// Serve accepts on ln until Shutdown and runs handle for each connection:
// it returns when the connection is done, and the server closes c then;
// peer names the other end for records and logs. With conf, a connection
// first completes a TLS handshake within handshake; one that does not is
// closed and counted (tls_handshake).
func (s *StreamServer) Serve(ln net.Listener, conf *tls.Config, handshake time.Duration, handle func(c net.Conn, peer string)) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	s.wg.Add(1)
	go s.acceptLoop(ln, conf, handshake, handle)
}

func (s *StreamServer) acceptLoop(ln net.Listener, conf *tls.Config, handshake time.Duration, handle func(net.Conn, string)) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.Log.Warn("accept failed", "receiver", s.Name, "err", err)
			time.Sleep(50 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		peer := peerName(c, ln)
		s.mu.Lock()
		if len(s.conns) >= s.MaxConnections {
			s.mu.Unlock()
			s.Metrics.Rejected("max_connections", 1)
			s.Log.Warn("connection refused: max_connections reached", "receiver", s.Name, "peer", peer, "max", s.MaxConnections)
			_ = c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		if !s.draining.IsZero() {
			_ = c.SetReadDeadline(s.draining)
		}
		s.mu.Unlock()
		s.Connections.Add(1)
		s.wg.Add(1)
		go s.serveConn(c, peer, conf, handshake, handle)
	}
}

// peerName is the remote address, or for a unix socket (whose clients are
// mostly unnamed) the socket's path.
func peerName(c net.Conn, ln net.Listener) string {
	if _, ok := c.(*net.UnixConn); ok {
		return "unix:" + ln.Addr().String()
	}
	return c.RemoteAddr().String()
}

func (s *StreamServer) serveConn(raw net.Conn, peer string, conf *tls.Config, handshake time.Duration, handle func(net.Conn, string)) {
	defer s.wg.Done()
	c := raw
	defer func() {
		if r := recover(); r != nil {
			s.Metrics.Rejected("panic", 1)
			s.Log.Error("connection handler panicked; connection closed", "receiver", s.Name, "peer", peer, "panic", fmt.Sprint(r))
		}
		s.mu.Lock()
		delete(s.conns, raw)
		s.mu.Unlock()
		s.Connections.Add(-1)
		_ = c.Close()
	}()
	if conf != nil {
		tc := tls.Server(raw, conf)
		c = tc
		ctx, cancel := context.WithTimeout(context.Background(), handshake)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.Metrics.Rejected("tls_handshake", 1)
			s.Log.Warn("tls handshake failed; connection closed", "receiver", s.Name, "peer", peer, "err", err)
			return
		}
	}
	handle(c, peer)
}

// Shutdown closes the listeners, gives open connections grace to deliver
// what they already sent (their reads then time out), and waits, bounded by
// ctx, for every handler; connections still open then are closed.
func (s *StreamServer) Shutdown(ctx context.Context, grace time.Duration) {
	s.mu.Lock()
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	s.draining = time.Now().Add(grace)
	for c := range s.conns {
		_ = c.SetReadDeadline(s.draining)
	}
	s.mu.Unlock()
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
}
