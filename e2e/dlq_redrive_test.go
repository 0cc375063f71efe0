package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/herald-router/herald/actors/sink/postgres/pgtest"
	"github.com/jackc/pgx/v5"
)

// dlqRedriveConfig sends the syslog receiver's events to two targets: log,
// written to a PostgreSQL table managed by the DBA (create_table: false),
// and archive, a file. ack_wait is long: nothing in this test should be
// delivered twice.
var dlqRedriveConfig = template.Must(template.New("dlq").Parse(`# written by herald's e2e tests
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
    target_mask: 12
targets:
  log:
    bit: 4
    sinks: [events]
  archive:
    bit: 8
    sinks: [archive]
sinks:
  events:
    type: postgres
    dsn: {{.DSN}}
    password_file: {{.PasswordFile}}
    table: herald_events
    create_table: false
  archive:
    type: file
    path: out/archive.jsonl
    format: json
`))

// dlqTable is herald's table as a DBA made it: host is a varchar(16) and
// a CHECK lists the services allowed, so events from a host with a long
// name (a data exception, SQLSTATE 22001) and from a service not on the
// list (an integrity violation, 23514) are refused, the others accepted.
const dlqTable = `CREATE TABLE herald_events (
	id            text PRIMARY KEY,
	seq           bigint GENERATED ALWAYS AS IDENTITY,
	time          timestamptz,
	received      timestamptz,
	host          varchar(16) NOT NULL,
	service       text NOT NULL CONSTRAINT known_service CHECK (service IN ('sshd', 'nginx')),
	class         text NOT NULL,
	certainty     real NOT NULL,
	source        text NOT NULL,
	peer          text NOT NULL,
	message       text NOT NULL,
	message_bytes bytea,
	target_mask   bigint NOT NULL,
	raw           bytea,
	fields        jsonb NOT NULL
)`

// dlqFix is the DBA's fix: hosts of any length, and the missing service.
const dlqFix = `ALTER TABLE herald_events ALTER COLUMN host TYPE text;
ALTER TABLE herald_events DROP CONSTRAINT known_service,
	ADD CONSTRAINT known_service CHECK (service IN ('sshd', 'nginx', 'backup'))`

var dlqKey = regexp.MustCompile(`dlq-\d{4}`)

// dlqLine is event i: every tenth from a host whose name is too long for
// the table (i%10 == 3), every tenth from a service it does not list
// (i%10 == 7), the rest accepted.
func dlqLine(i int, stamp string) (line, key string, refusedFor string) {
	host, service := "web1", []string{"sshd", "nginx"}[i%2]
	switch i % 10 {
	case 3:
		host, refusedFor = "build-agent-07.ci.eu-west.example.net", "postgres_data_exception"
	case 7:
		service, refusedFor = "backup", "postgres_integrity_violation"
	}
	key = fmt.Sprintf("dlq-%04d", i)
	return fmt.Sprintf("<13>%s %s %s[%d]: %s the quick brown fox jumps over the lazy dog", stamp, host, service, 4000+i, key), key, refusedFor
}

// tableKeys counts the rows of herald_events by the key of their message,
// and the rows by distinct id.
func tableKeys(ctx context.Context, c *pgx.Conn) (map[string]int, int, error) {
	rs, err := c.Query(ctx, `SELECT substring(message from 'dlq-\d{4}') FROM herald_events`)
	if err != nil {
		return nil, 0, err
	}
	keys := map[string]int{}
	for rs.Next() {
		var k *string
		if err := rs.Scan(&k); err != nil {
			return nil, 0, err
		}
		if k == nil {
			keys["(no key)"]++
			continue
		}
		keys[*k]++
	}
	if err := rs.Err(); err != nil {
		return nil, 0, err
	}
	var ids int
	err = c.QueryRow(ctx, `SELECT count(DISTINCT id) FROM herald_events`).Scan(&ids)
	return keys, ids, err
}

func TestEventsPostgreSQLRefusesAreDeadLetteredThenRedrivenOnceAfterTheFix(t *testing.T) {
	const total = 400
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	srv := pgtest.Start(t)
	admin := srv.Conn(t)
	if _, err := admin.Exec(ctx, dlqTable); err != nil {
		t.Fatalf("create the DBA's table: %v", err)
	}

	dir := t.TempDir()
	metricsPort, syslogPort := freePort(t), freePort(t)
	cfg := writeTemplate(t, dir, dlqRedriveConfig, map[string]any{"NATSPort": freePort(t), "MetricsPort": metricsPort,
		"SyslogPort": syslogPort, "DSN": srv.DSNWithoutPassword(), "PasswordFile": srv.PasswordFile()})
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	t.Logf("PostgreSQL and herald ready after %s", time.Since(start).Round(time.Millisecond))

	// Every line in one burst over one connection, so that the batches
	// the sink gets mix refused events with accepted ones.
	stamp := time.Now().Format(time.Stamp)
	all := map[string]bool{}
	accepted := map[string]bool{}
	refused := map[string]string{} // key → reason code
	var lines bytes.Buffer
	for i := range total {
		line, key, reason := dlqLine(i, stamp)
		lines.WriteString(line + "\n")
		all[key] = true
		if reason == "" {
			accepted[key] = true
		} else {
			refused[key] = reason
		}
	}
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", syslogPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(lines.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()

	deadLettered := func(reason string) (float64, error) {
		return h.metric(fmt.Sprintf(`herald_stage_dead_lettered_total{reason=%q,stage="target.log"}`, reason))
	}
	dataRefused, integrityRefused := total/10, total/10
	eventually(t, 40*time.Second, 50*time.Millisecond, func() error {
		if h.exited() {
			t.Fatalf("herald exited with code %d", h.exitCode)
		}
		d, err := deadLettered("postgres_data_exception")
		if err != nil {
			return err
		}
		i, err := deadLettered("postgres_integrity_violation")
		if err != nil {
			return err
		}
		keys, _, err := tableKeys(ctx, admin)
		if err != nil {
			return err
		}
		if int(d) != dataRefused || int(i) != integrityRefused || len(keys) < len(accepted) {
			return fmt.Errorf("dead letters: %.0f data exceptions, %.0f integrity violations (want %d, %d); %d of %d accepted events in the table",
				d, i, dataRefused, integrityRefused, len(keys), len(accepted))
		}
		return nil
	})
	t.Logf("%d events accepted and %d dead-lettered at %s", len(accepted), len(refused), time.Since(start).Round(time.Millisecond))

	// The table holds each accepted event once and no refused one.
	checkTable := func(want map[string]bool) {
		t.Helper()
		keys, ids, err := tableKeys(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		rows := 0
		var missing, extra, twice []string
		for k, n := range keys {
			rows += n
			if !want[k] {
				extra = append(extra, k)
			}
			if n > 1 {
				twice = append(twice, k)
			}
		}
		for k := range want {
			if keys[k] == 0 {
				missing = append(missing, k)
			}
		}
		if len(missing)+len(extra)+len(twice) > 0 || rows != len(want) || ids != len(want) {
			t.Fatalf("table: %d rows, %d ids, want %d; missing %s; not expected %s; more than once %s", rows, ids, len(want),
				firstFew(missing, 5), firstFew(extra, 5), firstFew(twice, 5))
		}
	}
	checkTable(accepted)

	// The list groups the letters by stage (the sink) and reason, with the
	// target's subject they came from.
	code, out, errOut := runCommand(t, dir, 20*time.Second, "dlq", "list", "--config", cfg)
	if code != 0 {
		t.Fatalf("dlq list: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("herald dlq list:\n%s", out)
	firstSeq := ""
	for _, reason := range []string{"postgres_data_exception", "postgres_integrity_violation"} {
		var row []string
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 5 && f[1] == reason {
				row = f
			}
		}
		// STAGE REASON ORIGIN LETTERS EVENTS FIRST-SEQ ...
		want := fmt.Sprint(total / 10)
		if row == nil || row[0] != "sink.events" || row[2] != "herald.target.log" || row[3] != want || row[4] != want {
			t.Fatalf("dlq list: want a line: sink.events %s herald.target.log %s %s ...; got\n%s", reason, want, want, out)
		}
		if reason == "postgres_data_exception" {
			firstSeq = row[5]
		}
	}

	for _, want := range []string{"value too long for type character varying(16) (SQLSTATE 22001",
		`new row for relation "herald_events" violates check constraint "known_service"`} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq list: the detail should say what PostgreSQL said, %q:\n%s", want, out)
		}
	}

	// show gives one letter with its reason, origin and the original event.
	code, out, errOut = runCommand(t, dir, 20*time.Second, "dlq", "show", firstSeq, "--config", cfg)
	if code != 0 {
		t.Fatalf("dlq show %s: exit %d\n%s\n%s", firstSeq, code, out, errOut)
	}
	t.Logf("herald dlq show %s:\n%s", firstSeq, out)
	for _, want := range []string{"stage:   sink.events", "reason:  postgres_data_exception", "origin:  herald.target.log",
		"character varying(16)", "events:  1"} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq show %s: missing %q in\n%s", firstSeq, want, out)
		}
	}
	var shown struct{ ID, Host, Message string }
	if i := strings.Index(out, "{"); i < 0 || json.Unmarshal([]byte(strings.TrimSpace(out[i:])), &shown) != nil {
		t.Fatalf("dlq show %s: no event as JSON in\n%s", firstSeq, out)
	}
	if k := dlqKey.FindString(shown.Message); refused[k] != "postgres_data_exception" || shown.ID == "" ||
		shown.Host != "build-agent-07.ci.eu-west.example.net" {
		t.Errorf("dlq show %s: event %+v is not one of the events refused for their host", firstSeq, shown)
	}

	// The DBA fixes the table; redrive hands the letters back to target
	// log, whose sink now takes them.
	if _, err := admin.Exec(ctx, dlqFix); err != nil {
		t.Fatalf("fix the table: %v", err)
	}
	fixed := time.Now()
	code, out, errOut = runCommand(t, dir, 30*time.Second, "dlq", "redrive", "--stage", "sink.events", "--config", cfg)
	if want := fmt.Sprintf("redriven: %d letters, %d events", len(refused), len(refused)); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("dlq redrive: exit %d, want %q\n%s\n%s", code, want, out, errOut)
	}
	eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		if h.exited() {
			t.Fatalf("herald exited with code %d", h.exitCode)
		}
		keys, _, err := tableKeys(ctx, admin)
		if err != nil {
			return err
		}
		if len(keys) < total {
			return fmt.Errorf("%d of %d events in the table after the redrive", len(keys), total)
		}
		return nil
	})
	t.Logf("every event in the table %s after the fix and redrive", time.Since(fixed).Round(time.Millisecond))
	checkTable(all)

	// Nothing was dead-lettered again, nothing is left, and the sink was
	// never suspended: a refused row is no outage.
	for _, reason := range []string{"postgres_data_exception", "postgres_integrity_violation"} {
		if n, err := deadLettered(reason); err != nil || int(n) != total/10 {
			t.Errorf("herald_stage_dead_lettered_total %s = %v (%v) after the redrive, want still %d", reason, n, err, total/10)
		}
	}
	if n, err := h.metric(`herald_sink_committed_events_total{sink="events"}`); err != nil || int(n) != total {
		t.Errorf("herald_sink_committed_events_total{sink=\"events\"} = %v (%v), want %d: each event committed once", n, err, total)
	}
	code, out, _ = runCommand(t, dir, 20*time.Second, "dlq", "list", "--config", cfg)
	if code != 0 || !strings.Contains(out, "no dead letters") {
		t.Errorf("dlq list after the redrive: exit %d\n%s", code, out)
	}
	if log, err := os.ReadFile(h.logPath); err != nil || bytes.Contains(log, []byte("sink suspended")) {
		t.Errorf("the postgres sink was suspended (or the log is unreadable: %v): refused rows must not look like an outage", err)
	}

	// The archive target, whose sink took every event, has each once: the
	// redrive went only to the target whose sink had refused them.
	archive := newSinkFile(filepath.Join(dir, "out", "archive.jsonl"), func(line []byte) (string, error) {
		var ev struct{ Message string }
		if err := json.Unmarshal(line, &ev); err != nil {
			return "", err
		}
		if k := dlqKey.FindString(ev.Message); k != "" {
			return k, nil
		}
		return "", fmt.Errorf("no key in %q", ev.Message)
	})
	eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if err := archive.poll(); err != nil {
			return err
		}
		if archive.distinct() < total {
			return fmt.Errorf("%d of %d events in the archive file", archive.distinct(), total)
		}
		return nil
	})
	if r := archive.tally(all); len(r.missing)+len(r.unexpected)+r.duplicates+archive.nbad > 0 {
		t.Errorf("archive: missing %s, unexpected %s, %d duplicates, %d bad lines %s", firstFew(r.missing, 5),
			firstFew(r.unexpected, 5), r.duplicates, archive.nbad, firstFew(archive.bad, 2))
	}
	t.Logf("done in %s", time.Since(start).Round(time.Millisecond))
}
