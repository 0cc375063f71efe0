// Package postgres is the PostgreSQL sink provider: each transaction of the
// sink is one SQL transaction that adds its events to a table, one row per
// event, idempotently on the event id.
//
// Begin connects when there is no connection (lazily: a server that is
// down only suspends the sink) and starts the SQL transaction. Do turns the
// event into a row in memory and answers Deferred. End copies the rows
// (COPY, binary) into a temporary table of the session, moves them into
// the table with INSERT ... SELECT ... ON CONFLICT (id) DO NOTHING, and
// commits. An event redelivered after a crash, or after a commit whose
// answer was lost, is therefore never stored twice.
//
// Any failure of Begin or End is retryable: the connection is dropped and
// the next Begin connects again, so a server restart, a cut connection or
// a failover only suspends the sink for a while. The staging table lives
// in the session, so the sink needs a session of its own: not a pooler in
// transaction mode (PgBouncer's pool_mode=transaction).
//
// # Rows PostgreSQL refuses
//
// An error of SQLSTATE class 22 (data exception: a value too long for a
// varchar(n), out of range, not in the database's encoding) or 23
// (integrity violation: a CHECK, NOT NULL, foreign key or unique index
// other than id's) is about the rows, not the server. End then rolls the
// batch back and writes it again in halves, each in a savepoint, halving
// what is refused down to single rows: those events are dead-lettered
// with the code postgres_data_exception or postgres_integrity_violation,
// the rest of the batch is committed and the sink stays up. A batch of
// one event costs nothing more; k refused rows in a batch of n cost about
// 2k·log2(n) more statements (BenchmarkRefusedRows, a local server on a
// quiet machine: 0.2 s for 100 refused of 1000, 0.4 s when all are). After the table is fixed, `herald dlq
// redrive` writes them. A table that refuses every row (a NOT NULL column
// herald does not fill) dead-letters every event the same way.
//
// # The table
//
// With create_table (the default) the table is created at connect when it
// is missing:
//
//	id            text PRIMARY KEY   the event id
//	seq           bigint identity    the order rows were stored in
//	time          timestamptz        the event's own time; NULL when it has none
//	received      timestamptz        when herald accepted the record
//	host, service, class, source, peer, message   text
//	certainty     real
//	message_bytes bytea              the exact message, when text could not hold it
//	target_mask   bigint             the mask's 64 bits (the top bit makes it negative)
//	raw           bytea              the bytes received; NULL when there were none
//	fields        jsonb              the fields as one object, valued as in the JSON format
//
// Timestamps keep microseconds, PostgreSQL's precision. jsonb keeps one
// value per key (the last) and orders keys its own way. No other index is
// made: add what your queries need.
//
// # Text that PostgreSQL cannot hold
//
// PostgreSQL text cannot contain the NUL character, and a UTF8 database
// refuses invalid UTF-8. Such text is stored with each invalid byte and
// each NUL replaced by U+FFFD, never refused and never retried. For the
// message nothing is lost: when its text had to be changed, its exact
// bytes are kept in message_bytes (NULL otherwise). raw always holds the
// exact bytes received. In fields the same replacement applies to keys
// and string values (their JSON cannot carry \u0000 into jsonb either).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/format"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Option keys.
const (
	fieldDSN            = "dsn"
	fieldPasswordFile   = "password_file"
	fieldPasswordEnv    = "password_env"
	fieldTable          = "table"
	fieldConnectTimeout = "connect_timeout"
	fieldWriteTimeout   = "write_timeout"
)

// Dead-letter reasons of the events this sink can never write.
const (
	// CodeNoID: the event has no id, which is what makes a redelivery
	// harmless, so it cannot be stored.
	CodeNoID = "postgres_no_id"
	// CodeDataException: PostgreSQL refused the row with an error of
	// SQLSTATE class 22 (a value its column cannot take).
	CodeDataException = "postgres_data_exception"
	// CodeIntegrityViolation: PostgreSQL refused the row with an error of
	// SQLSTATE class 23 (a constraint of the table).
	CodeIntegrityViolation = "postgres_integrity_violation"
)

// Options are the keys of a sink of type postgres.
type Options struct {
	// DSN says where to connect, as a URL
	// (postgres://herald@db1:5432/logs?sslmode=verify-full) or as libpq
	// key=value pairs (host=db1 user=herald dbname=logs). What it leaves
	// out comes from the PG* environment variables (PGHOST, PGUSER,
	// PGPASSWORD, PGSSLMODE ...) and ~/.pgpass, as with psql. Several
	// hosts (host=db1,db2) are tried in order. Files it names
	// (sslrootcert, sslcert, sslkey) are read when the config is loaded,
	// relative to herald's working folder: give absolute paths. Better not
	// to put a password here: see password_file and password_env.
	// Required.
	DSN string `yaml:"dsn"`
	// PasswordFile is a file whose first line is the password, relative to
	// the config file's folder. It is read at every connect, so a rotated
	// password is picked up at the next reconnect. It overrides a password
	// in dsn. Default "" (none). Not together with password_env.
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names an environment variable holding the password (for
	// when several postgres sinks need different ones and PGPASSWORD cannot
	// serve them all). It overrides a password in dsn. Default "" (none).
	PasswordEnv string `yaml:"password_env"`
	// Table is where events go, as name or schema.name (unquoted; each
	// part is quoted as an identifier). Default herald_events.
	Table string `yaml:"table"`
	// CreateTable creates the table at connect if it does not exist, with
	// the columns id (text primary key), seq (identity: the order rows
	// were stored in), time and received (timestamptz), host, service,
	// class, source, peer and message (text), certainty (real),
	// message_bytes (bytea: the exact message, only when text could not
	// hold it: NUL or invalid UTF-8, replaced by U+FFFD in message),
	// target_mask (bigint), raw (bytea) and fields (jsonb). Set it false
	// when the table is managed elsewhere; it must then have these
	// columns (seq aside) and a unique index on id. Default true.
	CreateTable bool `yaml:"create_table"`
	// ConnectTimeout bounds connecting (every host of dsn, tried in turn)
	// together with herald's set-up of the session (creating the table).
	// Default 10s.
	ConnectTimeout config.Duration `yaml:"connect_timeout"`
	// WriteTimeout bounds each SQL round of a transaction (begin; copy,
	// insert and commit) when the sink's caller set no deadline of its
	// own. Default 30s.
	WriteTimeout config.Duration `yaml:"write_timeout"`
}

// DefaultOptions returns the defaults a config's keys override.
func DefaultOptions() *Options {
	return &Options{
		Table:          "herald_events",
		CreateTable:    true,
		ConnectTimeout: config.Duration(10 * time.Second),
		WriteTimeout:   config.Duration(30 * time.Second),
	}
}

// Validate reports bad option values; config.Load calls it.
func (o *Options) Validate() []config.FieldError {
	var errs []config.FieldError
	if o.DSN == "" {
		errs = append(errs, config.FieldError{Field: fieldDSN, Reason: "required: where to connect, e.g. postgres://herald@db1/logs"})
	} else if _, err := pgx.ParseConfig(o.DSN); err != nil {
		errs = append(errs, config.FieldError{Field: fieldDSN, Reason: dsnReason(err)})
	}
	if o.PasswordFile != "" && o.PasswordEnv != "" {
		errs = append(errs, config.FieldError{Field: fieldPasswordEnv, Reason: "give password_file or password_env, not both"})
	}
	if _, err := tableName(o.Table); err != nil {
		errs = append(errs, config.FieldError{Field: fieldTable, Reason: err.Error()})
	}
	if o.ConnectTimeout <= 0 {
		errs = append(errs, config.FieldError{Field: fieldConnectTimeout, Reason: "must be positive"})
	}
	if o.WriteTimeout <= 0 {
		errs = append(errs, config.FieldError{Field: fieldWriteTimeout, Reason: "must be positive"})
	}
	return errs
}

// dsnReason says what is wrong with a DSN without repeating it: the
// parser's message quotes the DSN, which may hold a password it fails to
// mask. A file the DSN names (sslrootcert ...) is read while parsing.
func dsnReason(err error) string {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return fmt.Sprintf("a file it names: %s %s: %v", pe.Op, pe.Path, pe.Err)
	}
	return "cannot parse it as a URL or as libpq key=value pairs"
}

// tableName splits name or schema.name into identifier parts.
func tableName(s string) (pgx.Identifier, error) {
	parts := strings.Split(s, ".")
	if s == "" || len(parts) > 2 {
		return nil, fmt.Errorf("want name or schema.name, got %q", s)
	}
	for _, p := range parts {
		if p == "" || strings.IndexByte(p, 0) >= 0 || !utf8.ValidString(p) {
			return nil, fmt.Errorf("want name or schema.name, got %q", s)
		}
	}
	return pgx.Identifier(parts), nil
}

// Register adds the postgres provider to r.
func Register(r *sink.Registry) {
	r.MustAdd("postgres", sink.Kind{
		Options: func() any { return DefaultOptions() },
		New: func(env sink.Env, o any) (sink.Provider, error) {
			opts := *o.(*Options)
			if opts.PasswordFile != "" {
				opts.PasswordFile = env.Config.Abs(opts.PasswordFile)
			}
			return New(opts, env.Log)
		},
	})
}

// Writer is the postgres provider.
type Writer struct {
	opts  Options
	cfg   *pgx.ConnConfig
	table pgx.Identifier
	log   *slog.Logger

	conn   *pgx.Conn
	tx     pgx.Tx // the open SQL transaction, between Begin and End
	rows   rows
	events int // Do calls of the transaction
	closed bool
}

// New returns a Writer; it connects at the first Begin. It fails when the
// DSN cannot be parsed or the password file cannot be read, so a wrong
// config stops herald at start rather than suspending the sink for ever.
func New(opts Options, log *slog.Logger) (*Writer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgx.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", fieldDSN, dsnReason(err))
	}
	table, err := tableName(opts.Table)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fieldTable, err)
	}
	w := &Writer{opts: opts, cfg: cfg, table: table, log: log}
	if _, err := w.password(); err != nil {
		return nil, err
	}
	return w, nil
}

// password returns the password password_file or password_env give; ""
// when neither is set (then the DSN, PGPASSWORD or ~/.pgpass give it).
func (w *Writer) password() (string, error) {
	switch {
	case w.opts.PasswordFile != "":
		data, err := os.ReadFile(w.opts.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("%s: %w", fieldPasswordFile, err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		return strings.TrimSuffix(line, "\r"), nil
	case w.opts.PasswordEnv != "":
		v, ok := os.LookupEnv(w.opts.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("%s: environment variable %s is not set", fieldPasswordEnv, w.opts.PasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

// Begin connects if there is no connection and starts the SQL
// transaction.
func (w *Writer) Begin(ctx context.Context) error {
	if w.closed {
		return errors.New("begin on a closed postgres sink")
	}
	w.rows.reset()
	w.events = 0
	if w.tx != nil {
		// The previous transaction was given up without End: undo it on
		// a fresh connection rather than trust this one's state.
		w.dropConn(ctx)
	}
	if w.conn == nil {
		if err := w.connect(ctx); err != nil {
			return err
		}
	}
	ctx, cancel := w.writeContext(ctx)
	defer cancel()
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		w.dropConn(ctx)
		return fmt.Errorf("begin transaction: %w", err)
	}
	w.tx = tx
	return nil
}

// Do turns ev into a row of the transaction; it is written at End.
func (w *Writer) Do(ctx context.Context, ev *schemas.Event) (sink.Commit, error) {
	i := w.events
	w.events++
	if ev.Id == "" {
		return sink.Deferred, sink.Permanent(CodeNoID, errors.New("event has no id"))
	}
	w.rows.add(ev, i)
	return sink.Deferred, nil
}

// End writes the transaction's rows and commits. When PostgreSQL refuses
// rows for their data, it commits the others and answers a
// *sink.RefusedError naming the refused events.
func (w *Writer) End(ctx context.Context) error {
	if w.tx == nil {
		return errors.New("end without begin")
	}
	ctx, cancel := w.writeContext(ctx)
	defer cancel()
	tx := w.tx
	w.tx = nil
	if copied, err := w.write(ctx, tx, 0, w.rows.len(), false); err != nil {
		if _, refused := refusal(err); refused {
			if err := tx.Rollback(ctx); err != nil {
				w.dropConn(ctx)
				return fmt.Errorf("roll back the refused batch: %w", err)
			}
			return w.isolate(ctx, err, copied)
		}
		w.dropConn(ctx)
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		if _, refused := refusal(err); refused {
			// A deferred constraint refused the rows: the server rolled
			// the transaction back.
			return w.isolate(ctx, fmt.Errorf("commit: %w", err), true)
		}
		// The commit may have happened with its answer lost: the
		// redelivery finds those rows and inserts nothing twice.
		w.dropConn(ctx)
		return fmt.Errorf("commit: %w", err)
	}
	w.rows.shrink()
	return nil
}

// write copies rows [lo, hi) into the staging table and moves them into
// the table; ranged moves only those rows, when the staging table may
// hold others of the transaction. copied says the copy went through.
func (w *Writer) write(ctx context.Context, tx pgx.Tx, lo, hi int, ranged bool) (copied bool, err error) {
	if lo == hi {
		return true, nil
	}
	if err := w.stage(ctx, tx, lo, hi); err != nil {
		return false, err
	}
	sql := w.insertSQL(-1, -1)
	if ranged {
		sql = w.insertSQL(lo, hi)
	}
	if _, err := tx.Exec(ctx, sql); err != nil {
		return true, fmt.Errorf("insert %d rows into %s: %w", hi-lo, w.table.Sanitize(), err)
	}
	return true, nil
}

// stage copies rows [lo, hi) into the staging table.
func (w *Writer) stage(ctx context.Context, tx pgx.Tx, lo, hi int) error {
	w.rows.rewind(lo, hi)
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{stagingTable}, stagingColumns, &w.rows); err != nil {
		return fmt.Errorf("copy %d rows into %s: %w", hi-lo, stagingTable, err)
	}
	return nil
}

// isolate finishes a transaction whose rows PostgreSQL refused as a whole
// for their data (first is why) and which is rolled back: the rows are
// written again in a new transaction, in halves, down to the single rows
// refused. The others are committed; the refused ones are the answer.
// When the rows could be copied into the staging table (the table
// refused them, not the copy), they are copied once and only the moves
// into the table are tried in halves.
func (w *Writer) isolate(ctx context.Context, first error, copied bool) error {
	refused := map[int]error{}
	switch n := w.rows.len(); n {
	case 0:
		w.dropConn(ctx)
		return first // not about rows: there were none
	case 1:
		w.refuse(refused, 0, first)
	default:
		tx, err := w.conn.Begin(ctx)
		if err != nil {
			w.dropConn(ctx)
			return fmt.Errorf("begin transaction: %w", err)
		}
		// Deferred constraints are checked per statement here, so the
		// savepoints catch what they refuse.
		if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL IMMEDIATE"); err != nil {
			w.dropConn(ctx)
			return fmt.Errorf("set constraints immediate: %w", err)
		}
		if copied {
			// It went through before: an error now is no refusal.
			if err := w.stage(ctx, tx, 0, n); err != nil {
				w.dropConn(ctx)
				return err
			}
		}
		if err := w.split(ctx, tx, 0, n, copied, refused); err != nil {
			w.dropConn(ctx)
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			w.dropConn(ctx)
			return fmt.Errorf("commit: %w", err)
		}
		w.log.Info("postgres refused rows of a batch; the rest is committed", "table", w.table.Sanitize(),
			"refused", len(refused), "rows", n)
	}
	w.rows.shrink()
	if len(refused) == 0 {
		return nil // the rows refused together were taken one half at a time
	}
	return &sink.RefusedError{Events: refused}
}

// split writes each half of rows [lo, hi), which were refused together,
// on its own; a half refused in turn is split again, down to single rows,
// which go into refused.
func (w *Writer) split(ctx context.Context, tx pgx.Tx, lo, hi int, staged bool, refused map[int]error) error {
	mid := lo + (hi-lo)/2
	for _, half := range [][2]int{{lo, mid}, {mid, hi}} {
		a, b := half[0], half[1]
		if a == b {
			continue
		}
		why, err := w.try(ctx, tx, a, b, staged)
		switch {
		case err != nil:
			return err
		case why == nil:
		case b-a == 1:
			w.refuse(refused, a, why)
		default:
			if err := w.split(ctx, tx, a, b, staged, refused); err != nil {
				return err
			}
		}
	}
	return nil
}

// try writes rows [lo, hi) inside a savepoint: moves them into the table
// when every row is staged, copies and moves them otherwise. It answers
// PostgreSQL's refusal of them (the savepoint undone), or an error that
// fails the transaction.
func (w *Writer) try(ctx context.Context, tx pgx.Tx, lo, hi int, staged bool) (refused, err error) {
	var werr error
	if staged {
		// One round trip: a failed statement skips the ones after it.
		if _, werr = tx.Exec(ctx, "SAVEPOINT herald_rows; "+w.insertSQL(lo, hi)+"; RELEASE SAVEPOINT herald_rows"); werr == nil {
			return nil, nil
		}
		werr = fmt.Errorf("insert %d rows into %s: %w", hi-lo, w.table.Sanitize(), werr)
	} else {
		if _, err := tx.Exec(ctx, "SAVEPOINT herald_rows"); err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
		if _, werr = w.write(ctx, tx, lo, hi, true); werr == nil {
			if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT herald_rows"); err != nil {
				return nil, fmt.Errorf("release savepoint: %w", err)
			}
			return nil, nil
		}
	}
	if _, ok := refusal(werr); !ok {
		return nil, werr
	}
	if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT herald_rows; RELEASE SAVEPOINT herald_rows"); err != nil {
		return nil, fmt.Errorf("roll back to savepoint: %w", err)
	}
	return werr, nil
}

// refuse records row i's event as refused for why, a refusal.
func (w *Writer) refuse(refused map[int]error, i int, why error) {
	x := &w.rows.list[i]
	code, _ := refusal(why)
	pe, _ := errors.AsType[*pgconn.PgError](why)
	refused[x.event] = sink.Permanent(code, &rowError{pg: pe, table: w.table.Sanitize(), id: x.id})
}

// rowError is PostgreSQL's refusal of one event's row. What PostgreSQL
// said comes first: dead-letter listings cut long details.
type rowError struct {
	pg        *pgconn.PgError
	table, id string
}

func (e *rowError) Error() string {
	return fmt.Sprintf("%s (SQLSTATE %s, table %s, event %s)", e.pg.Message, e.pg.Code, e.table, e.id)
}

func (e *rowError) Unwrap() error { return e.pg }

// refusal reports whether err is PostgreSQL refusing data (SQLSTATE class
// 22 or 23) rather than failing as a server, and the reason code.
func refusal(err error) (string, bool) {
	pe, ok := errors.AsType[*pgconn.PgError](err)
	if !ok {
		return "", false
	}
	switch {
	case strings.HasPrefix(pe.Code, "22"):
		return CodeDataException, true
	case strings.HasPrefix(pe.Code, "23"):
		return CodeIntegrityViolation, true
	}
	return "", false
}

// Close closes the connection, which ends an open transaction without
// committing it. It is idempotent; ctx bounds the goodbye to the server.
func (w *Writer) Close(ctx context.Context) error {
	w.closed = true
	w.tx = nil
	w.rows = rows{}
	if w.conn == nil {
		return nil
	}
	c := w.conn
	w.conn = nil
	if err := c.Close(ctx); err != nil {
		// The socket is closed either way; say why the goodbye failed.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("close connection: %w", err)
	}
	return nil
}

// connect opens the connection and prepares it: the table (when asked
// for) and the session's staging table. It is bounded by ctx and by
// connect_timeout.
func (w *Writer) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, w.opts.ConnectTimeout.D())
	defer cancel()
	cfg := w.cfg.Copy()
	cfg.ConnectTimeout = w.opts.ConnectTimeout.D()
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "herald"
	}
	// herald's text is UTF-8 whatever the database's encoding: the server
	// converts it, or refuses what the encoding cannot hold, rather than
	// store UTF-8 bytes as if they were its own encoding.
	cfg.RuntimeParams["client_encoding"] = "UTF8"
	if w.opts.PasswordFile != "" || w.opts.PasswordEnv != "" {
		pw, err := w.password()
		if err != nil {
			return err
		}
		cfg.Password = pw // fallback hosts share it
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if w.opts.CreateTable {
		if _, err := conn.Exec(ctx, createTableSQL(w.table)); err != nil {
			_ = conn.Close(ctx)
			return fmt.Errorf("create table %s: %w", w.table.Sanitize(), err)
		}
	}
	if _, err := conn.Exec(ctx, createStagingSQL); err != nil {
		_ = conn.Close(ctx)
		return fmt.Errorf("create %s: %w", stagingTable, err)
	}
	w.log.Info("postgres sink connected", "host", cfg.Host, "port", cfg.Port, "database", cfg.Database, "table", w.table.Sanitize())
	w.conn = conn
	return nil
}

// dropConn forgets the connection after a failure; the next Begin
// connects again. Closing it rolls back what it had begun.
func (w *Writer) dropConn(ctx context.Context) {
	w.tx = nil
	if w.conn == nil {
		return
	}
	c := w.conn
	w.conn = nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// writeContext bounds a write with write_timeout when ctx has no deadline.
func (w *Writer) writeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, w.opts.WriteTimeout.D())
}

var _ sink.Provider = (*Writer)(nil)

// fieldsJSON appends ev's fields as a JSON object jsonb accepts.
func fieldsJSON(b []byte, fields []*schemas.Field) []byte {
	start := len(b)
	b = format.AppendFieldsJSON(b, fields)
	noNUL(b[start:])
	return b
}
