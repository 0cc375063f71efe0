// Package metrics holds herald's Prometheus collectors. A Metrics value is
// made once per process and handed to every stage; nothing registers
// globally.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is the process's registry and the per-stage counter families.
type Metrics struct {
	Registry     *prometheus.Registry
	received     *prometheus.CounterVec
	published    *prometheus.CounterVec
	acked        *prometheus.CounterVec
	redelivered  *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	nakked       *prometheus.CounterVec
	restarts     *prometheus.CounterVec
	// SinkSuspended is 1 while a sink is suspended after a retryable error.
	SinkSuspended *prometheus.GaugeVec
	// Connections is the number of open receiver connections.
	Connections *prometheus.GaugeVec
	// SinkCommitted counts the events each sink committed.
	SinkCommitted *prometheus.CounterVec
	// SinkRestarts counts the restarts of each sink's actor after its
	// provider panicked.
	SinkRestarts *prometheus.CounterVec
	// TargetBacklog is each target's messages waiting or unacknowledged.
	TargetBacklog *prometheus.GaugeVec
	batchSize     *prometheus.HistogramVec
	// latency is how long events took from arrival to a sink's commit.
	latency *prometheus.HistogramVec
	// SinkLeaseHeld is 1 while this process holds the lease of a
	// single-writer sink (and so drives it), 0 while it waits for it.
	SinkLeaseHeld *prometheus.GaugeVec
	// ReceiverStoreFull is 1 while JetStream refuses a receiver's records
	// for lack of space (its store limit is reached), so that intake is
	// held back: TCP senders wait, RELP records stay unacknowledged, HTTP
	// posts are answered 503.
	ReceiverStoreFull *prometheus.GaugeVec
}

// New makes the collectors and registers them, with Go and process metrics,
// on a fresh registry.
func New() *Metrics {
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "herald", Name: name, Help: help}, labels)
	}
	m := &Metrics{
		Registry:     prometheus.NewRegistry(),
		received:     cv("stage_received_events_total", "Events a stage took in.", "stage"),
		published:    cv("stage_published_events_total", "Events a stage published (or a sink committed) and JetStream acknowledged.", "stage"),
		acked:        cv("stage_acked_messages_total", "Input messages a stage acknowledged after finishing them.", "stage"),
		redelivered:  cv("stage_redelivered_messages_total", "Input messages that arrived for a second or later time.", "stage"),
		rejected:     cv("stage_rejected_total", "Records or events a stage refused, by reason.", "stage", "reason"),
		deadLettered: cv("stage_dead_lettered_total", "Messages or events sent to the dead-letter stream, by reason.", "stage", "reason"),
		nakked:       cv("stage_nakked_messages_total", "Input messages handed back for a later delivery.", "stage"),
		restarts:     cv("stage_actor_restarts_total", "Times a stage's actor was restarted after a panic.", "stage"),
		SinkSuspended: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "herald", Name: "sink_suspended",
			Help: "1 while the sink is suspended after a retryable error."}, []string{"sink"}),
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "herald", Name: "receiver_connections",
			Help: "Open connections per receiver."}, []string{"receiver"}),
		SinkCommitted: cv("sink_committed_events_total", "Events each sink committed.", "sink"),
		SinkRestarts:  cv("sink_actor_restarts_total", "Restarts of a sink's actor after its provider panicked.", "sink"),
		TargetBacklog: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "herald", Name: "target_backlog_messages",
			Help: "Messages waiting for a target or delivered and not yet acknowledged (from JetStream)."}, []string{"target"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "herald", Name: "stage_batch_events",
			Help:    "Events per input message a stage handled.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7)}, []string{"stage"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "herald", Name: "target_latency_seconds",
			Help:    "Time from an event's arrival at herald to its commit by a sink of the target.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"target"}),
		SinkLeaseHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "herald", Name: "sink_lease_held",
			Help: "1 while this process holds the lease of a single-writer sink and drives it."}, []string{"sink"}),
		ReceiverStoreFull: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "herald", Name: "receiver_store_full",
			Help: "1 while JetStream refuses the receiver's records for lack of space and intake is held back."}, []string{"receiver"}),
	}
	m.Registry.MustRegister(m.received, m.published, m.acked, m.redelivered, m.rejected, m.deadLettered,
		m.nakked, m.restarts, m.SinkSuspended, m.Connections, m.SinkCommitted, m.SinkRestarts, m.TargetBacklog, m.batchSize, m.latency, m.SinkLeaseHeld, m.ReceiverStoreFull,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Stage is the counters of one stage, bound to its label.
type Stage struct {
	name        string
	m           *Metrics
	Received    prometheus.Counter
	Published   prometheus.Counter
	Acked       prometheus.Counter
	Redelivered prometheus.Counter
	Nakked      prometheus.Counter
	Restarts    prometheus.Counter
	// BatchSize observes the events of each input message.
	BatchSize    prometheus.Observer
	rejected     *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
}

// Stage returns the counters labelled with name.
func (m *Metrics) Stage(name string) *Stage {
	return &Stage{
		name: name, m: m,
		Received:     m.received.WithLabelValues(name),
		Published:    m.published.WithLabelValues(name),
		Acked:        m.acked.WithLabelValues(name),
		Redelivered:  m.redelivered.WithLabelValues(name),
		Nakked:       m.nakked.WithLabelValues(name),
		Restarts:     m.restarts.WithLabelValues(name),
		BatchSize:    m.batchSize.WithLabelValues(name),
		rejected:     m.rejected,
		deadLettered: m.deadLettered,
	}
}

// Rejected counts n refusals for reason.
func (s *Stage) Rejected(reason string, n int) {
	s.rejected.WithLabelValues(s.name, reason).Add(float64(n))
}

// DeadLettered counts n dead letters for reason.
func (s *Stage) DeadLettered(reason string, n int) {
	s.deadLettered.WithLabelValues(s.name, reason).Add(float64(n))
}

// RejectedBy is the counter of refusals for reason.
func (s *Stage) RejectedBy(reason string) prometheus.Counter {
	return s.rejected.WithLabelValues(s.name, reason)
}

// StoreFull is the herald_receiver_store_full gauge of receiver.
func (s *Stage) StoreFull(receiver string) prometheus.Gauge {
	return s.m.ReceiverStoreFull.WithLabelValues(receiver)
}

// TargetLatency observes, for target, the time from arrival to commit.
func (m *Metrics) TargetLatency(target string) prometheus.Observer {
	return m.latency.WithLabelValues(target)
}
