package bus_test

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/schemas"
)

// classified is an event shaped like the classifier's output for a
// 200-byte RFC 3164 line: envelope, raw bytes, message and a few fields.
func classified(i int) *schemas.Event {
	str := func(s string) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Str{Str: s}} }
	num := func(n int64) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Int{Int: n}} }
	return &schemas.Event{
		Id: fmt.Sprintf("0193b2c4d5e6f7a8b9c0d1e2f3a4b5c6-%d", i), TargetMask: 4, Source: "syslog",
		ReceivedUnixNano: 1764151200000000000, Class: "rfc3164", Certainty: 0.95,
		Host: "benchhost", Service: "loadgen", TimeUnixNano: 1764151200000000000,
		Raw:     []byte("<134>Nov 26 10:00:00 benchhost loadgen[4242]: run=523e1a1185623ba0 seq=0000001234 lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna"),
		Message: "run=523e1a1185623ba0 seq=0000001234 lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna",
		Fields: []*schemas.Field{
			{Key: "facility", Value: num(16)}, {Key: "severity", Value: num(6)},
			{Key: "program", Value: str("loadgen")}, {Key: "pid", Value: num(4242)},
		},
	}
}

// BenchmarkCodec compares herald's batch encoding and decoding (generated,
// reflection-free) with the protobuf runtime's, on batches of 1000 events.
func BenchmarkCodec(b *testing.B) {
	evs := make([]*schemas.Event, 1000)
	for i := range evs {
		evs[i] = classified(i)
	}
	msgs, err := bus.EncodeBatches("s", "id", evs, 1<<30)
	if err != nil || len(msgs) != 1 {
		b.Fatal(err, len(msgs))
	}
	data := msgs[0].Data
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := bus.EncodeBatches("s", "id", evs, 256<<10); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode-proto", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := proto.Marshal(&schemas.Batch{Id: "id", Events: evs}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var bt schemas.Batch
			if err := bt.UnmarshalVTUnsafe(data); err != nil || len(bt.Events) != 1000 {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-proto", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var bt schemas.Batch
			if err := proto.Unmarshal(data, &bt); err != nil || len(bt.Events) != 1000 {
				b.Fatal(err)
			}
		}
	})
}
