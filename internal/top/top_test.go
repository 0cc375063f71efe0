package top_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/internal/top"
	"github.com/herald-router/herald/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The collector reads the exposition of herald's own metrics package,
// served over HTTP as herald serves it.
func TestTheCollectorReadsHeraldsMetrics(t *testing.T) {
	m := metrics.New()
	cl := m.Stage("classifier")
	cl.Received.Add(120)
	cl.Published.Add(118)
	cl.Redelivered.Add(2)
	cl.DeadLettered("malformed", 1)
	cl.DeadLettered("max_deliver", 1)
	rt := m.Stage("router")
	rt.Rejected("unrouted", 3)
	m.SinkCommitted.WithLabelValues("events").Add(115)
	m.SinkSuspended.WithLabelValues("events").Set(1)
	m.SinkSuspended.WithLabelValues("archive").Set(0)
	m.TargetBacklog.WithLabelValues("log").Set(7)
	srv := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)

	s := (&top.Collector{MetricsURL: srv.URL}).Sample(t.Context())
	if s.MetricsErr != "" {
		t.Fatal(s.MetricsErr)
	}
	c := s.Stages["classifier"]
	if c == nil || c.Received != 120 || c.Published != 118 || c.Redelivered != 2 || c.DeadLettered != 2 {
		t.Errorf("classifier = %+v, want received 120, published 118, redelivered 2, dead-lettered 2 (summed over reasons)", c)
	}
	if r := s.Stages["router"]; r == nil || r.Rejected != 3 {
		t.Errorf("router = %+v, want 3 rejected", r)
	}
	if k := s.Sinks["events"]; k == nil || !k.Suspended || k.Committed != 115 {
		t.Errorf("sink events = %+v, want suspended with 115 committed", k)
	}
	if k := s.Sinks["archive"]; k == nil || k.Suspended {
		t.Errorf("sink archive = %+v, want up", k)
	}
	if s.Backlog["log"] != 7 {
		t.Errorf("backlog of log = %v, want 7", s.Backlog["log"])
	}
}

func TestAnUnreachableMetricsEndpointIsReportedNotFatal(t *testing.T) {
	srv := httptest.NewServer(nil)
	url := srv.URL + "/metrics"
	srv.Close()
	s := (&top.Collector{MetricsURL: url}).Sample(t.Context())
	if s.MetricsErr == "" {
		t.Fatal("no error for a closed endpoint")
	}
	if out := top.Render(top.Source{MetricsURL: url}, nil, s, 0); !strings.Contains(out, "metrics: ") {
		t.Errorf("the snapshot does not say why it is empty:\n%s", out)
	}
}

// Consumer info and the dead-letter stream come from a real JetStream;
// reading them takes nothing from the consumers.
func TestTheCollectorReadsConsumersAndDeadLetters(t *testing.T) {
	b := bustest.Open(t, "log", "audit")
	ctx := t.Context()
	for i := range 3 {
		msgs, err := bus.EncodeBatches(bus.RawSubject("syslog"), "b"+string(rune('0'+i)), []*schemas.Event{{Raw: []byte("x")}}, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, msgs[0]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if err := b.DeadLetter(ctx, "router", "id"+string(rune('0'+i)), bus.SubjectResolved, "filter_error", "test", []byte("{}"), ""); err != nil {
			t.Fatal(err)
		}
	}
	col := &top.Collector{JS: b.JS}
	check := func(s *top.Sample) error {
		if s.NATSErr != "" {
			return errors.New(s.NATSErr)
		}
		if c, ok := s.Consumers["classifier"]; !ok || c.Pending != 3 || c.AckPending != 0 {
			return fmt.Errorf("classifier consumer = %+v, want 3 pending, 0 ack-pending", c)
		}
		for _, st := range []string{"resolver", "router", "target.log", "target.audit"} {
			if _, ok := s.Consumers[st]; !ok {
				return fmt.Errorf("no consumer for stage %s in %v", st, s.Consumers)
			}
		}
		if s.DeadLetters != 2 {
			return fmt.Errorf("dead letters = %d, want 2", s.DeadLetters)
		}
		return nil
	}
	// The server counts a consumer's pending messages a moment after it
	// stored them.
	bustest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error { return check(col.Sample(ctx)) })
	// Reading again gives the same: the first reading consumed nothing.
	if err := check(col.Sample(ctx)); err != nil {
		t.Fatal(err)
	}
}

// samples are two synthetic readings two seconds apart.
func samples() (*top.Sample, *top.Sample) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a, b := top.NewSample(t0), top.NewSample(t0.Add(2*time.Second))
	a.Stages["receiver.syslog"] = &top.StageCounts{Received: 1000, Published: 1000}
	b.Stages["receiver.syslog"] = &top.StageCounts{Received: 21000, Published: 20990, Rejected: 4}
	a.Stages["classifier"] = &top.StageCounts{Received: 900, Published: 900}
	b.Stages["classifier"] = &top.StageCounts{Received: 20900, Published: 20900, Redelivered: 1}
	b.Stages["target.log"] = &top.StageCounts{Received: 20000, Published: 19000, DeadLettered: 12, Restarts: 1}
	b.Consumers["classifier"] = top.Consumer{Pending: 90, AckPending: 3}
	b.Consumers["target.log"] = top.Consumer{Pending: 1234567, AckPending: 64, Redelivered: 2}
	a.Sinks["events"] = &top.SinkCounts{Committed: 0}
	b.Sinks["events"] = &top.SinkCounts{Committed: 19000}
	b.Sinks["archive"] = &top.SinkCounts{Suspended: true}
	b.DeadLetters = 12
	return a, b
}

func TestTheSnapshotShowsRatesBacklogsAndSuspendedSinks(t *testing.T) {
	a, b := samples()
	got := top.Render(top.Source{MetricsURL: "http://127.0.0.1:9464/metrics", NATSURL: "nats://127.0.0.1:4222"}, a, b, 0)
	golden := filepath.Join("testdata", "snapshot.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("snapshot differs from %s (go test -update rewrites it):\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}

// The model is driven as bubbletea drives it: samples, keys and resizes
// go through Update, and View shows the result.
func TestTheModelUpdatesOnSamplesAndQuitsOnQ(t *testing.T) {
	a, b := samples()
	var m tea.Model = top.NewModel(nil, top.Source{}, time.Second)
	if v := m.View(); !strings.Contains(v, "no sample yet") {
		t.Errorf("view before any sample:\n%s", v)
	}
	m, cmd := m.Update(top.SampleMsg{Sample: a})
	if cmd == nil {
		t.Fatal("a sample schedules no next tick")
	}
	if v := m.View(); !strings.Contains(v, "receiver.syslog") || strings.Contains(v, "10,000") {
		t.Errorf("one sample must show the stages without rates:\n%s", v)
	}
	m, _ = m.Update(top.SampleMsg{Sample: b})
	v := m.View()
	for _, want := range []string{"10,000", "SUSPENDED", "1,234,567", "dead letters in HERALD_DLQ: 12"} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}

	m, _ = m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("p")})
	c := top.NewSample(b.At.Add(time.Second))
	m, _ = m.Update(top.SampleMsg{Sample: c})
	if v := m.View(); !strings.Contains(v, "PAUSED") || !strings.Contains(v, "10,000") {
		t.Errorf("a paused view must keep its figures:\n%s", v)
	}

	m, _ = m.Update(tea.WindowSizeMsg{Width: 20, Height: 10})
	for _, line := range strings.Split(m.View(), "\n") {
		if len([]rune(line)) > 26 { // the help line is not cut
			t.Errorf("line longer than the window: %q", line)
		}
	}

	_, cmd = m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
	if cmd == nil {
		t.Fatal("q does not quit")
	}
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("q does not quit")
	}
}

// A tick makes the model read the next sample from its sampler.
func TestATickReadsTheSampler(t *testing.T) {
	_, b := samples()
	m := top.NewModel(fixed{b}, top.Source{}, time.Millisecond)
	msg := m.Init()()
	sm, ok := msg.(top.SampleMsg)
	if !ok || sm.Sample != b {
		t.Fatalf("Init's command gave %T, want the sampler's sample", msg)
	}
}

type fixed struct{ s *top.Sample }

func (f fixed) Sample(context.Context) *top.Sample { return f.s }
