package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/herald-router/herald/schemas"
)

// EncodeBatches marshals events under batch id into messages for subject,
// each at most maxBytes (a single event larger than that gets a message of
// its own). The split depends only on the input, so a redelivered input
// yields the same messages with the same Nats-Msg-Id and JetStream drops the
// copies. An event with text that is not UTF-8 is refused: protobuf strings
// must be, and every reader of the batch relies on it.
func EncodeBatches(subject, id string, events []*schemas.Event, maxBytes int) ([]*nats.Msg, error) {
	// Sized first (SizeVT is reflection-free), then each event marshalled
	// straight into its place in the message: one allocation per message.
	sizes := make([]int, len(events))
	for i, ev := range events {
		if err := checkUTF8(ev); err != nil {
			return nil, fmt.Errorf("encode batch %s event %d: %w", id, i, err)
		}
		sizes[i] = ev.SizeVT()
	}
	var err error
	out := splitBatches(subject, id, sizes, maxBytes, func(data []byte, i int) []byte {
		n := len(data)
		data = data[:n+sizes[i]]
		if _, e := events[i].MarshalToSizedBufferVT(data[n:]); e != nil && err == nil {
			err = fmt.Errorf("encode batch %s event %d: %w", id, i, e)
		}
		return data
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EncodeWireBatches is EncodeBatches for events already in wire form. The
// batch is written by hand (field 1 the id, field 2 each event), so an
// event is never decoded or marshalled again here.
func EncodeWireBatches(subject, id string, events [][]byte, maxBytes int) []*nats.Msg {
	sizes := make([]int, len(events))
	for i, ev := range events {
		sizes[i] = len(ev)
	}
	return splitBatches(subject, id, sizes, maxBytes, func(data []byte, i int) []byte {
		return append(data, events[i]...)
	})
}

// splitBatches cuts events of the given encoded sizes into messages of at
// most maxBytes and writes each message's batch: the part's id, then each
// event as field 2, its bytes appended by put. A batch split in several
// messages gets part ids id.0, id.1, ...
func splitBatches(subject, id string, sizes []int, maxBytes int, put func(data []byte, i int) []byte) []*nats.Msg {
	var out []*nats.Msg
	start, size := 0, 0
	flush := func(end int) {
		if end == start {
			return
		}
		partID := id
		if len(out) > 0 || end < len(sizes) {
			partID = id + "." + strconv.Itoa(len(out))
		}
		total := 1 + protowire.SizeBytes(len(partID))
		for i := start; i < end; i++ {
			total += 1 + protowire.SizeBytes(sizes[i])
		}
		data := make([]byte, 0, total)
		data = protowire.AppendTag(data, 1, protowire.BytesType)
		data = protowire.AppendString(data, partID)
		for i := start; i < end; i++ {
			data = protowire.AppendTag(data, 2, protowire.BytesType)
			data = protowire.AppendVarint(data, uint64(sizes[i]))
			data = put(data, i)
		}
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, partID)
		m.Header.Set(HeaderEncoding, EncodingBatch)
		out = append(out, m)
		start, size = end, 0
	}
	for i, n := range sizes {
		n += 4
		if size > 0 && size+n > maxBytes {
			flush(i)
		}
		size += n
	}
	flush(len(sizes))
	return out
}

// errNotUTF8 is why an event with invalid text cannot be encoded.
var errNotUTF8 = errors.New("text is not valid UTF-8")

// checkUTF8 checks every string of ev, as proto.Marshal would.
func checkUTF8(ev *schemas.Event) error {
	for _, s := range [...]string{ev.Id, ev.Source, ev.Class, ev.Host, ev.Service, ev.Message, ev.Peer, ev.Track} {
		if !utf8.ValidString(s) {
			return errNotUTF8
		}
	}
	return checkFieldsUTF8(ev.Fields)
}

func checkFieldsUTF8(fields []*schemas.Field) error {
	for _, f := range fields {
		if !utf8.ValidString(f.Key) {
			return errNotUTF8
		}
		if err := checkValueUTF8(f.Value); err != nil {
			return err
		}
	}
	return nil
}

func checkValueUTF8(v *schemas.Value) error {
	switch k := v.GetKind().(type) {
	case *schemas.Value_Str:
		if !utf8.ValidString(k.Str) {
			return errNotUTF8
		}
	case *schemas.Value_List:
		for _, x := range k.List.GetValues() {
			if err := checkValueUTF8(x); err != nil {
				return err
			}
		}
	case *schemas.Value_Map:
		return checkFieldsUTF8(k.Map.GetFields())
	}
	return nil
}

// pubAckTimeout is how long a publish waits for JetStream's ack before it
// counts as failed and is published again under the same Nats-Msg-Id.
const pubAckTimeout = 5 * time.Second

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
		pctx, cancel := context.WithTimeout(ctx, pubAckTimeout)
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
	pctx, cancel := context.WithTimeout(ctx, pubAckTimeout)
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
