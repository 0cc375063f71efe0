package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/herald-router/herald/actors/sink/postgres/pgtest"
)

// sendSyslog writes lines seq from..to-1 of connection conn over one TCP
// connection to herald's syslog receiver and returns their keys.
func sendSyslog(t *testing.T, port, conn, from, to int) map[string]bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	w := bufio.NewWriter(c)
	stamp := time.Now().Format(time.Stamp)
	keys := map[string]bool{}
	for i := from; i < to; i++ {
		line, msg := syslogLine("tcp", conn, i, stamp)
		fmt.Fprintln(w, line)
		keys[syslogKey.FindString(msg)] = true
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("send: %v", err)
	}
	return keys
}

// waitExactly waits until sink holds exactly the keys of want, once each.
func waitExactly(t *testing.T, h *proc, name string, sink *sinkFile, want map[string]bool) {
	t.Helper()
	eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if h.exited() {
			t.Fatalf("%s exited with code %d", h.name, h.exitCode)
		}
		if err := sink.poll(); err != nil {
			return err
		}
		if sink.lines < len(want) {
			return fmt.Errorf("sink %s holds %d of %d lines", name, sink.lines, len(want))
		}
		return nil
	})
	tl := sink.tally(want)
	if len(tl.missing) > 0 || tl.duplicates > 0 || len(tl.unexpected) > 0 || sink.nbad > 0 {
		t.Fatalf("sink %s: missing %d (%s), duplicates %d (%s), unexpected %d (%s), unreadable %d %v", name,
			len(tl.missing), firstFew(tl.missing, 5), tl.duplicates, firstFew(tl.dupKeys, 5),
			len(tl.unexpected), firstFew(tl.unexpected, 5), sink.nbad, sink.bad)
	}
}

func TestReplayToOneSinkOfAChainDeliversTheRangeThereOnly(t *testing.T) {
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`bus:
  embedded: {listen: 127.0.0.1:%d, data_dir: nats}
metrics: {listen: 127.0.0.1:%d}
archive: {max_age: 1h}
receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:%d}
targets:
  log: {bit: 4, sinks: [a, b]}
sinks:
  a: {type: file, path: out/a.jsonl}
  b: {type: file, path: out/b.jsonl}
`, natsPort, metricsPort, syslogPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	a := newSinkFile(filepath.Join(dir, "out/a.jsonl"), jsonKey)
	b := newSinkFile(filepath.Join(dir, "out/b.jsonl"), jsonKey)

	// Three groups, each delivered before the next is sent: the archive's
	// timestamps of one group all fall between the marks around it.
	all := map[string]bool{}
	var marks []time.Time
	var groups []map[string]bool
	for g := range 3 {
		marks = append(marks, time.Now())
		keys := sendSyslog(t, syslogPort, g, 0, 150)
		groups = append(groups, keys)
		for k := range keys {
			all[k] = true
		}
		waitExactly(t, h, "a", a, all)
	}
	marks = append(marks, time.Now())
	if err := b.poll(); err != nil || b.lines != 0 {
		t.Fatalf("sink b holds %d lines (%v) before the replay, want none: a is up", b.lines, err)
	}

	code, out, errOut := runCommand(t, dir, 60*time.Second, "replay", "--config", cfg, "--target", "log", "--sink", "b",
		"--since", marks[1].UTC().Format(time.RFC3339Nano), "--until", marks[2].UTC().Format(time.RFC3339Nano))
	if code != 0 || !strings.Contains(out, "replayed 150 events to target log sink b") {
		t.Fatalf("replay: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "replay: archive ") || !strings.Contains(errOut, "150 replayed") {
		t.Errorf("no progress on stderr: %q", errOut)
	}
	waitExactly(t, h, "b", b, groups[1])
	// The chain handles a target's batches in order, so once b has the
	// whole range every replayed batch is done: a must hold only its own.
	if err := a.poll(); err != nil {
		t.Fatal(err)
	}
	if a.lines != len(all) {
		t.Errorf("sink a holds %d lines after the replay, want its %d: the replay went to it too", a.lines, len(all))
	}

	code, _, errOut = runCommand(t, dir, 30*time.Second, "replay", "--config", cfg, "--target", "log", "--sink", "c", "--since", "1h")
	if code != 2 || !strings.Contains(errOut, `"c"`) || !strings.Contains(errOut, "[a, b]") {
		t.Errorf("replay to a sink outside the chain: exit %d, stderr %q; want 2 naming c and the chain [a, b]", code, errOut)
	}
}

func TestReplayIntoPostgresStoresNothingTwice(t *testing.T) {
	const total = 300
	dir := t.TempDir()
	pg := pgtest.Start(t)
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`bus:
  embedded: {listen: 127.0.0.1:%d, data_dir: nats}
metrics: {listen: 127.0.0.1:%d}
archive: {max_age: 1h}
receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:%d}
targets:
  log: {bit: 4, sinks: [db]}
sinks:
  db: {type: postgres, dsn: "%s", password_file: %s, table: herald_events}
`, natsPort, metricsPort, syslogPort, pg.DSNWithoutPassword(), pg.PasswordFile())), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	conn, err := pgx.Connect(t.Context(), pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	// rows is (rows, distinct ids) of the table; none before it exists.
	rows := func() (int, int, error) {
		var exists bool
		if err := conn.QueryRow(t.Context(), `SELECT to_regclass('herald_events') IS NOT NULL`).Scan(&exists); err != nil || !exists {
			return 0, 0, err
		}
		var n, ids int
		err := conn.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT id) FROM herald_events`).Scan(&n, &ids)
		return n, ids, err
	}
	committed := func() float64 {
		v, _ := h.metric(`herald_stage_published_events_total{stage="target.log"}`)
		return v
	}

	sendSyslog(t, syslogPort, 0, 0, total)
	eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		n, _, err := rows()
		if err != nil {
			return err
		}
		if n < total || committed() < total {
			return fmt.Errorf("%d of %d rows, %v committed", n, total, committed())
		}
		return nil
	})

	code, out, errOut := runCommand(t, dir, 60*time.Second, "replay", "--config", cfg, "--target", "log",
		"--since", start.UTC().Format(time.RFC3339Nano))
	if code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d events", total)) {
		t.Fatalf("replay: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "replay: archive ") {
		t.Errorf("no progress on stderr: %q", errOut)
	}
	// The target committed the replayed copies too (the sink skipped them
	// by id); only then is the table's count final.
	eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if h.exited() {
			t.Fatalf("herald exited with code %d", h.exitCode)
		}
		if c := committed(); c < 2*total {
			return fmt.Errorf("target committed %v events, want %d with the replay", c, 2*total)
		}
		return nil
	})
	n, ids, err := rows()
	if err != nil {
		t.Fatal(err)
	}
	if n != total || ids != total {
		t.Errorf("the table holds %d rows (%d ids) after the replay, want %d: the replay stored events twice", n, ids, total)
	}
}
