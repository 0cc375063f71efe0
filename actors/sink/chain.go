package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// Chain is the handler of one target: the target's batches go through its
// fail-over chain of sinks, and the JetStream message is acked only for
// what the sinks committed.
//
//   - The first sink that is up gets the batch. What it does not commit
//     (it failed part-way, or it is suspended) goes to the next sink of the
//     chain, in order; a batch starts at the first sink again as soon as
//     that one's back-off has passed, so a revived sink takes over.
//   - Events that failed permanently are dead-lettered with their code.
//   - When the batch is only partly written and no sink can take the rest,
//     the rest is published again as a new batch under an id derived from
//     the original, and the original is acked.
//   - When no sink can take any of it, the target pauses its consumer and
//     holds the batch (and those behind it, in order), keeps them alive
//     with InProgress and tries again when the first sink is due. Nothing
//     is redelivered meanwhile, so an outage of any length never counts
//     against bus.max_deliver; the backlog waits in JetStream.
//   - A batch pinned to one sink (bus.HeaderSink, set by `herald replay
//     --sink`) goes to that sink only, never on to the rest of the chain;
//     while that sink is suspended the batch is held like any other.
type Chain struct {
	Target     string
	Sinks      []*Executor
	Bus        *bus.Bus
	MaxBytes   int
	MaxDeliver int
	// AckWait is the consumer's ack wait; held batches are kept alive well
	// within it.
	AckWait time.Duration
	Metrics *metrics.Stage
	// Backlog is set to the consumer's pending plus unacknowledged
	// messages (herald_target_backlog), refreshed on ticks.
	Backlog interface{ Set(float64) }
	// Latency observes the seconds from an event's arrival to its commit
	// (herald_target_latency_seconds); nil for none.
	Latency  interface{ Observe(float64) }
	Consumer interface {
		Info(context.Context) (*jetstream.ConsumerInfo, error)
	}
	Log *slog.Logger

	flow          stage.Flow
	paused        bool
	held          []jetstream.Msg
	panics        int // panics of the first held batch
	lastKeepAlive time.Time
	lastBacklog   time.Time
}

// SetFlow implements stage.FlowControlled.
func (c *Chain) SetFlow(f stage.Flow) { c.flow = f }

// Handle processes one delivery, or holds it behind the ones waiting.
func (c *Chain) Handle(ctx context.Context, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err == nil && md.NumDelivered > 1 {
		c.Metrics.Redelivered.Inc()
	}
	if err == nil && c.MaxDeliver > 0 && md.NumDelivered > uint64(c.MaxDeliver) {
		c.deadLetterMsg(ctx, msg, "max_deliver", errors.New("delivered too often without being committed"))
		return
	}
	if len(c.held) > 0 {
		c.held = append(c.held, msg) // keep the order behind what waits
		return
	}
	if !c.process(ctx, msg) {
		c.hold(msg)
	}
}

func (c *Chain) hold(msg jetstream.Msg) {
	c.held = append(c.held, msg)
	if c.flow != nil && !c.paused {
		c.flow.Pause()
	}
	c.paused = true
}

// Tick implements stage.Ticker: it refreshes the backlog gauge, keeps held
// batches alive and tries them again, in order, once a sink is due.
func (c *Chain) Tick(ctx context.Context) {
	if c.Backlog != nil && c.Consumer != nil && time.Since(c.lastBacklog) >= 2*time.Second {
		c.lastBacklog = time.Now()
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		if info, err := c.Consumer.Info(qctx); err == nil {
			c.Backlog.Set(float64(info.NumPending + uint64(info.NumAckPending)))
		}
		cancel()
	}
	if len(c.held) > 0 {
		if keep := c.AckWait / 3; keep > 0 && time.Since(c.lastKeepAlive) >= keep {
			for _, m := range c.held {
				_ = m.InProgress()
			}
			c.lastKeepAlive = time.Now()
		}
	}
	for len(c.held) > 0 && c.availableFor(c.held[0]) {
		if !c.process(ctx, c.held[0]) {
			return
		}
		c.held = c.held[1:]
		c.panics = 0
	}
	if len(c.held) == 0 && c.paused && c.anyAvailable() {
		c.paused = false
		if c.flow != nil {
			c.flow.Resume()
		}
	}
}

func (c *Chain) anyAvailable() bool {
	for _, s := range c.Sinks {
		if s.Available() {
			return true
		}
	}
	return false
}

// sinksFor returns the sinks msg may go to: the whole chain, or only the
// sink a replayed batch is pinned to (bus.HeaderSink). ok is false when
// the pinned sink is not in this chain (the config changed since).
func (c *Chain) sinksFor(msg jetstream.Msg) (sinks []*Executor, pin string, ok bool) {
	pin = msg.Headers().Get(bus.HeaderSink)
	if pin == "" {
		return c.Sinks, "", true
	}
	for _, s := range c.Sinks {
		if s.Name == pin {
			return []*Executor{s}, pin, true
		}
	}
	return nil, pin, false
}

// availableFor reports whether a sink msg may go to can be tried now; a
// batch pinned to an unknown sink counts as available, so that process
// dead-letters it.
func (c *Chain) availableFor(msg jetstream.Msg) bool {
	sinks, _, ok := c.sinksFor(msg)
	if !ok {
		return true
	}
	for _, s := range sinks {
		if s.Available() {
			return true
		}
	}
	return false
}

// process offers one batch to the chain. It reports false when nothing of
// it could be written and it must be held.
func (c *Chain) process(ctx context.Context, msg jetstream.Msg) bool {
	b, err := bus.Decode(msg)
	if err != nil {
		c.deadLetterMsg(ctx, msg, "malformed", err)
		return true
	}
	sinks, pin, ok := c.sinksFor(msg)
	if !ok {
		c.deadLetterMsg(ctx, msg, "unknown_sink", fmt.Errorf("the batch is pinned to sink %q, which is not in target %s's chain", pin, c.Target))
		return true
	}
	c.Metrics.Received.Add(float64(len(b.Events)))
	c.Metrics.BatchSize.Observe(float64(len(b.Events)))
	rest := b.Events
	written := 0
	var receipts bus.Receipts // of tracked events done here, stored before the ack
	for si, s := range sinks {
		if len(rest) == 0 {
			break
		}
		if !s.Available() {
			continue
		}
		res := s.Transact(ctx, rest)
		if errors.Is(res.Err, ErrPanicked) {
			// Not an outage: this batch makes the provider panic. After
			// bus.max_deliver tries it is dead-lettered, like any input
			// that keeps failing, so it cannot block the target for ever.
			c.panics++
			if c.MaxDeliver > 0 && c.panics >= c.MaxDeliver {
				c.panics = 0
				c.deadLetterMsg(ctx, msg, "sink_panic", res.Err)
				return true
			}
		}
		for i, ferr := range res.Failed {
			code, _ := IsPermanent(ferr)
			if err := c.deadLetterEvent(ctx, msg, b.Id, s.Name, written+i, rest[i], code, ferr); err != nil {
				// The dead letter cannot be stored: keep the whole batch
				// (what was written may be written again; nothing is lost).
				c.Log.Error("dead letter failed; batch held", "target", c.Target, "err", err)
				return false
			}
			if bus.Tracked(rest[i]) {
				receipts.Add(rest[i], &schemas.Receipt{Kind: schemas.Receipt_FAILED, Target: c.Target, Sink: s.Name, Reason: code})
			}
		}
		done := len(rest)
		if res.Err != nil {
			done = res.Committed
		}
		for i := 0; i < done; i++ {
			if _, failed := res.Failed[i]; !failed && bus.Tracked(rest[i]) {
				receipts.Add(rest[i], &schemas.Receipt{Kind: schemas.Receipt_COMMITTED, Target: c.Target, Sink: s.Name})
			}
		}
		if res.Err == nil {
			written += len(rest)
			rest = nil
			break
		}
		if !errors.Is(res.Err, ErrSuspended) {
			then := "the rest is held until it revives"
			if si < len(sinks)-1 {
				then = "handing the rest to the next sink of the chain"
			}
			c.Log.Warn("sink failed; "+then, "target", c.Target,
				"sink", s.Name, "committed", res.Committed, "of", len(rest), "err", res.Err)
		}
		var next []*schemas.Event
		for i := res.Committed; i < len(rest); i++ {
			if _, failed := res.Failed[i]; !failed {
				next = append(next, rest[i])
			}
		}
		written += len(rest) - len(next)
		rest = next
	}
	if err := c.publishReceipts(ctx, b.Id, &receipts); err != nil {
		// The writes stand; holding the batch repeats them (at least once)
		// and the receipts again, which the stream de-duplicates (the
		// client, when a retry reports other copies).
		c.Log.Error("receipts not stored; batch held", "target", c.Target, "err", err)
		return false
	}
	if len(rest) == 0 {
		c.ack(msg, written)
		if c.Latency != nil {
			now := time.Now().UnixNano()
			for _, ev := range b.Events {
				if ev.ReceivedUnixNano > 0 {
					c.Latency.Observe(float64(now-ev.ReceivedUnixNano) / 1e9)
				}
			}
		}
		return true
	}
	if written == 0 {
		return false
	}
	if err := c.requeue(ctx, msg.Subject(), b.Id+":tail"+strconv.Itoa(written), pin, rest); err != nil {
		c.Log.Error("requeue of the unwritten tail failed; whole batch held", "target", c.Target, "err", err)
		return false
	}
	c.ack(msg, written)
	return true
}

// publishReceipts stores the receipts of tracked events of the batch
// batchID, one message per receipt subject, and waits for JetStream's
// acknowledgements.
func (c *Chain) publishReceipts(ctx context.Context, batchID string, rs *bus.Receipts) error {
	if rs.Len() == 0 {
		return nil
	}
	var futures []jetstream.PubAckFuture
	for _, m := range rs.Msgs(batchID, "target."+c.Target) {
		f, err := c.Bus.PublishAsync(ctx, m)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.Bus.Confirm(cctx, f)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *Chain) ack(msg jetstream.Msg, written int) {
	if err := msg.Ack(); err != nil {
		c.Log.Warn("ack failed; the batch will be delivered again", "target", c.Target, "err", err)
		return
	}
	c.Metrics.Published.Add(float64(written))
	c.Metrics.Acked.Inc()
}

// requeue publishes the unwritten tail of a batch as a new batch, pinned
// to the same sink as the original, if it was.
func (c *Chain) requeue(ctx context.Context, subject, id, pin string, events []*schemas.Event) error {
	msgs, err := bus.EncodeBatches(subject, id, events, c.MaxBytes)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if pin != "" {
			m.Header.Set(bus.HeaderSink, pin)
		}
		if err := c.Bus.Publish(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (c *Chain) deadLetterEvent(ctx context.Context, msg jetstream.Msg, batchID, sinkName string, i int, ev *schemas.Event, code string, cause error) error {
	data, err := proto.Marshal(&schemas.Batch{Id: batchID + ":dlq" + strconv.Itoa(i), Events: []*schemas.Event{ev}})
	if err != nil {
		return err
	}
	if err := c.Bus.DeadLetter(ctx, "sink."+sinkName, batchID+"."+strconv.Itoa(i), msg.Subject(), code, cause.Error(), data, bus.EncodingBatch); err != nil {
		return err
	}
	c.Metrics.DeadLettered(code, 1)
	c.Log.Warn("event dead-lettered", "target", c.Target, "sink", sinkName, "reason", code, "err", cause, "event", ev.Id)
	return nil
}

func (c *Chain) deadLetterMsg(ctx context.Context, msg jetstream.Msg, reason string, cause error) {
	if err := c.Bus.DeadLetterMsg(ctx, "target."+c.Target, msg, reason, cause); err != nil {
		c.Log.Error("dead letter failed; batch handed back", "target", c.Target, "err", err)
		_ = msg.NakWithDelay(time.Second)
		c.Metrics.Nakked.Inc()
		return
	}
	c.Metrics.DeadLettered(reason, 1)
	c.Log.Warn("batch dead-lettered", "target", c.Target, "reason", reason, "err", cause)
	if b, err := bus.Decode(msg); err == nil {
		var receipts bus.Receipts
		for _, ev := range b.Events {
			if bus.Tracked(ev) {
				receipts.Add(ev, &schemas.Receipt{Kind: schemas.Receipt_FAILED, Target: c.Target, Reason: reason})
			}
		}
		if err := c.publishReceipts(ctx, b.Id, &receipts); err != nil {
			c.Log.Error("receipts of a dead-lettered batch not stored", "target", c.Target, "err", err)
		}
	}
	_ = msg.TermWithReason(reason)
}

// Drain hands held batches back for a prompt redelivery (to another
// process, or after the restart).
func (c *Chain) Drain(ctx context.Context) {
	for _, m := range c.held {
		_ = m.Nak()
	}
	c.held = nil
}

var (
	_ stage.Handler        = (*Chain)(nil)
	_ stage.Drainer        = (*Chain)(nil)
	_ stage.Ticker         = (*Chain)(nil)
	_ stage.FlowControlled = (*Chain)(nil)
)
