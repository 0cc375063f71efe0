package stage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-router/herald/actors/classifier"
	"github.com/herald-router/herald/actors/resolver"
	"github.com/herald-router/herald/actors/router"
	"github.com/herald-router/herald/actors/stage"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// stored is what a stream holds after a run: each message's data and
// headers by Nats-Msg-Id.
type stored map[string]*nats.Msg

// runPipeline sends one raw batch through classifier, resolver and router,
// fused into one hop or as three hops with the streams between them, and
// returns what landed in the targets' and dead letters' streams and the
// stages' metrics.
func runPipeline(t *testing.T, fused bool, raw *schemas.Batch) (stored, *metrics.Metrics) {
	t.Helper()
	ctx := context.Background()
	b := bustest.Open(t, "log", "alerts")
	msgs, err := bus.EncodeBatches(bus.RawSubject("syslog"), raw.Id, raw.Events, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := b.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := router.New([]router.Target{{Name: "log", Bit: 4}, {Name: "alerts", Bit: 4, Filter: "severity <= 3 || fields.n > 3"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	hop := func(name string, proc stage.Processor, next ...stage.Link) *stage.Hop {
		h := &stage.Hop{Name: name, Bus: b, Proc: proc, MaxBytes: 1 << 20, MaxDeliver: 5,
			Metrics: m.Stage(name), Log: bustest.Logger(t), Next: next}
		h.Init(16)
		return h
	}
	run := func(h *stage.Hop, stream, durable string) {
		cons, err := b.Consumer(ctx, stream, durable)
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for msg := range batch.Messages() {
			h.Handle(ctx, msg)
		}
		h.Drain(ctx)
	}
	if fused {
		run(hop("classifier", classifier.Processor{},
			stage.Link{Name: "resolver", Proc: resolver.Processor{}, Metrics: m.Stage("resolver"), Input: bus.SubjectEventsPrefix},
			stage.Link{Name: "router", Proc: rt, Metrics: m.Stage("router"), Input: bus.SubjectResolved}),
			bus.StreamRaw, bus.ConsumerClassifier)
	} else {
		run(hop("classifier", classifier.Processor{}), bus.StreamRaw, bus.ConsumerClassifier)
		run(hop("resolver", resolver.Processor{}), bus.StreamEvents, bus.ConsumerResolver)
		run(hop("router", rt), bus.StreamResolved, bus.ConsumerRouter)
	}
	out := stored{}
	for _, name := range []string{bus.StreamTargets, bus.StreamDLQ} {
		s, err := b.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			rm, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			out[rm.Header.Get(jetstream.MsgIDHeader)] = &nats.Msg{Subject: rm.Subject, Data: rm.Data, Header: rm.Header}
		}
	}
	return out, m
}

func TestAFusedHopStoresWhatSeparateStagesWould(t *testing.T) {
	raw := &schemas.Batch{Id: "raw-1", Events: []*schemas.Event{
		{Source: "syslog", TargetMask: 4, ReceivedUnixNano: 1764151200000000000, Raw: []byte("<11>Nov 26 10:00:00 web1 app[42]: disk failed")},
		{Source: "syslog", TargetMask: 4, ReceivedUnixNano: 1764151200000000001, Raw: []byte("<134>Nov 26 10:00:01 web1 app[42]: all good")},
		// A string n: the alerts filter cannot judge it, so that copy is
		// dead-lettered by the router with the target as its origin.
		{Source: "syslog", TargetMask: 4, ReceivedUnixNano: 1764151200000000002, Raw: []byte(`{"message":"json event","n":"many"}`)},
		{Source: "syslog", TargetMask: 4, ReceivedUnixNano: 1764151200000000003, Raw: []byte(`127.0.0.1 - - [26/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 12`)},
	}}
	sep, ms := runPipeline(t, false, raw)
	fus, mf := runPipeline(t, true, raw)

	if len(sep) == 0 {
		t.Fatal("the separate stages stored nothing")
	}
	for id, want := range sep {
		got, ok := fus[id]
		if !ok {
			t.Errorf("message %s (%s) of the separate stages is missing from the fused hop's", id, want.Subject)
			continue
		}
		if got.Subject != want.Subject || string(got.Data) != string(want.Data) {
			t.Errorf("message %s differs: subject %s vs %s, %d vs %d bytes", id, got.Subject, want.Subject, len(got.Data), len(want.Data))
		}
		for _, h := range []string{bus.HeaderDLQReason, bus.HeaderDLQStage, bus.HeaderDLQSubject} {
			if got.Header.Get(h) != want.Header.Get(h) {
				t.Errorf("message %s: header %s is %q, separate stages wrote %q", id, h, got.Header.Get(h), want.Header.Get(h))
			}
		}
	}
	for id, m := range fus {
		if _, ok := sep[id]; !ok {
			t.Errorf("the fused hop stored %s (%s) that separate stages did not", id, m.Subject)
		}
	}
	dead := 0
	for _, m := range sep {
		if m.Header.Get(bus.HeaderDLQReason) != "" {
			dead++
		}
	}
	if dead == 0 {
		t.Error("no dead letter: the case of a router dead letter inside a fused hop went untested")
	}
	for _, st := range []string{"classifier", "resolver", "router"} {
		for _, c := range []struct {
			name   string
			metric func(*metrics.Stage) float64
		}{
			{"received", func(s *metrics.Stage) float64 { return testutil.ToFloat64(s.Received) }},
			{"published", func(s *metrics.Stage) float64 { return testutil.ToFloat64(s.Published) }},
		} {
			a, b := c.metric(ms.Stage(st)), c.metric(mf.Stage(st))
			if a != b || a == 0 {
				t.Errorf("%s %s: separate %v, fused %v", st, c.name, a, b)
			}
		}
	}
}
