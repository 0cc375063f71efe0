// Package top is `herald top`: a live view of every stage and sink of a
// running herald, from two sources a separate process can read: herald's
// /metrics (the counters of each stage and sink) and JetStream's consumer
// info (what waits for each stage). Rates are the change of a counter
// between two samples. The bubbletea model (Model) and the plain-text
// snapshot (`--once`) render the same table.
package top

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/herald-router/herald/bus"
)

// StageCounts are one stage's counters (herald_stage_*), summed over
// reasons where they have one.
type StageCounts struct {
	Received, Published, Acked, Redelivered, Nakked float64
	Rejected, DeadLettered, Restarts                float64
}

// SinkCounts are one sink's metrics (herald_sink_*).
type SinkCounts struct {
	Committed, Restarts float64
	Suspended           bool
}

// Consumer is what JetStream says of a stage's durable consumer.
type Consumer struct {
	Stream, Name string
	// Pending is the number of messages not yet delivered; AckPending
	// those delivered and not yet acknowledged; Redelivered those
	// delivered more than once and still unacknowledged.
	Pending     uint64
	AckPending  int
	Redelivered int
}

// Sample is one reading of both sources. A source that could not be read
// leaves its part empty and says why in MetricsErr or NATSErr.
type Sample struct {
	At     time.Time
	Stages map[string]*StageCounts // by stage label: receiver.<name>, classifier, resolver, router, target.<t>
	Sinks  map[string]*SinkCounts
	// Backlog is herald_target_backlog_messages by target.
	Backlog map[string]float64
	// Consumers by the stage they feed (the same names as Stages).
	Consumers map[string]Consumer
	// DeadLetters is the number of messages in HERALD_DLQ; -1 unknown.
	DeadLetters int64
	MetricsErr  string
	NATSErr     string
}

// NewSample returns an empty sample taken at at.
func NewSample(at time.Time) *Sample {
	return &Sample{At: at, Stages: map[string]*StageCounts{}, Sinks: map[string]*SinkCounts{},
		Backlog: map[string]float64{}, Consumers: map[string]Consumer{}, DeadLetters: -1}
}

// Collector reads a sample from a running herald.
type Collector struct {
	// MetricsURL is herald's /metrics; empty skips it.
	MetricsURL string
	HTTP       *http.Client
	// JS reads consumer and stream info; nil skips it.
	JS jetstream.JetStream
}

// Sample reads both sources, each bounded by ctx.
func (c *Collector) Sample(ctx context.Context) *Sample {
	s := NewSample(time.Now())
	if c.MetricsURL != "" {
		if err := c.scrape(ctx, s); err != nil {
			s.MetricsErr = err.Error()
		}
	}
	if c.JS != nil {
		if err := c.consumers(ctx, s); err != nil {
			s.NATSErr = err.Error()
		}
	}
	return s
}

func (c *Collector) scrape(ctx context.Context, s *Sample) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.MetricsURL, nil)
	if err != nil {
		return fmt.Errorf("metrics %s: %w", c.MetricsURL, err)
	}
	client := c.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("metrics %s: %s", c.MetricsURL, resp.Status)
	}
	return ParseMetrics(resp.Body, s)
}

// ParseMetrics reads Prometheus text exposition into s; series herald
// does not name are ignored.
func ParseMetrics(r io.Reader, s *Sample) error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	stage := func(m *dto.Metric) *StageCounts {
		name := label(m, "stage")
		sc := s.Stages[name]
		if sc == nil {
			sc = &StageCounts{}
			s.Stages[name] = sc
		}
		return sc
	}
	sinkOf := func(m *dto.Metric) *SinkCounts {
		name := label(m, "sink")
		sk := s.Sinks[name]
		if sk == nil {
			sk = &SinkCounts{}
			s.Sinks[name] = sk
		}
		return sk
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			v := value(m)
			switch name {
			case "herald_stage_received_events_total":
				stage(m).Received += v
			case "herald_stage_published_events_total":
				stage(m).Published += v
			case "herald_stage_acked_messages_total":
				stage(m).Acked += v
			case "herald_stage_redelivered_messages_total":
				stage(m).Redelivered += v
			case "herald_stage_nakked_messages_total":
				stage(m).Nakked += v
			case "herald_stage_rejected_total":
				stage(m).Rejected += v
			case "herald_stage_dead_lettered_total":
				stage(m).DeadLettered += v
			case "herald_stage_actor_restarts_total":
				stage(m).Restarts += v
			case "herald_sink_committed_events_total":
				sinkOf(m).Committed += v
			case "herald_sink_actor_restarts_total":
				sinkOf(m).Restarts += v
			case "herald_sink_suspended":
				sinkOf(m).Suspended = v > 0
			case "herald_target_backlog_messages":
				s.Backlog[label(m, "target")] = v
			}
		}
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// stageOfConsumer names the stage a durable consumer feeds.
func stageOfConsumer(stream, name string) string {
	switch {
	case stream == bus.StreamRaw && name == bus.ConsumerClassifier:
		return "classifier"
	case stream == bus.StreamEvents && name == bus.ConsumerResolver:
		return "resolver"
	case stream == bus.StreamResolved && name == bus.ConsumerRouter:
		return "router"
	case stream == bus.StreamTargets && strings.HasPrefix(name, bus.SinkConsumer("")):
		return "target." + strings.TrimPrefix(name, bus.SinkConsumer(""))
	}
	return stream + "/" + name
}

// consumers lists the durable consumers of the pipeline's streams and the
// size of the dead-letter stream. Reading info takes nothing from a
// consumer.
func (c *Collector) consumers(ctx context.Context, s *Sample) error {
	var errs []error
	for _, name := range []string{bus.StreamRaw, bus.StreamEvents, bus.StreamResolved, bus.StreamTargets} {
		st, err := c.JS.Stream(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", name, err))
			continue
		}
		l := st.ListConsumers(ctx)
		for ci := range l.Info() {
			s.Consumers[stageOfConsumer(name, ci.Name)] = Consumer{
				Stream: name, Name: ci.Name, Pending: ci.NumPending, AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered,
			}
		}
		if err := l.Err(); err != nil {
			errs = append(errs, fmt.Errorf("consumers of %s: %w", name, err))
		}
	}
	st, err := c.JS.Stream(ctx, bus.StreamDLQ)
	if err == nil {
		var info *jetstream.StreamInfo
		if info, err = st.Info(ctx); err == nil {
			s.DeadLetters = int64(info.State.Msgs)
		}
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("stream %s: %w", bus.StreamDLQ, err))
	}
	return errors.Join(errs...)
}

// stageOrder sorts stage names in pipeline order: receivers, classifier,
// resolver, router, targets, then anything else by name.
func stageOrder(names []string) {
	rank := func(n string) int {
		switch {
		case strings.HasPrefix(n, "receiver."):
			return 0
		case n == "classifier":
			return 1
		case n == "resolver":
			return 2
		case n == "router":
			return 3
		case strings.HasPrefix(n, "target."):
			return 4
		}
		return 5
	}
	sort.Slice(names, func(i, j int) bool {
		ri, rj := rank(names[i]), rank(names[j])
		if ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
}
