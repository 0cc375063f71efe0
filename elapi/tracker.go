package elapi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/schemas"
)

// startTracker subscribes to the dispatcher's receipt subject, once, before
// its first tracked event goes out. An ordered consumer suits it: the
// subject is this dispatcher's alone, receipts are stored in JetStream
// (so none is lost while herald or the connection is down: the consumer
// resumes after the last one it delivered), and nothing needs acking.
func (d *Dispatcher) startTracker(ctx context.Context) error {
	d.trackMu.Lock()
	defer d.trackMu.Unlock()
	if d.consume != nil {
		return nil
	}
	cctx, cancel := withDefaultTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := d.js.OrderedConsumer(cctx, streamReceipts, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{d.receipts},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("elapi: receipts consumer on %s: %w", streamReceipts, err)
	}
	// A short heartbeat notices a restarted server within seconds, and
	// the consumer is made again from the next receipt. Large pulls keep
	// up with herald (a message per batch and stage, or per receipt from
	// an older herald); the byte limit bounds what batches buffer.
	cc, err := cons.Consume(d.onReceipt, jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.PullMaxBytes(8<<20),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			d.opts.log.Debug("elapi: receipts consumer", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("elapi: consume receipts: %w", err)
	}
	d.consume = cc
	return nil
}

// onReceipt counts the receipts of one message: a ReceiptBatch (the
// receipts one stage of herald made of one batch for this subject), or a
// single Receipt, as herald sent before receipts were batched (still
// accepted: during a rolling upgrade both arrive).
func (d *Dispatcher) onReceipt(msg jetstream.Msg) {
	var list []*schemas.Receipt
	if msg.Headers().Get(headerEncoding) == encodingReceipts {
		var rb schemas.ReceiptBatch
		if err := rb.UnmarshalVT(msg.Data()); err != nil {
			d.opts.log.Warn("elapi: malformed receipts", "subject", msg.Subject(), "err", err)
			return
		}
		list = rb.Receipts
	} else {
		var r schemas.Receipt
		if err := r.UnmarshalVT(msg.Data()); err != nil {
			d.opts.log.Warn("elapi: malformed receipt", "subject", msg.Subject(), "err", err)
			return
		}
		list = []*schemas.Receipt{&r}
	}
	entries := make([]*entry, len(list))
	d.trackMu.Lock()
	for i, r := range list {
		entries[i] = d.pending[r.EventId]
	}
	d.trackMu.Unlock()
	for i, r := range list {
		if e := entries[i]; e != nil { // nil: done already (or not this dispatcher's)
			d.count(e, r)
		}
	}
}

// count applies one receipt to its event. Each (event, kind, target)
// counts once: herald stores a receipts message once per Nats-Msg-Id, but
// one replayed after the de-duplication window, a retry that reported
// more copies, or an outcome for a target already reported changes
// nothing.
func (d *Dispatcher) count(e *entry, r *schemas.Receipt) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return
	}
	if !e.accepted {
		// The receipt overtook JetStream's acknowledgement of the batch:
		// herald has the event, so report that first.
		e.accepted = true
		if e.flags&OnAccepted != 0 && e.cb != nil {
			e.cb(Notice{ID: e.id, Moment: OnAccepted})
		}
	}
	switch r.Kind {
	case schemas.Receipt_ROUTED:
		if e.routed {
			return
		}
		e.routed = true
		e.targets = r.Targets
	case schemas.Receipt_COMMITTED, schemas.Receipt_FAILED:
		for _, x := range e.results {
			if x.Target == r.Target {
				return
			}
		}
		res := TargetResult{Target: r.Target, Outcome: Committed, Sink: r.Sink, Reason: r.Reason}
		if r.Kind == schemas.Receipt_FAILED {
			res.Outcome = Failed
			if r.Target == RouterTarget && !e.routed && r.Sink == "" {
				e.routerFailed = true // a filter failed: routed nowhere
			}
		}
		e.results = append(e.results, res)
		if e.flags&OnTargetDone != 0 && e.cb != nil {
			e.cb(Notice{ID: e.id, Moment: OnTargetDone, Target: res})
		}
	default:
		return
	}
	if !e.routerFailed && (!e.routed || len(e.waiting()) > 0) {
		return
	}
	e.done = true
	d.trackMu.Lock()
	delete(d.pending, e.id)
	d.trackMu.Unlock()
	if e.flags&OnDone != 0 && e.cb != nil {
		e.cb(Notice{ID: e.id, Moment: OnDone, Result: e.result()})
	}
	// After the callback: when Close sees nothing in flight, every
	// callback has returned.
	d.release(1)
}

// waiting lists the routed targets without an outcome. e.mu is held.
func (e *entry) waiting() []string {
	var out []string
	for _, t := range e.targets {
		if !slices.ContainsFunc(e.results, func(r TargetResult) bool { return r.Target == t }) {
			out = append(out, t)
		}
	}
	return out
}

// result lists the outcomes in the router's order of targets. e.mu is
// held.
func (e *entry) result() *Result {
	r := &Result{ID: e.id, Accepted: true, Tracked: true, Targets: make([]TargetResult, 0, len(e.results))}
	for _, t := range e.targets {
		for _, x := range e.results {
			if x.Target == t {
				r.Targets = append(r.Targets, x)
			}
		}
	}
	for _, x := range e.results {
		if !slices.Contains(e.targets, x.Target) {
			r.Targets = append(r.Targets, x)
		}
	}
	return r
}

func sortOpen(evs []OpenEvent) {
	slices.SortFunc(evs, func(a, b OpenEvent) int { return strings.Compare(a.ID, b.ID) })
}
