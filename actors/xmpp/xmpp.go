package xmpp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xmppo/go-xmpp"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/schemas"
)

// Register adds the xmpp provider to r.
func Register(r *sink.Registry) {
	r.MustAdd("xmpp", sink.Kind{
		Options: func() any { return DefaultOptions() },
		New: func(env sink.Env, o any) (sink.Provider, error) {
			opts := *o.(*Options)
			opts.PasswordFile = env.Config.Abs(opts.PasswordFile)
			opts.CAFile = env.Config.Abs(opts.CAFile)
			p, err := New(opts, env.Log)
			if err != nil {
				return nil, err
			}
			if p.thr != nil && env.NATS != nil {
				p.keepWindows(newWindowStore(env.NATS, env.Config.Bus, env.Name, p.log))
			}
			return p, nil
		},
	})
}

// Stats counts what a Publisher did, for tests and operators.
type Stats struct {
	Messages  int64 // message stanzas confirmed (parts and digests included)
	Items     int64 // PubSub items confirmed
	Folded    int64 // events folded into digests by the throttle
	Digests   int64 // digest messages confirmed (one per window and recipient)
	Bounced   int64 // messages the server sent back as errors
	Connects  int64 // sessions opened
	Timeouts  int64 // transactions that failed because the server did not answer in time
	Refusals  int64 // items the service refused
	Truncated int64 // bodies cut or split to fit max_stanza_bytes
	Windows   int64 // throttle windows written to the bucket (puts and deletes)
}

// Publisher is the xmpp provider.
type Publisher struct {
	opts Options
	log  *slog.Logger
	tpl  *template
	tls  *tls.Config
	thr  *throttle

	// windows keeps the throttle's windows in JetStream; nil: in memory.
	windows *windowStore
	// stale says the windows must be read from the bucket before the next
	// transaction: at first, and after Reopen.
	stale atomic.Bool

	s      *session
	closed bool

	// The transaction in progress.
	messages  int64 // message stanzas written
	digests   int64
	folded    int64
	publishes []publish
	// refused holds events the service refused while it accepted others
	// of their transaction: on redelivery they are dead-lettered.
	refused map[string]bool

	stats struct {
		messages, items, folded, digests, bounced, connects, timeouts, refusals, truncated, windows atomic.Int64
	}
}

type publish struct {
	id string // event id
	w  chan xmpp.IQ
}

// New returns a Publisher; it connects at the first Begin. It fails on
// options Validate rejects and when ca_file or password_file cannot be
// read, so a wrong config stops herald at start rather than suspending
// the sink for ever.
func New(opts Options, log *slog.Logger) (*Publisher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if errs := opts.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", errs[0].Field, errs[0].Reason)
	}
	tpl, err := compileTemplate(opts.Body)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	p := &Publisher{opts: opts, log: log, tpl: tpl, thr: newThrottle(opts.Throttle), refused: map[string]bool{}}
	if opts.TLS != TLSInsecurePlain {
		p.tls = &tls.Config{ServerName: opts.ServerName, MinVersion: tls.VersionTLS12}
		if p.tls.ServerName == "" {
			p.tls.ServerName = opts.domain()
		}
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", opts.CAFile)
			}
			p.tls.RootCAs = pool
		}
	}
	if _, err := opts.password(); err != nil {
		return nil, err
	}
	return p, nil
}

// Stats returns the counters so far.
func (p *Publisher) Stats() Stats {
	return Stats{
		Messages: p.stats.messages.Load(), Items: p.stats.items.Load(), Folded: p.stats.folded.Load(),
		Digests: p.stats.digests.Load(), Bounced: p.stats.bounced.Load(), Connects: p.stats.connects.Load(),
		Timeouts: p.stats.timeouts.Load(), Refusals: p.stats.refusals.Load(), Truncated: p.stats.truncated.Load(),
		Windows: p.stats.windows.Load(),
	}
}

// open connects when there is no live session, and sets it up: the node
// created (if configured), the rooms joined, within the connect timeout.
func (p *Publisher) open(ctx context.Context) error {
	if p.s != nil {
		if err := p.s.alive(); err == nil {
			return nil
		}
		p.drop()
	}
	pw, err := p.opts.password()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.opts.Timeouts.Connect))
	defer cancel()
	s, err := connect(ctx, sessionConfig{opts: &p.opts, password: pw, tls: p.tls, log: p.log})
	if err != nil {
		if errors.Is(err, ErrTimeout) {
			p.stats.timeouts.Add(1)
		}
		return err
	}
	p.stats.connects.Add(1)
	if err := p.setUp(ctx, s); err != nil {
		if errors.Is(err, ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			p.stats.timeouts.Add(1)
		}
		s.close(ctx)
		return err
	}
	p.s = s
	p.log.Info("xmpp session open", "jid", s.c.JID(), "server", p.opts.address())
	return nil
}

func (p *Publisher) setUp(ctx context.Context, s *session) error {
	timer := time.NewTimer(time.Duration(p.opts.Timeouts.Connect))
	defer timer.Stop()
	ps := p.opts.PubSub
	if ps.Node != "" && ps.Create {
		body := []byte("<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='")
		body = appendEscaped(body, ps.Node, true)
		body = append(body, "'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>"...)
		if ps.MaxItems > 0 {
			body = append(body, "<field var='pubsub#max_items'><value>"...)
			body = strconv.AppendInt(body, int64(ps.MaxItems), 10)
			body = append(body, "</value></field>"...)
		}
		if ps.AccessModel != "" {
			body = append(body, "<field var='pubsub#access_model'><value>"...)
			body = appendEscaped(body, ps.AccessModel, false)
			body = append(body, "</value></field>"...)
		}
		body = append(body, "</x></configure></pubsub>"...)
		w, err := s.iq(ps.Service, "set", string(body))
		if err != nil {
			return err
		}
		r, err := s.wait(ctx, w, timer.C, "create node "+ps.Node)
		if err != nil {
			return err
		}
		// go-xmpp drops an IQ error's condition, so "exists already"
		// (the usual case) cannot be told from "forbidden": a node that
		// is really missing shows up as refused publishes.
		if r.Type == "result" {
			p.log.Info("xmpp node created", "service", ps.Service, "node", ps.Node)
		}
	}
	for _, room := range p.opts.Push.Rooms {
		if err := s.join(ctx, room, p.opts.Push.Nick, timer.C); err != nil {
			return err
		}
	}
	return nil
}

// drop aborts the session at once: after a failure its state (what the
// server has and has not confirmed) is unknown, and a new session starts
// clean.
func (p *Publisher) drop() {
	if p.s == nil {
		return
	}
	p.s.r.abort(nil)
	p.s = nil
}

// keepWindows keeps the throttle's windows in ws from now on.
func (p *Publisher) keepWindows(ws *windowStore) {
	p.windows = ws
	p.thr.persist()
	p.stale.Store(true)
}

// Reopen is called when this process acquires the sink's lease (and on
// SIGUSR1): the windows are read from the bucket again before the next
// transaction, since another holder may have moved them on meanwhile.
func (p *Publisher) Reopen() {
	if p.windows != nil {
		p.stale.Store(true)
	}
}

// loadWindows reads the windows from the bucket when they are stale.
func (p *Publisher) loadWindows(ctx context.Context) error {
	if p.windows == nil || !p.stale.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.opts.Timeouts.Connect))
	defer cancel()
	ws, err := p.windows.load(ctx, p.log)
	if err != nil {
		return fmt.Errorf("throttle windows: %w", err)
	}
	p.thr.restore(ws)
	p.stale.Store(false)
	if len(ws) > 0 {
		p.log.Info("xmpp throttle windows continued from the bucket", "windows", len(ws))
	}
	return nil
}

// saveWindows writes what the bucket lacks of the committed windows. A
// failure is logged: the windows stay dirty and go with the next commit.
func (p *Publisher) saveWindows(ctx context.Context) error {
	if p.windows == nil {
		return nil
	}
	return p.writeWindows(ctx, p.thr.unsaved())
}

func (p *Publisher) writeWindows(ctx context.Context, changes map[string]*window) error {
	if p.windows == nil || len(changes) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.opts.Timeouts.Confirm))
	defer cancel()
	keys, err := p.windows.save(ctx, changes)
	p.thr.saved(changes, keys)
	p.stats.windows.Add(int64(len(keys)))
	switch {
	case errors.Is(err, errMovedOn):
		// Another holder drove the sink meanwhile (this process lost
		// its lease): the bucket is the truth.
		p.stale.Store(true)
		p.log.Warn("xmpp throttle windows moved on by another process; reading them again before the next transaction", "err", err)
	case err != nil:
		p.log.Warn("xmpp throttle windows not written to the bucket; trying again at the next commit", "err", err)
	}
	return err
}

// Begin connects if needed and sends the digests that are due.
func (p *Publisher) Begin(ctx context.Context) error {
	if p.closed {
		return ErrClosed
	}
	if err := p.loadWindows(ctx); err != nil {
		return err
	}
	p.messages, p.digests, p.folded, p.publishes = 0, 0, 0, p.publishes[:0]
	if p.s != nil {
		if _, lost := p.s.takeEvents(); len(lost) > 0 {
			// Removed from a room between transactions: join again.
			p.log.Warn("xmpp room left us; reconnecting to join again", "rooms", lost)
			p.drop()
		}
	}
	if err := p.open(ctx); err != nil {
		return err
	}
	if p.thr != nil {
		for _, d := range p.thr.begin() {
			if err := p.sendDigest(d); err != nil {
				return p.fail(err)
			}
		}
	}
	return nil
}

// fail ends a transaction that cannot be completed.
func (p *Publisher) fail(err error) error {
	if p.thr != nil {
		p.thr.rollback()
	}
	if errors.Is(err, ErrTimeout) {
		p.stats.timeouts.Add(1)
	}
	p.drop()
	return err
}

// Do sends ev: the publish IQ, the messages. It answers Deferred: End
// commits once the server confirmed.
func (p *Publisher) Do(ctx context.Context, ev *schemas.Event) (sink.Commit, error) {
	if p.s == nil {
		return sink.Deferred, fmt.Errorf("do: %w", ErrConnectionLost)
	}
	max := int(p.opts.MaxStanzaBytes)
	var item []byte
	var itemID string
	if p.opts.PubSub.Node != "" {
		if p.refused[ev.Id] {
			delete(p.refused, ev.Id)
			return sink.Deferred, sink.Permanent(CodeRefused, fmt.Errorf("service %s refused item %s on node %s while accepting others", p.opts.PubSub.Service, ev.Id, p.opts.PubSub.Node))
		}
		itemID = p.s.nextID("p")
		item = p.publishStanza(ev, itemID)
		if len(item) > max {
			return sink.Deferred, sink.Permanent(CodeTooLarge, fmt.Errorf("item of %d bytes exceeds max_stanza_bytes %d", len(item), max))
		}
	}
	var bodies [][]byte
	push := len(p.opts.Push.To)+len(p.opts.Push.Rooms) > 0
	if push {
		body := p.tpl.render(ev)
		send := true
		if p.thr != nil {
			var dg *digest
			send, dg = p.thr.admit(ev, body)
			if dg != nil {
				if err := p.sendDigest(*dg); err != nil {
					return sink.Deferred, p.fail(err)
				}
			}
			if !send {
				p.folded++
			}
		}
		if send {
			var err error
			if bodies, err = p.split(body); err != nil {
				return sink.Deferred, err
			}
		}
	}
	if item != nil {
		w := make(chan xmpp.IQ, 1)
		p.s.mu.Lock()
		p.s.waiters[itemID] = w
		p.s.mu.Unlock()
		if err := p.s.send(item); err != nil {
			return sink.Deferred, p.fail(err)
		}
		p.publishes = append(p.publishes, publish{id: ev.Id, w: w})
	}
	for i, body := range bodies {
		for _, to := range p.opts.Push.To {
			if err := p.sendMessage(to, p.opts.Push.Type, body, ev.Id, i, len(bodies)); err != nil {
				return sink.Deferred, p.fail(err)
			}
		}
		for _, room := range p.opts.Push.Rooms {
			if err := p.sendMessage(room, "groupchat", body, ev.Id, i, len(bodies)); err != nil {
				return sink.Deferred, p.fail(err)
			}
		}
	}
	return sink.Deferred, nil
}

// End waits until the server confirmed everything the transaction sent:
// every publish's IQ result, and for messages a ping sent after them
// (the server handles a stream in order, so its answer says every
// earlier stanza was taken).
func (p *Publisher) End(ctx context.Context) error {
	if p.s == nil {
		return p.fail(fmt.Errorf("end: %w", ErrConnectionLost))
	}
	timer := time.NewTimer(time.Duration(p.opts.Timeouts.Confirm))
	defer timer.Stop()
	if p.messages > 0 {
		w, err := p.s.iq(p.opts.domain(), "get", "<ping xmlns='urn:xmpp:ping'/>")
		if err != nil {
			return p.fail(err)
		}
		r, err := p.s.wait(ctx, w, timer.C, "confirm messages (ping barrier)")
		if err != nil {
			return p.fail(err)
		}
		if r.Type != "result" {
			return p.fail(fmt.Errorf("confirm messages: the server answered the ping barrier with %q: %w", r.Type, ErrRefused))
		}
	}
	var refused []string
	for _, pb := range p.publishes {
		r, err := p.s.wait(ctx, pb.w, timer.C, "confirm item "+pb.id)
		if err != nil {
			return p.fail(err)
		}
		if r.Type != "result" {
			refused = append(refused, pb.id)
		}
	}
	bounces, lost := p.s.takeEvents()
	for _, b := range bounces {
		p.stats.bounced.Add(1)
		p.log.Warn("xmpp message bounced: the server took it, the recipient did not get it", "from", b.from, "condition", b.condition)
	}
	if len(lost) > 0 {
		return p.fail(fmt.Errorf("rooms %s refused messages or removed us: %w", strings.Join(lost, ", "), ErrRefused))
	}
	if len(refused) > 0 {
		p.stats.refusals.Add(int64(len(refused)))
		if len(refused) < len(p.publishes) {
			// The node takes items: these ones are the problem. They are
			// dead-lettered when delivered again; the rest is replaced
			// by itself (same item ids).
			for _, id := range refused {
				p.refused[id] = true
			}
			if p.thr != nil {
				p.thr.rollback()
			}
			return fmt.Errorf("service %s refused %d of %d items (first %s): %w", p.opts.PubSub.Service, len(refused), len(p.publishes), refused[0], ErrRefused)
		}
		if p.thr != nil {
			p.thr.rollback()
		}
		return fmt.Errorf("service %s refused every item of node %s: is the node missing (pubsub.create) or the account not allowed to publish? %w", p.opts.PubSub.Service, p.opts.PubSub.Node, ErrRefused)
	}
	if p.thr != nil {
		p.thr.commit()
		_ = p.saveWindows(ctx) // logged; retried at the next commit
	}
	p.stats.messages.Add(p.messages)
	p.stats.items.Add(int64(len(p.publishes)))
	p.stats.digests.Add(p.digests)
	p.stats.folded.Add(p.folded)
	if cap(p.publishes) > 4096 {
		p.publishes = nil
	}
	return nil
}

// Close sends the digests of windows still open, closes the stream and
// releases everything. It is idempotent and bounded by ctx and
// timeouts.close.
func (p *Publisher) Close(ctx context.Context) error {
	if p.closed {
		return nil
	}
	p.closed = true
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.opts.Timeouts.Close))
	defer cancel()
	var err error
	if p.thr != nil && !p.stale.Load() {
		// Stale windows (never read, or the lease acquired again and no
		// transaction since) are not this process's to end.
		before := p.thr.unsaved()
		if ds := p.thr.flush(); len(ds) > 0 {
			err = p.sendFinalDigests(ctx, ds)
		}
		changes := p.thr.unsaved()
		if err != nil {
			// The bucket keeps the windows whose digests did not go out,
			// for the next holder to send.
			changes = before
		}
		if serr := p.writeWindows(ctx, changes); err == nil && serr != nil {
			err = fmt.Errorf("close: %w", serr)
		}
	}
	if p.s != nil {
		p.s.close(ctx)
		p.s = nil
	}
	return err
}

func (p *Publisher) sendFinalDigests(ctx context.Context, ds []digest) error {
	err := func() error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p.s == nil || p.s.alive() != nil {
			if err := p.open(ctx); err != nil {
				return err
			}
		}
		p.messages, p.digests = 0, 0
		for _, d := range ds {
			if err := p.sendDigest(d); err != nil {
				return err
			}
		}
		w, err := p.s.iq(p.opts.domain(), "get", "<ping xmlns='urn:xmpp:ping'/>")
		if err != nil {
			return err
		}
		if _, err := p.s.wait(ctx, w, nil, "confirm digests"); err != nil {
			return err
		}
		p.stats.messages.Add(p.messages)
		p.stats.digests.Add(p.digests)
		return nil
	}()
	if err != nil {
		// Never silently: say what the digests would have said.
		for _, d := range ds {
			p.log.Error("xmpp digest not delivered at close", "key", d.label, "folded", d.count, "first", d.first.id, "last", d.last.id, "err", err)
		}
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return fmt.Errorf("close: %d digests not delivered: %w", len(ds), err)
	}
	return nil
}

// sendDigest sends a digest message to every push recipient.
func (p *Publisher) sendDigest(d digest) error {
	text := d.text(p.opts.Throttle.Events, time.Duration(p.opts.Throttle.Window))
	bodies, err := p.split(text)
	if err != nil {
		bodies = [][]byte{appendEscaped(nil, cut(text, int(p.opts.MaxStanzaBytes)/2), false)}
	}
	for _, body := range bodies {
		for _, to := range p.opts.Push.To {
			if err := p.sendDigestTo(to, p.opts.Push.Type, body, d); err != nil {
				return err
			}
		}
		for _, room := range p.opts.Push.Rooms {
			if err := p.sendDigestTo(room, "groupchat", body, d); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *Publisher) sendDigestTo(to, typ string, body []byte, d digest) error {
	b := p.messageHead(to, typ, body)
	b = append(b, "<herald xmlns='"+Namespace+"' digest='"...)
	b = appendEscaped(b, d.label, true)
	b = append(b, "' count='"...)
	b = strconv.AppendInt(b, int64(d.count), 10)
	b = append(b, "' first='"...)
	b = appendEscaped(b, d.first.id, true)
	b = append(b, "' last='"...)
	b = appendEscaped(b, d.last.id, true)
	b = append(b, "'/></message>"...)
	if err := p.s.send(b); err != nil {
		return err
	}
	p.messages++
	p.digests++
	return nil
}

// messageHead writes a message stanza up to and including its body.
func (p *Publisher) messageHead(to, typ string, body []byte) []byte {
	b := make([]byte, 0, len(body)+len(to)+160)
	b = append(b, "<message to='"...)
	b = appendEscaped(b, to, true)
	b = append(b, "' type='"...)
	b = append(b, typ...)
	b = append(b, "' id='"...)
	b = append(b, p.s.nextID("m")...)
	b = append(b, "' xml:lang='en'><body>"...)
	b = append(b, body...)
	return append(b, "</body>"...)
}

// sendMessage sends part i of n of an event's body (already escaped) to
// one recipient, with herald's metadata element (event id, part).
func (p *Publisher) sendMessage(to, typ string, body []byte, id string, i, n int) error {
	b := p.messageHead(to, typ, body)
	b = append(b, "<herald xmlns='"+Namespace+"' event='"...)
	b = appendEscaped(b, id, true)
	if n > 1 {
		b = append(b, "' part='"...)
		b = strconv.AppendInt(b, int64(i+1), 10)
		b = append(b, "' parts='"...)
		b = strconv.AppendInt(b, int64(n), 10)
	}
	b = append(b, "'/></message>"...)
	if err := p.s.send(b); err != nil {
		return err
	}
	p.messages++
	return nil
}

// messageOverhead is a generous bound on a message stanza without its
// body: the longest recipient, an id, the metadata with a long event id
// and part numbers.
func (p *Publisher) messageOverhead() int {
	longest := 0
	for _, j := range append(append([]string(nil), p.opts.Push.To...), p.opts.Push.Rooms...) {
		longest = max(longest, len(appendEscaped(nil, j, true)))
	}
	return 320 + longest
}

// split escapes body and fits it into stanzas: one body, or several
// (split), or one cut (truncate), or none (reject: a permanent error).
func (p *Publisher) split(body string) ([][]byte, error) {
	e := appendEscaped(nil, body, false)
	room := int(p.opts.MaxStanzaBytes) - p.messageOverhead()
	if len(e) <= room {
		return [][]byte{e}, nil
	}
	switch p.opts.Oversize {
	case OversizeReject:
		return nil, sink.Permanent(CodeTooLarge, fmt.Errorf("message body of %d bytes (escaped) exceeds max_stanza_bytes %d", len(e), p.opts.MaxStanzaBytes))
	case OversizeTruncate:
		p.stats.truncated.Add(1)
		marker := "… [truncated: " + strconv.Itoa(len(body)) + " bytes in all]"
		n := cutPoint(e, room-len(marker))
		return [][]byte{append(e[:n:n], marker...)}, nil
	}
	p.stats.truncated.Add(1)
	const markerRoom = len("\n[part 100000/100000]")
	var parts [][]byte
	for len(e) > 0 {
		n := cutPoint(e, room-markerRoom)
		parts = append(parts, e[:n:n])
		e = e[n:]
	}
	for i := range parts {
		parts[i] = append(parts[i], fmt.Sprintf("\n[part %d/%d]", i+1, len(parts))...)
	}
	return parts, nil
}

// PartMarker is the text the split policy ends part i (1-based) of n with.
func PartMarker(i, n int) string { return fmt.Sprintf("\n[part %d/%d]", i, n) }

// publishStanza is the publish IQ of ev, with IQ id id.
func (p *Publisher) publishStanza(ev *schemas.Event, id string) []byte {
	b := make([]byte, 0, 512+len(ev.Message)+len(ev.Raw)*2)
	b = append(b, "<iq type='set' to='"...)
	b = appendEscaped(b, p.opts.PubSub.Service, true)
	b = append(b, "' id='"...)
	b = append(b, id...)
	b = append(b, "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='"...)
	b = appendEscaped(b, p.opts.PubSub.Node, true)
	b = append(b, "'><item id='"...)
	b = appendEscaped(b, ev.Id, true)
	b = append(b, "'>"...)
	b = appendPayload(b, ev)
	return append(b, "</item></publish></pubsub></iq>"...)
}

var _ sink.Provider = (*Publisher)(nil)
