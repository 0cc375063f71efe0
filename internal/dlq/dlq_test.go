package dlq

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/schemas"
)

func letter(t *testing.T, b *bus.Bus, stage, id, origin, reason string, events int) {
	t.Helper()
	batch := &schemas.Batch{Id: id}
	for range events {
		batch.Events = append(batch.Events, &schemas.Event{Id: id, Message: "m"})
	}
	data, _ := proto.Marshal(batch)
	if err := b.DeadLetter(context.Background(), stage, id, origin, reason, "because", data, bus.EncodingBatch); err != nil {
		t.Fatal(err)
	}
}

func TestSummaryRedriveAndPurge(t *testing.T) {
	b := bustest.Open(t, "log")
	ctx := context.Background()
	letter(t, b, "sink.pg", "a", bus.TargetSubject("log"), "postgres_no_id", 1)
	letter(t, b, "sink.pg", "b", bus.TargetSubject("log"), "postgres_no_id", 1)
	letter(t, b, "router", "c", bus.SubjectResolved, "filter_error", 3)
	d, err := Open(ctx, b.JS)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := d.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0].Letters != 2 || groups[1].Events != 3 || groups[1].Reason != "filter_error" {
		t.Fatalf("summary %+v %+v", groups[0], groups[1])
	}
	n, ev, err := d.Redrive(ctx, Selector{Stage: "sink.pg"})
	if err != nil || n != 2 || ev != 2 {
		t.Fatalf("redrive = %d letters, %d events, %v", n, ev, err)
	}
	st, _ := b.JS.Stream(ctx, bus.StreamTargets)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 2 {
		t.Errorf("target stream holds %d messages after the redrive, want 2", info.State.Msgs)
	}
	// Redriving again finds nothing: redriven letters leave the stream.
	if n, _, _ := d.Redrive(ctx, Selector{Stage: "sink.pg"}); n != 0 {
		t.Errorf("second redrive sent %d letters", n)
	}
	if n, err := d.Purge(ctx, Selector{Reason: "filter_error"}); err != nil || n != 1 {
		t.Fatalf("purge = %d, %v", n, err)
	}
	if groups, _ := d.Summary(ctx); len(groups) != 0 {
		t.Errorf("after redrive and purge the stream still holds %+v", groups)
	}
}
