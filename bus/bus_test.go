package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/schemas"
)

func mkEvents(n, size int) []*schemas.Event {
	out := make([]*schemas.Event, n)
	for i := range out {
		out[i] = &schemas.Event{Message: strings.Repeat("m", size), Raw: []byte(strings.Repeat("r", size))}
	}
	return out
}

func TestEncodeBatchesSplitsByBytesTheSameWayEveryTime(t *testing.T) {
	evs := mkEvents(100, 1000)
	a, err := bus.EncodeBatches("s", "b1", evs, 20_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) < 9 {
		t.Fatalf("100 events of ~2 kB under a 20 kB cap made %d messages", len(a))
	}
	again, _ := bus.EncodeBatches("s", "b1", evs, 20_000)
	total := 0
	for i, m := range a {
		if len(m.Data) > 20_000+2100 {
			t.Errorf("message %d is %d bytes", i, len(m.Data))
		}
		if m.Header.Get(jetstream.MsgIDHeader) != again[i].Header.Get(jetstream.MsgIDHeader) {
			t.Errorf("message %d: ids differ between two encodings of the same input", i)
		}
		var b schemas.Batch
		if err := proto.Unmarshal(m.Data, &b); err != nil {
			t.Fatal(err)
		}
		if b.Id != m.Header.Get(jetstream.MsgIDHeader) {
			t.Errorf("batch id %q differs from its Nats-Msg-Id %q", b.Id, m.Header.Get(jetstream.MsgIDHeader))
		}
		total += len(b.Events)
	}
	if total != 100 {
		t.Errorf("events after the split: %d, want 100", total)
	}
}

func TestEncodeBatchesRefusesInvalidUTF8InText(t *testing.T) {
	_, err := bus.EncodeBatches("s", "b", []*schemas.Event{{Message: "\xff"}}, 1<<20)
	if err == nil {
		t.Fatal("a message that is not UTF-8 must be refused by the encoder, not corrupted")
	}
}

func TestParseJSONEventsKeepsFieldOrderAndTypes(t *testing.T) {
	evs, err := bus.ParseJSONEvents([]byte(`{"message":"disk full","host":"db1","zeta":1,"alpha":"x","ratio":0.5,"ok":true,"nested":{"b":1,"a":[1,"two"]},"target_mask":6,"time":"2026-11-26T06:00:00Z"}`), "app", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ev := evs[0]
	if ev.Message != "disk full" || ev.Host != "db1" || ev.TargetMask != 6 || ev.Class != "app" {
		t.Errorf("envelope: %v", ev)
	}
	if got := time.Unix(0, ev.TimeUnixNano).UTC(); !got.Equal(time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("time = %v", got)
	}
	var keys []string
	for _, f := range ev.Fields {
		keys = append(keys, f.Key)
	}
	if strings.Join(keys, ",") != "zeta,alpha,ratio,ok,nested" {
		t.Errorf("field order = %v, want the order written", keys)
	}
	if _, ok := ev.Fields[0].Value.Kind.(*schemas.Value_Int); !ok {
		t.Errorf("zeta should be an int, got %T", ev.Fields[0].Value.Kind)
	}
	if m := ev.Fields[4].Value.GetMap(); m == nil || m.Fields[0].Key != "b" || len(m.Fields[1].Value.GetList().GetValues()) != 2 {
		t.Errorf("nested = %v", ev.Fields[4].Value)
	}
}

func TestParseJSONEventsRejectsBadInputAsMalformed(t *testing.T) {
	for _, in := range []string{
		``, `nope`, `{"message":`, `[]`, `[1]`, `{"message":1}`, `{"a":1,"a":2}`, `{"target_mask":-1}`,
		`{"time":"yesterday"}`, "{\"message\":\"\xff\"}", `{} {}`,
	} {
		if _, err := bus.ParseJSONEvents([]byte(in), "app", time.Now()); !errors.Is(err, bus.ErrMalformed) {
			t.Errorf("%q: err = %v, want ErrMalformed", in, err)
		}
	}
	evs, err := bus.ParseJSONEvents([]byte(`[{"message":"a"},{"message":"b"}]`), "app", time.Now())
	if err != nil || len(evs) != 2 {
		t.Fatalf("an array of events: %v %v", evs, err)
	}
}

func TestRepublishingUnderTheSameIDStoresOnce(t *testing.T) {
	b := bustest.Open(t)
	ctx := context.Background()
	msgs, err := bus.EncodeBatches(bus.RawSubject("x"), "batch-1", mkEvents(3, 10), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := b.Publish(ctx, msgs[0]); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := b.JS.Stream(ctx, bus.StreamRaw)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1: the copies must be de-duplicated", info.State.Msgs)
	}
}
