package router

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/schemas"
)

func TestEventsGoToEveryTargetWhoseBitIsInTheirMask(t *testing.T) {
	r, _ := New([]Target{{Name: "log", Bit: 4}, {Name: "debug", Bit: 1}, {Name: "audit", Bit: 2}}, nil)
	unrouted := 0
	r.Unrouted = func(n int) { unrouted += n }
	b := &schemas.Batch{Id: "b", Events: []*schemas.Event{
		{Message: "log only", TargetMask: 4},
		{Message: "debug and audit", TargetMask: 3},
		{Message: "nobody", TargetMask: 8},
	}}
	outs, err := r.Process(b)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, o := range outs {
		for _, ev := range o.Events {
			got[o.Key] = append(got[o.Key], ev.Message)
		}
		if o.Subject != "herald.target."+o.Key {
			t.Errorf("subject %s for %s", o.Subject, o.Key)
		}
	}
	if len(got["log"]) != 1 || len(got["debug"]) != 1 || len(got["audit"]) != 1 || len(outs) != 3 {
		t.Errorf("routed %v", got)
	}
	if unrouted != 1 {
		t.Errorf("unrouted = %d, want 1 (counted, not silently dropped)", unrouted)
	}
}

func TestProcessWirePassesUniformBatchesOnWithoutDecoding(t *testing.T) {
	r, _ := New([]Target{{Name: "log", Bit: 4}, {Name: "audit", Bit: 2}}, nil)
	uniform, _ := proto.Marshal(&schemas.Batch{Id: "b1", Events: []*schemas.Event{{TargetMask: 6, Message: "x"}, {TargetMask: 6}}})
	id, outs, ok := r.ProcessWire(uniform)
	if !ok || id != "b1" || len(outs) != 2 || outs[0].Count != 2 {
		t.Fatalf("ProcessWire = %q %v %v", id, outs, ok)
	}
	mixed, _ := proto.Marshal(&schemas.Batch{Id: "b2", Events: []*schemas.Event{{TargetMask: 4}, {TargetMask: 2}}})
	if _, _, ok := r.ProcessWire(mixed); ok {
		t.Error("a batch with mixed masks must be split by Process, not forwarded")
	}
	nobody, _ := proto.Marshal(&schemas.Batch{Id: "b3", Events: []*schemas.Event{{TargetMask: 8}}})
	if _, _, ok := r.ProcessWire(nobody); ok {
		t.Error("an unroutable batch must go through Process so it is counted")
	}
}

func sev(n int64) *schemas.Field {
	return &schemas.Field{Key: "severity", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: n}}}
}

func TestFiltersAndRulesDecideBeyondTheMask(t *testing.T) {
	r, err := New([]Target{
		{Name: "log", Bit: 4},
		{Name: "alerts", Bit: 2, Filter: `severity >= 0 && severity <= 3`},
		{Name: "db", Bit: 4, Filter: `host startsWith "db"`},
	}, []Rule{
		{When: `severity >= 0 && severity <= 3`, Receiver: "syslog", Mask: 2, Add: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ev   *schemas.Event
		want string
	}{
		{"an error from syslog gains the alerts bit by rule",
			&schemas.Event{Source: "syslog", Host: "web1", TargetMask: 4, Fields: []*schemas.Field{sev(2)}}, "alerts,log"},
		{"a notice from syslog keeps its mask",
			&schemas.Event{Source: "syslog", Host: "web1", TargetMask: 4, Fields: []*schemas.Field{sev(5)}}, "log"},
		{"a rule for another receiver does not apply",
			&schemas.Event{Source: "other", Host: "web1", TargetMask: 4, Fields: []*schemas.Field{sev(2)}}, "log"},
		{"an application event keeps its own mask",
			&schemas.Event{Source: "nats", Host: "db7", TargetMask: 4, Fields: []*schemas.Field{sev(2)}}, "db,log"},
		{"the filter narrows what the mask selects",
			&schemas.Event{Source: "nats", Host: "web1", TargetMask: 2, Fields: []*schemas.Field{sev(6)}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := r.Match(tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			if g := strings.Join(got, ","); g != tc.want {
				t.Errorf("targets = %q, want %q", g, tc.want)
			}
		})
	}
}

func TestAnEventAFilterCannotJudgeIsDeadLetteredAndOthersFlow(t *testing.T) {
	r, err := New([]Target{{Name: "log", Bit: 4, Filter: `fields.n > 3`}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := func(v *schemas.Value) *schemas.Event {
		return &schemas.Event{TargetMask: 4, Fields: []*schemas.Field{{Key: "n", Value: v}}}
	}
	outs, err := r.Process(&schemas.Batch{Id: "b", Events: []*schemas.Event{
		n(&schemas.Value{Kind: &schemas.Value_Int{Int: 5}}),
		n(&schemas.Value{Kind: &schemas.Value_Str{Str: "five"}}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != 2 || outs[0].Key != "log" || len(outs[0].Events) != 1 {
		t.Fatalf("outputs %+v", outs)
	}
	if dl := outs[1].DeadLetter; dl == nil || dl.Reason != "filter_error" || outs[1].Subject != "herald.dlq.router" || dl.Origin != "herald.target.log" {
		t.Errorf("dead-letter output %+v", outs[1])
	}
	if _, _, ok := r.ProcessWire(nil); ok {
		t.Error("with a filter the wire fast path must decline")
	}
}

func TestTrackedEventsGetARoutedReceipt(t *testing.T) {
	r, _ := New([]Target{{Name: "log", Bit: 4}, {Name: "audit", Bit: 2}}, nil)
	b := &schemas.Batch{Id: "b", Events: []*schemas.Event{
		{Id: "A", TargetMask: 6, Track: "herald.receipts.x"},
		{Id: "B", TargetMask: 8, Track: "herald.receipts.x"},
		{Id: "C", TargetMask: 4},
		{Id: "D", TargetMask: 4, Track: "not.a.receipt.subject"},
	}}
	data, _ := proto.Marshal(b)
	if _, _, ok := r.ProcessWire(data); ok {
		t.Fatal("a batch with tracked events must be decoded so receipts go out")
	}
	outs, _ := r.Process(b)
	last := outs[len(outs)-1]
	if last.Key != "receipts" || len(last.Msgs) != 1 {
		t.Fatalf("receipts output %+v: want one message for the batch's one receipt subject", last)
	}
	m := last.Msgs[0]
	if m.Subject != "herald.receipts.x" || m.Header.Get(bus.HeaderEncoding) != bus.EncodingReceipts {
		t.Errorf("subject %s encoding %q", m.Subject, m.Header.Get(bus.HeaderEncoding))
	}
	var rb schemas.ReceiptBatch
	if err := proto.Unmarshal(m.Data, &rb); err != nil || len(rb.Receipts) != 2 {
		t.Fatalf("receipt batch %v (%v): want A's and B's", &rb, err)
	}
	a, nb := rb.Receipts[0], rb.Receipts[1]
	if a.EventId != "A" || a.Kind != schemas.Receipt_ROUTED || strings.Join(a.Targets, ",") != "audit,log" {
		t.Errorf("receipt of A: %v", a)
	}
	if nb.EventId != "B" || nb.Kind != schemas.Receipt_ROUTED || len(nb.Targets) != 0 {
		t.Errorf("an event no target wants is reported routed to none, so its client knows it is done: %v", nb)
	}
	// A redelivered batch republishes the same id, so the stream keeps
	// one copy.
	again, _ := r.Process(b)
	id := m.Header.Get("Nats-Msg-Id")
	if got := again[len(again)-1].Msgs[0].Header.Get("Nats-Msg-Id"); got != id || !strings.HasPrefix(id, "rcpt.b.router.herald.receipts.x.") {
		t.Errorf("ids %q then %q: want the same, derived from the batch, stage and subject", id, got)
	}
}

func TestReceiptsGoOutOneMessagePerSubject(t *testing.T) {
	r, _ := New([]Target{{Name: "log", Bit: 4}}, nil)
	var evs []*schemas.Event
	track := map[string]string{}
	for i := range 100 {
		ev := &schemas.Event{Id: fmt.Sprintf("E%02d", i), TargetMask: 4, Track: fmt.Sprintf("herald.receipts.app%d", i%3)}
		evs = append(evs, ev)
		track[ev.Id] = ev.Track
	}
	outs, _ := r.Process(&schemas.Batch{Id: "b", Events: evs})
	last := outs[len(outs)-1]
	if len(last.Msgs) != 3 {
		t.Fatalf("%d receipt messages for 3 subjects", len(last.Msgs))
	}
	for i, m := range last.Msgs {
		var rb schemas.ReceiptBatch
		_ = proto.Unmarshal(m.Data, &rb)
		if want := fmt.Sprintf("herald.receipts.app%d", i); m.Subject != want || len(rb.Receipts) != []int{34, 33, 33}[i] {
			t.Errorf("message %d: %s with %d receipts", i, m.Subject, len(rb.Receipts))
		}
		for _, rc := range rb.Receipts {
			if track[rc.EventId] != m.Subject {
				t.Errorf("receipt of %s sent to %s", rc.EventId, m.Subject)
			}
		}
	}
}

func TestAFilterErrorCostsOnlyThatTargetsCopy(t *testing.T) {
	r, err := New([]Target{{Name: "log", Bit: 4}, {Name: "alerts", Bit: 8, Filter: `fields.n > 3`}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := &schemas.Event{Id: "X", TargetMask: 12, Track: "herald.receipts.t",
		Fields: []*schemas.Field{{Key: "n", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "five"}}}}}
	outs, _ := r.Process(&schemas.Batch{Id: "b", Events: []*schemas.Event{ev}})
	var keys []string
	for _, o := range outs {
		keys = append(keys, o.Key)
	}
	if strings.Join(keys, ",") != "log,dlq0,receipts" {
		t.Fatalf("outputs %v: the log copy must go on, the alerts copy be dead-lettered", keys)
	}
	if outs[1].DeadLetter.Origin != "herald.target.alerts" {
		t.Errorf("origin %q", outs[1].DeadLetter.Origin)
	}
	var rb schemas.ReceiptBatch
	if err := proto.Unmarshal(outs[2].Msgs[0].Data, &rb); err != nil || len(outs[2].Msgs) != 1 || len(rb.Receipts) != 2 {
		t.Fatalf("receipts %v (%v): want routed and failed in one message", &rb, err)
	}
	routed, failed := rb.Receipts[0], rb.Receipts[1]
	if strings.Join(routed.Targets, ",") != "log,alerts" || failed.Kind != schemas.Receipt_FAILED || failed.Target != "alerts" {
		t.Errorf("receipts %v / %v", routed, failed)
	}
}
