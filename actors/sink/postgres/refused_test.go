package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/postgres/pgtest"
	"github.com/herald-router/herald/actors/sink/sinktest"
	"github.com/herald-router/herald/schemas"
	"github.com/jackc/pgx/v5"
)

// sinkBackend is the pid of the sink's session, to tell whether it kept
// its connection.
func sinkBackend(t *testing.T, c *pgx.Conn) int {
	t.Helper()
	var pid int
	if err := c.QueryRow(t.Context(), `SELECT pid FROM pg_stat_activity WHERE application_name = 'herald'`).Scan(&pid); err != nil {
		t.Fatalf("the sink's session: %v", err)
	}
	return pid
}

func TestRowsPostgreSQLRefusesAreDeadLetteredAndTheRestCommitted(t *testing.T) {
	srv := pgtest.Start(t)
	admin := srv.Conn(t)
	ctx := t.Context()
	long := "build-agent-07.ci.eu-west.example.net"
	for _, tc := range []struct {
		name string
		// alter makes the table refuse some rows (%s is the table), and
		// fix undoes it.
		alter, fix string
		n          int
		spoil      func(i int, ev *schemas.Event) // makes the events the table refuses
		refused    []int
		code       string
	}{
		{
			name:  "a value too long for its column is a data exception of that event alone",
			alter: `ALTER TABLE %s ALTER COLUMN host TYPE varchar(16)`, fix: `ALTER TABLE %s ALTER COLUMN host TYPE text`,
			n: 40, refused: []int{3, 4, 17, 39}, code: CodeDataException,
			spoil: func(i int, ev *schemas.Event) { ev.Host = long },
		},
		{
			name:  "a CHECK constraint refusing a message is an integrity violation of that event alone",
			alter: `ALTER TABLE %s ADD CONSTRAINT no_secrets CHECK (message NOT LIKE '%%password=%%')`,
			fix:   `ALTER TABLE %s DROP CONSTRAINT no_secrets`,
			n:     25, refused: []int{0, 24}, code: CodeIntegrityViolation,
			spoil: func(i int, ev *schemas.Event) { ev.Message += " password=hunter2" },
		},
		{
			name:  "a deferred constraint, checked only at commit, refuses its rows alone too",
			alter: `ALTER TABLE %s ADD CONSTRAINT one_per_message UNIQUE (message) DEFERRABLE INITIALLY DEFERRED`,
			fix:   `ALTER TABLE %s DROP CONSTRAINT one_per_message`,
			n:     12, refused: []int{5, 9}, code: CodeIntegrityViolation,
			spoil: func(i int, ev *schemas.Event) { ev.Message = "event 2" },
		},
		{
			name:  "a batch of one refused event is refused without a retry",
			alter: `ALTER TABLE %s ALTER COLUMN host TYPE varchar(16)`, fix: `ALTER TABLE %s ALTER COLUMN host TYPE text`,
			n: 1, refused: []int{0}, code: CodeDataException,
			spoil: func(i int, ev *schemas.Event) { ev.Host = long },
		},
		{
			name:  "a table that refuses every row refuses every event, and the sink stays up",
			alter: `ALTER TABLE %[1]s ADD COLUMN tenant text NOT NULL DEFAULT 'main'; ALTER TABLE %[1]s ALTER COLUMN tenant DROP DEFAULT`,
			fix:   `ALTER TABLE %s ALTER COLUMN tenant SET DEFAULT 'main'`,
			n:     8, refused: []int{0, 1, 2, 3, 4, 5, 6, 7}, code: CodeIntegrityViolation,
			spoil: func(int, *schemas.Event) {},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := newTable()
			if _, err := admin.Exec(ctx, createTableSQL(pgx.Identifier{table})); err != nil {
				t.Fatal(err)
			}
			w := newWriter(t, options(srv, table))
			// One batch before the change: the sink's session is up.
			if r := sink.Transact(ctx, w, batch(1000, 1)); r.Err != nil {
				t.Fatal(r.Err)
			}
			if _, err := admin.Exec(ctx, fmt.Sprintf(tc.alter, table)); err != nil {
				t.Fatal(err)
			}
			pid := sinkBackend(t, admin)
			in := batch(0, tc.n)
			for _, i := range tc.refused {
				tc.spoil(i, in[i])
			}
			r := sink.Transact(ctx, w, in)
			if r.Err != nil || r.Committed != tc.n {
				t.Fatalf("Transact = %+v, want every event done and no retryable error", r)
			}
			var failed []int
			for i, err := range r.Failed {
				failed = append(failed, i)
				code, ok := sink.IsPermanent(err)
				if !ok || code != tc.code || !strings.Contains(err.Error(), in[i].Id) || !strings.Contains(err.Error(), "SQLSTATE") {
					t.Errorf("event %d: %v; want a permanent %s naming the event and PostgreSQL's SQLSTATE", i, err, tc.code)
				}
			}
			slices.Sort(failed)
			if !slices.Equal(failed, tc.refused) {
				t.Fatalf("refused events %v, want %v", failed, tc.refused)
			}
			var want []string
			for i, ev := range in {
				if !slices.Contains(tc.refused, i) {
					want = append(want, ev.Id)
				}
			}
			got := readTable(t, admin, table)[1:] // after the first batch's event
			if !slices.Equal(ids(got), want) {
				t.Errorf("table holds %v, want the accepted events in batch order %v", ids(got), want)
			}
			if after := sinkBackend(t, admin); after != pid {
				t.Errorf("the sink reconnected (backend %d, then %d): a refused row is no outage", pid, after)
			}

			// After the fix, the refused events delivered again (a
			// redrive) are written, and the batch again adds nothing twice.
			if _, err := admin.Exec(ctx, fmt.Sprintf(tc.fix, table)); err != nil {
				t.Fatal(err)
			}
			if r := sink.Transact(ctx, w, in); r.Err != nil || len(r.Failed) != 0 {
				t.Fatalf("after the fix: %+v", r)
			}
			seen := map[string]int{}
			for _, s := range readTable(t, admin, table) {
				seen[s.ID]++
			}
			for _, ev := range in {
				if seen[ev.Id] != 1 {
					t.Errorf("after the fix, %s is in the table %d times, want once", ev.Id, seen[ev.Id])
				}
			}
		})
	}
}

func ids(ss []stored) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

func TestEventsRefusedAtEndKeepTheirIndexBesideEventsRefusedByDo(t *testing.T) {
	srv := pgtest.Start(t)
	admin := srv.Conn(t)
	table := newTable()
	if _, err := admin.Exec(t.Context(), createTableSQL(pgx.Identifier{table})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(t.Context(), fmt.Sprintf(`ALTER TABLE %s ADD CHECK (message <> 'bad')`, table)); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, options(srv, table))
	in := []*schemas.Event{sinktest.Event(0, "a"), {Message: "no id"}, sinktest.Event(2, "bad"), sinktest.Event(3, "b")}
	r := sink.Transact(t.Context(), w, in)
	if r.Err != nil || r.Committed != 4 || len(r.Failed) != 2 {
		t.Fatalf("Transact = %+v", r)
	}
	for i, want := range map[int]string{1: CodeNoID, 2: CodeIntegrityViolation} {
		if code, _ := sink.IsPermanent(r.Failed[i]); code != want {
			t.Errorf("event %d: %v, want %s", i, r.Failed[i], want)
		}
	}
	if got := ids(readTable(t, admin, table)); !slices.Equal(got, []string{in[0].Id, in[3].Id}) {
		t.Errorf("table holds %v", got)
	}
}

func TestTextTheDatabaseEncodingCannotHoldIsRefusedPerEvent(t *testing.T) {
	srv := pgtest.Start(t)
	admin := srv.Conn(t)
	// A LATIN1 database refuses characters outside Latin-1 when the rows
	// are copied in (SQLSTATE 22P05), before any table constraint.
	if _, err := admin.Exec(t.Context(), `CREATE DATABASE latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`); err != nil {
		t.Fatal(err)
	}
	o := options(srv, newTable())
	o.DSN = strings.Replace(o.DSN, "/"+srv.Database+"?", "/latin1?", 1)
	w := newWriter(t, o)
	in := batch(0, 10)
	in[6].Message = "parrot 🦜"
	in[7].Message = "café, fine in Latin-1"
	r := sink.Transact(t.Context(), w, in)
	if r.Err != nil || len(r.Failed) != 1 {
		t.Fatalf("Transact = %+v, want event 6 refused alone", r)
	}
	if code, _ := sink.IsPermanent(r.Failed[6]); code != CodeDataException {
		t.Errorf("event 6: %v, want %s", r.Failed[6], CodeDataException)
	}
	c, err := pgx.Connect(t.Context(), strings.Replace(srv.DSN(), "/"+srv.Database+"?", "/latin1?", 1)+"&client_encoding=UTF8")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	got := readTable(t, c, o.Table)
	if len(got) != 9 {
		t.Fatalf("%d rows, want the 9 events Latin-1 can hold", len(got))
	}
	if got[6].Message != in[7].Message {
		t.Errorf("Latin-1 text came back as %q, want %q: the sink must say its text is UTF-8", got[6].Message, in[7].Message)
	}
}

// BenchmarkRefusedRows measures a transaction of 1000 events of which one
// in `every` is refused by a CHECK constraint: the batch fails, then is
// written again in halves down to the refused rows.
func BenchmarkRefusedRows(b *testing.B) {
	srv := pgtest.Start(b)
	admin := srv.Conn(b)
	for _, every := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("1 in %d refused", every), func(b *testing.B) {
			table := newTable()
			for _, sql := range []string{createTableSQL(pgx.Identifier{table}), fmt.Sprintf(`ALTER TABLE %s ADD CHECK (certainty < 0.5)`, table)} {
				if _, err := admin.Exec(context.Background(), sql); err != nil {
					b.Fatal(err)
				}
			}
			w, err := New(options(srv, table), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close(context.Background())
			in := batch(0, 1000)
			next := 0
			for b.Loop() {
				for i, ev := range in {
					ev.Id = fmt.Sprintf("01BENCH%019d", next)
					next++
					ev.Certainty = 0.1
					if i%every == 0 {
						ev.Certainty = 1
					}
				}
				if r := sink.Transact(context.Background(), w, in); r.Err != nil || len(r.Failed) != len(in)/every {
					b.Fatalf("Transact = %v, %d refused", r.Err, len(r.Failed))
				}
			}
		})
	}
}
