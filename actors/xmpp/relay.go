package xmpp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// relay is the connection go-xmpp uses, made abortable. go-xmpp dials its
// own TCP connection, keeps it unexported and sets no deadline after the
// dial: a hung server blocks Send, Recv and Close for ever. So go-xmpp is
// pointed at a listener on 127.0.0.1 that this relay owns; the relay has
// dialled the server itself and copies bytes both ways, with a deadline
// on every write to the server. abort closes both sides: whatever go-xmpp
// is blocked in returns an error at once. TLS stays end to end (go-xmpp
// verifies the server's name from its TLS config, not from the address
// it dialled), so the relay only ever sees ciphertext.
type relay struct {
	ln       net.Listener
	upstream net.Conn
	write    time.Duration

	mu     sync.Mutex
	local  net.Conn
	err    error // why the relay ended, first cause
	done   chan struct{}
	closed bool
	wg     sync.WaitGroup
}

// dialRelay connects to the server and opens the local listener.
func dialRelay(ctx context.Context, addr string, write time.Duration) (*relay, error) {
	var d net.Dialer
	up, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s: %w: %w", addr, ErrTimeout, err)
		}
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = up.Close()
		return nil, fmt.Errorf("relay listener: %w", err)
	}
	r := &relay{ln: ln, upstream: up, write: write, done: make(chan struct{})}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// addr is what go-xmpp dials.
func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	c, err := r.ln.Accept()
	_ = r.ln.Close() // one connection only
	if err != nil {
		r.abort(fmt.Errorf("relay accept: %w", err))
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = c.Close()
		return
	}
	r.local = c
	r.mu.Unlock()
	r.wg.Add(2)
	go r.pump(c, r.upstream, "write to the server")
	go r.pump(r.upstream, c, "read from the server")
}

// pump copies src to dst; every write must finish within r.write.
func (r *relay) pump(src, dst net.Conn, what string) {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			_ = dst.SetWriteDeadline(time.Now().Add(r.write))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				if errors.Is(werr, net.ErrClosed) {
					r.abort(nil)
				} else if ne, ok := werr.(net.Error); ok && ne.Timeout() {
					r.abort(fmt.Errorf("%s: blocked for %s: %w", what, r.write, ErrTimeout))
				} else {
					r.abort(fmt.Errorf("%s: %w: %w", what, ErrConnectionLost, werr))
				}
				return
			}
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				r.abort(nil)
			} else {
				r.abort(fmt.Errorf("%s: %w: %w", what, ErrConnectionLost, err))
			}
			return
		}
	}
}

// abort ends the relay: both connections are closed, the local one with a
// reset so that a write go-xmpp is blocked in fails at once. The first
// cause given is kept.
func (r *relay) abort(cause error) {
	r.mu.Lock()
	if r.err == nil && cause != nil {
		r.err = cause
	}
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	local := r.local
	r.mu.Unlock()
	_ = r.ln.Close()
	if tc, ok := local.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	if local != nil {
		_ = local.Close()
	}
	_ = r.upstream.Close()
	close(r.done)
}

// cause is why the relay ended, nil while it runs or when it was closed
// on purpose.
func (r *relay) cause() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}
