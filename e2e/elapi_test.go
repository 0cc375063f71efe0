package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/herald-router/herald/elapi"
)

// elapiConfig: audit writes a JSON file; log forwards to a syslog
// collector (the test's own TCP listener) whose max_message_size of 480
// bytes makes the syslog sink dead-letter a longer event with too_long, a
// permanent failure of that copy only.
var elapiConfig = template.Must(template.New("cfg").Parse(`# written by herald's e2e tests
log: {level: info, format: text}
bus:
  embedded:
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
  ack_wait: 5s
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 30s
targets:
  audit: {bit: 2, sinks: [auditfile]}
{{- if .SyslogPort}}
  log:   {bit: 4, sinks: [collector]}
{{- else}}
  log:   {bit: 4, sinks: [logfile]}
{{- end}}
sinks:
  auditfile: {type: file, path: out/audit.jsonl, format: json}
  logfile:   {type: file, path: out/log.jsonl, format: json}
{{- if .SyslogPort}}
  collector:
    type: syslog
    transport: tcp
    framing: newline
    address: 127.0.0.1:{{.SyslogPort}}
    max_message_size: 480
{{- end}}
`))

type elapiHerald struct {
	dir, cfg          string
	natsPort, metrics int
	url               string
}

// newELAPIHerald writes the config; syslogPort 0 sends log to a file.
func newELAPIHerald(t *testing.T, syslogPort int) *elapiHerald {
	t.Helper()
	h := &elapiHerald{dir: t.TempDir(), natsPort: freePort(t), metrics: freePort(t)}
	h.url = fmt.Sprintf("nats://127.0.0.1:%d", h.natsPort)
	h.cfg = writeTemplate(t, h.dir, elapiConfig, map[string]int{"NATSPort": h.natsPort, "MetricsPort": h.metrics, "SyslogPort": syslogPort})
	return h
}

func (h *elapiHerald) start(t *testing.T, name string) *proc {
	t.Helper()
	p := startHerald(t, name, h.cfg, h.metrics)
	p.waitReady(30 * time.Second)
	return p
}

// collector is a syslog collector over TCP that reads and counts lines.
type collector struct {
	ln    net.Listener
	mu    sync.Mutex
	lines int
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				sc := bufio.NewScanner(conn)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				for sc.Scan() {
					c.mu.Lock()
					c.lines++
					c.mu.Unlock()
				}
			}()
		}
	}()
	return c
}

func (c *collector) port() int { return c.ln.Addr().(*net.TCPAddr).Port }

// doneLog records every OnDone notice by event id.
type doneLog struct {
	mu      sync.Mutex
	notices map[string][]elapi.Notice
	want    map[string]bool // the events that should fail on log
}

func (l *doneLog) add(n elapi.Notice) {
	l.mu.Lock()
	l.notices[n.ID] = append(l.notices[n.ID], n)
	l.mu.Unlock()
}

func (l *doneLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.notices)
}

func dialELAPI(t *testing.T, url string, opts ...elapi.Option) *elapi.Dispatcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d, err := elapi.Dial(ctx, []string{url}, append([]elapi.Option{elapi.WithApplication("e2e")}, opts...)...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

// TestELAPITenThousandTrackedEventsReportEveryCopyOnce logs 10,000
// tracked events to audit (a file) and log (a syslog collector that takes
// at most 480 bytes): every tenth event is too long for the collector, so
// its log copy is dead-lettered. The callback must report every event done
// exactly once, with exactly those copies failed (too_long) and every
// other copy committed by its sink.
func TestELAPITenThousandTrackedEventsReportEveryCopyOnce(t *testing.T) {
	const total = 10000
	col := startCollector(t)
	h := newELAPIHerald(t, col.port())
	h.start(t, "herald")
	d := dialELAPI(t, h.url)

	l := &doneLog{notices: map[string][]elapi.Notice{}, want: map[string]bool{}}
	long := strings.Repeat("x", 1000)
	start := time.Now()
	for i := range total {
		msg := fmt.Sprintf("event %d", i)
		if i%10 == 0 {
			msg += " " + long
		}
		ev, err := elapi.NewEvent(elapi.Message(msg), elapi.Int("n", int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		id, err := d.LogAsync(ev, elapi.MaskAudit|elapi.MaskLog, l.add, elapi.OnDone)
		if err != nil {
			t.Fatalf("LogAsync %d: %v", i, err)
		}
		l.want[id] = i%10 == 0
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("close: %v (done %d of %d)", err, l.count(), total)
	}
	t.Logf("%d tracked events done in %s", total, time.Since(start).Round(time.Millisecond))

	l.mu.Lock()
	defer l.mu.Unlock()
	var problems []string
	failed := 0
	for id, shouldFail := range l.want {
		ns := l.notices[id]
		if len(ns) != 1 {
			problems = append(problems, fmt.Sprintf("%s: %d done notices, want 1", id, len(ns)))
			continue
		}
		n := ns[0]
		if n.Err != nil || n.Result == nil {
			problems = append(problems, fmt.Sprintf("%s: %v", id, n.Err))
			continue
		}
		wantLog := elapi.TargetResult{Target: "log", Outcome: elapi.Committed, Sink: "collector"}
		if shouldFail {
			wantLog = elapi.TargetResult{Target: "log", Outcome: elapi.Failed, Sink: "collector", Reason: "too_long"}
			failed++
		}
		want := fmt.Sprint([]elapi.TargetResult{{Target: "audit", Outcome: elapi.Committed, Sink: "auditfile"}, wantLog})
		if got := fmt.Sprint(n.Result.Targets); got != want {
			problems = append(problems, fmt.Sprintf("%s: %s, want %s", id, got, want))
		}
	}
	if len(l.notices) != total {
		problems = append(problems, fmt.Sprintf("%d events reported, want %d", len(l.notices), total))
	}
	if len(problems) > 0 {
		t.Fatalf("%d problem(s): %s", len(problems), firstFew(problems, 5))
	}
	if failed != total/10 {
		t.Fatalf("%d events failed on log, want %d", failed, total/10)
	}
	// What was reported committed was written: the audit file holds
	// every event once.
	audit := readEventIDs(t, filepath.Join(h.dir, "out/audit.jsonl"))
	for id := range l.want {
		if audit[id] != 1 {
			t.Fatalf("audit file holds %s %d times, want once", id, audit[id])
		}
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.lines < total-total/10 {
		t.Errorf("collector read %d lines, want at least %d", col.lines, total-total/10)
	}
}

// TestELAPITrackedEventsSurviveSIGKILLOfHerald kills herald (and its
// embedded NATS server) with SIGKILL while 10,000 tracked events are on
// their way, then starts it again on the same data: the dispatcher
// reconnects, sends again what was not acknowledged and picks up the
// receipts stored in JetStream, so every event is reported done exactly
// once, committed by both targets.
func TestELAPITrackedEventsSurviveSIGKILLOfHerald(t *testing.T) {
	const total = 10000
	h := newELAPIHerald(t, 0)
	p := h.start(t, "herald-1")
	d := dialELAPI(t, h.url, elapi.WithMaxInFlight(2000), elapi.WithPublishTimeout(2*time.Second))
	l := &doneLog{notices: map[string][]elapi.Notice{}, want: map[string]bool{}}
	var idsMu sync.Mutex
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- func() error {
			for i := range total {
				ev, err := elapi.NewEvent(elapi.Message("survives"), elapi.Int("n", int64(i)))
				if err != nil {
					return err
				}
				id, err := d.LogAsync(ev, elapi.MaskAudit|elapi.MaskLog, l.add, elapi.OnDone)
				if err != nil {
					return fmt.Errorf("LogAsync %d: %w", i, err)
				}
				idsMu.Lock()
				l.want[id] = true
				idsMu.Unlock()
				if i%500 == 499 {
					time.Sleep(20 * time.Millisecond) // about 25,000 events/s: the kill falls mid-stream
				}
			}
			return nil
		}()
	}()
	// Tracking keeps up with the sender, so events are in flight only
	// for a few milliseconds after each burst: wait for such a moment.
	var inFlight int
	eventually(t, 60*time.Second, 2*time.Millisecond, func() error {
		inFlight = d.InFlight()
		if n := l.count(); n < total/4 || inFlight == 0 {
			return fmt.Errorf("%d events done and %d in flight, waiting for %d done and some in flight before the kill", n, inFlight, total/4)
		}
		return nil
	})
	p.kill()
	atKill := l.count()
	if inFlight == 0 || atKill >= total {
		t.Fatalf("the kill must come while events are in flight: %d in flight, %d of %d done", inFlight, atKill, total)
	}
	h.start(t, "herald-2")
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("close: %v (done %d of %d)", err, l.count(), total)
	}
	t.Logf("%d of %d done and %d in flight at the kill", atKill, total, inFlight)
	l.mu.Lock()
	defer l.mu.Unlock()
	var problems []string
	for id := range l.want {
		ns := l.notices[id]
		switch {
		case len(ns) != 1:
			problems = append(problems, fmt.Sprintf("%s: %d done notices", id, len(ns)))
		case ns[0].Err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", id, ns[0].Err))
		case ns[0].Result.Err() != nil || len(ns[0].Result.Targets) != 2:
			problems = append(problems, fmt.Sprintf("%s: %v", id, ns[0].Result.Targets))
		}
	}
	if len(l.want) != total || len(l.notices) != total {
		problems = append(problems, fmt.Sprintf("%d logged, %d reported, want %d", len(l.want), len(l.notices), total))
	}
	if len(problems) > 0 {
		t.Fatalf("%d problem(s): %s", len(problems), firstFew(problems, 5))
	}
}

// TestELAPISyncLogReturnsAfterTheFileSinkWroteTheEvent: Log with
// WaitAllTargets returns only once the file sink committed the event, so
// reading the file right after finds it; `herald log` does the same from
// the shell, and exits 1 when a target failed.
func TestELAPISyncLogReturnsAfterTheFileSinkWroteTheEvent(t *testing.T) {
	col := startCollector(t)
	h := newELAPIHerald(t, col.port())
	h.start(t, "herald")
	d := dialELAPI(t, h.url)
	auditPath := filepath.Join(h.dir, "out/audit.jsonl")
	for i := range 20 {
		ev, _ := elapi.NewEvent(elapi.Message("sync"), elapi.Int("i", int64(i)))
		res, err := d.Log(t.Context(), elapi.MaskAudit, ev, elapi.WaitAllTargets())
		if err != nil {
			t.Fatal(err)
		}
		if got := readEventIDs(t, auditPath)[res.ID]; got != 1 {
			t.Fatalf("Log returned %v but the file holds event %s %d times", res.Targets, res.ID, got)
		}
	}

	code, out, stderr := runCommand(t, h.dir, 60*time.Second, "log", "--url", h.url, "--mask", "audit,log", "-m", "from the shell", "user=bob", "n:=7")
	if code != 0 {
		t.Fatalf("herald log: exit %d\n%s%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || lines[1] != "audit: committed by auditfile" || lines[2] != "log: committed by collector" {
		t.Fatalf("herald log printed %q", out)
	}
	if readEventIDs(t, auditPath)[lines[0]] != 1 {
		t.Fatalf("event %s of herald log not in the audit file", lines[0])
	}

	// With the config, target names come from it; a too-long message
	// fails on log.
	code, out, stderr = runCommand(t, h.dir, 60*time.Second, "log", "-c", h.cfg, "--mask", "log,audit", "-m", strings.Repeat("y", 1000))
	if code != 1 || !strings.Contains(out, "log: failed in collector (too_long)") || !strings.Contains(out, "audit: committed by auditfile") {
		t.Fatalf("herald log with a failing target: exit %d, want 1\n%s%s", code, out, stderr)
	}
	if code, _, stderr := runCommand(t, h.dir, 30*time.Second, "log", "-c", h.cfg, "--mask", "nosuch"); code != 2 || !strings.Contains(stderr, `no target "nosuch"`) {
		t.Fatalf("unknown target: exit %d, want 2\n%s", code, stderr)
	}
}

// readEventIDs counts the ids in a JSON-lines file.
func readEventIDs(t *testing.T, path string) map[string]int {
	t.Helper()
	out := map[string]int{}
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		var rec struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%s: %v: %.200s", path, err, line)
		}
		out[rec.ID]++
	}
	return out
}
