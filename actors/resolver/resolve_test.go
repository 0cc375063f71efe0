package resolver

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
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

// wireBatches are batches the wire path must either decline or resolve
// exactly as Process does.
func wireBatches() map[string]*schemas.Batch {
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC).UnixNano()
	ev := func(fields ...*schemas.Field) *schemas.Event {
		return &schemas.Event{Message: "m", ReceivedUnixNano: now, Fields: fields}
	}
	f := func(k string, v *schemas.Value) *schemas.Field { return &schemas.Field{Key: k, Value: v} }
	s := func(x string) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Str{Str: x}} }
	i := func(x int64) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Int{Int: x}} }
	return map[string]*schemas.Batch{
		"plain":                 sampleBatch(),
		"a resolvable key":      {Id: "b1", Events: []*schemas.Event{ev(f("R_stamp__", s("")))}},
		"a reserved key":        {Id: "b2", Events: []*schemas.Event{ev(f("__host__", s("x")))}},
		"a template named":      {Id: "b3", Events: []*schemas.Event{ev(f("__template__", s("web")))}},
		"a text R_time__":       {Id: "b4", Events: []*schemas.Event{ev(f("R_time__", s("")), f("user", s("ann")))}},
		"a null R_time__":       {Id: "b5", Events: []*schemas.Event{ev(f("R_time__", &schemas.Value{}))}},
		"resolved, other R_":    {Id: "b6", Events: []*schemas.Event{ev(f("R_time__", i(5)), f("R_message__", s("%(x)")))}},
		"a second R_time__":     {Id: "b7", Events: []*schemas.Event{ev(f("R_time__", s("")), f("R_time__", i(5)))}},
		"keys that only look R": {Id: "b8", Events: []*schemas.Event{ev(f("r_stamp__", s("")), f("_host__", s("")), f("R", s("")))}},
		"one bad event of many": {Id: "b9", Events: append(sampleBatch().Events, ev(f("R_loco__", s(""))))},
	}
}

// The wire fast path must produce exactly what Process produces, or
// decline; it must take the plain batches, which are most of the traffic.
func TestProcessWireEqualsProcess(t *testing.T) {
	templated, err := New(config.Resolver{Zone: "UTC", Templates: map[string]*config.Template{
		"web": {Fields: map[string]config.FieldText{"app": "shop"}}}})
	if err != nil {
		t.Fatal(err)
	}
	withDefault, err := New(config.Resolver{Zone: "UTC", DefaultTemplate: "web", Templates: map[string]*config.Template{
		"web": {Fields: map[string]config.FieldText{"app": "shop"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		proc  Processor
		fast  []string // batches the wire path must take
		never bool     // the wire path must decline everything
	}{
		{"the zero processor takes plain batches", Processor{}, []string{"plain", "resolved, other R_", "keys that only look R"}, false},
		{"named templates alone do not slow plain batches", templated, []string{"plain", "keys that only look R"}, false},
		{"a default template sends everything to Process", withDefault, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, batch := range wireBatches() {
				data, err := proto.Marshal(batch)
				if err != nil {
					t.Fatal(err)
				}
				id, outs, ok := tc.proc.ProcessWire(data)
				if !ok {
					if slices.Contains(tc.fast, name) {
						t.Errorf("%s: declined, want the fast path", name)
					}
					continue
				}
				if tc.never {
					t.Errorf("%s: taken, want it declined", name)
				}
				if id != batch.Id || len(outs) != 1 || outs[0].Subject != bus.SubjectResolved {
					t.Fatalf("%s: ProcessWire = %q %v", name, id, outs)
				}
				want := proto.Clone(batch).(*schemas.Batch)
				_, _ = tc.proc.Process(want)
				for i, enc := range outs[0].Encoded {
					var got schemas.Event
					if err := proto.Unmarshal(enc, &got); err != nil {
						t.Fatalf("%s: event %d does not decode: %v", name, i, err)
					}
					if !proto.Equal(&got, want.Events[i]) {
						t.Errorf("%s: event %d:\n wire    %v\n process %v", name, i, &got, want.Events[i])
					}
				}
			}
		})
	}
}

func TestProcessWireDeclinesWhatItCannotRead(t *testing.T) {
	if _, _, ok := (Processor{}).ProcessWire([]byte{0x12, 0x05, 0x01}); ok {
		t.Error("a truncated batch must fall back to Process, which dead-letters it")
	}
}

// Whatever bytes the wire path takes, it resolves them as Process does.
func FuzzProcessWire(f *testing.F) {
	for _, b := range wireBatches() {
		data, _ := proto.Marshal(b)
		f.Add(data)
	}
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
		if _, err := (Processor{}).Process(&b); err != nil {
			t.Fatal(err)
		}
		for i, enc := range outs[0].Encoded {
			var ev schemas.Event
			if err := proto.Unmarshal(enc, &ev); err != nil {
				t.Fatalf("output does not decode: %v", err)
			}
			if !proto.Equal(&ev, b.Events[i]) {
				t.Fatalf("event %d:\n wire    %v\n process %v", i, &ev, b.Events[i])
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
