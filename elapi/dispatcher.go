package elapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// herald's names on the bus (its package bus declares them; a test keeps
// the two in step).
const (
	streamEvents          = "HERALD_EVENTS"
	streamReceipts        = "HERALD_RECEIPTS"
	subjectEventsPrefix   = "herald.events."
	subjectReceiptsPrefix = "herald.receipts."
	headerEncoding        = "Herald-Encoding"
	encodingBatch         = "batch"
	encodingReceipts      = "receipts" // a ReceiptBatch; else a single Receipt
	// Source is the envelope source of events logged through this package.
	Source = "elapi"
)

// Callback receives the Notices of one event. Callbacks run on the
// dispatcher's goroutines, the notices of one event in order (accepted,
// each target, done); keep them short, and do not wait in one for a slot
// of the same dispatcher (a blocking LogAsync or a Log): the slots free up
// on the goroutines the callback holds.
type Callback func(Notice)

// Dispatcher logs events to herald. It is safe for concurrent use. Make
// one with Dial; Close it to wait for what is in flight.
type Dispatcher struct {
	opts     options
	nc       *nats.Conn
	js       jetstream.JetStream
	subject  string // herald.events.<class>
	receipts string // herald.receipts.<app>.<dispatcher id>
	name     string // dispatcher id, prefix of batch ids
	ids      *idGen
	maxBytes int

	slots   chan struct{} // one token per event in flight
	open    atomic.Int64
	closing chan struct{} // closed by Close: blocked callers give up
	stop    chan struct{} // closed when Close gives up: retries end
	idle    chan struct{} // a token when open fell to 0 while closing
	closed  atomic.Bool

	mu    sync.Mutex // guards cur, seq and the end of sendq
	cur   *batch
	seq   uint64
	timer *time.Timer
	sendq chan *batch
	ackq  chan published
	wg    sync.WaitGroup

	openMu  sync.Mutex
	batches map[*batch]struct{} // sent, not yet stored

	trackMu sync.Mutex
	pending map[string]*entry // tracked events not done, by id
	consume jetstream.ConsumeContext
}

// batch is one JetStream message in the making.
type batch struct {
	id      string
	buf     []byte
	n       int
	ids     []string // for Close's report
	entries []*entry // events with a callback or tracking
	release int      // untracked events: their slots free when stored
}

// entry follows one event that has a callback or is tracked.
type entry struct {
	id      string
	cb      Callback
	flags   Flags
	tracked bool

	mu           sync.Mutex // held while its callback runs: notices stay in order
	accepted     bool
	routed       bool
	routerFailed bool
	done         bool
	targets      []string
	results      []TargetResult
}

type published struct {
	b   *batch
	f   jetstream.PubAckFuture
	err error
}

// Dial connects to herald's NATS server (urls: one or more servers of the
// same system, such as herald's bus.embedded.listen as nats://host:port)
// and returns a Dispatcher. It fails with ErrNoHerald when herald's event
// stream is not there. Options: WithApplication, WithClass, WithHost,
// WithMaxInFlight, WithBackpressure, WithBatching, WithPublishTimeout,
// WithNATSOptions, WithLogger.
func Dial(ctx context.Context, urls []string, opts ...Option) (*Dispatcher, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("%w: no server url", ErrInvalidOption)
	}
	d := &Dispatcher{opts: o, ids: newIDGen(), subject: subjectEventsPrefix + o.class}
	d.name = d.ids.next(time.Now())
	d.receipts = subjectReceiptsPrefix + o.app + "." + d.name
	nopts := append([]nats.Option{
		nats.Name("elapi:" + o.app),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 100*time.Millisecond),
	}, o.natsOptions...)
	if deadline, ok := ctx.Deadline(); ok {
		nopts = append(nopts, nats.Timeout(time.Until(deadline)))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nopts...)
	if err != nil {
		return nil, fmt.Errorf("elapi: connect to %s: %w", strings.Join(urls, ","), err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256), jetstream.WithPublishAsyncTimeout(o.publishTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("elapi: jetstream: %w", err)
	}
	sctx, cancel := withDefaultTimeout(ctx, 10*time.Second)
	_, err = js.Stream(sctx, streamEvents)
	cancel()
	if err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("elapi: %w: no stream %s (is herald running against this server?)", ErrNoHerald, streamEvents)
		}
		return nil, fmt.Errorf("elapi: stream %s: %w", streamEvents, err)
	}
	d.nc, d.js = nc, js
	d.maxBytes = o.batchBytes
	if mp := int(nc.MaxPayload()); mp > 0 && d.maxBytes > mp-1024 {
		d.maxBytes = mp - 1024 // room for the headers
	}
	d.slots = make(chan struct{}, o.maxInFlight)
	d.closing = make(chan struct{})
	d.stop = make(chan struct{})
	d.idle = make(chan struct{}, 1)
	// Every batch queued holds an event in flight, so a queue as long as
	// the bound never blocks whoever holds d.mu.
	d.sendq = make(chan *batch, o.maxInFlight+1)
	d.ackq = make(chan published, 256)
	d.batches = map[*batch]struct{}{}
	d.pending = map[string]*entry{}
	d.timer = time.AfterFunc(time.Hour, d.flushLinger)
	d.timer.Stop()
	d.wg.Add(2)
	go d.publishLoop()
	go d.ackLoop()
	return d, nil
}

// withDefaultTimeout bounds ctx by d unless it has a deadline already.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// ReceiptSubject is the subject herald sends this dispatcher's receipts
// to.
func (d *Dispatcher) ReceiptSubject() string { return d.receipts }

// InFlight is the number of events logged and not yet finished.
func (d *Dispatcher) InFlight() int { return int(d.open.Load()) }

// Log logs ev to the targets of mask and waits until JetStream stored it,
// or with WaitAllTargets until every target finished with it. The Result
// says which; a target that failed is not an error of Log (see
// Result.Err). When ctx ends first, the event may still be logged: the
// error wraps ctx's and the Result holds its id.
func (d *Dispatcher) Log(ctx context.Context, mask Mask, ev *Event, opts ...LogOption) (*Result, error) {
	var lo logOptions
	for _, o := range opts {
		o(&lo)
	}
	want := OnAccepted
	if lo.all {
		want = OnDone
	}
	ch := make(chan Notice, 1)
	cb := func(n Notice) {
		if n.Moment == want || n.Err != nil {
			select {
			case ch <- n:
			default:
			}
		}
	}
	id, err := d.submit(ctx, ev, mask, cb, want, true)
	if err != nil {
		return nil, err
	}
	select {
	case n := <-ch:
		if n.Err != nil {
			return &Result{ID: id}, fmt.Errorf("elapi: event %s: %w", id, n.Err)
		}
		if n.Result != nil {
			return n.Result, nil
		}
		return &Result{ID: id, Accepted: true}, nil
	case <-ctx.Done():
		return &Result{ID: id}, fmt.Errorf("elapi: event %s: %w", id, ctx.Err())
	}
}

// LogAsync logs ev to the targets of mask and returns its id at once;
// cb (nil: none) runs at the moments flags choose. OnTargetDone and
// OnDone make the event tracked. When WithMaxInFlight events are in
// flight it waits for one to finish or fails with ErrFull, as
// WithBackpressure says. The event is copied: it may change once LogAsync
// returned.
func (d *Dispatcher) LogAsync(ev *Event, mask Mask, cb Callback, flags Flags) (string, error) {
	return d.submit(nil, ev, mask, cb, flags, false)
}

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// submit is Log and LogAsync: urgent sends the batch at once.
func (d *Dispatcher) submit(ctx context.Context, ev *Event, mask Mask, cb Callback, flags Flags, urgent bool) (string, error) {
	if d.closed.Load() {
		return "", ErrClosed
	}
	if mask == 0 {
		return "", fmt.Errorf("elapi: %w", ErrInvalidMask)
	}
	if ev == nil {
		ev = &Event{}
	}
	tracked := flags&(OnTargetDone|OnDone) != 0
	if tracked {
		if err := d.startTracker(ctx); err != nil {
			return "", err
		}
	}
	if err := d.acquire(ctx); err != nil {
		return "", err
	}
	now := time.Now()
	env := envelope{
		id: d.ids.next(now), mask: uint64(mask), source: Source, received: now.UnixNano(),
		class: d.opts.class, host: d.opts.host, app: d.opts.app, time: now.UnixNano(),
	}
	if tracked {
		env.track = d.receipts
	}
	sp := scratchPool.Get().(*[]byte)
	enc := appendEvent((*sp)[:0], ev, &env)
	defer func() { *sp = enc; scratchPool.Put(sp) }()
	if len(enc)+64 > d.maxBytes {
		d.release(1)
		return "", fmt.Errorf("elapi: event of %d bytes: %w (%d)", len(enc), ErrTooBig, d.maxBytes)
	}
	var e *entry
	if cb != nil || tracked {
		e = &entry{id: env.id, cb: cb, flags: flags, tracked: tracked}
	}
	if tracked {
		d.trackMu.Lock()
		d.pending[env.id] = e
		d.trackMu.Unlock()
	}
	var full *batch
	d.mu.Lock()
	if d.closed.Load() {
		d.mu.Unlock()
		if tracked {
			d.trackMu.Lock()
			delete(d.pending, env.id)
			d.trackMu.Unlock()
		}
		d.release(1)
		return "", ErrClosed
	}
	if d.cur != nil && len(d.cur.buf)+len(enc)+16 > d.maxBytes {
		full, d.cur = d.cur, nil
	}
	if d.cur == nil {
		d.seq++
		id := "elapi." + d.name + "." + strconv.FormatUint(d.seq, 10)
		d.cur = &batch{id: id, buf: appendBatchHeader(make([]byte, 0, min(d.maxBytes, 64<<10)), id)}
	}
	b := d.cur
	b.buf = appendBatchEvent(b.buf, enc)
	b.n++
	b.ids = append(b.ids, env.id)
	if e != nil {
		b.entries = append(b.entries, e)
	}
	if !tracked {
		b.release++
	}
	var now2 *batch
	if urgent || b.n >= d.opts.batchEvents || d.opts.linger == 0 {
		now2, d.cur = b, nil
	} else if b.n == 1 {
		d.timer.Reset(d.opts.linger)
	}
	if full != nil {
		d.sendq <- full
	}
	if now2 != nil {
		d.sendq <- now2
	}
	d.mu.Unlock()
	return env.id, nil
}

// flushLinger sends the batch in the making when its linger ran out.
func (d *Dispatcher) flushLinger() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur != nil && d.cur.n > 0 && !d.closed.Load() {
		d.sendq <- d.cur
		d.cur = nil
	}
}

// acquire takes a slot for one event.
func (d *Dispatcher) acquire(ctx context.Context) error {
	select {
	case d.slots <- struct{}{}:
	default:
		if d.opts.backpressure == FailWhenFull {
			return ErrFull
		}
		var done <-chan struct{}
		if ctx != nil {
			done = ctx.Done()
		}
		select {
		case d.slots <- struct{}{}:
		case <-d.closing:
			return ErrClosed
		case <-done:
			return fmt.Errorf("elapi: waiting for a slot: %w", ctx.Err())
		}
	}
	d.open.Add(1)
	return nil
}

func (d *Dispatcher) release(n int) {
	if n == 0 {
		return
	}
	for range n {
		<-d.slots
	}
	if d.open.Add(int64(-n)) == 0 && d.closed.Load() {
		select {
		case d.idle <- struct{}{}:
		default:
		}
	}
}

// publishLoop sends batches; JetStream's acknowledgements are awaited by
// ackLoop, so many batches are on the wire at once.
func (d *Dispatcher) publishLoop() {
	defer d.wg.Done()
	defer close(d.ackq)
	for b := range d.sendq {
		d.openMu.Lock()
		d.batches[b] = struct{}{}
		d.openMu.Unlock()
		select {
		case <-d.stop:
			d.ackq <- published{b: b, err: ErrClosed}
			continue
		default:
		}
		f, err := d.js.PublishMsgAsync(d.batchMsg(b))
		d.ackq <- published{b: b, f: f, err: err}
	}
}

func (d *Dispatcher) batchMsg(b *batch) *nats.Msg {
	m := nats.NewMsg(d.subject)
	m.Data = b.buf
	m.Header.Set(jetstream.MsgIDHeader, b.id)
	m.Header.Set(headerEncoding, encodingBatch)
	return m
}

// ackLoop waits for each batch's acknowledgement, in order. A batch whose
// publish failed (no connection, herald down, no acknowledgement in time)
// is sent again under the same Nats-Msg-Id until it is stored, so it is
// stored once; the wait back-pressures LogAsync through the slots.
func (d *Dispatcher) ackLoop() {
	defer d.wg.Done()
	for p := range d.ackq {
		err := p.err
		if err == nil {
			select {
			case <-p.f.Ok():
			case err = <-p.f.Err():
			case <-d.stop:
				err = ErrClosed
			}
		}
		wait := 100 * time.Millisecond
		for err != nil && !errors.Is(err, ErrClosed) {
			d.opts.log.Warn("elapi: batch not stored; sending it again", "batch", p.b.id, "events", p.b.n, "err", err)
			select {
			case <-d.stop:
				err = ErrClosed
				continue
			case <-time.After(wait):
			}
			wait = min(2*wait, 2*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), d.opts.publishTimeout)
			_, err = d.js.PublishMsg(ctx, d.batchMsg(p.b))
			cancel()
		}
		d.openMu.Lock()
		delete(d.batches, p.b)
		d.openMu.Unlock()
		if err != nil {
			d.fail(p.b, err)
			continue
		}
		for _, e := range p.b.entries {
			d.accept(e)
		}
		d.release(p.b.release)
	}
}

// accept reports that JetStream stored e's event.
func (d *Dispatcher) accept(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.accepted || e.done {
		return
	}
	e.accepted = true
	if e.flags&OnAccepted != 0 && e.cb != nil {
		e.cb(Notice{ID: e.id, Moment: OnAccepted})
	}
}

// fail ends every event of a batch that was not stored.
func (d *Dispatcher) fail(b *batch, err error) {
	for _, e := range b.entries {
		d.finish(e, err)
	}
	d.release(b.release)
}

// finish ends a tracked or called-back event with err, once.
func (d *Dispatcher) finish(e *entry, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return
	}
	e.done = true
	if e.tracked {
		d.trackMu.Lock()
		delete(d.pending, e.id)
		d.trackMu.Unlock()
	}
	if e.cb != nil {
		e.cb(Notice{ID: e.id, Moment: OnDone, Err: err})
	}
	if e.tracked {
		d.release(1) // after the callback, as in onReceipt
	}
}

// OpenError is what Close returns when its deadline came before every
// event finished: the events still open. Their callbacks ran with
// ErrClosed.
type OpenError struct {
	Events []OpenEvent
	Err    error // ctx's error
}

// OpenEvent is one event Close left behind.
type OpenEvent struct {
	ID string
	// Accepted: JetStream stored it (herald will deliver it; the
	// dispatcher will not hear of it any more).
	Accepted bool
	// Routed: herald's router sent it to Waiting's targets (and others,
	// done already).
	Routed bool
	// Waiting are the targets not yet done with it, once routed.
	Waiting []string
}

func (e *OpenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "elapi: close: %d event(s) still open", len(e.Events))
	for i, ev := range e.Events {
		if i == 5 {
			fmt.Fprintf(&b, ", ... (%d more)", len(e.Events)-5)
			break
		}
		b.WriteString(", ")
		b.WriteString(ev.ID)
		switch {
		case !ev.Accepted:
			b.WriteString(" (not stored)")
		case !ev.Routed:
			b.WriteString(" (stored, not routed yet)")
		default:
			b.WriteString(" (waiting for " + strings.Join(ev.Waiting, ", ") + ")")
		}
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *OpenError) Unwrap() error { return e.Err }

// Close stops taking events, sends what is batched and waits until every
// event in flight finished or ctx ends. Then it closes the connection. If
// ctx ended first the error is an *OpenError listing what was still open;
// their callbacks run with ErrClosed. Close is idempotent.
func (d *Dispatcher) Close(ctx context.Context) error {
	if !d.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(d.closing)
	d.mu.Lock()
	d.timer.Stop()
	if d.cur != nil && d.cur.n > 0 {
		d.sendq <- d.cur
	}
	d.cur = nil
	close(d.sendq)
	d.mu.Unlock()
	var err error
	for d.open.Load() > 0 && err == nil {
		select {
		case <-d.idle:
		case <-ctx.Done():
			err = d.openError(ctx.Err())
		}
	}
	close(d.stop)
	d.wg.Wait()
	if err != nil {
		d.trackMu.Lock()
		left := make([]*entry, 0, len(d.pending))
		for _, e := range d.pending {
			left = append(left, e)
		}
		d.trackMu.Unlock()
		for _, e := range left {
			d.finish(e, ErrClosed)
		}
	}
	d.trackMu.Lock()
	if d.consume != nil {
		d.consume.Stop()
	}
	d.trackMu.Unlock()
	d.nc.Close()
	return err
}

// openError lists the events in flight.
func (d *Dispatcher) openError(cause error) *OpenError {
	oe := &OpenError{Err: cause}
	seen := map[string]bool{}
	d.openMu.Lock()
	for b := range d.batches {
		for _, id := range b.ids {
			seen[id] = true
			oe.Events = append(oe.Events, OpenEvent{ID: id})
		}
	}
	d.openMu.Unlock()
	d.trackMu.Lock()
	entries := make([]*entry, 0, len(d.pending))
	for _, e := range d.pending {
		entries = append(entries, e)
	}
	d.trackMu.Unlock()
	for _, e := range entries {
		if seen[e.id] {
			continue
		}
		e.mu.Lock()
		oe.Events = append(oe.Events, OpenEvent{ID: e.id, Accepted: e.accepted, Routed: e.routed, Waiting: e.waiting()})
		e.mu.Unlock()
	}
	sortOpen(oe.Events)
	return oe
}
