package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/postgres/pgtest"
	"github.com/herald-router/herald/actors/sink/sinktest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
	"github.com/jackc/pgx/v5"
)

var tables atomic.Int64

// newTable returns the name of a table no test has used yet.
func newTable() string { return fmt.Sprintf("events_%d", tables.Add(1)) }

func options(s *pgtest.Server, table string) Options {
	o := *DefaultOptions()
	o.DSN = s.DSNWithoutPassword()
	o.PasswordFile = s.PasswordFile()
	o.Table = table
	return o
}

func newWriter(t *testing.T, o Options) *Writer {
	t.Helper()
	w, err := New(o, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w
}

// stored is one row read back.
type stored struct {
	ID, Message string
	Fields      map[string]any
}

// readTable returns the table's rows in the order stored; a table not
// created yet is empty. An exact message in message_bytes wins over the
// text column, as a reader that wants the bytes would do.
func readTable(t testing.TB, c *pgx.Conn, table string) []stored {
	t.Helper()
	ctx := context.Background()
	var exists bool
	if err := c.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	if !exists {
		return nil
	}
	rs, err := c.Query(ctx, fmt.Sprintf("SELECT id, message, message_bytes, fields FROM %s ORDER BY seq", pgx.Identifier{table}.Sanitize()))
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	var out []stored
	for rs.Next() {
		var s stored
		var exact []byte
		if err := rs.Scan(&s.ID, &s.Message, &exact, &s.Fields); err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		if exact != nil {
			s.Message = string(exact)
		}
		out = append(out, s)
	}
	if err := rs.Err(); err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	return out
}

func TestConformance(t *testing.T) {
	srv := pgtest.Start(t)
	var table string
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sink.Provider {
			table = newTable()
			return newWriter(t, options(srv, table))
		},
		ReadBack: func(t *testing.T) []sinktest.Record {
			// A connection of its own each time: the outage case
			// restarts the server under it.
			var out []sinktest.Record
			for _, s := range readTable(t, srv.Conn(t), table) {
				out = append(out, sinktest.Record{ID: s.ID, Message: s.Message})
			}
			return out
		},
		// The outage: the server stops (fast shutdown, cutting every
		// connection) and starts again on the same port and data.
		Break: func(t *testing.T) func() {
			srv.Stop(t)
			return func() { srv.Start(t) }
		},
	})
}

func TestARedeliveredBatchIsStoredOnce(t *testing.T) {
	srv := pgtest.Start(t)
	reader := srv.Conn(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name    string
		batches [][]*schemas.Event
		want    int
	}{
		{"the same batch twice stores its events once", [][]*schemas.Event{batch(0, 100), batch(0, 100)}, 100},
		{"an overlapping batch adds only the new events", [][]*schemas.Event{batch(0, 100), batch(50, 100)}, 150},
		{"an id twice within one batch is stored once", [][]*schemas.Event{append(batch(0, 10), batch(5, 10)...)}, 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := newTable()
			w := newWriter(t, options(srv, table))
			for i, b := range tc.batches {
				if r := sink.Transact(ctx, w, b); r.Err != nil || r.Committed != len(b) {
					t.Fatalf("batch %d: %+v", i, r)
				}
			}
			got := readTable(t, reader, table)
			if len(got) != tc.want {
				t.Fatalf("%d rows, want %d", len(got), tc.want)
			}
			seen := map[string]bool{}
			for _, s := range got {
				if seen[s.ID] {
					t.Errorf("%s stored twice", s.ID)
				}
				seen[s.ID] = true
			}
		})
	}
}

func batch(from, n int) []*schemas.Event {
	out := make([]*schemas.Event, n)
	for i := range out {
		out[i] = sinktest.Event(from+i, fmt.Sprintf("event %d", from+i))
	}
	return out
}

func TestEveryColumnHoldsTheEvent(t *testing.T) {
	srv := pgtest.Start(t)
	table := newTable()
	w := newWriter(t, options(srv, table))
	when := time.Date(2026, 11, 26, 6, 14, 7, 913813000, time.UTC)
	ev := &schemas.Event{
		Id: "01M8B7TTS94HZMYNRKESPDG10Y", TargetMask: 1<<63 | 4, Source: "syslog",
		ReceivedUnixNano: when.Add(time.Millisecond).UnixNano(), Class: "rfc3164", Certainty: 0.5,
		Host: "vm", Service: "sshd", TimeUnixNano: when.UnixNano(),
		Raw: []byte("<13>raw \xff\x00"), Message: "bad \x00 and \xff", Peer: "127.0.0.1:55530",
		Fields: []*schemas.Field{
			{Key: "pri", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 13}}},
			{Key: "nul\x00key", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "a\x00b \\u0000 \xfe"}}},
			{Key: "nan", Value: &schemas.Value{Kind: &schemas.Value_Float{Float: math.NaN()}}},
			{Key: "bytes", Value: &schemas.Value{Kind: &schemas.Value_Bytes{Bytes: []byte{0, 1}}}},
			{Key: "sd", Value: &schemas.Value{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: []*schemas.Field{
				{Key: "x", Value: &schemas.Value{Kind: &schemas.Value_List{List: &schemas.List{Values: []*schemas.Value{
					{Kind: &schemas.Value_Bool{Bool: true}}, {Kind: &schemas.Value_TimeUnixNano{TimeUnixNano: when.UnixNano()}},
				}}}}},
			}}}}},
		},
	}
	plain := &schemas.Event{Id: "plain", Message: "fine"}
	if r := sink.Transact(t.Context(), w, []*schemas.Event{ev, plain}); r.Err != nil {
		t.Fatal(r.Err)
	}
	c := srv.Conn(t)
	var (
		gotTime, gotReceived                        time.Time
		host, service, class, source, peer, message string
		certainty                                   float32
		mask                                        int64
		raw, exact                                  []byte
		fields                                      string
		plainExact, plainRaw                        []byte
		plainTime                                   *time.Time
	)
	err := c.QueryRow(t.Context(), fmt.Sprintf(`SELECT time, received, host, service, class, certainty, source, peer,
		message, message_bytes, target_mask, raw, fields::text FROM %s WHERE id = $1`, table), ev.Id).Scan(
		&gotTime, &gotReceived, &host, &service, &class, &certainty, &source, &peer, &message, &exact, &mask, &raw, &fields)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range []struct {
		what      string
		got, want any
	}{
		{"time (microseconds: PostgreSQL's precision)", gotTime.UTC(), when.Truncate(time.Microsecond)},
		{"received", gotReceived.UTC(), when.Add(time.Millisecond)},
		{"host", host, "vm"}, {"service", service, "sshd"}, {"class", class, "rfc3164"},
		{"certainty", certainty, float32(0.5)}, {"source", source, "syslog"}, {"peer", peer, "127.0.0.1:55530"},
		{"message, with NUL and the invalid byte replaced", message, "bad \ufffd and \ufffd"},
		{"message_bytes, the exact message", string(exact), ev.Message},
		{"target_mask, all 64 bits", uint64(mask), ev.TargetMask},
		{"raw, the exact bytes", string(raw), string(ev.Raw)},
	} {
		if ck.got != ck.want {
			t.Errorf("%s = %#v, want %#v", ck.what, ck.got, ck.want)
		}
	}
	var f map[string]any
	if err := json.Unmarshal([]byte(fields), &f); err != nil {
		t.Fatalf("fields %s: %v", fields, err)
	}
	for k, want := range map[string]any{
		"pri": 13.0, "nul\ufffdkey": "a\ufffdb \\u0000 \ufffd", "nan": "NaN", "bytes": "AAE=",
		"sd": map[string]any{"x": []any{true, "2026-11-26T06:14:07.913813Z"}},
	} {
		if got, _ := json.Marshal(f[k]); string(got) != mustJSON(want) {
			t.Errorf("fields[%q] = %s, want %s", k, got, mustJSON(want))
		}
	}
	err = c.QueryRow(t.Context(), fmt.Sprintf(`SELECT time, message_bytes, raw FROM %s WHERE id = 'plain'`, table)).Scan(&plainTime, &plainExact, &plainRaw)
	if err != nil {
		t.Fatal(err)
	}
	if plainTime != nil || plainExact != nil || plainRaw != nil {
		t.Errorf("an event without time, raw or odd text stores NULLs; got time %v, message_bytes %q, raw %q", plainTime, plainExact, plainRaw)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestAnEventWithoutIDIsDeadLettered(t *testing.T) {
	srv := pgtest.Start(t)
	table := newTable()
	w := newWriter(t, options(srv, table))
	in := []*schemas.Event{sinktest.Event(0, "a"), {Message: "no id"}, sinktest.Event(1, "b")}
	r := sink.Transact(t.Context(), w, in)
	if r.Err != nil || r.Committed != 3 {
		t.Fatalf("Transact = %+v", r)
	}
	if code, ok := sink.IsPermanent(r.Failed[1]); !ok || code != CodeNoID {
		t.Errorf("event without id: %v, want permanent %s", r.Failed[1], CodeNoID)
	}
	if got := readTable(t, srv.Conn(t), table); len(got) != 2 {
		t.Errorf("%d rows, want the 2 events with ids", len(got))
	}
}

func TestAServerThatIsDownIsRetryableUntilItComes(t *testing.T) {
	srv := pgtest.Start(t)
	table := newTable()
	w := newWriter(t, options(srv, table))
	srv.Stop(t)
	err := w.Begin(t.Context())
	if err == nil {
		t.Fatal("Begin must fail while the server is down")
	}
	if _, permanent := sink.IsPermanent(err); permanent {
		t.Errorf("a server that is down is retryable: %v", err)
	}
	srv.Start(t)
	if r := sink.Transact(t.Context(), w, batch(0, 3)); r.Err != nil {
		t.Fatalf("after the server came back: %v", r.Err)
	}
	if got := readTable(t, srv.Conn(t), table); len(got) != 3 {
		t.Errorf("%d rows, want 3", len(got))
	}
}

func TestAConnectionLostMidTransactionIsRetryableAndReconnects(t *testing.T) {
	srv := pgtest.Start(t)
	table := newTable()
	w := newWriter(t, options(srv, table))
	admin := srv.Conn(t)
	ctx := t.Context()
	if r := sink.Transact(ctx, w, batch(0, 5)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if err := w.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ev := range batch(5, 5) {
		if _, err := w.Do(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	// Cut the sink's connection from the server side, as a crash of its
	// backend or a network failure would.
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'herald' AND pid <> pg_backend_pid()`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminate the sink's backend: %d terminated, %v", n, err)
	}
	err := w.End(ctx)
	if err == nil {
		t.Fatal("End on a cut connection must fail")
	}
	if _, permanent := sink.IsPermanent(err); permanent {
		t.Errorf("a cut connection is retryable: %v", err)
	}
	if r := sink.Transact(ctx, w, batch(5, 5)); r.Err != nil {
		t.Fatalf("the redelivery must reconnect and succeed: %v", r.Err)
	}
	if got := readTable(t, admin, table); len(got) != 10 {
		t.Errorf("%d rows, want 10", len(got))
	}
}

func TestATableManagedElsewhereIsUsedAsItIs(t *testing.T) {
	srv := pgtest.Start(t)
	c := srv.Conn(t)
	ctx := t.Context()
	if _, err := c.Exec(ctx, `CREATE SCHEMA logs`); err != nil {
		t.Fatal(err)
	}
	o := options(srv, "logs.events")
	o.CreateTable = false
	w := newWriter(t, o)
	if r := sink.Transact(ctx, w, batch(0, 1)); r.Err == nil {
		t.Fatal("a missing table that herald may not create must fail the transaction")
	} else if _, permanent := sink.IsPermanent(r.Err); permanent {
		t.Errorf("a missing table is the sink's problem, not the event's: %v", r.Err)
	}
	if _, err := c.Exec(ctx, createTableSQL(pgx.Identifier{"logs", "events"})); err != nil {
		t.Fatal(err)
	}
	if r := sink.Transact(ctx, w, batch(0, 2)); r.Err != nil {
		t.Fatalf("once the table exists: %v", r.Err)
	}
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM logs.events`).Scan(&n); err != nil || n != 2 {
		t.Errorf("logs.events holds %d rows (%v), want 2", n, err)
	}
}

func TestOptions(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\r\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_TEST_PG_PASSWORD", "from-env")
	for _, tc := range []struct {
		name     string
		edit     func(o *Options)
		invalid  []string // fields Validate names
		password string   // what connect would use
	}{
		{"the defaults with a dsn are valid", func(o *Options) {}, nil, ""},
		{"a dsn is required", func(o *Options) { o.DSN = "" }, []string{fieldDSN}, ""},
		{"a dsn that does not parse is refused", func(o *Options) { o.DSN = "postgres://x:%zz@h/db" }, []string{fieldDSN}, ""},
		{"a file the dsn names must be readable", func(o *Options) {
			o.DSN = "postgres://h/db?sslmode=verify-full&sslrootcert=" + filepath.Join(dir, "no-ca.pem")
		}, []string{fieldDSN}, ""},
		{"key=value pairs are a dsn too", func(o *Options) { o.DSN = "host=db1 user=herald dbname=logs" }, nil, ""},
		{"the password file's first line is the password", func(o *Options) { o.PasswordFile = pwFile }, nil, "s3cret"},
		{"the password can come from a named variable", func(o *Options) { o.PasswordEnv = "HERALD_TEST_PG_PASSWORD" }, nil, "from-env"},
		{"not both password sources", func(o *Options) { o.PasswordFile, o.PasswordEnv = pwFile, "X" }, []string{fieldPasswordEnv}, ""},
		{"schema.table is a table", func(o *Options) { o.Table = "logs.events" }, nil, ""},
		{"three parts are no table", func(o *Options) { o.Table = "a.b.c" }, []string{fieldTable}, ""},
		{"an empty part is no table", func(o *Options) { o.Table = "logs." }, []string{fieldTable}, ""},
		{"timeouts must be positive", func(o *Options) { o.ConnectTimeout, o.WriteTimeout = 0, config.Duration(-time.Second) },
			[]string{fieldConnectTimeout, fieldWriteTimeout}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			o.DSN = "postgres://herald@127.0.0.1:1/logs"
			tc.edit(o)
			var got []string
			for _, fe := range o.Validate() {
				got = append(got, fe.Field)
				t.Logf("%s: %s", fe.Field, fe.Reason)
				if strings.Contains(fe.Reason, "%zz") {
					t.Errorf("the reason repeats the dsn, which may hold a password: %s", fe.Reason)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.invalid, ",") {
				t.Fatalf("Validate named %v, want %v", got, tc.invalid)
			}
			if len(tc.invalid) > 0 {
				return
			}
			w, err := New(*o, nil)
			if err != nil {
				t.Fatal(err)
			}
			if pw, err := w.password(); err != nil || pw != tc.password {
				t.Errorf("password = %q, %v; want %q", pw, err, tc.password)
			}
		})
	}
	t.Run("a password file that cannot be read stops New", func(t *testing.T) {
		o := DefaultOptions()
		o.DSN, o.PasswordFile = "postgres://herald@127.0.0.1:1/logs", filepath.Join(dir, "missing")
		if _, err := New(*o, nil); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("New = %v, want a not-exist error", err)
		}
	})
}

func TestTextPostgreSQLCannotHold(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"valid text is kept as it is", "héllo 🦜", "héllo 🦜"},
		{"NUL becomes U+FFFD", "a\x00b", "a\ufffdb"},
		{"each invalid byte becomes U+FFFD", "x\xff\xfey", "x\ufffd\ufffdy"},
		{"a truncated sequence is replaced byte by byte", "z\xe2\x82", "z\ufffd\ufffd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := pgText(tc.in)
			if got != tc.want || changed != (tc.in != tc.want) {
				t.Errorf("pgText(%q) = %q, %v; want %q, %v", tc.in, got, changed, tc.want, tc.in != tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, in, want string }{
		{"a NUL escape becomes U+FFFD's", `{"a\u0000":"\u0000x"}`, `{"a\ufffd":"\ufffdx"}`},
		{"an escaped backslash before u0000 is text, kept", `{"a":"\\u0000"}`, `{"a":"\\u0000"}`},
		{"other escapes are kept", `{"a":"\u001b\n\""}`, `{"a":"\u001b\n\""}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.in)
			noNUL(b)
			if string(b) != tc.want {
				t.Errorf("noNUL(%s) = %s, want %s", tc.in, b, tc.want)
			}
		})
	}
}

// BenchmarkInsert measures events/s into the table in transactions of
// 1000 syslog-like events, each a new id (no conflicts), against a local
// server with its default durability (fsync on).
func BenchmarkInsert(b *testing.B) {
	srv := pgtest.Start(b)
	w, err := New(options(srv, newTable()), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close(context.Background())
	const per = 1000
	evs := make([]*schemas.Event, per)
	for i := range evs {
		evs[i] = syslogEvent(i)
	}
	ctx := context.Background()
	next := 0
	b.ResetTimer()
	for b.Loop() {
		for _, ev := range evs {
			ev.Id = fmt.Sprintf("01BENCH%019d", next)
			next++
		}
		if r := sink.Transact(ctx, w, evs); r.Err != nil || r.Committed != per {
			b.Fatalf("Transact = %+v", r)
		}
	}
	b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "events/s")
}

// syslogEvent looks like what the syslog receiver and the resolver make
// of a 200-byte RFC 3164 line.
func syslogEvent(i int) *schemas.Event {
	now := time.Now()
	msg := fmt.Sprintf("session opened for user root by (uid=0) seq=%d the quick brown fox jumps over the lazy dog again and again until the line is long", i)
	raw := fmt.Sprintf("<86>%s vm sshd[%d]: %s", now.Format(time.Stamp), 1000+i, msg)
	str := func(s string) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Str{Str: s}} }
	num := func(n int64) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Int{Int: n}} }
	return &schemas.Event{
		TargetMask: 4, Source: "syslog", ReceivedUnixNano: now.UnixNano(), Class: "rfc3164", Certainty: 1,
		Host: "vm", Service: "sshd", TimeUnixNano: now.Truncate(time.Second).UnixNano(), Raw: []byte(raw),
		Message: msg, Peer: "127.0.0.1:55530",
		Fields: []*schemas.Field{
			{Key: "pri", Value: num(86)}, {Key: "facility", Value: num(10)}, {Key: "severity", Value: num(6)},
			{Key: "pid", Value: str(fmt.Sprint(1000 + i))}, {Key: "R_time__", Value: num(now.Unix())},
		},
	}
}
