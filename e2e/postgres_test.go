package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"testing"
	"text/template"
	"time"

	"github.com/herald-router/herald/actors/sink/postgres/pgtest"
	"github.com/jackc/pgx/v5"
)

// pgConfigParams fill pgConfigTemplate.
type pgConfigParams struct {
	NATSPort, MetricsPort, SyslogPort int
	DSN, PasswordFile                 string
}

// pgConfigTemplate is a syslog receiver whose events (target log) go to a
// postgres sink. ack_wait is short so that what a killed herald held is
// delivered again soon.
var pgConfigTemplate = template.Must(template.New("pg").Parse(`# written by herald's e2e tests
log: {level: info, format: text}
bus:
  embedded:
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
  ack_wait: 2s
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 30s
receivers:
  syslog:
    type: syslog
    tcp: 127.0.0.1:{{.SyslogPort}}
targets:
  log:
    bit: 4
    sinks: [events]
sinks:
  events:
    type: postgres
    dsn: {{.DSN}}
    password_file: {{.PasswordFile}}
    table: herald_events
`))

// pgRun is herald with a postgres sink, its server, and the lines to send.
type pgRun struct {
	t        *testing.T
	srv      *pgtest.Server
	cfg      string
	metrics  int
	syslog   int
	expected map[string]bool // the key of every line sent
	lines    []string
	conn     *pgx.Conn // the test's own, reconnected after an outage
}

func startPGRun(t *testing.T, total int) (*pgRun, *proc) {
	t.Helper()
	dir := t.TempDir()
	r := &pgRun{t: t, srv: pgtest.Start(t), metrics: freePort(t), syslog: freePort(t), expected: map[string]bool{}}
	r.cfg = writeTemplate(t, dir, pgConfigTemplate, pgConfigParams{NATSPort: freePort(t), MetricsPort: r.metrics, SyslogPort: r.syslog,
		DSN: r.srv.DSNWithoutPassword(), PasswordFile: r.srv.PasswordFile()})
	stamp := time.Now().Format(time.Stamp)
	for i := range total {
		line, msg := syslogLine("tcp", 0, i, stamp)
		r.lines = append(r.lines, line)
		r.expected[syslogKey.FindString(msg)] = true
	}
	t.Cleanup(func() {
		if r.conn != nil {
			_ = r.conn.Close(context.Background())
		}
	})
	h := startHerald(t, "herald-1", r.cfg, r.metrics)
	h.waitReady(30 * time.Second)
	return r, h
}

// send writes the lines over one TCP connection at about perTick lines
// every 10 ms, so that the stream lasts a while; the result arrives on the
// returned channel.
func (r *pgRun) send(perTick int) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.syslog), 5*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			_ = conn.SetWriteDeadline(time.Now().Add(time.Minute))
			w := bufio.NewWriter(conn)
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i, line := range r.lines {
				if _, err := w.WriteString(line + "\n"); err != nil {
					return fmt.Errorf("line %d: %w", i, err)
				}
				if i%perTick == perTick-1 {
					if err := w.Flush(); err != nil {
						return fmt.Errorf("line %d: %w", i, err)
					}
					<-tick.C
				}
			}
			return w.Flush()
		}()
	}()
	return done
}

// query runs a one-row query on the test's connection, connecting again
// when the last one broke.
func (r *pgRun) query(sql string, dest ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r.conn == nil || r.conn.IsClosed() {
		c, err := pgx.Connect(ctx, r.srv.DSN())
		if err != nil {
			return err
		}
		r.conn = c
	}
	err := r.conn.QueryRow(ctx, sql).Scan(dest...)
	if err != nil {
		_ = r.conn.Close(ctx)
		r.conn = nil
	}
	return err
}

// rows is how many events the table holds; a table not created yet holds
// none.
func (r *pgRun) rows() (int, error) {
	var exists bool
	if err := r.query(`SELECT to_regclass('herald_events') IS NOT NULL`, &exists); err != nil || !exists {
		return 0, err
	}
	var n int
	err := r.query(`SELECT count(*) FROM herald_events`, &n)
	return n, err
}

// waitRows waits until the table holds at least n events.
func (r *pgRun) waitRows(h *proc, n int, timeout time.Duration) {
	r.t.Helper()
	eventually(r.t, timeout, 5*time.Millisecond, func() error {
		if h.exited() {
			r.t.Fatalf("%s exited with code %d", h.name, h.exitCode)
		}
		got, err := r.rows()
		if err != nil {
			return err
		}
		if got < n {
			return fmt.Errorf("%d events in the table, waiting for %d", got, n)
		}
		return nil
	})
}

// waitReceived waits until herald has stored every line sent in JetStream
// and the sender's connection is closed.
func (r *pgRun) waitReceived(h *proc, sent <-chan error) {
	r.t.Helper()
	select {
	case err := <-sent:
		if err != nil {
			r.t.Fatalf("send: %v", err)
		}
	case <-time.After(30 * time.Second):
		r.t.Fatal("sending did not finish within 30s")
	}
	eventually(r.t, 20*time.Second, 20*time.Millisecond, func() error {
		stored, err := h.metric(`herald_stage_published_events_total{stage="receiver.syslog"}`)
		if err != nil {
			return err
		}
		open, err := h.metric(`herald_receiver_connections{receiver="syslog"}`)
		if err != nil {
			return err
		}
		if int(stored) < len(r.lines) || open != 0 {
			return fmt.Errorf("receiver stored %.0f of %d lines, %.0f connections open", stored, len(r.lines), open)
		}
		return nil
	})
}

// checkExactlyOnce waits until every line sent is in the table, then
// checks that each is there once and nothing else is.
func (r *pgRun) checkExactlyOnce(h *proc) {
	r.t.Helper()
	total := len(r.lines)
	r.waitRows(h, total, 40*time.Second)
	var rows, distinct, keys int
	err := r.query(`SELECT count(*), count(DISTINCT message), count(DISTINCT substring(message from '^tcp-\d+-\d+'))
		FROM herald_events`, &rows, &distinct, &keys)
	if err != nil {
		r.t.Fatal(err)
	}
	if rows != total || distinct != total || keys != total {
		r.t.Errorf("table holds %d rows, %d distinct messages, %d distinct keys; want %d of each", rows, distinct, keys, total)
	}
	// Every row is one of the lines sent: the keys are the lines' keys.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := r.conn.Query(ctx, `SELECT substring(message from '^tcp-\d+-\d+') FROM herald_events`)
	if err != nil {
		r.t.Fatal(err)
	}
	var unexpected []string
	for rs.Next() {
		var k *string
		if err := rs.Scan(&k); err != nil {
			r.t.Fatal(err)
		}
		if k == nil || !r.expected[*k] {
			unexpected = append(unexpected, fmt.Sprint(k))
		}
	}
	if err := rs.Err(); err != nil {
		r.t.Fatal(err)
	}
	if len(unexpected) > 0 {
		r.t.Errorf("%d rows are not lines the test sent: %s", len(unexpected), firstFew(unexpected, 5))
	}
}

func TestPostgresRestartedMidStreamEveryEventOnce(t *testing.T) {
	const total = 20000
	start := time.Now()
	r, h := startPGRun(t, total)
	sent := r.send(100) // 20k lines over about 2 s

	r.waitRows(h, total/5, 20*time.Second)
	n, _ := r.rows()
	r.srv.Stop(t)
	down := time.Now()
	t.Logf("PostgreSQL stopped at %s with %d events in the table", time.Since(start).Round(time.Millisecond), n)

	eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		v, err := h.metric(`herald_sink_suspended{sink="events"}`)
		if err != nil {
			return err
		}
		if v != 1 {
			return fmt.Errorf("herald_sink_suspended = %v, want 1 while PostgreSQL is down", v)
		}
		return nil
	})
	// herald goes on taking in while its sink is down: JetStream holds it.
	r.waitReceived(h, sent)
	t.Logf("sink suspended, all %d lines taken in while PostgreSQL was down; starting it after %s down",
		total, time.Since(down).Round(time.Millisecond))
	r.srv.Start(t)

	r.checkExactlyOnce(h)
	eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if v, err := h.metric(`herald_sink_suspended{sink="events"}`); err != nil || v != 0 {
			return fmt.Errorf("herald_sink_suspended = %v (%v), want 0 after the sink resumed", v, err)
		}
		return nil
	})
	t.Logf("every one of %d events in the table exactly once at %s", total, time.Since(start).Round(time.Millisecond))
}

func TestPostgresSinkKilledMidTransactionEveryEventOnce(t *testing.T) {
	const total = 20000
	start := time.Now()
	r, h := startPGRun(t, total)
	sent := r.send(100)

	r.waitRows(h, total/5, 20*time.Second)
	// Hold the sink inside its transaction: a lock that its INSERT waits
	// for, so the kill finds it with rows copied but not committed.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	locker := r.srv.Conn(t)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE herald_events IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	r.waitReceived(h, sent)
	eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		var waiting int
		if err := r.query(`SELECT count(*) FROM pg_stat_activity WHERE application_name = 'herald'
			AND state = 'active' AND wait_event_type = 'Lock'`, &waiting); err != nil {
			return err
		}
		if waiting != 1 {
			return fmt.Errorf("%d herald sessions waiting inside a transaction, want 1", waiting)
		}
		return nil
	})
	n, _ := r.rows()
	h.kill()
	t.Logf("herald killed at %s in the middle of a sink transaction, %d events committed", time.Since(start).Round(time.Millisecond), n)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	h = startHerald(t, "herald-2", r.cfg, r.metrics)
	h.waitReady(30 * time.Second)
	r.checkExactlyOnce(h)
	t.Logf("every one of %d events in the table exactly once at %s", total, time.Since(start).Round(time.Millisecond))
}
