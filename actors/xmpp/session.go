package xmpp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xmppo/go-xmpp"
)

// session is one connection: a go-xmpp client over a relay, with the one
// goroutine that reads the stream (go-xmpp's Recv must have exactly one
// reader) and hands IQ results and room presences to whoever waits.
//
// go-xmpp's Close is never called: it writes and then reads the stream
// with no deadline, racing the reader. The session closes the stream by
// writing </stream:stream> itself and then aborts the relay.
type session struct {
	c   *xmpp.Client
	r   *relay
	log *slog.Logger

	ids uint64 // used by the provider's goroutine only

	mu      sync.Mutex
	waiters map[string]chan xmpp.IQ
	selfIn  map[string]chan xmpp.Presence // lower-case room/nick → join waiter
	rooms   map[string]string             // lower-case room → lower-case room/nick, joined rooms
	lost    []string                      // rooms that removed us or bounced a message
	bounces []bounce
	dead    chan struct{} // closed when the reader ended
	err     error         // why
}

// bounce is a message the server or a recipient sent back as an error.
type bounce struct{ from, condition string }

// sessionConfig is what connecting needs.
type sessionConfig struct {
	opts     *Options
	password string
	tls      *tls.Config
	log      *slog.Logger
}

// proxyInTheWay reports a proxy go-xmpp would send the relay's connection
// to: it reads HTTP_PROXY itself, even for 127.0.0.1, unless NO_PROXY
// names it.
func proxyInTheWay() string {
	p := os.Getenv("HTTP_PROXY")
	if p == "" {
		p = os.Getenv("http_proxy")
	}
	if p == "" {
		return ""
	}
	np := os.Getenv("NO_PROXY")
	if np == "" {
		np = os.Getenv("no_proxy")
	}
	for _, s := range strings.Split(np, ",") {
		if s != "" && strings.Contains("127.0.0.1", strings.TrimSpace(s)) {
			return ""
		}
	}
	return p
}

// connect opens a session: the relay, then go-xmpp's connect (TLS, SASL,
// bind), all within ctx.
func connect(ctx context.Context, cfg sessionConfig) (*session, error) {
	o := cfg.opts
	if p := proxyInTheWay(); p != "" {
		return nil, fmt.Errorf("HTTP_PROXY is set (%s) and go-xmpp would send the connection through it: add 127.0.0.1 to NO_PROXY", p)
	}
	r, err := dialRelay(ctx, o.address(), time.Duration(o.Timeouts.Write))
	if err != nil {
		return nil, err
	}
	xo := xmpp.Options{
		Host: r.addr(), User: o.JID, Password: cfg.password, Resource: o.Resource,
		DialTimeout: time.Duration(o.Timeouts.Connect), TLSConfig: cfg.tls,
		Mechanism: o.Mechanism, NoPLAIN: o.NoPlain,
	}
	switch o.TLS {
	case TLSStartTLS:
		xo.NoTLS, xo.StartTLS = true, true
	case TLSInsecurePlain:
		xo.NoTLS, xo.InsecureAllowUnencryptedAuth = true, true
	}
	type result struct {
		c   *xmpp.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := xo.NewClient()
		ch <- result{c, err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		r.abort(fmt.Errorf("no session within the connect timeout: %w", ErrTimeout))
		// The client fails at once now that its connection is gone.
		select {
		case res = <-ch:
		case <-time.After(time.Second):
		}
		return nil, fmt.Errorf("connect %s as %s: %w", o.address(), o.JID, r.cause())
	}
	if res.err != nil {
		cause := res.err
		if rc := r.cause(); rc != nil && errors.Is(rc, ErrTimeout) {
			cause = fmt.Errorf("%w (%v)", rc, res.err)
		}
		r.abort(nil)
		return nil, fmt.Errorf("connect %s as %s: %w", o.address(), o.JID, cause)
	}
	s := &session{
		c: res.c, r: r, log: cfg.log,
		waiters: map[string]chan xmpp.IQ{}, selfIn: map[string]chan xmpp.Presence{}, rooms: map[string]string{},
		dead: make(chan struct{}),
	}
	go s.read()
	return s, nil
}

func (s *session) read() {
	for {
		st, err := s.c.Recv()
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			close(s.dead)
			s.r.abort(fmt.Errorf("%w: %v", ErrConnectionLost, err))
			return
		}
		s.mu.Lock()
		switch v := st.(type) {
		case xmpp.IQ:
			if w, ok := s.waiters[v.ID]; ok {
				delete(s.waiters, v.ID)
				w <- v
			}
		case xmpp.Presence:
			from := strings.ToLower(v.From)
			if w, ok := s.selfIn[from]; ok {
				delete(s.selfIn, from)
				w <- v
			} else if room, _, _ := strings.Cut(from, "/"); s.rooms[room] == from && v.Type == "unavailable" {
				delete(s.rooms, room)
				s.lost = append(s.lost, room)
			}
		case xmpp.Chat:
			if v.Type == "error" {
				b := bounce{from: v.Remote, condition: condition(v.OtherElem)}
				s.bounces = append(s.bounces, b)
				if room, _, _ := strings.Cut(strings.ToLower(v.Remote), "/"); s.rooms[room] != "" {
					delete(s.rooms, room)
					s.lost = append(s.lost, room)
				}
			}
		}
		s.mu.Unlock()
	}
}

// condition names the error condition of a bounced message.
func condition(elems []xmpp.XMLElement) string {
	for _, e := range elems {
		if e.XMLName.Local == "error" {
			if i := strings.Index(e.InnerXML, "<"); i >= 0 {
				name := e.InnerXML[i+1:]
				if j := strings.IndexAny(name, " />"); j >= 0 {
					return name[:j]
				}
			}
			return "error"
		}
	}
	return "unknown"
}

// alive reports whether the stream is still up, and if not why.
func (s *session) alive() error {
	select {
	case <-s.dead:
		s.mu.Lock()
		defer s.mu.Unlock()
		if c := s.r.cause(); c != nil && errors.Is(c, ErrTimeout) {
			return c
		}
		return fmt.Errorf("%w: %v", ErrConnectionLost, s.err)
	default:
		return nil
	}
}

// send writes one stanza. go-xmpp's SendOrg writes it in one Write, so
// stanzas from the reader (ping answers) never interleave with it.
func (s *session) send(stanza []byte) error {
	if _, err := s.c.SendOrg(string(stanza)); err != nil {
		if c := s.r.cause(); c != nil {
			return fmt.Errorf("send: %w", c)
		}
		return fmt.Errorf("send: %w: %v", ErrConnectionLost, err)
	}
	return nil
}

func (s *session) nextID(prefix string) string {
	s.ids++
	return prefix + strconv.FormatUint(s.ids, 36)
}

// iq sends an IQ (its body already escaped) and returns the channel its
// answer comes on.
func (s *session) iq(to, typ, body string) (chan xmpp.IQ, error) {
	id := s.nextID("q")
	w := make(chan xmpp.IQ, 1)
	s.mu.Lock()
	s.waiters[id] = w
	s.mu.Unlock()
	b := make([]byte, 0, len(body)+96)
	b = append(b, "<iq type='"...)
	b = append(b, typ...)
	b = append(b, "' to='"...)
	b = appendEscaped(b, to, true)
	b = append(b, "' id='"...)
	b = append(b, id...)
	b = append(b, "'>"...)
	b = append(b, body...)
	b = append(b, "</iq>"...)
	if err := s.send(b); err != nil {
		s.mu.Lock()
		delete(s.waiters, id)
		s.mu.Unlock()
		return nil, err
	}
	return w, nil
}

// wait waits for an IQ answer until the deadline, the end of ctx or of the
// connection.
func (s *session) wait(ctx context.Context, w chan xmpp.IQ, timer <-chan time.Time, what string) (xmpp.IQ, error) {
	select {
	case r := <-w:
		return r, nil
	case <-s.dead:
		return xmpp.IQ{}, fmt.Errorf("%s: %w", what, s.alive())
	case <-timer:
		return xmpp.IQ{}, fmt.Errorf("%s: %w", what, ErrTimeout)
	case <-ctx.Done():
		return xmpp.IQ{}, fmt.Errorf("%s: %w", what, ctx.Err())
	}
}

// join enters a room and waits for the room's confirmation (our own
// presence coming back).
func (s *session) join(ctx context.Context, room, nick string, timer <-chan time.Time) error {
	full := strings.ToLower(room + "/" + nick)
	w := make(chan xmpp.Presence, 1)
	s.mu.Lock()
	s.selfIn[full] = w
	s.mu.Unlock()
	b := []byte("<presence to='")
	b = appendEscaped(b, room+"/"+nick, true)
	b = append(b, "'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"...)
	if err := s.send(b); err != nil {
		return err
	}
	select {
	case p := <-w:
		if p.Type == "error" {
			return fmt.Errorf("join room %s as %s: %w: the room answered with an error (nickname taken, members only, banned?)", room, nick, ErrRefused)
		}
		s.mu.Lock()
		s.rooms[strings.ToLower(room)] = full
		s.mu.Unlock()
		return nil
	case <-s.dead:
		return fmt.Errorf("join room %s: %w", room, s.alive())
	case <-timer:
		return fmt.Errorf("join room %s: %w", room, ErrTimeout)
	case <-ctx.Done():
		return fmt.Errorf("join room %s: %w", room, ctx.Err())
	}
}

// takeEvents returns and forgets the bounces and the rooms lost so far.
func (s *session) takeEvents() ([]bounce, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, l := s.bounces, s.lost
	s.bounces, s.lost = nil, nil
	return b, l
}

// close ends the stream politely when it can within ctx, then aborts the
// relay and waits (boundedly) for the reader to end. It never blocks
// longer than ctx allows plus a moment.
func (s *session) close(ctx context.Context) {
	select {
	case <-s.dead:
	default:
		// In a goroutine: on a hung server even this write may block
		// until the relay is aborted below.
		go func() { _, _ = s.c.SendOrg("</stream:stream>") }()
		select {
		case <-s.dead: // the server closed its side in answer
		case <-ctx.Done():
		}
	}
	s.r.abort(nil)
	select {
	case <-s.dead:
	case <-time.After(time.Second):
	}
}
