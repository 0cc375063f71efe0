package resolver

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/schemas"
)

func sampleBatch() *schemas.Batch {
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC).UnixNano()
	return &schemas.Batch{Id: "raw-42", Events: []*schemas.Event{
		{Message: "no id, no time", ReceivedUnixNano: now, Fields: []*schemas.Field{{Key: "pri", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 13}}}}},
		{Message: "own time", ReceivedUnixNano: now, TimeUnixNano: now - int64(time.Hour)},
		{Message: "given id", Id: "APP-ID", ReceivedUnixNano: now},
		{Message: "resolved already", Id: "X", ReceivedUnixNano: now, Fields: []*schemas.Field{{Key: FieldTime, Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 7}}}}},
		{Message: "invalid utf-8 in raw", Raw: []byte{0xff}, ReceivedUnixNano: now},
	}}
}

func TestResolveGivesIDsAndTimeOnce(t *testing.T) {
	b := sampleBatch()
	if _, err := (Processor{}).Process(b); err != nil {
		t.Fatal(err)
	}
	e := b.Events
	if e[0].Id == "" || e[0].Id == e[1].Id {
		t.Errorf("ids %q %q must be set and distinct", e[0].Id, e[1].Id)
	}
	if e[2].Id != "APP-ID" {
		t.Errorf("an id given at intake must never change, got %q", e[2].Id)
	}
	last := func(ev *schemas.Event) *schemas.Field { return ev.Fields[len(ev.Fields)-1] }
	if f := last(e[0]); f.Key != FieldTime || f.Value.GetInt() != time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC).Unix() {
		t.Errorf("R_time__ from arrival: %v", f)
	}
	if f := last(e[1]); f.Value.GetInt() != time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC).Unix() {
		t.Errorf("R_time__ must prefer the event's own time: %v", f)
	}
	if len(e[3].Fields) != 1 || e[3].Fields[0].Value.GetInt() != 7 {
		t.Errorf("an event resolved before keeps its values: %v", e[3].Fields)
	}
}

// The wire fast path must produce exactly what Process produces.
func TestProcessWireEqualsProcess(t *testing.T) {
	data, err := proto.Marshal(sampleBatch())
	if err != nil {
		t.Fatal(err)
	}
	id, outs, ok := Processor{}.ProcessWire(data)
	if !ok || id != "raw-42" || len(outs) != 1 || outs[0].Subject != bus.SubjectResolved {
		t.Fatalf("ProcessWire = %q %v %v", id, outs, ok)
	}
	want := sampleBatch()
	_, _ = Processor{}.Process(want)
	for i, enc := range outs[0].Encoded {
		var got schemas.Event
		if err := proto.Unmarshal(enc, &got); err != nil {
			t.Fatalf("event %d does not decode: %v", i, err)
		}
		if !proto.Equal(&got, want.Events[i]) {
			t.Errorf("event %d:\n wire    %v\n process %v", i, &got, want.Events[i])
		}
	}
}

func TestProcessWireDeclinesWhatItCannotRead(t *testing.T) {
	if _, _, ok := (Processor{}).ProcessWire([]byte{0x12, 0x05, 0x01}); ok {
		t.Error("a truncated batch must fall back to Process, which dead-letters it")
	}
}

func FuzzProcessWire(f *testing.F) {
	data, _ := proto.Marshal(sampleBatch())
	f.Add(data)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, outs, ok := Processor{}.ProcessWire(data)
		if !ok {
			return
		}
		var b schemas.Batch
		if proto.Unmarshal(data, &b) != nil {
			return // the wire path accepted bytes the decoder refuses: Process would see them later anyway
		}
		for _, enc := range outs[0].Encoded {
			var ev schemas.Event
			if err := proto.Unmarshal(enc, &ev); err != nil {
				t.Fatalf("output does not decode: %v", err)
			}
		}
	})
}

func BenchmarkResolveWire(b *testing.B) {
	batch := sampleBatch()
	for range 200 {
		batch.Events = append(batch.Events, proto.Clone(batch.Events[0]).(*schemas.Event))
	}
	data, _ := proto.Marshal(batch)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		Processor{}.ProcessWire(data)
	}
}

func BenchmarkResolveDecodeEncode(b *testing.B) {
	batch := sampleBatch()
	for range 200 {
		batch.Events = append(batch.Events, proto.Clone(batch.Events[0]).(*schemas.Event))
	}
	data, _ := proto.Marshal(batch)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var x schemas.Batch
		_ = proto.Unmarshal(data, &x)
		outs, _ := Processor{}.Process(&x)
		_, _ = bus.EncodeBatches("s", "id", outs[0].Events, 1<<20)
	}
}
