package stage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/resolver"
	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

func newHop(t *testing.T, b *bus.Bus) *stage.Hop {
	h := &stage.Hop{Name: "resolver", Bus: b, Proc: resolver.Processor{}, MaxBytes: 1 << 20, MaxDeliver: 5,
		Metrics: metrics.New().Stage("resolver"), Log: bustest.Logger(t)}
	h.Init(16)
	return h
}

// fetchOne pulls one message from the resolver's consumer.
func fetchOne(t *testing.T, b *bus.Bus) jetstream.Msg {
	t.Helper()
	cons, err := b.Consumer(context.Background(), bus.StreamEvents, bus.ConsumerResolver)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		return m
	}
	t.Fatal("no message to fetch")
	return nil
}

func streamMsgs(t *testing.T, b *bus.Bus, name string) uint64 {
	t.Helper()
	s, err := b.JS.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func publishBatch(t *testing.T, b *bus.Bus, msgID string, batch *schemas.Batch) {
	t.Helper()
	data, err := proto.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(bus.EventsSubject("rfc3164"))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set(bus.HeaderEncoding, bus.EncodingBatch)
	if err := b.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

func TestAnInputProcessedTwiceYieldsOneOutput(t *testing.T) {
	b := bustest.Open(t)
	h := newHop(t, b)
	batch := &schemas.Batch{Id: "raw-1", Events: []*schemas.Event{{Message: "a", ReceivedUnixNano: 1}, {Message: "b", ReceivedUnixNano: 2}}}
	// The same batch arriving twice is what a redelivery after a crash
	// between publish and ack looks like to the next stage.
	publishBatch(t, b, "in-1", batch)
	publishBatch(t, b, "in-1-again", batch)
	h.Handle(context.Background(), fetchOne(t, b))
	h.Handle(context.Background(), fetchOne(t, b))
	h.Drain(context.Background())

	if n := streamMsgs(t, b, bus.StreamResolved); n != 1 {
		t.Fatalf("resolved stream holds %d messages, want 1", n)
	}
	// Acks are asynchronous: the work-queue stream drops acked messages a
	// moment later.
	bustest.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := streamMsgs(t, b, bus.StreamEvents); n != 0 {
			return fmt.Errorf("events stream still holds %d messages: inputs must be acked after their outputs are stored", n)
		}
		return nil
	})
}

func TestResolvedIDsAreTheSameWhenAnInputIsProcessedAgain(t *testing.T) {
	mk := func() *schemas.Batch {
		return &schemas.Batch{Id: "raw-9", Events: []*schemas.Event{{Message: "a", ReceivedUnixNano: time.Now().UnixNano()}}}
	}
	b1, b2 := mk(), mk()
	b2.Events[0].ReceivedUnixNano = b1.Events[0].ReceivedUnixNano
	if _, err := (resolver.Processor{}).Process(b1); err != nil {
		t.Fatal(err)
	}
	_, _ = (resolver.Processor{}).Process(b2)
	if b1.Events[0].Id == "" || b1.Events[0].Id != b2.Events[0].Id {
		t.Fatalf("ids %q and %q: a redelivered event must keep its id", b1.Events[0].Id, b2.Events[0].Id)
	}
}

func TestMalformedInputIsDeadLetteredWithItsReason(t *testing.T) {
	b := bustest.Open(t)
	h := newHop(t, b)
	m := nats.NewMsg(bus.EventsSubject("rfc3164"))
	m.Data = []byte("this is not protobuf \xff\xff\xff")
	m.Header.Set(bus.HeaderEncoding, bus.EncodingBatch)
	if err := b.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	h.Handle(context.Background(), fetchOne(t, b))
	h.Drain(context.Background())

	dlq, _ := b.JS.Stream(context.Background(), bus.StreamDLQ)
	got, err := dlq.GetLastMsgForSubject(context.Background(), bus.DLQSubject("resolver"))
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if r := got.Header.Get(bus.HeaderDLQReason); r != "malformed" {
		t.Errorf("reason = %q", r)
	}
	if string(got.Data) != string(m.Data) {
		t.Error("the dead letter must carry the original bytes")
	}
	bustest.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := streamMsgs(t, b, bus.StreamEvents); n != 0 {
			return fmt.Errorf("the malformed input is still queued (%d)", n)
		}
		return nil
	})
}

func TestApplicationJSONEventsAreResolved(t *testing.T) {
	b := bustest.Open(t)
	h := newHop(t, b)
	if _, err := b.JS.Publish(context.Background(), bus.EventsSubject("app"), []byte(`{"message":"hello","user":"ann"}`)); err != nil {
		t.Fatal(err)
	}
	h.Handle(context.Background(), fetchOne(t, b))
	h.Drain(context.Background())

	s, _ := b.JS.Stream(context.Background(), bus.StreamResolved)
	raw, err := s.GetLastMsgForSubject(context.Background(), bus.SubjectResolved)
	if err != nil {
		t.Fatal(err)
	}
	var out schemas.Batch
	if err := proto.Unmarshal(raw.Data, &out); err != nil {
		t.Fatal(err)
	}
	ev := out.Events[0]
	if ev.Id == "" || ev.Message != "hello" || ev.Class != "app" {
		t.Errorf("event = %v", ev)
	}
	if len(ev.Fields) != 2 || ev.Fields[0].Key != "user" || ev.Fields[1].Key != resolver.FieldTime {
		t.Errorf("fields = %v, want user then %s", ev.Fields, resolver.FieldTime)
	}
}

func TestAnInputWaitingForRoomIsKeptAliveNotDeliveredAgain(t *testing.T) {
	b := bustest.Open(t)
	ctx := context.Background()
	// The resolver's output stream is full: its publish is refused until
	// there is room, and retried meanwhile.
	s, err := b.JS.Stream(ctx, bus.StreamResolved)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	full := info.Config
	full.MaxMsgs, full.Discard = 0, jetstream.DiscardNew
	full.MaxMsgs = 1
	if _, err := b.JS.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	filler := nats.NewMsg(bus.SubjectResolved)
	filler.Data = []byte("x")
	if err := b.Publish(ctx, filler); err != nil {
		t.Fatal(err)
	}

	h := &stage.Hop{Name: "resolver", Bus: b, Proc: resolver.Processor{}, MaxBytes: 1 << 20, MaxDeliver: 5,
		Metrics: metrics.New().Stage("resolver"), Log: bustest.Logger(t), AckWait: 2 * time.Second}
	h.Init(16)
	publishBatch(t, b, "in-1", &schemas.Batch{Id: "raw-1", Events: []*schemas.Event{{Message: "a", ReceivedUnixNano: 1}}})
	h.Handle(ctx, fetchOne(t, b))

	cons, err := b.Consumer(ctx, bus.StreamEvents, bus.ConsumerResolver)
	if err != nil {
		t.Fatal(err)
	}
	// Three ack waits: without the keep-alive the input would have been
	// delivered again twice by now.
	time.Sleep(6 * time.Second)
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumRedelivered != 0 || ci.NumAckPending != 1 {
		t.Fatalf("while its output waits for room the input was redelivered %d times (ack pending %d): it must be kept alive",
			ci.NumRedelivered, ci.NumAckPending)
	}

	full.MaxMsgs = -1
	if _, err := b.JS.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
		ci, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if ci.NumAckPending != 0 {
			return fmt.Errorf("input still unacked after room was made")
		}
		return nil
	})
	h.Drain(ctx)
	if n := streamMsgs(t, b, bus.StreamResolved); n != 2 {
		t.Fatalf("resolved stream holds %d messages, want the filler and the output", n)
	}
}
