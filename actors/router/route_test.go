package router

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/schemas"
)

func TestEventsGoToEveryTargetWhoseBitIsInTheirMask(t *testing.T) {
	r := New([]Target{{"log", 4}, {"debug", 1}, {"audit", 2}})
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
	r := New([]Target{{"log", 4}, {"audit", 2}})
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
