// Package stdout is the stdout sink provider, for trying herald out: it
// writes events to the process's standard output (or standard error) in any
// of the file provider's formats. A transaction is written in one write at
// End, the commit. The header is written before the first record, the
// footer at Close (a graceful stop); nothing is ever reopened.
package stdout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/format"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

const fieldStream = "stream"

// Options are the keys of a sink of type stdout.
type Options struct {
	// Stream is where to write: stdout or stderr. Default stdout.
	Stream string `yaml:"stream"`
	// Format of each record, as for the file sink: json, csv, html, xml,
	// kv or template. Default json.
	Format string `yaml:"format"`
	// Fields is the field set, as for the file sink: envelope keys and
	// field keys in order, "@" for every field not named, "@n" for those
	// from the n-th on. Empty (the default) prints the envelope and every
	// field (json: the plain JSON form).
	Fields []string `yaml:"fields"`
	// Template is the text of each record when Format is template, with
	// %(name) placeholders and %% for a percent sign, as for the file sink.
	// Default empty; required with template.
	Template string `yaml:"template"`
	// Header writes the format's header before the first record and its
	// footer at a graceful stop (csv header line, html table, xml root
	// element). Default true.
	Header bool `yaml:"header"`
	// LaunchMarker writes a marker record before the first event, saying
	// that herald started (sink name, time, process id). Default false.
	LaunchMarker bool `yaml:"launch_marker"`
}

// DefaultOptions returns the defaults a config's keys override.
func DefaultOptions() *Options {
	return &Options{Stream: "stdout", Format: format.JSON, Header: true}
}

func (o *Options) spec() format.Spec {
	return format.Spec{Format: o.Format, Fields: o.Fields, Template: o.Template, Header: o.Header}
}

// Validate reports bad option values; config.Load calls it. It compiles
// the format, so a bad field set or template is a config error.
func (o *Options) Validate() []config.FieldError {
	var errs []config.FieldError
	if o.Stream != "stdout" && o.Stream != "stderr" {
		errs = append(errs, config.FieldError{Field: fieldStream, Reason: fmt.Sprintf("want stdout or stderr, got %q", o.Stream)})
	}
	if _, err := format.Compile(o.spec()); err != nil {
		fe := config.FieldError{Field: "format", Reason: err.Error()}
		if se := (*format.SpecError)(nil); errors.As(err, &se) {
			fe = config.FieldError{Field: se.Key, Reason: se.Reason}
		}
		errs = append(errs, fe)
	}
	return errs
}

// Register adds the stdout provider to r.
func Register(r *sink.Registry) {
	r.MustAdd("stdout", sink.Kind{
		Options: func() any { return DefaultOptions() },
		New: func(env sink.Env, o any) (sink.Provider, error) {
			opts := *o.(*Options)
			out := os.Stdout
			if opts.Stream == "stderr" {
				out = os.Stderr
			}
			w, err := NewTo(opts, out)
			if err != nil {
				return nil, err
			}
			w.name = env.Name
			return w, nil
		},
	})
}

// Writer is the stdout provider.
type Writer struct {
	opts    Options
	name    string
	out     io.Writer
	format  *format.Formatter
	started bool // the header is written
	marked  bool
	events  int
	buf     []byte
}

// NewTo returns a Writer writing to out (the process's stdout or stderr
// in herald; any writer in a test or another program). It fails only on
// options Validate rejects.
func NewTo(opts Options, out io.Writer) (*Writer, error) {
	fm, err := format.Compile(opts.spec())
	if err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	return &Writer{opts: opts, name: opts.Stream, out: out, format: fm}, nil
}

// Begin starts an empty transaction.
func (w *Writer) Begin(ctx context.Context) error {
	w.buf, w.events = w.buf[:0], 0
	return nil
}

// Do serializes ev into the transaction's buffer.
func (w *Writer) Do(ctx context.Context, ev *schemas.Event) (sink.Commit, error) {
	if w.events == 0 {
		if !w.started {
			w.buf = append(w.buf, w.format.Header()...)
		}
		if w.opts.LaunchMarker && !w.marked {
			w.buf = w.format.AppendMarker(w.buf, fmt.Sprintf("herald sink %s started at %s, pid %d",
				w.name, time.Now().UTC().Format(time.RFC3339Nano), os.Getpid()))
		}
	}
	w.buf = w.format.Append(w.buf, ev)
	w.events++
	return sink.Deferred, nil
}

// End writes the transaction in one write: the commit. A write error (a
// closed pipe, a full disk behind a redirection) is retryable.
func (w *Writer) End(ctx context.Context) error {
	if w.events == 0 {
		return nil
	}
	if _, err := w.out.Write(w.buf); err != nil {
		return fmt.Errorf("write %s: %w", w.opts.Stream, err)
	}
	w.started, w.marked = true, true
	if cap(w.buf) > 4<<20 {
		w.buf = nil
	}
	return nil
}

// Close writes the footer when a header was written. The stream itself is
// not closed. It is idempotent.
func (w *Writer) Close(ctx context.Context) error {
	if !w.started {
		return nil
	}
	w.started = false
	if footer := w.format.Footer(); len(footer) > 0 {
		if _, err := w.out.Write(footer); err != nil {
			return fmt.Errorf("write the footer to %s: %w", w.opts.Stream, err)
		}
	}
	return nil
}

var _ sink.Provider = (*Writer)(nil)
