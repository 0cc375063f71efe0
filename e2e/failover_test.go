package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/herald-router/herald/actors/sink/postgres/pgtest"
)

// failoverConfigParams fill failoverConfigTemplate.
type failoverConfigParams struct {
	NATSPort, MetricsPort, SyslogPort int
	DSN, PasswordFile                 string
}

// failoverConfigTemplate: one target whose fail-over chain is [pg, spill],
// a postgres sink then a file sink. The postgres timeouts are short so
// that a server that went away is noticed quickly. ack_wait is long: a
// batch that JetStream delivers again because a starved process held it
// (prefetched, waiting behind others) longer than ack_wait is written
// twice, once to each sink or twice to the file, and out of order; that
// is at-least-once delivery, but not what this test is about.
var failoverConfigTemplate = template.Must(template.New("failover").Parse(`# written by herald's e2e tests
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
targets:
  log:
    bit: 4
    sinks: [pg, spill]
sinks:
  pg:
    type: postgres
    dsn: {{.DSN}}
    password_file: {{.PasswordFile}}
    table: herald_events
    connect_timeout: 2s
    write_timeout: 5s
  spill:
    type: file
    path: out/spill.jsonl
    format: json
`))

// lineSender writes syslogLine("tcp", 0, seq, stamp) over one TCP
// connection, seq counting up from 0 across calls, so that the whole
// stream comes from one connection and its order is the order of seq.
type lineSender struct {
	conn  net.Conn
	w     *bufio.Writer
	stamp string
	next  int // seq of the next line
}

func dialLineSender(addr string) (*lineSender, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &lineSender{conn: conn, w: bufio.NewWriter(conn), stamp: time.Now().Format(time.Stamp)}, nil
}

// send writes n lines, perTick of them every 10 ms, and flushes; stop,
// when not nil, is asked every tenth tick and ends the sending early when
// it says so.
func (s *lineSender) send(n, perTick int, stop func() bool) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(time.Minute))
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < n; i++ {
		line, _ := syslogLine("tcp", 0, s.next, s.stamp)
		if _, err := s.w.WriteString(line + "\n"); err != nil {
			return fmt.Errorf("line %d: %w", s.next, err)
		}
		s.next++
		if i%perTick == perTick-1 {
			if err := s.w.Flush(); err != nil {
				return fmt.Errorf("line %d: %w", s.next-1, err)
			}
			<-tick.C
			if stop != nil && (i/perTick)%10 == 9 && stop() {
				break
			}
		}
	}
	return s.w.Flush()
}

func (s *lineSender) close() error { return s.conn.Close() }

// lineSeq is the seq of a line from its message ("tcp-0-000123 ..."), or
// -1 when the message carries no key.
func lineSeq(message string) int {
	k := syslogKey.FindString(message)
	if k == "" {
		return -1
	}
	n, err := strconv.Atoi(k[strings.LastIndexByte(k, '-')+1:])
	if err != nil {
		return -1
	}
	return n
}

// seqFile follows a file sink's output and keeps the seqs of its lines in
// file order.
type seqFile struct {
	*sinkFile
	order []int
}

func newSeqFile(path string) *seqFile {
	f := &seqFile{}
	f.sinkFile = newSinkFile(path, func(line []byte) (string, error) {
		var ev sinkLine
		if err := json.Unmarshal(line, &ev); err != nil {
			return "", err
		}
		n := lineSeq(ev.Message)
		if n < 0 {
			return "", fmt.Errorf("no tcp- key in message %q", ev.Message)
		}
		f.order = append(f.order, n)
		return strconv.Itoa(n), nil
	})
	return f
}

// pgSeqs returns the seqs of the lines in the table in the order of its
// seq column (the order they were stored in).
func pgSeqs(r *pgRun) ([]int, error) {
	var exists bool
	if err := r.query(`SELECT to_regclass('herald_events') IS NOT NULL`, &exists); err != nil || !exists {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := r.conn.Query(ctx, `SELECT message FROM herald_events ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []int
	for rs.Next() {
		var m string
		if err := rs.Scan(&m); err != nil {
			return nil, err
		}
		out = append(out, lineSeq(m))
	}
	return out, rs.Err()
}

// outOfOrder describes the first places where seqs do not increase.
func outOfOrder(seqs []int) []string {
	var bad []string
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			bad = append(bad, fmt.Sprintf("%d after %d (position %d)", seqs[i], seqs[i-1], i))
		}
	}
	return bad
}

func TestFailoverChainLosesNothingAndRevivedSinkTakesOver(t *testing.T) {
	const (
		perTick    = 50   // lines every 10 ms: about 5000 lines/s
		before     = 8000 // lines sent while PostgreSQL is stopped, in the middle
		outage     = 6000 // lines sent while PostgreSQL is down
		afterCheck = 3000 // lines sent after the revival was seen: all must be in pg
		batchMax   = 1000 // batch.max_events (the default): the most a lost commit answer can double
	)
	start := time.Now()
	dir := t.TempDir()
	srv := pgtest.Start(t)
	t.Logf("PostgreSQL started at %s", time.Since(start).Round(time.Millisecond))
	metricsPort, syslogPort := freePort(t), freePort(t)
	cfg := writeTemplate(t, dir, failoverConfigTemplate, failoverConfigParams{NATSPort: freePort(t), MetricsPort: metricsPort,
		SyslogPort: syslogPort, DSN: srv.DSNWithoutPassword(), PasswordFile: srv.PasswordFile()})
	pg := &pgRun{t: t, srv: srv}
	t.Cleanup(func() {
		if pg.conn != nil {
			_ = pg.conn.Close(context.Background())
		}
	})
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	spill := newSeqFile(filepath.Join(dir, "out", "spill.jsonl"))
	suspended := func() (float64, error) { return h.metric(`herald_sink_suspended{sink="pg"}`) }

	s, err := dialLineSender(fmt.Sprintf("127.0.0.1:%d", syslogPort))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()

	// Phase 1: stream; stop PostgreSQL once it holds some of it, while
	// the stream goes on.
	sent1 := make(chan error, 1)
	go func() { sent1 <- s.send(before, perTick, nil) }()
	pg.waitRows(h, before/5, 20*time.Second)
	n0, _ := pg.rows()
	srv.Stop(t)
	t.Logf("PostgreSQL stopped at %s with %d rows in the table", time.Since(start).Round(time.Millisecond), n0)
	if err := <-sent1; err != nil {
		t.Fatalf("send: %v", err)
	}
	if s.next != before {
		t.Fatalf("sent %d lines before the outage, want %d", s.next, before)
	}

	// Phase 2: PostgreSQL is down; none of these lines can reach it, so
	// every one must be in the file before it comes back.
	if err := s.send(outage, perTick, nil); err != nil {
		t.Fatalf("send: %v", err)
	}
	eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if h.exited() {
			t.Fatalf("herald exited with code %d", h.exitCode)
		}
		if err := spill.poll(); err != nil {
			return err
		}
		missing := 0
		for i := before; i < before+outage; i++ {
			if spill.counts[strconv.Itoa(i)] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of the %d lines sent during the outage are not in the file yet", missing, outage)
		}
		return nil
	})
	if v, err := suspended(); err != nil || v != 1 {
		t.Errorf("herald_sink_suspended{sink=\"pg\"} = %v (%v) during the outage, want 1", v, err)
	}
	t.Logf("all %d lines sent during the outage are in the file (%d lines there) at %s",
		outage, spill.lines, time.Since(start).Round(time.Millisecond))

	// Phase 3: PostgreSQL back; stream until herald saw it revive (the
	// first transaction after its back-off), then the last lines.
	srv.Start(t)
	revived := time.Now()
	t.Logf("PostgreSQL started again at %s", time.Since(start).Round(time.Millisecond))
	up := false
	if err := s.send(15000, perTick/5, func() bool { // at most 15 s
		v, err := suspended()
		up = err == nil && v == 0
		return up
	}); err != nil {
		t.Fatalf("send: %v", err)
	}
	if !up {
		t.Fatalf("pg still suspended %s after PostgreSQL came back", time.Since(revived).Round(time.Millisecond))
	}
	firstAfter := s.next
	t.Logf("pg revived %s after PostgreSQL came back (%d lines sent meanwhile)",
		time.Since(revived).Round(time.Millisecond), firstAfter-before-outage)
	if err := s.send(afterCheck, perTick, nil); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	total := s.next

	// Wait until every line is in one sink or the other, then drain.
	var inPG []int
	eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if h.exited() {
			t.Fatalf("herald exited with code %d", h.exitCode)
		}
		if err := spill.poll(); err != nil {
			return err
		}
		var err error
		if inPG, err = pgSeqs(pg); err != nil {
			return err
		}
		got := map[int]bool{}
		for _, n := range inPG {
			got[n] = true
		}
		missing := 0
		for i := range total {
			if !got[i] && spill.counts[strconv.Itoa(i)] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d lines in neither sink (pg %d rows, file %d lines)", missing, total, len(inPG), spill.lines)
		}
		return nil
	})
	if code := h.stop(30 * time.Second); code != 0 {
		t.Fatalf("herald exited with code %d after SIGTERM, want 0", code)
	}
	if err := spill.poll(); err != nil {
		t.Fatal(err)
	}
	if inPG, err = pgSeqs(pg); err != nil {
		t.Fatal(err)
	}

	pgCount := map[int]int{}
	for _, n := range inPG {
		pgCount[n]++
	}
	var missing, both, pgDup, fileDup, strange []string
	for i := range total {
		k := strconv.Itoa(i)
		switch p, f := pgCount[i], spill.counts[k]; {
		case p == 0 && f == 0:
			missing = append(missing, k)
		case p > 0 && f > 0:
			both = append(both, k)
		}
		if pgCount[i] > 1 {
			pgDup = append(pgDup, k)
		}
		if spill.counts[k] > 1 {
			fileDup = append(fileDup, k)
		}
	}
	for n := range pgCount {
		if n < 0 || n >= total {
			strange = append(strange, strconv.Itoa(n))
		}
	}
	for k := range spill.counts {
		if n, _ := strconv.Atoi(k); n >= total {
			strange = append(strange, k)
		}
	}
	t.Logf("%d lines sent: %d rows in pg, %d lines in the file, %d in both", total, len(inPG), spill.lines, len(both))
	if len(missing) > 0 {
		t.Errorf("%d lines lost: in neither sink: %s", len(missing), firstFew(missing, 10))
	}
	if len(pgDup) > 0 || len(fileDup) > 0 {
		t.Errorf("lines twice in one sink: pg %s; file %s", firstFew(pgDup, 5), firstFew(fileDup, 5))
	}
	if len(strange) > 0 || spill.nbad > 0 {
		t.Errorf("lines the test did not send: %s; unreadable file lines: %q", firstFew(strange, 5), spill.bad)
	}
	// At least once: a transaction whose COMMIT reached PostgreSQL but
	// whose answer was lost when the server went down counts as not
	// written, and its batch is written to the next sink too. That can
	// only be one batch, at the stop, before the outage's lines.
	if len(both) > 0 {
		lo, _ := strconv.Atoi(both[0])
		hi, _ := strconv.Atoi(both[len(both)-1])
		t.Logf("overlap: %d lines in both sinks, seq %d to %d (a commit whose answer was lost at the stop)", len(both), lo, hi)
		if len(both) > batchMax || hi >= before+outage || hi-lo+1 != len(both) {
			t.Errorf("overlap of %d lines, seq %d to %d: more than the one batch (at most %d lines, before seq %d) a lost commit answer explains",
				len(both), lo, hi, batchMax, before+outage)
		}
	}
	if bad := outOfOrder(spill.order); len(bad) > 0 {
		t.Errorf("file: %d lines out of order: %s", len(bad), firstFew(bad, 5))
	}
	if bad := outOfOrder(inPG); len(bad) > 0 {
		t.Errorf("pg: %d rows out of order: %s", len(bad), firstFew(bad, 5))
	}
	var notInPG []string
	for i := firstAfter; i < total; i++ {
		if pgCount[i] == 0 || spill.counts[strconv.Itoa(i)] > 0 {
			notInPG = append(notInPG, strconv.Itoa(i))
		}
	}
	if len(notInPG) > 0 {
		t.Errorf("%d of the last %d lines (sent after pg revived) are not in pg alone: %s", len(notInPG), total-firstAfter, firstFew(notInPG, 10))
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}
