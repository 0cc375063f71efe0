// Package file is the file sink provider: it appends events to a file (or
// stdout/stderr), one serialized event per line. A transaction's lines are
// buffered and written together at End, which is the commit.
package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/format"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

// Option keys.
const (
	fieldPath   = "path"
	fieldFormat = "format"
)

// Options are the keys of a sink of type file.
type Options struct {
	// Path of the file, relative to the config file's folder; "stdout" and
	// "stderr" name the streams. Required.
	Path string `yaml:"path"`
	// Format of each line: json (one JSON object per line). Default json.
	Format string `yaml:"format"`
	// Fsync makes every commit call fsync, so a committed event survives a
	// power cut, not only a crash of herald. Default false.
	Fsync bool `yaml:"fsync"`
	// Mode is the permission of a file herald creates. Default 0640.
	Mode uint32 `yaml:"mode"`
}

// DefaultOptions returns the defaults a config's keys override.
func DefaultOptions() *Options { return &Options{Format: "json", Mode: 0o640} }

// Validate reports bad option values; config.Load calls it.
func (o *Options) Validate() []config.FieldError {
	var errs []config.FieldError
	if o.Path == "" {
		errs = append(errs, config.FieldError{Field: fieldPath, Reason: "required: the file to write"})
	}
	if o.Format != "json" {
		errs = append(errs, config.FieldError{Field: fieldFormat, Reason: fmt.Sprintf("want json, got %q", o.Format)})
	}
	return errs
}

// Register adds the file provider to r.
func Register(r *sink.Registry) {
	r.MustAdd("file", sink.Kind{
		Options: func() any { return DefaultOptions() },
		New: func(env sink.Env, o any) (sink.Provider, error) {
			opts := *o.(*Options)
			opts.Path = env.Config.Abs(opts.Path)
			return New(opts), nil
		},
	})
}

// Writer is the file provider.
type Writer struct {
	opts Options
	f    *os.File
	info os.FileInfo // of the open file, to notice when the path moves on
	buf  []byte
}

// New returns a Writer; the file is opened at the first Begin.
func New(opts Options) *Writer { return &Writer{opts: opts} }

// Begin opens the file if needed and starts an empty transaction. When the
// path no longer names the open file (rotated away by logrotate, deleted,
// its folder replaced) the file is opened again, so writes never go on into
// a file nobody reads.
func (w *Writer) Begin(ctx context.Context) error {
	w.buf = w.buf[:0]
	if w.f != nil && w.info != nil {
		if fi, err := os.Stat(w.opts.Path); err != nil || !os.SameFile(fi, w.info) {
			_ = w.closeFile()
		}
	}
	if w.f != nil {
		return nil
	}
	switch w.opts.Path {
	case "stdout":
		w.f = os.Stdout
		return nil
	case "stderr":
		w.f = os.Stderr
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(w.opts.Path), 0o750); err != nil {
		return fmt.Errorf("create folder of %s: %w", w.opts.Path, err)
	}
	f, err := os.OpenFile(w.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, os.FileMode(w.opts.Mode))
	if err != nil {
		return fmt.Errorf("open %s: %w", w.opts.Path, err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("stat %s: %w", w.opts.Path, err)
	}
	w.f, w.info = f, info
	return nil
}

// Do serializes ev into the transaction's buffer.
func (w *Writer) Do(ctx context.Context, ev *schemas.Event) (sink.Commit, error) {
	w.buf = format.AppendJSON(w.buf, ev)
	return sink.Deferred, nil
}

// End writes the buffered lines in one write and, with fsync, syncs them.
func (w *Writer) End(ctx context.Context) error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.f.Write(w.buf); err != nil {
		// A short write may have left part of a line: start the next
		// transaction on a fresh handle.
		w.closeFile()
		return fmt.Errorf("write %s: %w", w.opts.Path, err)
	}
	if w.opts.Fsync && w.f != os.Stdout && w.f != os.Stderr {
		if err := w.f.Sync(); err != nil {
			w.closeFile()
			return fmt.Errorf("fsync %s: %w", w.opts.Path, err)
		}
	}
	if cap(w.buf) > 4<<20 { // do not keep a huge buffer after one big batch
		w.buf = nil
	}
	return nil
}

func (w *Writer) closeFile() error {
	f := w.f
	w.f, w.info = nil, nil
	if f == nil || f == os.Stdout || f == os.Stderr {
		return nil
	}
	return f.Close()
}

// Close closes the file. It is idempotent.
func (w *Writer) Close(ctx context.Context) error {
	if err := w.closeFile(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close %s: %w", w.opts.Path, err)
	}
	return nil
}

var _ sink.Provider = (*Writer)(nil)
