package sink

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// Handler drives one sink: each delivered batch is one transaction, and
// the JetStream message is acked only for what the provider committed.
//
//   - all committed: ack.
//   - nothing committed, retryable error: the sink is suspended with
//     exponential back-off and jitter (herald_sink_suspended), its input is
//     paused, and the batch is held, kept alive with InProgress, and tried
//     again when the back-off ends (the probe). Batches already pulled wait
//     behind it in order. Nothing is redelivered meanwhile, so an outage of
//     any length never counts against bus.max_deliver.
//   - part committed: the uncommitted tail is published again as a new
//     batch under an id derived from the original, then the original is
//     acked; the sink is suspended as above.
//   - an event that failed permanently: dead-lettered with its code.
type Handler struct {
	Name       string
	Provider   Provider
	Bus        *bus.Bus
	MaxBytes   int
	MaxDeliver int
	// Timeout bounds one transaction, so a hanging sink cannot hold its
	// batch forever.
	Timeout time.Duration
	// AckWait is the consumers' ack wait; held batches are kept alive well
	// within it.
	AckWait time.Duration
	Metrics *metrics.Stage
	// Suspended is set to 1 while suspended (herald_sink_suspended).
	Suspended interface{ Set(float64) }
	Log       *slog.Logger
	// BackoffMin and BackoffMax bound the suspension after a retryable
	// error (it doubles from min to max, with jitter). Zero means 200ms and
	// 30s.
	BackoffMin, BackoffMax time.Duration

	paused         bool
	flow           stage.Flow
	held           []jetstream.Msg
	lastKeepAlive  time.Time
	failures       int
	suspendedUntil time.Time
}

// Back-off of a suspended sink: exponential with jitter, capped.
const (
	backoffMin = 200 * time.Millisecond
	backoffMax = 30 * time.Second
)

// SetFlow implements stage.FlowControlled.
func (h *Handler) SetFlow(f stage.Flow) { h.flow = f }

// Handle processes one delivery, or holds it behind a suspended sink.
func (h *Handler) Handle(ctx context.Context, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err == nil && md.NumDelivered > 1 {
		h.Metrics.Redelivered.Inc()
	}
	if err == nil && h.MaxDeliver > 0 && md.NumDelivered > uint64(h.MaxDeliver) {
		h.deadLetterMsg(ctx, msg, "max_deliver", errors.New("delivered too often without being committed"))
		return
	}
	if len(h.held) > 0 {
		h.held = append(h.held, msg) // keep the order behind what waits
		return
	}
	if !h.process(ctx, msg) {
		h.held = append(h.held, msg)
	}
}

// Tick implements stage.Ticker: it keeps held batches alive and, once the
// back-off has passed, tries them again in order.
func (h *Handler) Tick(ctx context.Context) {
	if len(h.held) == 0 {
		// Suspended after a partial commit: the requeued tail waits in
		// JetStream, and pulling it again is the probe.
		if h.paused && !time.Now().Before(h.suspendedUntil) {
			h.resumeFlow()
		}
		return
	}
	if keep := h.AckWait / 3; keep > 0 && time.Since(h.lastKeepAlive) >= keep {
		for _, m := range h.held {
			_ = m.InProgress()
		}
		h.lastKeepAlive = time.Now()
	}
	for len(h.held) > 0 && !time.Now().Before(h.suspendedUntil) {
		if !h.process(ctx, h.held[0]) {
			return
		}
		h.held = h.held[1:]
	}
	if len(h.held) == 0 {
		h.resumeFlow()
	}
}

func (h *Handler) resumeFlow() {
	if h.paused && h.flow != nil {
		h.flow.Resume()
	}
	h.paused = false
}

// process runs one batch through a transaction. It reports false when the
// batch must be held and tried again later (the sink is now suspended).
func (h *Handler) process(ctx context.Context, msg jetstream.Msg) bool {
	b, err := bus.Decode(msg)
	if err != nil {
		h.deadLetterMsg(ctx, msg, "malformed", err)
		return true
	}
	h.Metrics.Received.Add(float64(len(b.Events)))
	tctx, cancel := context.WithTimeout(ctx, h.Timeout)
	res := Transact(tctx, h.Provider, b.Events)
	cancel()

	for i, ferr := range res.Failed {
		code, _ := IsPermanent(ferr)
		if err := h.deadLetterEvent(ctx, msg, b.Id, i, b.Events[i], code, ferr); err != nil {
			// Cannot store the dead letter: keep the whole batch for later
			// (the events before it may be written twice; none is lost).
			h.suspend(err)
			return false
		}
	}
	done := res.Committed - len(res.Failed)
	if res.Err == nil {
		h.resume()
		h.ack(msg, done)
		return true
	}
	h.suspend(res.Err)
	if res.Committed == 0 {
		return false
	}
	var tail []*schemas.Event
	for i := res.Committed; i < len(b.Events); i++ {
		if _, failed := res.Failed[i]; !failed {
			tail = append(tail, b.Events[i])
		}
	}
	if err := h.requeue(ctx, msg.Subject(), b.Id+":tail"+strconv.Itoa(res.Committed), tail); err != nil {
		h.Log.Error("requeue of uncommitted tail failed; whole batch held", "sink", h.Name, "err", err)
		return false
	}
	h.ack(msg, res.Committed)
	return true
}

func (h *Handler) ack(msg jetstream.Msg, committed int) {
	if err := msg.Ack(); err != nil {
		h.Log.Warn("ack failed; the batch will be delivered again", "sink", h.Name, "err", err)
		return
	}
	h.Metrics.Published.Add(float64(committed))
	h.Metrics.Acked.Inc()
}

func (h *Handler) requeue(ctx context.Context, subject, id string, events []*schemas.Event) error {
	if len(events) == 0 {
		return nil
	}
	msgs, err := bus.EncodeBatches(subject, id, events, h.MaxBytes)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := h.Bus.Publish(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) suspend(cause error) {
	h.failures++
	wait := h.backoff()
	h.suspendedUntil = time.Now().Add(wait)
	if h.Suspended != nil {
		h.Suspended.Set(1)
	}
	if h.flow != nil && !h.paused {
		h.flow.Pause()
	}
	h.paused = true
	h.Log.Warn("sink suspended after a retryable error", "sink", h.Name, "retry_in", wait, "failures", h.failures, "err", cause)
}

func (h *Handler) resume() {
	if h.failures > 0 {
		h.Log.Info("sink resumed", "sink", h.Name, "after_failures", h.failures)
	}
	h.failures = 0
	if h.Suspended != nil {
		h.Suspended.Set(0)
	}
}

func (h *Handler) backoff() time.Duration {
	lo, hi := h.BackoffMin, h.BackoffMax
	if lo <= 0 {
		lo = backoffMin
	}
	if hi <= 0 {
		hi = backoffMax
	}
	d := lo << min(h.failures, 10)
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

func (h *Handler) deadLetterEvent(ctx context.Context, msg jetstream.Msg, batchID string, i int, ev *schemas.Event, code string, cause error) error {
	data, err := proto.Marshal(&schemas.Batch{Id: batchID + ":dlq" + strconv.Itoa(i), Events: []*schemas.Event{ev}})
	if err != nil {
		return err
	}
	if err := h.Bus.DeadLetter(ctx, "sink."+h.Name, batchID+"."+strconv.Itoa(i), msg.Subject(), code, cause.Error(), data, bus.EncodingBatch); err != nil {
		return err
	}
	h.Metrics.DeadLettered(code, 1)
	h.Log.Warn("event dead-lettered", "sink", h.Name, "reason", code, "err", cause, "event", ev.Id)
	return nil
}

func (h *Handler) deadLetterMsg(ctx context.Context, msg jetstream.Msg, reason string, cause error) {
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if md, err := msg.Metadata(); err == nil && id == "" {
		id = md.Stream + "." + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	if err := h.Bus.DeadLetter(ctx, "sink."+h.Name, id, msg.Subject(), reason, cause.Error(), msg.Data(),
		msg.Headers().Get(bus.HeaderEncoding)); err != nil {
		h.Log.Error("dead letter failed; batch handed back", "sink", h.Name, "err", err)
		_ = msg.NakWithDelay(time.Second)
		h.Metrics.Nakked.Inc()
		return
	}
	h.Metrics.DeadLettered(reason, 1)
	h.Log.Warn("batch dead-lettered", "sink", h.Name, "reason", reason, "err", cause)
	_ = msg.TermWithReason(reason)
}

// Drain hands held batches back for a prompt redelivery (to another
// process, or after the restart) and closes the provider.
func (h *Handler) Drain(ctx context.Context) {
	for _, m := range h.held {
		_ = m.Nak()
	}
	h.held = nil
	if err := h.Provider.Close(ctx); err != nil {
		h.Log.Error("closing sink", "sink", h.Name, "err", err)
	}
}

var (
	_ stage.Handler        = (*Handler)(nil)
	_ stage.Drainer        = (*Handler)(nil)
	_ stage.Ticker         = (*Handler)(nil)
	_ stage.FlowControlled = (*Handler)(nil)
)
