package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/schemas"
)

// EncodeBatches marshals events under batch id into messages for subject,
// each at most maxBytes (a single event larger than that gets a message of
// its own). The split depends only on the input, so a redelivered input
// yields the same messages with the same Nats-Msg-Id and JetStream drops the
// copies.
func EncodeBatches(subject, id string, events []*schemas.Event, maxBytes int) ([]*nats.Msg, error) {
	encoded := make([][]byte, len(events))
	for i, ev := range events {
		b, err := cachedSize.MarshalAppend(make([]byte, 0, proto.Size(ev)), ev)
		if err != nil {
			return nil, fmt.Errorf("encode batch %s event %d: %w", id, i, err)
		}
		encoded[i] = b
	}
	return EncodeWireBatches(subject, id, encoded, maxBytes), nil
}

// EncodeWireBatches is EncodeBatches for events already in wire form. The
// batch is written by hand (field 1 the id, field 2 each event), so an
// event is never decoded or marshalled again here.
func EncodeWireBatches(subject, id string, events [][]byte, maxBytes int) []*nats.Msg {
	var out []*nats.Msg
	start, size := 0, 0
	flush := func(end int) {
		if end == start {
			return
		}
		partID := id
		if len(out) > 0 || end < len(events) {
			partID = id + "." + strconv.Itoa(len(out))
		}
		total := len(partID) + 12
		for i := start; i < end; i++ {
			total += len(events[i]) + 12
		}
		data := make([]byte, 0, total)
		data = protowire.AppendTag(data, 1, protowire.BytesType)
		data = protowire.AppendString(data, partID)
		for i := start; i < end; i++ {
			data = protowire.AppendTag(data, 2, protowire.BytesType)
			data = protowire.AppendBytes(data, events[i])
		}
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, partID)
		m.Header.Set(HeaderEncoding, EncodingBatch)
		out = append(out, m)
		start, size = end, 0
	}
	for i, ev := range events {
		n := len(ev) + 4
		if size > 0 && size+n > maxBytes {
			flush(i)
		}
		size += n
	}
	flush(len(events))
	return out
}

// cachedSize reuses the sizes proto.Size just computed.
var cachedSize = proto.MarshalOptions{UseCachedSize: true}

// PublishAsync publishes m without waiting for its acknowledgement. When
// too many publishes are outstanding it waits for them to drain instead of
// failing, which is the back-pressure of every stage.
func (b *Bus) PublishAsync(ctx context.Context, m *nats.Msg) (jetstream.PubAckFuture, error) {
	for {
		f, err := b.JS.PublishMsgAsync(m)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return nil, fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		// Retry as soon as some acknowledgements have come back, not when
		// all have: waiting for all stalled pipelines that publish many
		// small messages (receipts).
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// Confirm waits until JetStream acknowledged f. A failed publish is retried
// synchronously under the same Nats-Msg-Id until ctx ends, so a retry that
// races a late success cannot store the message twice.
func (b *Bus) Confirm(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return b.retry(ctx, f.Msg(), err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Bus) retry(ctx context.Context, m *nats.Msg, cause error) error {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		b.log.Warn("publish failed, retrying", "subject", m.Subject, "attempt", attempt, "err", cause)
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w (last error: %v)", m.Subject, ctx.Err(), cause)
		case <-time.After(wait):
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := b.JS.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			return nil
		}
		cause = err
		wait = min(wait*2, 2*time.Second)
	}
}

// Publish publishes m and waits for the acknowledgement, retrying as
// Confirm does.
func (b *Bus) Publish(ctx context.Context, m *nats.Msg) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := b.JS.PublishMsg(pctx, m)
	cancel()
	if err == nil {
		return nil
	}
	return b.retry(ctx, m, err)
}

// DeadLetter publishes data to the stage's dead-letter subject with the
// reason code, detail and origin in headers, and waits for the ack. id makes
// a repeated dead-lettering of the same thing a duplicate JetStream drops.
func (b *Bus) DeadLetter(ctx context.Context, stage, id, origin, reason, detail string, data []byte, encoding string) error {
	m := nats.NewMsg(DLQSubject(stage))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "dlq."+stage+"."+id)
	m.Header.Set(HeaderDLQReason, reason)
	m.Header.Set(HeaderDLQDetail, detail)
	m.Header.Set(HeaderDLQStage, stage)
	m.Header.Set(HeaderDLQSubject, origin)
	if encoding != "" {
		m.Header.Set(HeaderEncoding, encoding)
	}
	return b.Publish(ctx, m)
}

// DeadLetterMsg dead-letters a whole input message: its bytes, under an id
// derived from its Nats-Msg-Id (or stream sequence), with the reason.
func (b *Bus) DeadLetterMsg(ctx context.Context, stage string, msg jetstream.Msg, reason string, cause error) error {
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if md, err := msg.Metadata(); err == nil && id == "" {
		id = md.Stream + "." + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	return b.DeadLetter(ctx, stage, id, msg.Subject(), reason, cause.Error(), msg.Data(), msg.Headers().Get(HeaderEncoding))
}
