package postgres

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
	"github.com/jackc/pgx/v5"
)

// createTableSQL is the table herald creates when it is missing. seq
// numbers rows in the order they were stored, for readers that follow the
// table; the other columns are the event's envelope, fields is the
// event's fields as a JSON object. jsonb keeps one value per key (the
// last) and its own key order; the event order of the fields is in the
// event's other serializations, not here.
func createTableSQL(table pgx.Identifier) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	"id"            text PRIMARY KEY,
	"seq"           bigint GENERATED ALWAYS AS IDENTITY,
	"time"          timestamptz,
	"received"      timestamptz,
	"host"          text NOT NULL,
	"service"       text NOT NULL,
	"class"         text NOT NULL,
	"certainty"     real NOT NULL,
	"source"        text NOT NULL,
	"peer"          text NOT NULL,
	"message"       text NOT NULL,
	"message_bytes" bytea,
	"target_mask"   bigint NOT NULL,
	"raw"           bytea,
	"fields"        jsonb NOT NULL
)`, table.Sanitize())
}

// The staging table is per session (temporary) and empties itself at
// every commit, so each transaction starts with it empty. ord keeps the
// batch's order for seq.
const (
	stagingTable     = "herald_staging"
	createStagingSQL = `CREATE TEMPORARY TABLE IF NOT EXISTS ` + stagingTable + ` (
	"ord"           integer NOT NULL,
	"id"            text NOT NULL,
	"time"          timestamptz,
	"received"      timestamptz,
	"host"          text NOT NULL,
	"service"       text NOT NULL,
	"class"         text NOT NULL,
	"certainty"     real NOT NULL,
	"source"        text NOT NULL,
	"peer"          text NOT NULL,
	"message"       text NOT NULL,
	"message_bytes" bytea,
	"target_mask"   bigint NOT NULL,
	"raw"           bytea,
	"fields"        jsonb NOT NULL
) ON COMMIT DELETE ROWS`
)

// stagingColumns are the staging table's columns in the order rows.Values
// gives them; the table's columns are the same without ord.
var stagingColumns = []string{"ord", "id", "time", "received", "host", "service", "class", "certainty",
	"source", "peer", "message", "message_bytes", "target_mask", "raw", "fields"}

// insertSQL moves the staged rows into the table: those whose ord is in
// [lo, hi), or all of them when hi < 0. DO NOTHING on a known id is what
// makes a redelivered batch harmless, duplicates within the batch
// included.
func (w *Writer) insertSQL(lo, hi int) string {
	cols := make([]string, len(stagingColumns)-1)
	for i, c := range stagingColumns[1:] {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	list := strings.Join(cols, ", ")
	where := ""
	if hi >= 0 {
		where = fmt.Sprintf(" WHERE ord >= %d AND ord < %d", lo, hi)
	}
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM pg_temp.%s%s ORDER BY ord ON CONFLICT (id) DO NOTHING",
		w.table.Sanitize(), list, list, stagingTable, where)
}

// row is one event as the table stores it. The byte slices point into
// rows.arena.
type row struct {
	event                                           int // index in the transaction
	id, host, service, class, source, peer, message string
	time, received                                  int64
	certainty                                       float32
	targetMask                                      uint64
	raw, messageBytes, fields                       []byte
}

// rows is a transaction's rows; it is the COPY's row source, for the
// range rewind gave.
type rows struct {
	list      []row
	arena     []byte // copies of raw bytes, exact messages and fields JSON
	next, end int
	vals      []any
}

func (r *rows) len() int { return len(r.list) }

func (r *rows) reset() {
	r.list = r.list[:0]
	r.arena = r.arena[:0]
	r.next, r.end = 0, 0
}

// rewind makes the COPY source give rows [lo, hi).
func (r *rows) rewind(lo, hi int) { r.next, r.end = lo, hi }

// shrink lets go of buffers grown by one unusually big transaction.
func (r *rows) shrink() {
	if cap(r.arena) > 8<<20 {
		r.arena = nil
	}
	if cap(r.list) > 1<<16 {
		r.list = nil
	}
	r.reset()
}

// add turns ev, the transaction's event number i, into a row. Text
// PostgreSQL cannot hold is replaced (see the package doc); the exact
// message is kept when it had to be.
func (r *rows) add(ev *schemas.Event, i int) {
	x := row{
		event:      i,
		time:       ev.TimeUnixNano,
		received:   ev.ReceivedUnixNano,
		certainty:  ev.Certainty,
		targetMask: ev.TargetMask,
	}
	x.id, _ = pgText(ev.Id)
	x.host, _ = pgText(ev.Host)
	x.service, _ = pgText(ev.Service)
	x.class, _ = pgText(ev.Class)
	x.source, _ = pgText(ev.Source)
	x.peer, _ = pgText(ev.Peer)
	var changed bool
	x.message, changed = pgText(ev.Message)
	// Copies go into the arena (the driver may reuse the event's bytes);
	// the slices are taken by offset once this row's parts are in.
	start := len(r.arena)
	r.arena = append(r.arena, ev.Raw...)
	rawEnd := len(r.arena)
	if changed {
		r.arena = append(r.arena, ev.Message...)
	}
	msgEnd := len(r.arena)
	r.arena = fieldsJSON(r.arena, ev.Fields)
	end := len(r.arena)
	r.list = append(r.list, x)
	// When the arena grows into a new array, earlier rows keep pointing
	// into the old one, which stays valid and is never written again.
	last := &r.list[len(r.list)-1]
	if rawEnd > start {
		last.raw = r.arena[start:rawEnd:rawEnd]
	}
	if msgEnd > rawEnd {
		last.messageBytes = r.arena[rawEnd:msgEnd:msgEnd]
	}
	last.fields = r.arena[msgEnd:end:end]
}

// Next, Values and Err make rows a pgx.CopyFromSource. The values slice
// is reused: pgx encodes each row before asking for the next.
func (r *rows) Next() bool {
	if r.next >= r.end {
		return false
	}
	r.next++
	return true
}

func (r *rows) Values() ([]any, error) {
	x := &r.list[r.next-1]
	if r.vals == nil {
		r.vals = make([]any, len(stagingColumns))
	}
	v := r.vals
	v[0] = int32(r.next - 1)
	v[1] = x.id
	v[2] = timestamp(x.time)
	v[3] = timestamp(x.received)
	v[4], v[5], v[6] = x.host, x.service, x.class
	v[7] = x.certainty
	v[8], v[9], v[10] = x.source, x.peer, x.message
	v[11] = bytesOrNull(x.messageBytes)
	v[12] = int64(x.targetMask) // the mask's 64 bits, as bigint's
	v[13] = bytesOrNull(x.raw)
	v[14] = x.fields // []byte is taken as JSON text as it is
	return v, nil
}

func (r *rows) Err() error { return nil }

// timestamp is NULL for an unknown (zero) time.
func timestamp(ns int64) any {
	if ns == 0 {
		return nil
	}
	return time.Unix(0, ns).UTC()
}

func bytesOrNull(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// pgText returns s as PostgreSQL text can hold it: NUL and each byte of
// invalid UTF-8 replaced by U+FFFD. It reports whether anything changed.
func pgText(s string) (string, bool) {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s, false
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		c := s[i]
		if c == 0 {
			b.WriteRune(utf8.RuneError)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b.WriteByte(c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String(), true
}

// noNUL rewrites every \u0000 escape of a JSON text into \ufffd in place:
// jsonb refuses \u0000. Outside strings JSON has no backslash, and
// skipping the character after each backslash keeps an escaped backslash
// followed by the letters u0000 as it is.
func noNUL(b []byte) {
	for i := 0; i < len(b); i++ {
		j := bytes.IndexByte(b[i:], '\\')
		if j < 0 {
			return
		}
		i += j
		if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
			copy(b[i+2:i+6], "fffd")
		}
		i++ // the escaped character
	}
}
