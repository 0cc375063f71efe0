package syslog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/herald-router/herald/actors/sink"
)

// RELP, the Reliable Event Logging Protocol of rsyslog (imrelp/omrelp), as
// its specification (relp.html in librelp) describes it. Every frame is
//
//	TXNR SP COMMAND SP DATALEN [SP DATA] LF
//
// The client opens the session ("open" with its offers), sends "syslog"
// commands whose data is one syslog line, and closes it ("close"). The
// server answers each command with "rsp" and the same TXNR, in order; the
// data of a response starts with a status code, 200 for success. The server
// may send "serverclose" (TXNR 0) before it goes away. Transaction numbers
// start at 1 and wrap from 999,999,999 back to 1.

// ErrRELP is the error of a RELP session that went wrong: a refused
// message, a malformed frame, a response out of order.
var ErrRELP = errors.New("relp")

const (
	relpMaxTxnr = 999_999_999
	// relpMaxResponse bounds the data of a frame the server sends:
	// responses are a status line and the offers.
	relpMaxResponse = 64 << 10
	relpOffers      = "relp_version=0\nrelp_software=herald\ncommands=syslog"
)

type relp struct {
	addr                                  string
	dial                                  func(ctx context.Context) (net.Conn, error)
	window                                int
	dialTimeout, writeTimeout, ackTimeout time.Duration

	conn    net.Conn
	r       *bufio.Reader
	txnr    int    // the last transaction number used
	out     []byte // frames not yet written
	pending []int  // transaction numbers sent and not yet acknowledged, in order
	scratch []byte // data of the last frame read
}

func (p *relp) nextTxnr() int {
	p.txnr++
	if p.txnr > relpMaxTxnr {
		p.txnr = 1
	}
	return p.txnr
}

func (p *relp) appendFrame(cmd string, data []byte) int {
	n := p.nextTxnr()
	p.out = strconv.AppendInt(p.out, int64(n), 10)
	p.out = append(p.out, ' ')
	p.out = append(p.out, cmd...)
	p.out = append(p.out, ' ')
	p.out = strconv.AppendInt(p.out, int64(len(data)), 10)
	if len(data) > 0 {
		p.out = append(p.out, ' ')
		p.out = append(p.out, data...)
	}
	p.out = append(p.out, '\n')
	return n
}

func (p *relp) begin(ctx context.Context) error {
	if p.conn != nil && (len(p.pending) > 0 || len(p.out) > 0 || !p.idleUsable()) {
		// A transaction left unfinished (no End) still has responses on
		// the way, which would put the next one out of step: start afresh.
		// What it sent is not committed and comes again.
		p.drop()
	}
	p.out, p.pending = p.out[:0], p.pending[:0]
	if p.conn != nil {
		return nil
	}
	c, err := p.dial(ctx)
	if err != nil {
		return err
	}
	p.conn, p.r, p.txnr = c, bufio.NewReader(c), 0
	// The open handshake is part of connecting: bound it by dialTimeout.
	octx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	open := p.appendFrame("open", []byte(relpOffers))
	if err := p.flush(octx); err != nil {
		return err
	}
	stop := watch(octx, p.conn)
	data, err := p.response(octx, open)
	stop()
	if err != nil {
		return err
	}
	if !bytes.Contains(data, []byte("commands=syslog")) && !bytes.Contains(data, []byte(",syslog")) {
		p.drop()
		return fmt.Errorf("open relp session with %s: server does not offer the syslog command: %q: %w", p.addr, data, ErrRELP)
	}
	return nil
}

// idleUsable checks a session kept from an earlier transaction: every
// response was read then, so anything waiting now is the server's
// "serverclose" (or garbage): the session is over either way.
func (p *relp) idleUsable() bool {
	closed, pending := peek(p.conn)
	return !closed && !pending && p.r.Buffered() == 0
}

func (p *relp) send(ctx context.Context, line []byte) (sink.Commit, error) {
	if p.conn == nil {
		return sink.Deferred, fmt.Errorf("send to %s: not connected", p.addr)
	}
	c := sink.Deferred
	if len(p.pending) >= p.window {
		if err := p.settle(ctx); err != nil {
			return sink.Deferred, err
		}
		c = sink.PreviousCommitted
	}
	p.pending = append(p.pending, p.appendFrame("syslog", line))
	if len(p.out) >= flushAt {
		if err := p.flush(ctx); err != nil {
			return sink.Deferred, err
		}
	}
	return c, nil
}

func (p *relp) end(ctx context.Context) error {
	if p.conn == nil {
		if len(p.pending) == 0 {
			return nil
		}
		return fmt.Errorf("send to %s: not connected", p.addr)
	}
	err := p.settle(ctx)
	if cap(p.out) > 4<<20 {
		p.out = nil
	}
	return err
}

// settle writes what is buffered and waits for every pending response.
func (p *relp) settle(ctx context.Context) error {
	if err := p.flush(ctx); err != nil {
		return err
	}
	if len(p.pending) == 0 {
		return nil
	}
	stop := watch(ctx, p.conn) // once for all: it allocates
	defer stop()
	for len(p.pending) > 0 {
		if _, err := p.response(ctx, p.pending[0]); err != nil {
			return err
		}
		p.pending = p.pending[1:]
	}
	p.pending = p.pending[:0]
	return nil
}

func (p *relp) flush(ctx context.Context) error {
	if len(p.out) == 0 {
		return nil
	}
	_ = p.conn.SetWriteDeadline(deadline(ctx, p.writeTimeout))
	stop := watch(ctx, p.conn)
	_, err := p.conn.Write(p.out)
	stop()
	p.out = p.out[:0]
	if err != nil {
		p.drop()
		return ioErr(ctx, "write to", p.addr, err)
	}
	return nil
}

// response reads the next frame, which must be the successful response to
// txnr, and returns its data after the status line. Any failure drops the
// session: its transaction numbers are out of step. The caller watches ctx
// (see watch).
func (p *relp) response(ctx context.Context, txnr int) ([]byte, error) {
	_ = p.conn.SetReadDeadline(deadline(ctx, p.ackTimeout))
	if ctx.Err() != nil {
		// The watch may have fired before the line above undid it.
		_ = p.conn.SetReadDeadline(farPast)
	}
	if p.r.Buffered() == 0 {
		quickAck(p.conn)
	}
	n, cmd, data, err := readFrame(p.r, &p.scratch)
	if err != nil {
		p.drop()
		return nil, ioErr(ctx, "wait for relp response from", p.addr, err)
	}
	if cmd == "serverclose" {
		p.drop()
		return nil, fmt.Errorf("relp server %s closed the session: %w", p.addr, ErrRELP)
	}
	if cmd != "rsp" || n != txnr {
		p.drop()
		return nil, fmt.Errorf("relp server %s: got %q for transaction %d, want rsp for %d: %w", p.addr, cmd, n, txnr, ErrRELP)
	}
	status, rest, _ := bytes.Cut(data, []byte("\n"))
	if !bytes.HasPrefix(status, []byte("200")) {
		p.drop()
		return nil, fmt.Errorf("relp server %s refused transaction %d: %q: %w", p.addr, txnr, status, ErrRELP)
	}
	return rest, nil
}

// readFrame reads one RELP frame; its data is read into scratch (grown as
// needed), so it is valid until the next call with the same scratch.
func readFrame(r *bufio.Reader, scratch *[]byte) (txnr int, cmd string, data []byte, err error) {
	num := func(what string, max int) (int, byte, error) {
		n, digits := 0, 0
		for {
			c, err := r.ReadByte()
			if err != nil {
				return 0, 0, err
			}
			if c < '0' || c > '9' {
				if digits == 0 {
					return 0, 0, fmt.Errorf("frame %s: unexpected %q: %w", what, c, ErrRELP)
				}
				return n, c, nil
			}
			n = n*10 + int(c-'0')
			if digits++; digits > 9 || n > max {
				return 0, 0, fmt.Errorf("frame %s too large: %w", what, ErrRELP)
			}
		}
	}
	txnr, sep, err := num("txnr", relpMaxTxnr)
	if err != nil {
		return 0, "", nil, err
	}
	if sep != ' ' {
		return 0, "", nil, fmt.Errorf("frame: want a space after txnr, got %q: %w", sep, ErrRELP)
	}
	var name [32]byte
	nl := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			return 0, "", nil, err
		}
		if c == ' ' {
			break
		}
		if nl == len(name) || !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return 0, "", nil, fmt.Errorf("frame command: unexpected %q: %w", c, ErrRELP)
		}
		name[nl] = c
		nl++
	}
	size, sep, err := num("datalen", relpMaxResponse)
	if err != nil {
		return 0, "", nil, err
	}
	switch {
	case size == 0 && sep == '\n':
		return txnr, command(name[:nl]), nil, nil
	case size > 0 && sep == ' ':
	default:
		return 0, "", nil, fmt.Errorf("frame: unexpected %q after datalen %d: %w", sep, size, ErrRELP)
	}
	if cap(*scratch) < size+1 {
		*scratch = make([]byte, size+1)
	}
	data = (*scratch)[:size+1]
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, "", nil, err
	}
	if data[size] != '\n' {
		return 0, "", nil, fmt.Errorf("frame: want LF after %d bytes of data: %w", size, ErrRELP)
	}
	return txnr, command(name[:nl]), data[:size], nil
}

// command returns the command's name, without allocating for the ones a
// server sends.
func command(name []byte) string {
	switch string(name) {
	case "rsp":
		return "rsp"
	case "serverclose":
		return "serverclose"
	}
	return string(name)
}

func (p *relp) drop() {
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn, p.r = nil, nil
	}
	p.pending = p.pending[:0]
}

// close ends the session politely: "close", then the server's response,
// bounded by ctx and one second, for a server that answers slowly must not
// hold up a shutdown.
func (p *relp) close(ctx context.Context) error {
	if p.conn == nil {
		return nil
	}
	defer p.drop()
	if ctx.Err() != nil || len(p.pending) > 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	p.out = p.out[:0]
	n := p.appendFrame("close", nil)
	if err := p.flush(cctx); err != nil {
		return nil // the session is gone anyway: nothing is left to lose
	}
	_ = p.conn.SetReadDeadline(deadline(cctx, time.Second))
	stop := watch(cctx, p.conn)
	defer stop()
	for range 2 { // a serverclose may come first
		m, cmd, _, err := readFrame(p.r, &p.scratch)
		if err != nil || (cmd == "rsp" && m == n) {
			break
		}
	}
	return nil
}
