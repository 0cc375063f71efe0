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

// CodeNoID is the dead-letter reason of an event without an id: the id is
// what makes a redelivery harmless, so such an event cannot be stored.
const CodeNoID = "postgres_no_id"

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
	if ev.Id == "" {
		return sink.Deferred, sink.Permanent(CodeNoID, errors.New("event has no id"))
	}
	w.rows.add(ev)
	return sink.Deferred, nil
}

// End writes the transaction's rows and commits.
func (w *Writer) End(ctx context.Context) error {
	if w.tx == nil {
		return errors.New("end without begin")
	}
	ctx, cancel := w.writeContext(ctx)
	defer cancel()
	tx := w.tx
	w.tx = nil
	if w.rows.len() > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{stagingTable}, stagingColumns, &w.rows); err != nil {
			w.dropConn(ctx)
			return fmt.Errorf("copy %d rows into %s: %w", w.rows.len(), stagingTable, err)
		}
		if _, err := tx.Exec(ctx, w.insertSQL()); err != nil {
			w.dropConn(ctx)
			return fmt.Errorf("insert %d rows into %s: %w", w.rows.len(), w.table.Sanitize(), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		// The commit may have happened with its answer lost: the
		// redelivery finds those rows and inserts nothing twice.
		w.dropConn(ctx)
		return fmt.Errorf("commit: %w", err)
	}
	w.rows.shrink()
	return nil
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
