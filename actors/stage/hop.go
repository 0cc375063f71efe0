package stage

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// Output is events bound for one subject. Key names the output inside the
// stage (a class, a target) and must be the same each time the same input
// is processed: the Nats-Msg-Id derives from it. Exactly one of Events,
// Encoded and Data carries the events.
type Output struct {
	Key     string
	Subject string
	Events  []*schemas.Event
	// Encoded holds events already in their wire form (a WireProcessor
	// that edited them without decoding).
	Encoded [][]byte
	// Data is a whole input batch passed on unchanged; Count says how many
	// events it holds.
	Data  []byte
	Count int
	// DeadLetter marks an output of events the stage gives up on: they go
	// to Subject (a dead-letter subject) with the reason in headers.
	DeadLetter *DeadLetter
	// Msgs are ready-made messages (receipts), published as they are and
	// confirmed with the rest before the input is acked.
	Msgs []*nats.Msg

	// Set by fuse for the outputs of linked stages: the Nats-Msg-Id base,
	// the stage that made the output and its metrics, and whether it is an
	// archive copy.
	id      string
	stage   string
	metrics *metrics.Stage
	mirror  bool
}

// DeadLetter is the reason of a dead-letter output. Origin is the subject
// a redrive sends the events to; empty means the stage's input.
type DeadLetter struct {
	Reason, Detail, Origin string
}

func (o *Output) events() int {
	switch {
	case o.Events != nil:
		return len(o.Events)
	case o.Encoded != nil:
		return len(o.Encoded)
	}
	return o.Count
}

// WireProcessor is implemented by processors that can often do their work
// on a batch's wire form without decoding its events: the router passes a
// batch on unchanged when all its events go to the same targets, the
// resolver appends the attributes it adds. It returns the input's batch id
// and the outputs, or false to have the batch decoded and given to Process.
type WireProcessor interface {
	ProcessWire(data []byte) (batchID string, outs []Output, ok bool)
}

// Processor is a stage's logic: plain Go, called without an actor system.
// An error wrapping bus.ErrMalformed dead-letters the input; any other error
// hands it back for a later delivery.
type Processor interface {
	Process(b *schemas.Batch) ([]Output, error)
}

// Hop is the Handler of a stage between two streams. For each input it
// publishes every output asynchronously under derived ids, and acks the
// input only after JetStream acknowledged every output; a separate goroutine
// waits for those acknowledgements so the actor can go on with the next
// input meanwhile.
type Hop struct {
	Name       string
	Bus        *bus.Bus
	Proc       Processor
	MaxBytes   int
	MaxDeliver int
	Metrics    *metrics.Stage
	Log        *slog.Logger
	// Mirror, when set, also receives a copy of every batch this stage
	// publishes (the archive of resolved events, for replay).
	Mirror string
	// Next are the stages that follow this one in the same process; what
	// they consume of this stage's outputs is handed to them in memory (see
	// Link). Empty: every output is published.
	Next []Link
	// Taps, when set, says which of the subjects Next stands in for a
	// `herald tap` watches: those get a plain NATS copy.
	Taps *Taps
	// AckWait is the input consumer's ack wait. An input whose outputs
	// wait for JetStream's acknowledgement (a full store, a stream leader
	// being elected) is kept alive with InProgress within it, so it is not
	// delivered again meanwhile and counted towards bus.max_deliver. Zero
	// disables the keep-alive.
	AckWait time.Duration

	pending  chan pendingAck
	done     chan struct{}
	amu      sync.Mutex                  // guards awaiting
	awaiting map[jetstream.Msg]time.Time // inputs published, not yet acked: last sign of life
	keepStop chan struct{}
}

type pendingAck struct {
	msg     jetstream.Msg
	futures []jetstream.PubAckFuture
	counts  []counted // events each stage published, counted once stored
}

// Init starts the goroutine that confirms publishes and acks inputs.
// window bounds the inputs awaiting confirmation: when it is full, Handle
// blocks, which back-pressures the consumer.
func (h *Hop) Init(window int) {
	h.pending = make(chan pendingAck, window)
	h.done = make(chan struct{})
	h.awaiting = map[jetstream.Msg]time.Time{}
	go h.ackLoop()
	if h.AckWait > 0 {
		h.keepStop = make(chan struct{})
		go h.keepAlive()
	}
}

// keepAlive sends InProgress for every input that has waited a third of
// its ack wait for its outputs' acknowledgements.
func (h *Hop) keepAlive() {
	every := h.AckWait / 3
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-h.keepStop:
			return
		case now := <-t.C:
			h.amu.Lock()
			for m, at := range h.awaiting {
				if now.Sub(at) >= every {
					_ = m.InProgress()
					h.awaiting[m] = now
				}
			}
			h.amu.Unlock()
		}
	}
}

// settled ends the keep-alive of an input that was acked or handed back.
func (h *Hop) settled(m jetstream.Msg) {
	h.amu.Lock()
	delete(h.awaiting, m)
	h.amu.Unlock()
}

// Handle processes one input message.
func (h *Hop) Handle(ctx context.Context, msg jetstream.Msg) {
	if dead := h.checkDeliveries(ctx, msg); dead {
		return
	}
	// A fused hop needs the events as structs for the next stage anyway.
	if wp, ok := h.Proc.(WireProcessor); ok && len(h.Next) == 0 && msg.Headers().Get(bus.HeaderEncoding) == bus.EncodingBatch {
		if id, outs, ok := wp.ProcessWire(msg.Data()); ok {
			h.publish(ctx, msg, id, outs)
			return
		}
	}
	b, err := bus.Decode(msg)
	if err != nil {
		h.rejectMsg(ctx, msg, "malformed", err)
		return
	}
	outs, err := h.Proc.Process(b)
	if err != nil {
		if errors.Is(err, bus.ErrMalformed) {
			h.rejectMsg(ctx, msg, "malformed", err)
			return
		}
		h.Log.Warn("processing failed; the input will be delivered again", "stage", h.Name, "err", err)
		_ = msg.NakWithDelay(time.Second)
		h.Metrics.Nakked.Inc()
		return
	}
	h.Metrics.Received.Add(float64(len(b.Events)))
	h.Metrics.BatchSize.Observe(float64(len(b.Events)))
	h.publish(ctx, msg, b.Id, outs)
}

// publish sends every output under ids derived from the input batch id and
// queues the input for its ack once they are all stored.
func (h *Hop) publish(ctx context.Context, msg jetstream.Msg, batchID string, outs []Output) {
	p := pendingAck{msg: msg}
	if len(outs) > 0 && outs[0].Events == nil && outs[0].Msgs == nil {
		// A wire processor's input was never decoded: count it here.
		h.Metrics.Received.Add(float64(outs[0].events()))
		h.Metrics.BatchSize.Observe(float64(outs[0].events()))
	}
	if len(h.Next) > 0 {
		links := append([]Link{{Name: h.Name, Proc: h.Proc, Metrics: h.Metrics, Mirror: h.Mirror}}, h.Next...)
		var err error
		if outs, p.counts, err = fuse(links, 0, msg.Subject(), batchID, outs, nil, h.tap); err != nil {
			h.Log.Warn("processing failed; the input will be delivered again", "stage", h.Name, "err", err)
			_ = msg.NakWithDelay(time.Second)
			h.Metrics.Nakked.Inc()
			return
		}
	}
	events := 0
	for _, o := range outs {
		id, name, m := o.id, o.stage, o.metrics
		if id == "" {
			id, name, m = batchID+":"+h.Name+":"+o.Key, h.Name, h.Metrics
		}
		var msgs []*nats.Msg
		var err error
		switch {
		case o.Msgs != nil:
			msgs = o.Msgs
		case o.Events != nil:
			msgs, err = bus.EncodeBatches(o.Subject, id, o.Events, h.MaxBytes)
		case o.Encoded != nil:
			msgs = bus.EncodeWireBatches(o.Subject, id, o.Encoded, h.MaxBytes)
		default:
			m := nats.NewMsg(o.Subject)
			m.Data = o.Data
			m.Header.Set(jetstream.MsgIDHeader, id)
			m.Header.Set(bus.HeaderEncoding, bus.EncodingBatch)
			msgs = []*nats.Msg{m}
		}
		if err != nil {
			h.rejectMsg(ctx, msg, "encode", err)
			return
		}
		if dl := o.DeadLetter; dl != nil {
			for _, m := range msgs {
				m.Header.Set(bus.HeaderDLQReason, dl.Reason)
				m.Header.Set(bus.HeaderDLQDetail, dl.Detail)
				m.Header.Set(bus.HeaderDLQStage, name)
				origin := dl.Origin
				if origin == "" {
					origin = msg.Subject()
				}
				m.Header.Set(bus.HeaderDLQSubject, origin)
			}
			m.DeadLettered(dl.Reason, o.events())
			h.Log.Warn("events dead-lettered", "stage", name, "reason", dl.Reason, "events", o.events(), "detail", dl.Detail)
		}
		if h.Mirror != "" && len(h.Next) == 0 && o.Msgs == nil && o.DeadLetter == nil {
			for _, m := range msgs[:len(msgs):len(msgs)] {
				c := nats.NewMsg(h.Mirror)
				c.Data = m.Data
				c.Header.Set(jetstream.MsgIDHeader, m.Header.Get(jetstream.MsgIDHeader)+":mirror")
				c.Header.Set(bus.HeaderEncoding, bus.EncodingBatch)
				msgs = append(msgs, c)
			}
		}
		for _, m := range msgs {
			f, err := h.Bus.PublishAsync(ctx, m)
			if err != nil {
				h.Log.Warn("publish failed; the input will be delivered again", "stage", h.Name, "err", err)
				_ = msg.NakWithDelay(time.Second)
				h.Metrics.Nakked.Inc()
				return
			}
			p.futures = append(p.futures, f)
		}
		if o.Msgs == nil {
			events += o.events()
		}
	}
	if p.counts == nil {
		p.counts = []counted{{h.Metrics, events}}
	}
	h.amu.Lock()
	h.awaiting[msg] = time.Now()
	h.amu.Unlock()
	h.pending <- p
}

// tap publishes, without JetStream, a copy of events a fused hop hands on
// in memory, when a `herald tap` watches the subject they stand for. A tap
// may miss some; the pipeline never waits for it.
func (h *Hop) tap(subject, id string, evs []*schemas.Event) {
	if !h.Taps.Active(subject) {
		return
	}
	msgs, err := bus.EncodeBatches(bus.SubjectTapPrefix+subject, id, evs, h.MaxBytes)
	if err != nil {
		return
	}
	for _, m := range msgs {
		_ = h.Bus.NC.PublishMsg(m)
	}
}

// checkDeliveries counts redeliveries and dead-letters a message delivered
// more than MaxDeliver times, so nothing loops forever or is dropped unseen.
func (h *Hop) checkDeliveries(ctx context.Context, msg jetstream.Msg) bool {
	md, err := msg.Metadata()
	if err != nil {
		return false
	}
	if md.NumDelivered > 1 {
		h.Metrics.Redelivered.Inc()
	}
	if h.MaxDeliver > 0 && md.NumDelivered > uint64(h.MaxDeliver) {
		h.rejectMsg(ctx, msg, "max_deliver", errors.New("delivered too often without success"))
		return true
	}
	return false
}

// rejectMsg dead-letters the whole input message with a reason, then
// terminates it. If the dead letter cannot be stored the input is handed
// back instead: it is never dropped.
func (h *Hop) rejectMsg(ctx context.Context, msg jetstream.Msg, reason string, cause error) {
	h.Log.Warn("dead-lettering input", "stage", h.Name, "reason", reason, "err", cause, "subject", msg.Subject())
	if err := h.Bus.DeadLetterMsg(ctx, h.Name, msg, reason, cause); err != nil {
		h.Log.Error("dead letter failed; input handed back", "stage", h.Name, "err", err)
		_ = msg.NakWithDelay(time.Second)
		h.Metrics.Nakked.Inc()
		return
	}
	h.Metrics.DeadLettered(reason, 1)
	_ = msg.TermWithReason(reason)
}

func (h *Hop) ackLoop() {
	defer close(h.done)
	// Confirmations are retried until they succeed; only a hard stop (the
	// process ending) interrupts them, and then JetStream redelivers.
	ctx := context.Background()
	for p := range h.pending {
		ok := true
		for _, f := range p.futures {
			if err := h.Bus.Confirm(ctx, f); err != nil {
				ok = false
				break
			}
		}
		h.settled(p.msg)
		if !ok {
			_ = p.msg.NakWithDelay(time.Second)
			h.Metrics.Nakked.Inc()
			continue
		}
		if err := p.msg.Ack(); err != nil {
			h.Log.Warn("ack failed; the input will be delivered again and de-duplicated", "stage", h.Name, "err", err)
			continue
		}
		for _, c := range p.counts {
			c.m.Published.Add(float64(c.n))
		}
		h.Metrics.Acked.Inc()
	}
}

// Drain waits until every input handed to Handle is confirmed and acked.
func (h *Hop) Drain(ctx context.Context) {
	close(h.pending)
	select {
	case <-h.done:
	case <-ctx.Done():
	}
	if h.keepStop != nil {
		close(h.keepStop)
	}
}
