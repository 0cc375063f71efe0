package stdout

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/format/formattest"
	"github.com/herald-router/herald/actors/sink/sinktest"
	"github.com/herald-router/herald/schemas"
)

// redirected is the provider's stream redirected to a file, as in
// herald run > out: the destination the test reads back.
func redirected(t *testing.T, o Options) (*Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stdout")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	w, err := NewTo(o, f)
	if err != nil {
		t.Fatal(err)
	}
	return w, path
}

func options(format string) Options {
	o := *DefaultOptions()
	o.Format = format
	return o
}

const cannotFail = "standard output is a stream herald did not open and cannot reopen, so an outage " +
	"cannot be mended; a write error on it is a retryable error (TestAWriteErrorIsRetryable)"

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		format string
		read   func(t *testing.T, data []byte) []sinktest.Record
	}{
		{"json", func(t *testing.T, data []byte) []sinktest.Record {
			var out []sinktest.Record
			for _, line := range bytes.Split(data, []byte("\n")) {
				if len(line) == 0 {
					continue
				}
				var m struct{ ID, Message string }
				if err := json.Unmarshal(line, &m); err != nil {
					t.Fatalf("not a JSON line: %v", err)
				}
				out = append(out, sinktest.Record{ID: m.ID, Message: m.Message})
			}
			return out
		}},
		{"xml", func(t *testing.T, data []byte) []sinktest.Record {
			evs, err := formattest.ReadXML(data)
			if err != nil {
				t.Fatal(err)
			}
			var out []sinktest.Record
			for _, ev := range evs {
				out = append(out, sinktest.Record{ID: ev.Envelope["id"], Message: ev.Envelope["message"]})
			}
			return out
		}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var path string
			sinktest.Run(t, sinktest.Harness{
				New: func(t *testing.T) sink.Provider {
					var w *Writer
					w, path = redirected(t, options(tc.format))
					return w
				},
				ReadBack: func(t *testing.T) []sinktest.Record {
					data, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					return tc.read(t, data)
				},
				CannotFail: cannotFail,
			})
		})
	}
}

func TestTheHeaderComesOnceAndTheFooterAtClose(t *testing.T) {
	o := options("html")
	o.LaunchMarker = true
	w, path := redirected(t, o)
	for i := range 3 {
		if r := sink.Transact(t.Context(), w, []*schemas.Event{sinktest.Event(i, "m")}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	for range 2 {
		if err := w.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if strings.Count(s, "<table>") != 1 || strings.Count(s, "</html>") != 1 || strings.Count(s, `class="marker"`) != 1 || strings.Count(s, "<tr><td>") != 3 {
		t.Errorf("want one table, one marker, three rows, one footer:\n%s", s)
	}
}

func TestAWriteErrorIsRetryable(t *testing.T) {
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wr.Close() })
	_ = r.Close() // nobody reads: writes fail with EPIPE, as stdout piped into a dead program
	w, err := NewTo(options("kv"), wr)
	if err != nil {
		t.Fatal(err)
	}
	res := sink.Transact(t.Context(), w, []*schemas.Event{sinktest.Event(0, "m")})
	if res.Err == nil || res.Committed != 0 {
		t.Fatalf("Transact = %+v, want a failure", res)
	}
	if _, permanent := sink.IsPermanent(res.Err); permanent {
		t.Errorf("a broken stream is retryable: %v", res.Err)
	}
}

func TestBadOptionsAreErrorsOnTheirKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
		field  string
	}{
		{"an unknown stream", func(o *Options) { o.Stream = "stdin" }, "stream"},
		{"an unknown format", func(o *Options) { o.Format = "yaml" }, "format"},
		{"a template that does not compile", func(o *Options) { o.Format, o.Template = "template", "50% %(message)" }, "template"},
		{"a bad field set", func(o *Options) { o.Fields = []string{"@", "@2"} }, "fields[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := *DefaultOptions()
			tc.change(&o)
			if errs := o.Validate(); len(errs) != 1 || errs[0].Field != tc.field {
				t.Errorf("Validate = %v, want one error on %s", errs, tc.field)
			}
		})
	}
}
