package e2e

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"testing"
	"text/template"
	"time"

	"github.com/herald-router/herald/actors/sink/syslog/rsyslogtest"
)

var syslogSinkConfig = template.Must(template.New("cfg").Parse(`# written by herald's e2e tests
log: {level: info, format: text}
bus:
  embedded:
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
  ack_wait: 10s
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 60s
receivers:
  syslog:
    type: syslog
    tcp: 127.0.0.1:{{.SyslogPort}}
targets:
  log:
    bit: 4
    sinks: [remote]
sinks:
  remote:
    type: syslog
    transport: relp
    address: 127.0.0.1:{{.RELPPort}}
    dial_timeout: 2s
    ack_timeout: 2s
`))

var syslogSinkKey = regexp.MustCompile(`\bfwd-\d{6}\b`)

// TestRemoteRsyslogKilledAndRestartedMidStreamLosesNothing forwards 20,000
// syslog lines through herald to a real rsyslog over RELP, kills rsyslog
// with SIGKILL while the lines flow, waits until herald has suspended the
// sink, and starts rsyslog again on the same port: every line must reach
// rsyslog at least once. What RELP acknowledged was written (rsyslogtest
// runs rsyslog with a Direct main queue), so nothing may be missing; the
// duplicates are the unacknowledged tail that herald sent again, reported
// by line and by event id.
func TestRemoteRsyslogKilledAndRestartedMidStreamLosesNothing(t *testing.T) {
	const total = 20000
	start := time.Now()
	rs := rsyslogtest.Start(t, rsyslogtest.Options{})

	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg := writeTemplate(t, dir, syslogSinkConfig, map[string]int{"NATSPort": natsPort, "MetricsPort": metricsPort, "SyslogPort": syslogPort, "RELPPort": rs.RELP})
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)

	// The sender paces itself (about 5,000 lines/s) so that the outage
	// falls in the middle of the stream.
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- func() error {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", syslogPort), 5*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Minute))
			w := bufio.NewWriter(conn)
			stamp := time.Now().Format(time.Stamp)
			for i := range total {
				if _, err := fmt.Fprintf(w, "<13>%s app1 e2e[77]: fwd-%06d forwarded over relp\n", stamp, i); err != nil {
					return err
				}
				if i%100 == 99 {
					if err := w.Flush(); err != nil {
						return err
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			return w.Flush()
		}()
	}()

	counts := map[string]int{}
	ids := map[string]int{}
	read := func() error {
		recs, err := rs.Records()
		if err != nil {
			return err
		}
		clear(counts)
		clear(ids)
		for _, r := range recs {
			if k := syslogSinkKey.FindString(r.Message); k != "" {
				counts[k]++
				ids[r.ID]++
			}
		}
		return nil
	}

	eventually(t, 60*time.Second, 20*time.Millisecond, func() error {
		if err := read(); err != nil {
			return err
		}
		if len(counts) < total/4 {
			return fmt.Errorf("rsyslog holds %d lines, waiting for %d before the outage", len(counts), total/4)
		}
		return nil
	})
	before := len(counts)
	rs.Kill()
	killedAt := time.Now()
	eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		v, err := h.metric(`herald_sink_suspended{sink="remote"}`)
		if err != nil {
			return err
		}
		if v != 1 {
			return fmt.Errorf("herald_sink_suspended{sink=\"remote\"} = %v, want 1 while rsyslog is down", v)
		}
		return nil
	})
	// Keep rsyslog down while 2,000 more lines come in, so that herald
	// holds a backlog for it and retries into the outage.
	const received = `herald_stage_received_events_total{stage="receiver.syslog"}`
	atKill, err := h.metric(received)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		v, err := h.metric(received)
		if err != nil {
			return err
		}
		if v < atKill+2000 && v < total {
			return fmt.Errorf("herald received %v lines, waiting for %v during the outage", v, atKill+2000)
		}
		return nil
	})
	rs.Start()
	restartedAt := time.Now()
	t.Logf("rsyslog killed with %d lines received, herald suspended the sink, rsyslog restarted after %s",
		before, time.Since(killedAt).Round(time.Millisecond))

	select {
	case err := <-sendErr:
		if err != nil {
			t.Fatalf("sending to herald: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the sender did not finish within 2 minutes")
	}
	eventually(t, 90*time.Second, 50*time.Millisecond, func() error {
		if err := read(); err != nil {
			return err
		}
		if len(counts) < total {
			return fmt.Errorf("rsyslog holds %d of %d lines", len(counts), total)
		}
		return nil
	})
	t.Logf("every line was at rsyslog %s after its restart", time.Since(restartedAt).Round(time.Millisecond))
	var missing []string
	for i := range total {
		if k := fmt.Sprintf("fwd-%06d", i); counts[k] == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d lines never reached rsyslog: %s", len(missing), firstFew(missing, 10))
	}
	dupLines, dupIDs := 0, 0
	for _, n := range counts {
		dupLines += n - 1
	}
	for _, n := range ids {
		dupIDs += n - 1
	}
	if v, err := h.metric(`herald_sink_suspended{sink="remote"}`); err != nil || v != 0 {
		t.Errorf("herald_sink_suspended{sink=\"remote\"} = %v (%v) after recovery, want 0", v, err)
	}
	t.Logf("all %d lines arrived; %d duplicate copies (%d by event id, which a collector can drop), %s in all",
		total, dupLines, dupIDs, time.Since(start).Round(time.Millisecond))
}
