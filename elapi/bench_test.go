package elapi_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-router/herald/elapi"
)

// benchEvent is a typical application event: a message and four fields,
// about 150 bytes on the wire.
func benchEvent(b *testing.B) *elapi.Event {
	ev, err := elapi.NewEvent(elapi.Message("user logged in"), elapi.String("user", "bob"),
		elapi.String("ip", "192.0.2.17"), elapi.Int("session", 81723), elapi.Bool("mfa", true))
	if err != nil {
		b.Fatal(err)
	}
	return ev
}

// BenchmarkLogAsyncUntracked: events/s from LogAsync to JetStream's
// acknowledgement of every batch, to a NATS server in this process (a
// file-backed HERALD_EVENTS stream, nothing consuming it). Run with
// -benchtime=1000000x for a steady figure.
func BenchmarkLogAsyncUntracked(b *testing.B) {
	srv := startBare(b)
	d, err := elapi.Dial(context.Background(), []string{srv.URL}, elapi.WithApplication("bench"))
	if err != nil {
		b.Fatal(err)
	}
	ev := benchEvent(b)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := d.LogAsync(ev, elapi.MaskLog, nil, 0); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := d.Close(ctx); err != nil { // waits for every acknowledgement
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkLogAsyncTracked: events/s from LogAsync to the OnDone callback
// of every event, end to end through herald's resolver, router and a file
// sink (JSON lines) running in this process, on the same cores as the
// client. Run with -benchtime=200000x.
func BenchmarkLogAsyncTracked(b *testing.B) {
	h := startHerald(b, `targets:
  log: {bit: 4, sinks: [logfile]}
sinks:
  logfile: {type: file, path: out/log.jsonl, format: json}
`)
	d, err := elapi.Dial(context.Background(), []string{h.URL}, elapi.WithApplication("bench"), elapi.WithMaxInFlight(50000))
	if err != nil {
		b.Fatal(err)
	}
	ev := benchEvent(b)
	var done, failed atomic.Int64
	cb := func(n elapi.Notice) {
		done.Add(1)
		if n.Err != nil || n.Result.Err() != nil {
			failed.Add(1)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := d.LogAsync(ev, elapi.MaskLog, cb, elapi.OnDone); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	if done.Load() != int64(b.N) || failed.Load() != 0 {
		b.Fatalf("%d of %d done, %d failed", done.Load(), b.N, failed.Load())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
