package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/schemas"
)

// routingConfigParams fill routingConfigTemplate.
type routingConfigParams struct {
	NATSPort, MetricsPort, SyslogPort int
}

// routingConfigTemplate: three targets, each a file of its own, and rules
// that give syslog records their mask. The test computes what each file
// must hold from the same description (routeSyslog, routeApp), written
// out in Go rather than taken from herald.
//
//   - log (bit 4): everything whose mask has bit 4, no filter.
//   - audit (bit 2): bit 2, and not from host db3.
//   - alerts (bit 8): bit 8, and a syslog severity of 0-2 or an
//     application event with fields.n > 3. An application event with bit 8
//     whose n is a string cannot be judged: its alerts copy is
//     dead-lettered (origin herald.target.alerts); its other copies flow.
//
// Rules (first match wins), only for the syslog receiver; its records
// start with the receiver's target_mask 4:
//  1. host quiet: mask 8, replacing (it leaves the log target);
//  2. db hosts with severity <= 3: add 2 and 8;
//  3. severity <= 3: add 8;
//  4. db hosts: add 2.
//
// ack_wait is long so that a starved machine does not get a batch
// delivered again (and written twice) while it waits in a stage's queue.
var routingConfigTemplate = template.Must(template.New("routing").Parse(`# written by herald's e2e tests
log: {level: info, format: text}
bus:
  embedded:
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
  ack_wait: 30s
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 30s
receivers:
  syslog:
    type: syslog
    tcp: 127.0.0.1:{{.SyslogPort}}
rules:
  - when: 'host == "quiet"'
    receiver: syslog
    mask: 8
  - when: 'host startsWith "db" && severity <= 3'
    receiver: syslog
    mask: 10
    add: true
  - when: 'severity <= 3'
    receiver: syslog
    mask: 8
    add: true
  - when: 'host startsWith "db"'
    receiver: syslog
    mask: 2
    add: true
targets:
  log:
    bit: 4
    sinks: [file_a]
  audit:
    bit: 2
    sinks: [file_b]
    filter: 'host != "db3"'
  alerts:
    bit: 8
    sinks: [file_c]
    filter: '(severity >= 0 && severity <= 2) || (source == "nats" && fields.n > 3)'
sinks:
  file_a: {type: file, path: out/log.jsonl, format: json}
  file_b: {type: file, path: out/audit.jsonl, format: json}
  file_c: {type: file, path: out/alerts.jsonl, format: json}
`))

// routeSet is what each of the three files must hold, by event key.
type routeSet struct {
	log, audit, alerts map[string]bool
	dlq                map[string]bool // dead-lettered by the router
	unrouted           int             // wanted by no target
}

func newRouteSet() *routeSet {
	return &routeSet{log: map[string]bool{}, audit: map[string]bool{}, alerts: map[string]bool{}, dlq: map[string]bool{}}
}

// add records where an event goes: the targets whose bit is in mask and
// whose filter holds.
func (s *routeSet) add(key string, mask uint64, auditOK, alertsOK bool) {
	n := 0
	if mask&4 != 0 {
		s.log[key] = true
		n++
	}
	if mask&2 != 0 && auditOK {
		s.audit[key] = true
		n++
	}
	if mask&8 != 0 && alertsOK {
		s.alerts[key] = true
		n++
	}
	if n == 0 {
		s.unrouted++
	}
}

// routeSyslog is where a syslog record of host at severity goes: the
// receiver's mask 4, changed by the first rule that matches.
func (s *routeSet) routeSyslog(key, host string, severity int) {
	db := strings.HasPrefix(host, "db")
	mask := uint64(4)
	switch {
	case host == "quiet":
		mask = 8
	case db && severity <= 3:
		mask |= 2 | 8
	case severity <= 3:
		mask |= 8
	case db:
		mask |= 2
	}
	s.add(key, mask, host != "db3", severity <= 2)
}

// routeApp is where an application event goes: its own mask, no rules.
// n is an int, or a string that makes the alerts filter fail when the
// event has bit 8.
func (s *routeSet) routeApp(key, host string, mask uint64, n any) {
	if _, isString := n.(string); isString && mask&8 != 0 {
		// Only the alerts copy is dead-lettered; the other targets get
		// theirs, and the event counts as routed.
		s.dlq[key] = true
		before := s.unrouted
		s.add(key, mask&^8, host != "db3", false)
		s.unrouted = before
		return
	}
	i, _ := n.(int)
	s.add(key, mask, host != "db3", i > 3)
}

// routedHosts and the severities give every combination: line i of a
// connection is host i%6 at severity (i/6)%8.
var routedHosts = []string{"web1", "web2", "db1", "db2", "db3", "quiet"}

// routedSyslogLine is line seq of connection conn: an RFC 3164 record of a
// host and severity that depend on seq, facility varying too.
func routedSyslogLine(conn, seq int, stamp string) (line, key, host string, severity int) {
	i := seq + conn // the connections differ in their mix
	host = routedHosts[i%len(routedHosts)]
	severity = (i / len(routedHosts)) % 8
	facility := []int{1, 4, 16, 23}[i%4]
	key = fmt.Sprintf("tcp-%d-%06d", conn, seq)
	line = fmt.Sprintf("<%d>%s %s e2e[%d]: %s routed line", facility*8+severity, stamp, host, 2000+conn, key)
	return line, key, host, severity
}

// appEvent is one application event of the test.
type appEvent struct {
	key  string
	host string
	mask uint64
	n    any // int or string
	data []byte
}

// routedAppEvents are total application events with a mix of masks
// (including 0: unrouted) and hosts; the events at badAt have n "five".
func routedAppEvents(total int, badAt map[int]bool) []appEvent {
	masks := []uint64{4, 2, 8, 6, 12, 14, 10, 0}
	hosts := []string{"app1", "db3", "db1"}
	var evs []appEvent
	for i := range total {
		e := appEvent{key: fmt.Sprintf("app-%05d", i), host: hosts[i%len(hosts)], mask: masks[(i/len(hosts))%len(masks)], n: i % 10}
		if badAt[i] {
			e.n = "five"
		}
		nj, _ := json.Marshal(e.n)
		e.data = fmt.Appendf(nil, `{"message":"%s application event","host":"%s","service":"e2e-app","target_mask":%d,"n":%s}`,
			e.key, e.host, e.mask, nj)
		evs = append(evs, e)
	}
	return evs
}

// publishApp publishes the events onto herald.events.app with JetStream
// acks, one Nats-Msg-Id each, and waits for every ack.
func publishApp(ctx context.Context, url string, evs []appEvent) error {
	nc, err := nats.Connect(url, nats.Name("e2e-routing-app"), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		return err
	}
	var futures []jetstream.PubAckFuture
	for _, e := range evs {
		f, err := js.PublishAsync(bus.EventsSubject("app"), e.data, jetstream.WithMsgID("e2e-routing-"+e.key))
		if err != nil {
			return fmt.Errorf("publish %s: %w", e.key, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", evs[i].key, err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for the ack of %s: %w", evs[i].key, ctx.Err())
		}
	}
	return nil
}

// dlqEvent is one event found in HERALD_DLQ, with its message's headers.
type dlqEvent struct {
	key                     string
	reason, stage, detail   string
	originSubject, encoding string
}

// readDLQ returns every event of every message in HERALD_DLQ.
func readDLQ(ctx context.Context, url string) ([]dlqEvent, error) {
	nc, err := nats.Connect(url, nats.Name("e2e-routing-dlq"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", bus.StreamDLQ, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []dlqEvent
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dead letter %d: %w", seq, err)
		}
		var b schemas.Batch
		if err := proto.Unmarshal(m.Data, &b); err != nil {
			return nil, fmt.Errorf("dead letter %d: not a batch: %w", seq, err)
		}
		for _, ev := range b.Events {
			out = append(out, dlqEvent{
				key: routedKey.FindString(ev.Message), reason: m.Header.Get(bus.HeaderDLQReason),
				stage: m.Header.Get(bus.HeaderDLQStage), detail: m.Header.Get(bus.HeaderDLQDetail),
				originSubject: m.Header.Get(bus.HeaderDLQSubject), encoding: m.Header.Get(bus.HeaderEncoding),
			})
		}
	}
	return out, nil
}

var routedKey = regexp.MustCompile(`\b(tcp-\d+-\d+|app-\d+)\b`)

// routedKeyOf is the key of a file sink's JSON line.
func routedKeyOf(line []byte) (string, error) {
	var ev sinkLine
	if err := json.Unmarshal(line, &ev); err != nil {
		return "", err
	}
	k := routedKey.FindString(ev.Message)
	if k == "" {
		return "", fmt.Errorf("no tcp-/app- key in message %q", ev.Message)
	}
	return k, nil
}

// sendRoutedSyslog sends lines [0, perConn) of each of conns TCP
// connections and closes them.
func sendRoutedSyslog(addr string, conns, perConn int, stamp string) error {
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", c, err)
				return
			}
			defer conn.Close()
			_ = conn.SetWriteDeadline(time.Now().Add(time.Minute))
			w := bufio.NewWriter(conn)
			for i := range perConn {
				line, _, _, _ := routedSyslogLine(c, i, stamp)
				if _, err := w.WriteString(line + "\n"); err != nil {
					errs <- fmt.Errorf("connection %d line %d: %w", c, i, err)
					return
				}
			}
			if err := w.Flush(); err != nil {
				errs <- fmt.Errorf("connection %d: %w", c, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func TestThreeTargetsWithMasksAndFiltersEachGetExactlyTheirEvents(t *testing.T) {
	const (
		conns   = 2
		perConn = 2000
		apps    = 480
	)
	start := time.Now()
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg := writeTemplate(t, dir, routingConfigTemplate, routingConfigParams{NATSPort: natsPort, MetricsPort: metricsPort, SyslogPort: syslogPort})
	if code, stdout, stderr := runCommand(t, dir, 20*time.Second, "check", "--config", cfg); code != 0 {
		t.Fatalf("herald check refuses the test's config (exit %d): %s%s", code, stdout, stderr)
	}

	// What each file must hold, computed from the test's own description.
	want := newRouteSet()
	stamp := time.Now().Format(time.Stamp)
	for c := range conns {
		for i := range perConn {
			_, key, host, sev := routedSyslogLine(c, i, stamp)
			want.routeSyslog(key, host, sev)
		}
	}
	// Events 7, 12, 40, 10 and 22 have n "five". By routedAppEvents's
	// pattern their masks are 8, 12, 14, 6 and 0: the first three reach
	// the alerts filter and are dead-lettered; the other two are never
	// judged by it and flow (10 to log, 22 nowhere: unrouted).
	bad := map[int]bool{7: true, 12: true, 40: true, 10: true, 22: true}
	appEvents := routedAppEvents(apps, bad)
	for _, e := range appEvents {
		want.routeApp(e.key, e.host, e.mask, e.n)
	}
	if len(want.dlq) == 0 || len(want.dlq) == len(bad) {
		t.Fatalf("test set-up: %d of the %d bad events reach the alerts filter; want some but not all", len(want.dlq), len(bad))
	}
	t.Logf("expected: log %d, audit %d, alerts %d events; %d dead-lettered, %d unrouted",
		len(want.log), len(want.audit), len(want.alerts), len(want.dlq), want.unrouted)

	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var sendErr, pubErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		sendErr = sendRoutedSyslog(fmt.Sprintf("127.0.0.1:%d", syslogPort), conns, perConn, stamp)
	}()
	go func() {
		defer wg.Done()
		pubErr = publishApp(ctx, natsURL, appEvents)
	}()
	wg.Wait()
	if sendErr != nil {
		t.Fatalf("send syslog: %v", sendErr)
	}
	if pubErr != nil {
		t.Fatalf("publish application events: %v", pubErr)
	}
	t.Logf("sent %d syslog lines and published %d application events at %s", conns*perConn, apps, time.Since(start).Round(time.Millisecond))

	files := []struct {
		name string
		sink *sinkFile
		want map[string]bool
	}{
		{"log", newSinkFile(filepath.Join(dir, "out", "log.jsonl"), routedKeyOf), want.log},
		{"audit", newSinkFile(filepath.Join(dir, "out", "audit.jsonl"), routedKeyOf), want.audit},
		{"alerts", newSinkFile(filepath.Join(dir, "out", "alerts.jsonl"), routedKeyOf), want.alerts},
	}
	// Wait until every file holds every event it should; what it holds
	// beyond that is checked after the drain below.
	eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if h.exited() {
			t.Fatalf("herald exited with code %d", h.exitCode)
		}
		var waiting []string
		for _, f := range files {
			if err := f.sink.poll(); err != nil {
				return err
			}
			if m := len(f.sink.tally(f.want).missing); m > 0 {
				waiting = append(waiting, fmt.Sprintf("%s misses %d of %d", f.name, m, len(f.want)))
			}
		}
		if len(waiting) > 0 {
			return errors.New(strings.Join(waiting, "; "))
		}
		return nil
	})
	t.Logf("every file holds its events at %s", time.Since(start).Round(time.Millisecond))

	// The dead letters: exactly the events the alerts filter could not
	// judge, from the router, with the reason filter_error.
	var dead []dlqEvent
	eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		var err error
		if dead, err = readDLQ(ctx, natsURL); err != nil {
			return err
		}
		if len(dead) < len(want.dlq) {
			return fmt.Errorf("%d events in %s, want %d", len(dead), bus.StreamDLQ, len(want.dlq))
		}
		return nil
	})
	seen := map[string]int{}
	for _, d := range dead {
		seen[d.key]++
		if !want.dlq[d.key] {
			t.Errorf("event %q dead-lettered (reason %s, detail %q); it should have flowed", d.key, d.reason, d.detail)
			continue
		}
		if d.reason != "filter_error" || d.stage != "router" {
			t.Errorf("event %s dead-lettered by stage %q with reason %q, want router and filter_error", d.key, d.stage, d.reason)
		}
		if d.originSubject != bus.TargetSubject("alerts") || d.encoding != bus.EncodingBatch {
			t.Errorf("event %s dead letter: origin %q encoding %q, want %s and %s", d.key, d.originSubject, d.encoding, bus.TargetSubject("alerts"), bus.EncodingBatch)
		}
		if !strings.Contains(d.detail, "alerts") {
			t.Errorf("event %s dead letter detail %q does not name the target alerts", d.key, d.detail)
		}
	}
	for k := range want.dlq {
		if seen[k] != 1 {
			t.Errorf("event %s is %d times in %s, want once", k, seen[k], bus.StreamDLQ)
		}
	}
	t.Logf("%s: %d events, e.g. detail %q", bus.StreamDLQ, len(dead), dead[0].detail)

	eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		v, err := h.metric(`herald_stage_rejected_total{reason="unrouted",stage="router"}`)
		if err != nil {
			return err
		}
		if int(v) != want.unrouted {
			return fmt.Errorf("router counted %v unrouted events, want %d", v, want.unrouted)
		}
		return nil
	})

	// A graceful stop drains the pipeline: what the files hold now is all
	// herald will ever write for this input.
	if code := h.stop(30 * time.Second); code != 0 {
		t.Fatalf("herald exited with code %d after SIGTERM, want 0", code)
	}
	for _, f := range files {
		if err := f.sink.poll(); err != nil {
			t.Fatal(err)
		}
		tl := f.sink.tally(f.want)
		if f.sink.nbad > 0 {
			t.Errorf("%s: %d lines could not be read, e.g. %q", f.name, f.sink.nbad, f.sink.bad)
		}
		if len(tl.missing) > 0 {
			t.Errorf("%s: %d events missing: %s", f.name, len(tl.missing), firstFew(tl.missing, 10))
		}
		if len(tl.unexpected) > 0 {
			t.Errorf("%s: %d events that do not belong there: %s", f.name, len(tl.unexpected), firstFew(tl.unexpected, 10))
		}
		if tl.duplicates > 0 {
			t.Errorf("%s: %d events written more than once: %s", f.name, len(tl.dupKeys), firstFew(tl.dupKeys, 10))
		}
		t.Logf("%s: %d lines, %d distinct events, want %d", f.name, f.sink.lines, f.sink.distinct(), len(f.want))
	}
	// The event with a string n but no alerts bit was never judged by the
	// filter: it is in the log file like its neighbours.
	var flowed []string
	for i := range bad {
		if k := appEvents[i].key; !want.dlq[k] {
			flowed = append(flowed, k)
		}
	}
	sort.Strings(flowed)
	t.Logf("bad events dead-lettered: %d; bad events never judged by the failing filter, delivered: %s", len(want.dlq), strings.Join(flowed, ", "))
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}
