package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/ids"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// Batcher groups records into batches, flushed when full (events or bytes)
// or when the first record has waited linger, and publishes them durably.
// Add blocks when too many batches await JetStream's acknowledgement: that
// back-pressure reaches TCP senders through their socket windows.
//
// A batch JetStream refuses is retried, under the same Nats-Msg-Id, until
// it is stored: when the store is full (its limit reached), the batcher
// holds its batches and so its adders until the pipeline drains and makes
// room, and reports the condition (StoreFull, herald_receiver_store_full,
// a log line naming the limit). Only Close running out of time gives up on
// what is still in memory.
type Batcher struct {
	bus       *bus.Bus
	subject   string
	maxEvents int
	maxBytes  int
	linger    time.Duration
	m         *metrics.Stage
	log       *slog.Logger

	mu       sync.Mutex
	cur      []*schemas.Event
	curDone  []func(error) // confirmation callbacks of cur, nil entries for Add
	hasDone  bool
	curBytes int
	gen      uint64 // bumps at every flush, so a stale linger timer does nothing
	closed   bool

	out     chan pending
	confirm chan confirmation
	done    chan struct{}

	gate *storeGate
	// stopped ends every wait and retry: Close ran out of time.
	stopped   context.Context
	stop      context.CancelFunc
	closeOnce sync.Once
}

type pending struct {
	events []*schemas.Event
	done   []func(error) // nil when no record asked to be told
}

type confirmation struct {
	futures []jetstream.PubAckFuture
	events  int
	done    []func(error)
	err     error // set when the batch could not even be published
}

// NewBatcher starts a batcher publishing to subject.
func NewBatcher(b *bus.Bus, subject string, maxEvents, maxBytes int, linger time.Duration, m *metrics.Stage, log *slog.Logger) *Batcher {
	name := strings.TrimPrefix(subject, bus.SubjectRawPrefix)
	bt := &Batcher{
		bus: b, subject: subject, maxEvents: maxEvents, maxBytes: maxBytes, linger: linger, m: m, log: log,
		out:     make(chan pending, 16),
		confirm: make(chan confirmation, 64),
		done:    make(chan struct{}),
		gate:    newStoreGate(name, m.StoreFull(name), log, storeUsage(b)),
	}
	bt.stopped, bt.stop = context.WithCancel(context.Background())
	go bt.publishLoop()
	go bt.confirmLoop()
	return bt
}

// eventOverhead approximates the protobuf bytes of an event besides its raw
// record, so the byte limit holds for the encoded batch.
const eventOverhead = 48

// Add queues one record. It reports false if the batcher is closed.
func (bt *Batcher) Add(ev *schemas.Event) bool { return bt.AddConfirmed(ev, nil) }

// AddConfirmed queues one record and calls done (from another goroutine)
// once the record is durably stored (nil) or could not be (an error). It
// reports false, without calling done, if the batcher is closed.
func (bt *Batcher) AddConfirmed(ev *schemas.Event, done func(error)) bool {
	n := len(ev.Raw) + len(ev.Peer) + eventOverhead
	bt.mu.Lock()
	if bt.closed {
		bt.mu.Unlock()
		return false
	}
	if len(bt.cur) > 0 && bt.curBytes+n > bt.maxBytes {
		bt.flushLocked()
	}
	bt.cur = append(bt.cur, ev)
	if done != nil && !bt.hasDone {
		bt.curDone = make([]func(error), len(bt.cur)-1, cap(bt.cur))
		bt.hasDone = true
	}
	if bt.hasDone {
		bt.curDone = append(bt.curDone, done)
	}
	bt.curBytes += n
	if len(bt.cur) == 1 {
		gen := bt.gen
		time.AfterFunc(bt.linger, func() { bt.flushGen(gen) })
	}
	if len(bt.cur) >= bt.maxEvents {
		bt.flushLocked()
	}
	bt.mu.Unlock()
	return true
}

func (bt *Batcher) flushGen(gen uint64) {
	bt.mu.Lock()
	if bt.gen == gen && len(bt.cur) > 0 && !bt.closed {
		bt.flushLocked()
	}
	bt.mu.Unlock()
}

// flushLocked hands the current batch to the publisher. It may block while
// the publisher is behind (or the store is full); the lock then holds other
// adders too, which is the intended back-pressure. Once Close ran out of
// time it fails the batch instead.
// Lock must be held.
func (bt *Batcher) flushLocked() {
	p := pending{events: bt.cur}
	if bt.hasDone {
		p.done = bt.curDone
	}
	bt.cur = make([]*schemas.Event, 0, min(bt.maxEvents, 1024))
	bt.curDone, bt.hasDone = nil, false
	bt.curBytes = 0
	bt.gen++
	select {
	case bt.out <- p:
	case <-bt.stopped.Done():
		bt.m.Rejected("publish", len(p.events))
		for _, done := range p.done {
			if done != nil {
				done(errStopped)
			}
		}
	}
}

// errStopped fails the records still in memory when Close runs out of
// time.
var errStopped = errors.New("receiver stopped before its records were stored")

func (bt *Batcher) publishLoop() {
	defer close(bt.confirm)
	ctx := bt.stopped
	for p := range bt.out {
		batch := p.events
		c := confirmation{events: len(batch), done: p.done}
		msgs, err := bus.EncodeBatches(bt.subject, ids.New(time.Now()), batch, bt.maxBytes+bt.maxBytes/4)
		if err != nil {
			// Cannot happen for valid events; count it rather than hide it.
			bt.log.Error("encoding a raw batch failed", "err", err, "events", len(batch))
			bt.m.Rejected("encode", len(batch))
			c.err = err
			bt.confirm <- c
			continue
		}
		for _, m := range msgs {
			if full := bt.gate.nearFull(); full != nil {
				// Hold it here until there is room, as if refused.
				if err := bt.retry(m, full); err != nil {
					if !errors.Is(err, errStopped) {
						bt.log.Error("publishing raw batch failed", "err", err)
					}
					bt.m.Rejected("publish", len(batch))
					c.err = err
				}
				continue
			}
			f, err := bt.bus.PublishAsync(ctx, m)
			if err != nil {
				// Publish it synchronously instead, retrying until it is
				// stored: the records are only in memory here.
				if err := bt.publish(m); err != nil {
					if !errors.Is(err, errStopped) {
						bt.log.Error("publishing raw batch failed", "err", err)
					}
					bt.m.Rejected("publish", len(batch))
					c.err = err
				}
				continue
			}
			c.futures = append(c.futures, f)
		}
		bt.confirm <- c
	}
}

func (bt *Batcher) confirmLoop() {
	defer close(bt.done)
	for c := range bt.confirm {
		err := c.err
		for _, f := range c.futures {
			if cerr := bt.confirmOne(f); cerr != nil {
				err = cerr
				if !errors.Is(cerr, errStopped) { // Close's caller says it once
					bt.log.Error("raw batch not stored", "err", cerr)
				}
			}
		}
		if err == nil {
			bt.m.Published.Add(float64(c.events))
		} else if c.err == nil {
			bt.m.Rejected("publish", c.events)
		}
		for _, done := range c.done {
			if done != nil {
				done(err)
			}
		}
	}
}

// confirmOne waits until JetStream acknowledged f, retrying a refused
// message until it is stored or Close runs out of time.
func (bt *Batcher) confirmOne(f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		bt.gate.stored()
		return nil
	case err := <-f.Err():
		return bt.retry(f.Msg(), err)
	case <-bt.stopped.Done():
		return fmt.Errorf("publish %s: %w", bt.subject, errStopped)
	}
}

// publish publishes m and waits for its acknowledgement, retrying as
// confirmOne does.
func (bt *Batcher) publish(m *nats.Msg) error {
	ctx, cancel := context.WithTimeout(bt.stopped, publishTimeout)
	_, err := bt.bus.JS.PublishMsg(ctx, m)
	cancel()
	if err == nil {
		bt.gate.stored()
		return nil
	}
	return bt.retry(m, err)
}

// Retry timing: a full store waits for the pipeline to drain, so it is
// probed at most every retryMaxFull, which also bounds how late intake
// resumes after room is made.
const (
	publishTimeout = 5 * time.Second
	retryFirst     = 50 * time.Millisecond
	retryMax       = 2 * time.Second
	retryMaxFull   = time.Second
)

// retry publishes m again under its Nats-Msg-Id, so a retry racing a late
// success stores it once, with back-off until it is stored or Close runs
// out of time. A full store is reported through the gate, not per attempt,
// and is tried again only once it is below admitBelow of its limit.
func (bt *Batcher) retry(m *nats.Msg, cause error) error {
	held := false
	defer func() {
		if held {
			bt.gate.release()
		}
	}()
	wait := retryFirst
	for attempt := 1; ; attempt++ {
		limit := retryMax
		if IsStoreFull(cause) {
			if !errors.Is(cause, ErrStoreFull) {
				cause = storeFull(bt.bus, m.Subject, cause)
			}
			if held {
				bt.gate.again(cause)
			} else {
				bt.gate.hold(cause)
				held = true
			}
			limit = retryMaxFull
		} else {
			bt.log.Warn("publish failed, retrying", "subject", m.Subject, "attempt", attempt, "err", cause)
		}
		wait = min(wait, limit)
		select {
		case <-bt.stopped.Done():
			return fmt.Errorf("publish %s: %w (last error: %w)", m.Subject, errStopped, cause)
		case <-time.After(wait):
		}
		if held && !bt.gate.hasRoom() {
			wait *= 2
			continue
		}
		ctx, cancel := context.WithTimeout(bt.stopped, publishTimeout)
		_, err := bt.bus.JS.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			if held {
				bt.gate.release()
				held = false
			}
			bt.gate.stored()
			return nil
		}
		cause = err
		wait *= 2
	}
}

// StoreFull returns why JetStream refuses this receiver's records while it
// does (an error wrapping ErrStoreFull that names the limit), nil while
// there is room. A receiver that can refuse its senders (HTTP) does so.
func (bt *Batcher) StoreFull() error { return bt.gate.full() }

// StoreRefused reports a store-full refusal of a message to subject that
// the receiver published itself and does not retry (it told its sender
// to); it returns err naming the limit. Other errors pass unchanged.
func (bt *Batcher) StoreRefused(subject string, err error) error {
	if !IsStoreFull(err) {
		return err
	}
	err = storeFull(bt.bus, subject, err)
	bt.gate.refusedOnce(err)
	return err
}

// Stored reports a message the receiver published itself that JetStream
// stored: there is room.
func (bt *Batcher) Stored() { bt.gate.stored() }

// Close flushes what is buffered and waits, bounded by ctx, until every
// batch is stored. When ctx ends first (the store is full, say) it gives
// up: the records still in memory are reported failed to their callers
// and counted (publish), and Close returns ctx's error.
func (bt *Batcher) Close(ctx context.Context) error {
	bt.closeOnce.Do(func() {
		// The flush may wait behind a publisher held by a full store: in a
		// goroutine, so that ctx still bounds Close.
		go func() {
			bt.mu.Lock()
			if len(bt.cur) > 0 {
				bt.flushLocked()
			}
			bt.closed = true
			close(bt.out)
			bt.mu.Unlock()
		}()
	})
	select {
	case <-bt.done:
		bt.stop()
		return nil
	case <-ctx.Done():
		bt.stop()
		<-bt.done // every wait of the loops ends with stopped
		return ctx.Err()
	}
}
