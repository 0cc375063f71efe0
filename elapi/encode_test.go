package elapi

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/schemas"
)

func str(s string) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Str{Str: s}} }

func TestTheHandWrittenWireFormDecodesToTheSchemasEvent(t *testing.T) {
	when := time.Date(2026, 11, 26, 6, 14, 7, 913813000, time.UTC)
	ev, err := NewEvent(
		Message("disk full"),
		Host("db1"),
		String("volume", "/var"),
		String("empty", ""),
		Int("zero", 0),
		Int("negative", -42),
		Float("ratio", 0.25),
		Float("nan", math.Inf(-1)),
		Bool("no", false),
		Bool("yes", true),
		Time("checked", when),
		Bytes("raw", []byte{0, 0xff}),
		Null("nothing"),
		List("tags", StringValue("a"), IntValue(1), ListValue(), MapValue(String("k", "v"))),
		Map("req", String("path", "/"), Map("headers", String("host", "x"))),
		Resolve(ResStamp),
		String(ResMessage, "volume %(volume) is full"),
		Pid(77),
	)
	if err != nil {
		t.Fatal(err)
	}
	env := envelope{id: "01ID", mask: 6, source: Source, received: 123, class: "app", host: "default-host", app: "myapp", time: 456, track: "herald.receipts.myapp.x"}
	got := &schemas.Event{}
	if err := proto.Unmarshal(appendEvent(nil, ev, &env), got); err != nil {
		t.Fatalf("the wire form does not decode: %v", err)
	}
	want := &schemas.Event{
		Id: "01ID", TargetMask: 6, Source: Source, ReceivedUnixNano: 123, Class: "app", Certainty: 1,
		Host: "db1", Service: "myapp", TimeUnixNano: 456, Message: "disk full", Track: "herald.receipts.myapp.x",
		Fields: []*schemas.Field{
			{Key: "volume", Value: str("/var")},
			{Key: "empty", Value: str("")},
			{Key: "zero", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 0}}},
			{Key: "negative", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: -42}}},
			{Key: "ratio", Value: &schemas.Value{Kind: &schemas.Value_Float{Float: 0.25}}},
			{Key: "nan", Value: &schemas.Value{Kind: &schemas.Value_Float{Float: math.Inf(-1)}}},
			{Key: "no", Value: &schemas.Value{Kind: &schemas.Value_Bool{Bool: false}}},
			{Key: "yes", Value: &schemas.Value{Kind: &schemas.Value_Bool{Bool: true}}},
			{Key: "checked", Value: &schemas.Value{Kind: &schemas.Value_TimeUnixNano{TimeUnixNano: when.UnixNano()}}},
			{Key: "raw", Value: &schemas.Value{Kind: &schemas.Value_Bytes{Bytes: []byte{0, 0xff}}}},
			{Key: "nothing", Value: &schemas.Value{}},
			{Key: "tags", Value: &schemas.Value{Kind: &schemas.Value_List{List: &schemas.List{Values: []*schemas.Value{
				str("a"), {Kind: &schemas.Value_Int{Int: 1}}, {Kind: &schemas.Value_List{List: &schemas.List{}}},
				{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: []*schemas.Field{{Key: "k", Value: str("v")}}}}},
			}}}}},
			{Key: "req", Value: &schemas.Value{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: []*schemas.Field{
				{Key: "path", Value: str("/")},
				{Key: "headers", Value: &schemas.Value{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: []*schemas.Field{{Key: "host", Value: str("x")}}}}}},
			}}}}},
			{Key: ResStamp, Value: &schemas.Value{}},
			{Key: ResMessage, Value: str("volume %(volume) is full")},
			{Key: "pid", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 77}}},
		},
	}
	if !proto.Equal(want, got) {
		t.Errorf("decoded event differs:\nwant %s\ngot  %s", prototext.Format(want), prototext.Format(got))
	}
	// The same bytes as the generated code makes, so herald's wire fast
	// paths read them as they read their own.
	if mine, theirs := appendEvent(nil, ev, &env), mustMarshal(t, want); string(mine) != string(theirs) {
		t.Errorf("wire form differs from proto.Marshal's:\n mine   %x\n theirs %x", mine, theirs)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestABatchDecodesWithItsIDAndEvents(t *testing.T) {
	ev, _ := NewEvent(Message("one"))
	b := appendBatchHeader(nil, "elapi.x.1")
	for i, id := range []string{"A", "B"} {
		b = appendBatchEvent(b, appendEvent(nil, ev, &envelope{id: id, mask: uint64(i + 1)}))
	}
	var got schemas.Batch
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Id != "elapi.x.1" || len(got.Events) != 2 || got.Events[1].Id != "B" || got.Events[1].TargetMask != 2 || got.Events[0].Message != "one" {
		t.Errorf("batch decoded as %v", &got)
	}
}

// The package cannot import herald's bus package; this keeps its copies
// of the names in step.
func TestBusNamesAreHeraldsOwn(t *testing.T) {
	for _, c := range []struct{ mine, theirs string }{
		{streamEvents, bus.StreamEvents},
		{streamReceipts, bus.StreamReceipts},
		{subjectEventsPrefix, bus.SubjectEventsPrefix},
		{subjectReceiptsPrefix, bus.SubjectReceiptsPrefix},
		{headerEncoding, bus.HeaderEncoding},
		{encodingBatch, bus.EncodingBatch},
		{encodingReceipts, bus.EncodingReceipts},
	} {
		if c.mine != c.theirs {
			t.Errorf("elapi says %q, herald %q", c.mine, c.theirs)
		}
	}
}

func TestIDsFollowHeraldsLayoutSortAndNeverRepeat(t *testing.T) {
	g := newIDGen()
	t0 := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 10000 {
		id := g.next(t0.Add(time.Duration(i/100) * time.Millisecond))
		if len(id) != 26 || seen[id] || id <= prev {
			t.Fatalf("id %d %q (previous %q): want 26 characters, unique, increasing", i, id, prev)
		}
		seen[id] = true
		prev = id
	}
	// The first 10 characters are the milliseconds, as herald's own ids.
	if a, b := g.next(t0)[:10], g.next(t0.Add(time.Millisecond))[:10]; a >= b {
		t.Errorf("time prefix does not sort: %s >= %s", a, b)
	}
}
