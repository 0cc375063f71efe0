// Package file is the file sink provider (ELAPI's file provider): it
// appends events to a file, or to stdout/stderr, in one of the formats of
// package format. A transaction's records are buffered and written together
// at End, which is the commit.
//
// Headers and footers. A file that is empty when herald opens it (new, or
// emptied by logrotate's copytruncate) gets the format's header first; a
// non-empty one is appended to without a second header. The footer (the
// closing tags of html and xml) is written when herald closes the file:
// at Close, when the path moved on (logrotate renamed it), and on Reopen.
// When herald opens a file that ends with its footer, it cuts the footer
// off and appends after the last record, so the closing tags move to the
// end again at the next close. Between closes (and after a kill -9) the
// file is a prefix of a complete document: every committed record is whole,
// only the closing tags are missing. With keep_open false every
// transaction opens, writes and closes, so the file is complete after
// every commit.
package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

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
	// Format of each record: json (one JSON object per line), csv (RFC
	// 4180, a header line), html (a table), xml (an event element per line
	// inside an events root element), kv (key=value pairs, logfmt style) or
	// template (the free format of Template). Default json.
	Format string `yaml:"format"`
	// Fields is ELAPI's field set: which items to print, in which order.
	// An item is an envelope key (id, time, received, host, service, class,
	// certainty, source, peer, message, raw_b64) or an event field's key (a
	// field whose key is an envelope key is named _key, e.g. _host). "@" is
	// every field not named elsewhere in the set, in event order; "@n" those
	// remaining fields from the n-th on (@3 skips the first two). In csv and
	// html "@" is one column of key=value pairs. Empty (the default) means
	// id, time, received, host, service, class, certainty, source, peer,
	// message, @ — and for json the plain JSON form.
	Fields []string `yaml:"fields"`
	// Template is the text of each record when Format is template: %(name)
	// is replaced by the item name (anything Fields may hold; %(@) writes the
	// remaining fields as key=value pairs), %% is a percent sign, any other
	// % is an error. Control characters in values are written as \n, \t,
	// \x1b so one event stays one line. Example: "%(time) %(host)
	// %(service): %(message)". Default empty; required with template.
	Template string `yaml:"template"`
	// Header writes the format's header and footer: the csv header line,
	// the html document and table head and foot, the xml declaration and
	// root element (json, kv and template have none). Default true.
	Header bool `yaml:"header"`
	// LaunchMarker writes a marker record when the sink first opens its
	// file, saying that herald started writing (the sink's name, the time,
	// the process id), in a form of the format: a {"marker":...} line in
	// json, a marker= line in kv, a "# " comment line in csv, a comment in
	// xml, a table row in html, a plain line in template. Default false.
	LaunchMarker bool `yaml:"launch_marker"`
	// KeepOpen keeps the file open between transactions; a commit is then
	// one write (and, with Fsync, one fsync). False opens, writes and closes
	// the file for every transaction, footer included, so the file is
	// complete after every commit and no handle is held. Default true.
	KeepOpen bool `yaml:"keep_open"`
	// Fsync makes every commit call fsync, so a committed event survives a
	// power cut, not only a crash of herald. Default false.
	Fsync bool `yaml:"fsync"`
	// Mode is the permission of a file herald creates. Default 0640.
	Mode uint32 `yaml:"mode"`
}

// DefaultOptions returns the defaults a config's keys override.
func DefaultOptions() *Options {
	return &Options{Format: format.JSON, Header: true, KeepOpen: true, Mode: 0o640}
}

// Spec is the format part of the options.
func (o *Options) Spec() format.Spec {
	return format.Spec{Format: o.Format, Fields: o.Fields, Template: o.Template, Header: o.Header}
}

// Validate reports bad option values; config.Load calls it. It compiles
// the format, so a bad field set or template is a config error.
func (o *Options) Validate() []config.FieldError {
	var errs []config.FieldError
	if o.Path == "" {
		errs = append(errs, config.FieldError{Field: fieldPath, Reason: "required: the file to write"})
	}
	if _, err := format.Compile(o.Spec()); err != nil {
		errs = append(errs, specFieldError(err))
	}
	return errs
}

// specFieldError turns an error of format.Compile into the config error
// of the key at fault.
func specFieldError(err error) config.FieldError {
	var se *format.SpecError
	if errors.As(err, &se) {
		return config.FieldError{Field: se.Key, Reason: se.Reason}
	}
	return config.FieldError{Field: fieldFormat, Reason: err.Error()}
}

// Register adds the file provider to r.
func Register(r *sink.Registry) {
	r.MustAdd("file", sink.Kind{
		Options: func() any { return DefaultOptions() },
		New: func(env sink.Env, o any) (sink.Provider, error) {
			opts := *o.(*Options)
			opts.Path = env.Config.Abs(opts.Path)
			w, err := New(opts)
			if err != nil {
				return nil, err
			}
			w.name = env.Name
			return w, nil
		},
	})
}

// Writer is the file provider.
type Writer struct {
	opts   Options
	name   string // the sink's name, for the launch marker
	format *format.Formatter
	header []byte
	footer []byte

	f      *os.File
	info   os.FileInfo // of the open file, to notice when the path moves on
	stream bool        // f is stdout or stderr
	// body: the open file holds a header or records, so closing it writes
	// the footer (a file left empty gets neither).
	body bool
	// streamStarted: the stream got its header; it is never reopened.
	streamStarted bool
	marked        bool // the launch marker is written
	events        int  // records in buf
	buf           []byte

	reopen atomic.Bool
}

// New returns a Writer; the file is opened at the first transaction. It
// fails only on options Validate rejects.
func New(opts Options) (*Writer, error) {
	fm, err := format.Compile(opts.Spec())
	if err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	return &Writer{opts: opts, name: "file", format: fm, header: fm.Header(), footer: fm.Footer()}, nil
}

// Reopen makes the Writer close its file and open the path again at the
// start of the next transaction, writing the footer into the old file
// first; it never interrupts a transaction. It is what logrotate's
// postrotate SIGHUP should call, and is safe to call from any goroutine at
// any time. A sink without traffic keeps the old file until its next
// event. (A path that no longer names the open file is noticed at every
// transaction anyway; Reopen is for rotations that keep the name, and for
// operators.) For stdout and stderr it does nothing.
func (w *Writer) Reopen() { w.reopen.Store(true) }

// Begin starts a transaction. With keep_open it opens the file if needed,
// first closing it when the path no longer names the open file (rotated
// away by logrotate, deleted, its folder replaced) or Reopen was called, so
// writes never go on into a file nobody reads.
func (w *Writer) Begin(ctx context.Context) error {
	w.buf, w.events = w.buf[:0], 0
	reopen := w.reopen.Swap(false)
	if !w.opts.KeepOpen {
		return nil
	}
	if w.f != nil && !w.stream {
		if reopen {
			if err := w.closeFile(true); err != nil {
				return err
			}
		} else if fi, err := os.Stat(w.opts.Path); err != nil || !os.SameFile(fi, w.info) {
			// The rotated file still gets its footer through the old handle.
			_ = w.closeFile(true)
		} else if fi.Size() == 0 {
			w.body = false // emptied under us (copytruncate): header again
		}
	}
	prefix, err := w.open()
	if err != nil {
		return err
	}
	w.buf = append(w.buf, prefix...)
	return nil
}

// open opens the file if it is not open and returns what must precede the
// transaction's records: the header when the file is empty, the launch
// marker the first time.
func (w *Writer) open() ([]byte, error) {
	if w.f == nil {
		switch w.opts.Path {
		case "stdout", "stderr":
			w.f, w.stream = os.Stdout, true
			if w.opts.Path == "stderr" {
				w.f = os.Stderr
			}
			w.body = w.streamStarted
		default:
			if err := w.openFile(); err != nil {
				return nil, err
			}
		}
	}
	var prefix []byte
	if !w.body {
		prefix = append(prefix, w.header...)
	}
	if w.opts.LaunchMarker && !w.marked {
		prefix = w.format.AppendMarker(prefix, fmt.Sprintf("herald sink %s opened %s at %s, pid %d",
			w.name, w.opts.Path, time.Now().UTC().Format(time.RFC3339Nano), os.Getpid()))
	}
	return prefix, nil
}

func (w *Writer) openFile() error {
	if err := os.MkdirAll(filepath.Dir(w.opts.Path), 0o750); err != nil {
		return fmt.Errorf("create folder of %s: %w", w.opts.Path, err)
	}
	// Read access lets open look for a footer to cut.
	f, err := os.OpenFile(w.opts.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE, os.FileMode(w.opts.Mode))
	if err != nil {
		return fmt.Errorf("open %s: %w", w.opts.Path, err)
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("stat %s: %w", w.opts.Path, err)
	}
	size := info.Size()
	if n := int64(len(w.footer)); n > 0 && size >= n {
		tail := make([]byte, n)
		if _, err := f.ReadAt(tail, size-n); err != nil && !errors.Is(err, io.EOF) {
			_ = f.Close()
			return fmt.Errorf("read the end of %s: %w", w.opts.Path, err)
		}
		if bytes.Equal(tail, w.footer) {
			// Appends go on after the last record; the footer is
			// written again when this handle is closed.
			if err := f.Truncate(size - n); err != nil {
				_ = f.Close()
				return fmt.Errorf("cut the footer of %s: %w", w.opts.Path, err)
			}
			size -= n
		}
	}
	if size, err = cutTornTail(f, size); err != nil {
		_ = f.Close()
		return fmt.Errorf("repair the end of %s: %w", w.opts.Path, err)
	}
	w.f, w.info, w.stream, w.body = f, info, false, size > 0
	return nil
}

// cutTornTail truncates a file that does not end with a newline back to
// just after its last one. Every format ends each record with a newline,
// so such a tail is part of a transaction that was never committed (the
// process died, or the disk filled, in the middle of its write): it will
// be delivered again whole, and appending after the fragment would glue the
// next record to it and lose that one.
func cutTornTail(f *os.File, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err != nil {
		return size, err
	}
	if last[0] == '\n' {
		return size, nil
	}
	buf := make([]byte, 64<<10)
	end := size
	for end > 0 {
		start := max(end-int64(len(buf)), 0)
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
			return size, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			end = start + int64(i) + 1
			break
		}
		end = start
	}
	if err := f.Truncate(end); err != nil {
		return size, err
	}
	return end, nil
}

// Do serializes ev into the transaction's buffer.
func (w *Writer) Do(ctx context.Context, ev *schemas.Event) (sink.Commit, error) {
	w.buf = w.format.Append(w.buf, ev)
	w.events++
	return sink.Deferred, nil
}

// End writes the transaction in one write and, with fsync, syncs it: the
// commit. Without keep_open it opens the file first and closes it after,
// footer included. An empty transaction writes nothing.
func (w *Writer) End(ctx context.Context) error {
	if w.events == 0 {
		w.buf = w.buf[:0]
		return nil
	}
	if !w.opts.KeepOpen {
		prefix, err := w.open()
		if err != nil {
			return err
		}
		if len(prefix) > 0 {
			w.buf = append(prefix, w.buf...)
		}
		if !w.stream {
			w.buf = append(w.buf, w.footer...)
		}
	}
	if _, err := w.f.Write(w.buf); err != nil {
		// A short write may have left part of a record: start the next
		// transaction on a fresh handle, without a footer after it.
		_ = w.closeFile(false)
		return fmt.Errorf("write %s: %w", w.opts.Path, err)
	}
	w.body, w.marked = true, true
	if w.stream {
		w.streamStarted = true
	}
	if err := w.sync(); err != nil {
		_ = w.closeFile(false)
		return err
	}
	if cap(w.buf) > 4<<20 { // do not keep a huge buffer after one big batch
		w.buf = nil
	}
	if !w.opts.KeepOpen && !w.stream {
		// The footer is written already.
		w.body = false
		return w.closeFile(false)
	}
	return nil
}

func (w *Writer) sync() error {
	if !w.opts.Fsync || w.stream {
		return nil
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", w.opts.Path, err)
	}
	return nil
}

// closeFile closes the file, first writing the footer when footer is set
// and the file holds a header or records. The streams are not closed; their
// footer is written at Close only.
func (w *Writer) closeFile(footer bool) error {
	f := w.f
	if f == nil {
		return nil
	}
	var err error
	if footer && w.body && len(w.footer) > 0 {
		if _, e := f.Write(w.footer); e != nil {
			err = fmt.Errorf("write the footer of %s: %w", w.opts.Path, e)
		} else if e := w.sync(); e != nil {
			err = e
		}
	}
	w.f, w.info, w.body = nil, nil, false
	if w.stream {
		return err
	}
	if e := f.Close(); e != nil && !errors.Is(e, os.ErrClosed) && err == nil {
		err = fmt.Errorf("close %s: %w", w.opts.Path, e)
	}
	return err
}

// Close writes the footer and closes the file. It is idempotent.
func (w *Writer) Close(ctx context.Context) error {
	if w.stream && w.f != nil {
		err := w.closeFile(w.streamStarted)
		w.streamStarted = false
		return err
	}
	return w.closeFile(true)
}

var _ sink.Provider = (*Writer)(nil)
