// Package tap is `herald tap`: a live tail of the events passing one stage
// of a running herald. It subscribes with core NATS to the subjects the
// stage's input stream holds: no JetStream consumer, no ack, so it sees a
// copy of each message as it is published and never takes an event away
// from the work-queue consumers of the pipeline. What was published before
// the tap started is not shown, and a tap that cannot keep up loses
// messages (counted, and said on stderr), never the pipeline.
package tap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/sink/format"
	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/filter"
	"github.com/herald-router/herald/schemas"
)

// Stages are the names --stage accepts, in pipeline order; "target.<t>"
// names one target.
var Stages = []string{"raw", "events", "resolved", "targets", "target.<name>", "dlq"}

// ErrUnknownStage is returned for a stage name Subject does not know.
var ErrUnknownStage = errors.New("unknown stage")

// Subject returns the subject to subscribe to for a stage: raw (records
// from the receivers, before the classifier), events (classified events
// and applications' events, before the resolver), resolved (before the
// router), targets (every target's copies), target.<name> (one target's,
// before its sinks) or dlq (dead letters).
func Subject(stage string) (string, error) {
	switch {
	case stage == "raw":
		return bus.SubjectRawPrefix + ">", nil
	case stage == "events":
		return bus.SubjectEventsPrefix + ">", nil
	case stage == "resolved":
		return bus.SubjectResolved, nil
	case stage == "targets":
		return bus.SubjectTargetPrefix + ">", nil
	case stage == "dlq":
		return bus.SubjectDLQPrefix + ">", nil
	case strings.HasPrefix(stage, "target.") && len(stage) > len("target."):
		t := strings.TrimPrefix(stage, "target.")
		if strings.ContainsAny(t, ".*> ") {
			return "", fmt.Errorf("%w %q: a target name has no dots, spaces or wildcards", ErrUnknownStage, stage)
		}
		return bus.TargetSubject(t), nil
	}
	return "", fmt.Errorf("%w %q: want one of %s", ErrUnknownStage, stage, strings.Join(Stages, ", "))
}

// ServerURL is the NATS address a separate process reaches herald's bus
// at: the configured urls, or the embedded server's listen address. The
// embedded server without a listener is reachable from herald's own
// process only.
func ServerURL(b config.Bus) (string, error) {
	if len(b.URLs) > 0 {
		return strings.Join(b.URLs, ","), nil
	}
	if b.Embedded.Listen == "" {
		return "", errors.New("bus.embedded.listen is empty: the embedded NATS server accepts no outside connection")
	}
	return "nats://" + b.Embedded.Listen, nil
}

// Connect opens a NATS connection named name to url, bounded by ctx.
func Connect(ctx context.Context, url, name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond)}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(dl)))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	return nc, nil
}

// Decode returns the events of a message seen on a pipeline subject: a
// protobuf Batch (header Herald-Encoding: batch), or an application's
// JSON event on herald.events.*. A dead letter carries the original bytes
// with the encoding of the message it came from.
func Decode(msg *nats.Msg) ([]*schemas.Event, error) {
	if msg.Header.Get(bus.HeaderEncoding) == bus.EncodingBatch {
		b := &schemas.Batch{}
		if err := proto.Unmarshal(msg.Data, b); err != nil {
			return nil, fmt.Errorf("%s: %w: protobuf batch: %v", msg.Subject, bus.ErrMalformed, err)
		}
		return b.Events, nil
	}
	class := strings.TrimPrefix(msg.Subject, bus.SubjectEventsPrefix)
	if class == msg.Subject || class == "" {
		class = "app"
	}
	evs, err := bus.ParseJSONEvents(msg.Data, class, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", msg.Subject, err)
	}
	return evs, nil
}

// Tap prints the events of one subject as JSON lines.
type Tap struct {
	// Conn is the NATS connection; Tap does not close it.
	Conn *nats.Conn
	// Subject is what Subject returned.
	Subject string
	// Filter, when set, keeps only the events it matches. An event it
	// cannot judge is left out and counted.
	Filter *filter.Program
	// Count stops the tap after that many events were printed; 0 runs
	// until ctx ends.
	Count int
	// Out receives one JSON object per line (format.AppendJSON); Errs the
	// problems (undecodable messages, losses), one per line.
	Out, Errs io.Writer
	// Subscribed, when set, is called once the subscription is in place
	// on the server: from then on every message is seen.
	Subscribed func()

	mu                      sync.Mutex // guards the counts, stopped and writes to Out
	printed, skipped, lost  int
	undecodable, unjudgable int
	stopped                 bool
}

// Stats are a tap's counts.
type Stats struct {
	Printed, Skipped, Lost, Undecodable, Unjudgable int
}

// Stats returns the counts so far.
func (t *Tap) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Stats{t.printed, t.skipped, t.lost, t.undecodable, t.unjudgable}
}

// Run taps until ctx ends or Count events were printed.
func (t *Tap) Run(ctx context.Context) error {
	done := make(chan error, 1)
	finish := func(err error) {
		select {
		case done <- err:
		default:
		}
	}
	var buf []byte
	lostSeen := 0
	var sub *nats.Subscription
	// The handler runs on the subscription's one goroutine, so buf and
	// lostSeen need no lock.
	// Two subscriptions feed handle; hmu keeps their goroutines from
	// sharing buf at once.
	var hmu sync.Mutex
	handle := func(sub *nats.Subscription, lostSeen *int, msg *nats.Msg) {
		hmu.Lock()
		defer hmu.Unlock()
		// A fused hop's copy stands for the subject after the prefix.
		msg.Subject = strings.TrimPrefix(msg.Subject, bus.SubjectTapPrefix)
		if n, _ := sub.Dropped(); n > *lostSeen {
			t.count(func() { t.lost += n - *lostSeen })
			t.warn("%d message(s) lost: the tap could not keep up (the pipeline lost nothing)", n-*lostSeen)
			*lostSeen = n
		}
		evs, err := Decode(msg)
		if err != nil {
			t.count(func() { t.undecodable++ })
			if r := msg.Header.Get(bus.HeaderDLQReason); r != "" {
				err = fmt.Errorf("%w (dead-lettered: %s: %s)", err, r, msg.Header.Get(bus.HeaderDLQDetail))
			}
			t.warn("%v", err)
			return
		}
		for _, ev := range evs {
			show(ev, msg)
			if t.Filter != nil {
				ok, err := t.Filter.Match(ev)
				if err != nil {
					t.count(func() { t.unjudgable++ })
					continue
				}
				if !ok {
					t.count(func() { t.skipped++ })
					continue
				}
			}
			buf = format.AppendJSON(buf[:0], ev)
			t.mu.Lock()
			if t.stopped || (t.Count > 0 && t.printed >= t.Count) {
				t.mu.Unlock()
				return // Run returned, or the rest of a batch after the last one wanted
			}
			_, err := t.Out.Write(buf)
			t.printed++
			enough := t.Count > 0 && t.printed >= t.Count
			t.mu.Unlock()
			if err != nil {
				finish(fmt.Errorf("write: %w", err))
				return
			}
			if enough {
				finish(nil)
			}
		}
	}
	sub, err := t.Conn.Subscribe(t.Subject, func(msg *nats.Msg) { handle(sub, &lostSeen, msg) })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", t.Subject, err)
	}
	// The copies hops that run several stages publish of what they hand
	// on in memory (bus.SubjectTapPrefix): they ask for them below.
	copyLost := 0
	var copies *nats.Subscription
	copies, err = t.Conn.Subscribe(bus.SubjectTapPrefix+t.Subject, func(msg *nats.Msg) { handle(copies, &copyLost, msg) })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", bus.SubjectTapPrefix+t.Subject, err)
	}
	defer func() { _ = copies.Unsubscribe() }()
	if err := copies.SetPendingLimits(64<<10, 256<<20); err != nil {
		return fmt.Errorf("subscribe %s: %w", t.Subject, err)
	}
	// Nothing is written to Out once Run returned: a handler still
	// running sees stopped under the lock that guards its write.
	defer func() {
		_ = sub.Unsubscribe()
		t.count(func() { t.stopped = true })
	}()
	// A slow tap must lose messages rather than hold memory without end;
	// the pipeline itself never waits for it.
	if err := sub.SetPendingLimits(64<<10, 256<<20); err != nil {
		return fmt.Errorf("subscribe %s: %w", t.Subject, err)
	}
	fctx, cancel := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok { // nats.go wants a deadline for the flush
		fctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	}
	err = t.Conn.FlushWithContext(fctx)
	cancel()
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", t.Subject, err)
	}
	// Announce the subject to fused hops and wait for one to hear it, so
	// that what they hand on from now is copied; renew while tapping.
	// No answer means no process is listening yet: the renewals reach
	// those that start later.
	announce := func() { _ = t.Conn.Publish(bus.SubjectTapControl, []byte(t.Subject)) }
	if _, err := t.Conn.Request(bus.SubjectTapControl, []byte(t.Subject), 2*time.Second); err != nil &&
		!errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
		return fmt.Errorf("announce the tap: %w", err)
	}
	doneRenew := make(chan struct{})
	defer close(doneRenew)
	renew := time.NewTicker(stage.TapLease / 3)
	defer renew.Stop()
	go func() {
		for {
			select {
			case <-renew.C:
				announce()
			case <-ctx.Done():
				return
			case <-doneRenew:
				return
			}
		}
	}()
	if t.Subscribed != nil {
		t.Subscribed()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		return err
	}
}

// warn writes a problem to Errs, unless Run returned.
func (t *Tap) warn(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		fmt.Fprintf(t.Errs, "tap: "+format+"\n", args...)
	}
}

func (t *Tap) count(f func()) {
	t.mu.Lock()
	f()
	t.mu.Unlock()
}

// show readies an event for printing. A raw record has no message yet,
// so the record itself is shown as its message, as the classifier would
// for a record it cannot read. A dead letter gets its headers (reason,
// detail, stage, origin subject) as the last fields, dlq_reason ...
func show(ev *schemas.Event, msg *nats.Msg) {
	if strings.HasPrefix(msg.Subject, bus.SubjectRawPrefix) && ev.Message == "" && ev.Class == "" {
		ev.Message = strings.TrimRight(string(ev.Raw), "\r\n")
	}
	for _, h := range [][2]string{
		{bus.HeaderDLQReason, "dlq_reason"}, {bus.HeaderDLQDetail, "dlq_detail"},
		{bus.HeaderDLQStage, "dlq_stage"}, {bus.HeaderDLQSubject, "dlq_subject"},
	} {
		if v := msg.Header.Get(h[0]); v != "" {
			ev.Fields = append(ev.Fields, &schemas.Field{Key: h[1], Value: &schemas.Value{Kind: &schemas.Value_Str{Str: v}}})
		}
	}
}
