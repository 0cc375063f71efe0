package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The counters must add up: what each stage took in is what it passed on
// plus what it dead-lettered (plus what is pending, none once drained).
func TestMetricsAddUpUnderLoad(t *testing.T) {
	const lines, apps, bad = 3000, 100, 20
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`bus:
  embedded: {listen: 127.0.0.1:%d, data_dir: nats}
metrics: {listen: 127.0.0.1:%d}
receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:%d}
targets:
  log: {bit: 4, sinks: [events]}
  alerts: {bit: 8, sinks: [alerts], filter: 'fields.n > 3'}
sinks:
  events: {type: file, path: out/events.jsonl}
  alerts: {type: file, path: out/alerts.jsonl}
`, natsPort, metricsPort, syslogPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)

	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", syslogPort))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(c)
	stamp := time.Now().Format(time.Stamp)
	for i := range lines {
		l, _ := syslogLine("tcp", 0, i, stamp)
		fmt.Fprintln(w, l)
	}
	_ = w.Flush()
	_ = c.Close()
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for i := range apps {
		n := "5"
		if i < bad {
			n = `"x"` // the alerts filter cannot judge it
		}
		if _, err := js.Publish(context.Background(), "herald.events.app",
			fmt.Appendf(nil, `{"message":"app %d","target_mask":12,"n":%s}`, i, n)); err != nil {
			t.Fatal(err)
		}
	}
	m := func(series string) float64 {
		v, err := h.metric(series)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		if got := m(`herald_sink_committed_events_total{sink="events"}`); got < lines+apps {
			return fmt.Errorf("log sink committed %.0f of %d", got, lines+apps)
		}
		if got := m(`herald_sink_committed_events_total{sink="alerts"}`); got < apps-bad {
			return fmt.Errorf("alerts sink committed %.0f of %d", got, apps-bad)
		}
		return nil
	})
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"receiver took in = published", m(`herald_stage_received_events_total{stage="receiver.syslog"}`), m(`herald_stage_published_events_total{stage="receiver.syslog"}`)},
		{"classifier took in = receiver published", m(`herald_stage_received_events_total{stage="classifier"}`), m(`herald_stage_published_events_total{stage="receiver.syslog"}`)},
		{"resolver took in = classifier published + application events", m(`herald_stage_received_events_total{stage="resolver"}`), m(`herald_stage_published_events_total{stage="classifier"}`) + apps},
		{"router took in = resolver published", m(`herald_stage_received_events_total{stage="router"}`), m(`herald_stage_published_events_total{stage="resolver"}`)},
		{"log target took in = its sink committed", m(`herald_stage_received_events_total{stage="target.log"}`), m(`herald_sink_committed_events_total{sink="events"}`)},
		{"alerts target took in = its sink committed", m(`herald_stage_received_events_total{stage="target.alerts"}`), m(`herald_sink_committed_events_total{sink="alerts"}`)},
		{"router dead-lettered the copies its filter could not judge", m(`herald_stage_dead_lettered_total{reason="filter_error",stage="router"}`), bad},
		{"every copy is accounted for: log + alerts + dead letters = routed copies", m(`herald_sink_committed_events_total{sink="events"}`) + m(`herald_sink_committed_events_total{sink="alerts"}`) + m(`herald_stage_dead_lettered_total{reason="filter_error",stage="router"}`), lines + apps + apps},
		{"the log sink committed every line and application event", m(`herald_sink_committed_events_total{sink="events"}`), lines + apps},
	} {
		if c.got != c.want {
			t.Errorf("%s: %.0f, want %.0f", c.what, c.got, c.want)
		}
	}
	for _, tgt := range []string{"log", "alerts"} {
		eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
			if b := m(fmt.Sprintf(`herald_target_backlog_messages{target=%q}`, tgt)); b != 0 {
				return fmt.Errorf("target %s backlog %.0f", tgt, b)
			}
			return nil
		})
	}
}
