package receiver

import (
	"context"
	"log/slog"
	"sync"
	"time"

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
	bt := &Batcher{
		bus: b, subject: subject, maxEvents: maxEvents, maxBytes: maxBytes, linger: linger, m: m, log: log,
		out:     make(chan pending, 16),
		confirm: make(chan confirmation, 64),
		done:    make(chan struct{}),
	}
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
// the publisher is behind; the lock then holds other adders too, which is
// the intended back-pressure.
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
	bt.out <- p
}

func (bt *Batcher) publishLoop() {
	defer close(bt.confirm)
	ctx := context.Background()
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
			f, err := bt.bus.PublishAsync(ctx, m)
			if err != nil {
				// Publish it synchronously instead, retrying until it is
				// stored: the records are only in memory here.
				if err := bt.bus.Publish(ctx, m); err != nil {
					bt.log.Error("publishing raw batch failed", "err", err)
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
	ctx := context.Background()
	for c := range bt.confirm {
		err := c.err
		for _, f := range c.futures {
			if cerr := bt.bus.Confirm(ctx, f); cerr != nil {
				err = cerr
				bt.log.Error("raw batch not stored", "err", cerr)
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

// Close flushes what is buffered and waits, bounded by ctx, until every
// batch is stored.
func (bt *Batcher) Close(ctx context.Context) error {
	bt.mu.Lock()
	if bt.closed {
		bt.mu.Unlock()
		return nil
	}
	if len(bt.cur) > 0 {
		bt.flushLocked()
	}
	bt.closed = true
	close(bt.out)
	bt.mu.Unlock()
	select {
	case <-bt.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
