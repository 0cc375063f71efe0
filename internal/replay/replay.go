// Package replay delivers archived events again: it reads the archive of
// resolved events (bus.StreamArchive) from a time or a sequence, keeps the
// events a filter accepts, and publishes them to a target's subject, where
// the target's fail-over chain writes them as it writes anything, or, with
// Options.Sink, only the one sink of the chain the batches are pinned to
// (bus.HeaderSink). Sinks that are idempotent on the event id (PostgreSQL,
// pubsub items) store nothing twice; others (files) write the events again.
package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/filter"
	"github.com/herald-router/herald/schemas"
)

// Options choose what to replay.
type Options struct {
	Target string
	// Sink, when set, pins every replayed batch to this sink of the
	// target's chain (see CheckSink): the other sinks of the chain get
	// nothing, and there is no fail-over.
	Sink    string
	Since   time.Time // or FromSeq
	FromSeq uint64
	Until   time.Time // zero: up to what the archive holds at the start
	Filter  *filter.Program
	// MaxBytes caps a published batch.
	MaxBytes int
	// Progress, when set, is called about every second, and once more with
	// the final figures when the range is done.
	Progress func(Summary)
}

// Summary is what a replay did.
type Summary struct {
	Batches, Read, Replayed, Filtered int
	LastSeq, EndSeq                   uint64
}

// ErrUnknownSink is CheckSink's answer for a sink not in the target's chain.
var ErrUnknownSink = errors.New("not a sink of the target")

// CheckSink reports whether sink is in chain, the sinks of target in the
// config; the error names the chain's sinks.
func CheckSink(target string, chain []string, sink string) error {
	if slices.Contains(chain, sink) {
		return nil
	}
	return fmt.Errorf("sink %q: %w %s, whose chain is [%s]", sink, ErrUnknownSink, target, strings.Join(chain, ", "))
}

// Run replays into js until the end of the range, or ctx ends.
func Run(ctx context.Context, js jetstream.JetStream, o Options) (sum Summary, err error) {
	if o.Progress != nil {
		defer func() {
			if err == nil {
				o.Progress(sum)
			}
		}()
	}
	st, err := js.Stream(ctx, bus.StreamArchive)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return sum, errors.New("no archive: enable it with archive.max_age or archive.max_bytes in the config, then events are kept from then on")
	}
	if err != nil {
		return sum, fmt.Errorf("archive: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return sum, fmt.Errorf("archive: %w", err)
	}
	sum.EndSeq = info.State.LastSeq
	if info.State.Msgs == 0 {
		return sum, nil
	}
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.SubjectArchive}}
	switch {
	case o.FromSeq > 0:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, o.FromSeq
	case !o.Since.IsZero():
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &o.Since
	}
	cons, err := st.OrderedConsumer(ctx, cc)
	if err != nil {
		return sum, fmt.Errorf("archive consumer: %w", err)
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	last := time.Now()
	for {
		if sum.LastSeq >= sum.EndSeq {
			return sum, nil
		}
		msg, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return sum, nil // nothing more in range
		}
		if err != nil {
			return sum, fmt.Errorf("reading the archive: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return sum, err
		}
		sum.LastSeq = md.Sequence.Stream
		if !o.Until.IsZero() && md.Timestamp.After(o.Until) {
			return sum, nil
		}
		var b schemas.Batch
		if err := proto.Unmarshal(msg.Data(), &b); err != nil {
			return sum, fmt.Errorf("archive message %d: %w", sum.LastSeq, err)
		}
		sum.Batches++
		sum.Read += len(b.Events)
		var keep []*schemas.Event
		for _, ev := range b.Events {
			if o.Filter != nil {
				ok, err := o.Filter.Match(ev)
				if err != nil || !ok {
					sum.Filtered++
					continue
				}
			}
			keep = append(keep, ev)
		}
		if len(keep) > 0 {
			id := "replay." + run + "." + strconv.FormatUint(sum.LastSeq, 10)
			msgs, err := bus.EncodeBatches(bus.TargetSubject(o.Target), id, keep, o.MaxBytes)
			if err != nil {
				return sum, err
			}
			for _, m := range msgs {
				if o.Sink != "" {
					m.Header.Set(bus.HeaderSink, o.Sink)
				}
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := js.PublishMsg(pctx, m)
				cancel()
				if err != nil {
					return sum, fmt.Errorf("publish to target %s: %w", o.Target, err)
				}
			}
			sum.Replayed += len(keep)
		}
		if o.Progress != nil && time.Since(last) >= time.Second {
			o.Progress(sum)
			last = time.Now()
		}
		if ctx.Err() != nil {
			return sum, ctx.Err()
		}
	}
}
