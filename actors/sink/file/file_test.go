package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/format"
	"github.com/herald-router/herald/actors/sink/format/formattest"
	"github.com/herald-router/herald/actors/sink/sinktest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

func newWriter(t *testing.T, o Options) *Writer {
	t.Helper()
	if o.Mode == 0 {
		o.Mode = 0o640
	}
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return w
}

// opts are the defaults with path and format set.
func opts(path, fmt string, change ...func(*Options)) Options {
	o := *DefaultOptions()
	o.Path, o.Format = path, fmt
	for _, c := range change {
		c(&o)
	}
	return o
}

// commit writes events from..from+n-1 in one transaction.
func commit(t *testing.T, p sink.Provider, from, n int) {
	t.Helper()
	evs := make([]*schemas.Event, n)
	for i := range evs {
		evs[i] = sinktest.Event(from+i, fmt.Sprintf("event %d", from+i))
	}
	if r := sink.Transact(t.Context(), p, evs); r.Err != nil || r.Committed != n {
		t.Fatalf("Transact = %+v", r)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return data
}

func TestLinesAreWrittenAtEndAndAppendAcrossTransactions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "events.jsonl")
	w := newWriter(t, Options{Path: path, Format: "json", Mode: 0o640, Fsync: true, KeepOpen: true})
	ctx := context.Background()
	for round := range 2 {
		if err := w.Begin(ctx); err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"a", "b <&> \xff"} {
			c, err := w.Do(ctx, &schemas.Event{Id: m, Message: m})
			if err != nil || c != sink.Deferred {
				t.Fatalf("Do = %v, %v; the file commits at End", c, err)
			}
		}
		if round == 0 {
			if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
				t.Fatalf("nothing may reach the file before End (size %v, %v)", fi, err)
			}
		}
		if err := w.End(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close must be idempotent: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v", n, err)
		}
		n++
	}
	if n != 4 {
		t.Errorf("%d lines, want 4", n)
	}
}

func TestTheJSONFileIsExactlyAppendJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	w := newWriter(t, opts(path, "json", func(o *Options) { o.KeepOpen = false }))
	commit(t, w, 0, 3)
	var want []byte
	for i := range 3 {
		want = format.AppendJSON(want, sinktest.Event(i, fmt.Sprintf("event %d", i)))
	}
	if got := read(t, path); !bytes.Equal(got, want) {
		t.Errorf("file:\n%s\nwant:\n%s", got, want)
	}
}

func TestAnUnwritableFileIsARetryableError(t *testing.T) {
	for _, keepOpen := range []bool{true, false} {
		t.Run(fmt.Sprintf("keep_open %v", keepOpen), func(t *testing.T) {
			dir := t.TempDir()
			blocker := filepath.Join(dir, "file-not-dir")
			if err := os.WriteFile(blocker, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			w := newWriter(t, opts(filepath.Join(blocker, "events.jsonl"), "json", func(o *Options) { o.KeepOpen = keepOpen }))
			r := sink.Transact(t.Context(), w, []*schemas.Event{sinktest.Event(0, "x")})
			if r.Err == nil || r.Committed != 0 {
				t.Fatalf("a transaction must fail when the folder cannot be made: %+v", r)
			}
			if _, permanent := sink.IsPermanent(r.Err); permanent {
				t.Error("a file that cannot be opened is the sink's problem, not the event's: retryable")
			}
			if err := w.Close(context.Background()); err != nil {
				t.Errorf("Close after a failed Begin: %v", err)
			}
		})
	}
}

// breakFolder is a real outage for a file: its folder replaced by
// something that is not a folder, so the reopen after the error fails.
// Root ignores permissions, so chmod would not do.
func breakFolder(t *testing.T, path string) func() {
	dir := filepath.Dir(path)
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		_ = os.Remove(dir)
		_ = os.Rename(moved, dir)
	}
}

func readJSON(t *testing.T, data []byte) []sinktest.Record {
	t.Helper()
	var out []sinktest.Record
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m struct{ ID, Message string }
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("not a JSON line: %v: %.100s", err, line)
		}
		out = append(out, sinktest.Record{ID: m.ID, Message: m.Message})
	}
	return out
}

// readCSV reads a csv file with its header line: the id and message
// columns, found by name.
func readCSV(t *testing.T, data []byte) []sinktest.Record {
	t.Helper()
	recs, err := formattest.ReadCSV(data)
	if err != nil {
		t.Fatalf("not RFC 4180 CSV: %v", err)
	}
	if len(recs) == 0 {
		return nil
	}
	id, msg := -1, -1
	for i, h := range recs[0] {
		switch h {
		case "id":
			id = i
		case "message":
			msg = i
		}
	}
	if id < 0 || msg < 0 {
		t.Fatalf("header %q has no id or message column", recs[0])
	}
	var out []sinktest.Record
	for _, r := range recs[1:] {
		if len(r) != len(recs[0]) {
			t.Fatalf("record of %d fields under a header of %d", len(r), len(recs[0]))
		}
		if r[0] == "id" {
			t.Fatalf("a second header line: %q", r)
		}
		out = append(out, sinktest.Record{ID: r[id], Message: r[msg]})
	}
	return out
}

func readXML(t *testing.T, data []byte) []sinktest.Record {
	t.Helper()
	evs, err := formattest.ReadXML(data)
	if err != nil {
		t.Fatal(err)
	}
	var out []sinktest.Record
	for _, ev := range evs {
		out = append(out, sinktest.Record{ID: ev.Envelope["id"], Message: ev.Envelope["message"]})
	}
	return out
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		format   string
		keepOpen bool
		read     func(*testing.T, []byte) []sinktest.Record
	}{
		{"json", "json", true, readJSON},
		{"csv", "csv", true, readCSV},
		{"xml", "xml", true, readXML},
		{"xml opened and closed per transaction", "xml", false, readXML},
		{"csv opened and closed per transaction", "csv", false, readCSV},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var path string
			sinktest.Run(t, sinktest.Harness{
				New: func(t *testing.T) sink.Provider {
					path = filepath.Join(t.TempDir(), "events."+tc.format)
					w, err := New(opts(path, tc.format, func(o *Options) { o.KeepOpen = tc.keepOpen }))
					if err != nil {
						t.Fatal(err)
					}
					return w
				},
				ReadBack: func(t *testing.T) []sinktest.Record { return tc.read(t, read(t, path)) },
				Break:    func(t *testing.T) func() { return breakFolder(t, path) },
			})
		})
	}
}

// xmlComplete reports whether data is one complete xml document of the
// format, and how many events it holds.
func xmlComplete(t *testing.T, data []byte) int {
	t.Helper()
	s := string(data)
	if !strings.HasPrefix(s, "<?xml") || strings.Count(s, "<events>") != 1 || strings.Count(s, "</events>") != 1 || !strings.HasSuffix(s, "</events>\n") {
		t.Fatalf("not one complete document:\n%s", s)
	}
	return len(readXML(t, data))
}

func TestHeadersAndFootersAcrossReopenAndRotation(t *testing.T) {
	t.Run("a new xml file gets the header, the footer comes at Close, and it is a document", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.xml")
		w := newWriter(t, opts(path, "xml"))
		commit(t, w, 0, 2)
		if got := string(read(t, path)); !strings.HasPrefix(got, "<?xml") || strings.Contains(got, "</events>") {
			t.Fatalf("while open: header, records, no footer yet:\n%s", got)
		}
		if len(readXML(t, read(t, path))) != 2 {
			t.Fatal("the open file must read as its committed events")
		}
		if err := w.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := xmlComplete(t, read(t, path)); n != 2 {
			t.Errorf("%d events, want 2", n)
		}
	})

	t.Run("reopening a complete xml file cuts its footer and writes it again at close", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.xml")
		for round := range 3 {
			w := newWriter(t, opts(path, "xml"))
			commit(t, w, round*2, 2)
			if err := w.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if n := xmlComplete(t, read(t, path)); n != 6 {
			t.Errorf("%d events, want 6", n)
		}
	})

	t.Run("a file left without its footer (kill -9) is appended to and completed at close", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.html")
		w := newWriter(t, opts(path, "html"))
		commit(t, w, 0, 1)
		// No Close: as if herald died. A new writer takes the file on.
		w2 := newWriter(t, opts(path, "html"))
		commit(t, w2, 1, 1)
		if err := w2.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		s := string(read(t, path))
		if strings.Count(s, "<table>") != 1 || strings.Count(s, "</table>") != 1 || !strings.HasSuffix(s, "</html>\n") || strings.Count(s, "<tr><td>") != 2 {
			t.Errorf("want one table of two rows:\n%s", s)
		}
	})

	t.Run("an existing non-empty csv file opened for append gets no second header", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.csv")
		for round := range 2 {
			w := newWriter(t, opts(path, "csv"))
			commit(t, w, round*3, 3)
			if err := w.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if got := readCSV(t, read(t, path)); len(got) != 6 {
			t.Errorf("%d records, want 6", len(got))
		}
	})

	t.Run("a rename by logrotate: the old file gets its footer, the new one its header", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.xml")
		w := newWriter(t, opts(path, "xml"))
		commit(t, w, 0, 2)
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		commit(t, w, 2, 3)
		if err := w.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := xmlComplete(t, read(t, path+".1")); n != 2 {
			t.Errorf("rotated file holds %d events, want 2", n)
		}
		if n := xmlComplete(t, read(t, path)); n != 3 {
			t.Errorf("new file holds %d events, want 3", n)
		}
	})

	t.Run("copytruncate empties the file: the header is written again", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.csv")
		w := newWriter(t, opts(path, "csv"))
		commit(t, w, 0, 2)
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		commit(t, w, 2, 1)
		if got := readCSV(t, read(t, path)); len(got) != 1 || got[0].ID != sinktest.Event(2, "").Id {
			t.Errorf("after the truncation the file holds %v, want the header and event 2", got)
		}
	})

	t.Run("Reopen closes the file with its footer and opens the path again at the next transaction", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.xml")
		w := newWriter(t, opts(path, "xml"))
		commit(t, w, 0, 2)
		before := w.f
		// logrotate with a copy: the name keeps its file, so only Reopen
		// can make herald let go of the handle.
		w.Reopen()
		w.Reopen() // idempotent
		commit(t, w, 2, 1)
		if w.f == before {
			t.Error("Reopen must open the path again")
		}
		if strings.Contains(string(read(t, path)), "</events>") {
			t.Error("the footer written at the reopen must be cut when the file is opened again")
		}
		if err := w.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := xmlComplete(t, read(t, path)); n != 3 {
			t.Errorf("%d events, want 3", n)
		}
	})

	t.Run("Reopen is safe from another goroutine while transactions run", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.xml")
		w := newWriter(t, opts(path, "xml"))
		var wg sync.WaitGroup
		stop := make(chan struct{})
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					w.Reopen()
				}
			}
		})
		for i := range 50 {
			commit(t, w, i, 1)
		}
		close(stop)
		wg.Wait()
		if err := w.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := xmlComplete(t, read(t, path)); n != 50 {
			t.Errorf("%d events, want 50", n)
		}
	})

	t.Run("without keep_open the file is complete after every commit and no handle is held", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.xml")
		w := newWriter(t, opts(path, "xml", func(o *Options) { o.KeepOpen = false }))
		for round := range 3 {
			commit(t, w, round, 1)
			if w.f != nil {
				t.Fatal("the file must be closed after the commit")
			}
			if n := xmlComplete(t, read(t, path)); n != round+1 {
				t.Fatalf("%d events after commit %d", n, round)
			}
		}
		if r := sink.Transact(t.Context(), w, nil); r.Err != nil {
			t.Fatal(r.Err)
		}
		if n := xmlComplete(t, read(t, path)); n != 3 {
			t.Errorf("an empty transaction must leave the document whole: %d events", n)
		}
	})

	t.Run("an empty transaction writes no header into a new file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.csv")
		w := newWriter(t, opts(path, "csv"))
		if r := sink.Transact(t.Context(), w, nil); r.Err != nil {
			t.Fatal(r.Err)
		}
		if err := w.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := read(t, path); len(got) != 0 {
			t.Errorf("file holds %q", got)
		}
	})

	t.Run("header false writes neither header nor footer", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "e.xml")
		w := newWriter(t, opts(path, "xml", func(o *Options) { o.Header = false }))
		commit(t, w, 0, 2)
		if err := w.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := string(read(t, path)); !strings.HasPrefix(got, "<event>") || strings.Count(got, "\n") != 2 {
			t.Errorf("want two bare <event> lines:\n%s", got)
		}
	})
}

func TestTheLaunchMarkerIsWrittenOnceAfterTheHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e.csv")
	w := newWriter(t, opts(path, "csv", func(o *Options) { o.LaunchMarker = true }))
	w.name = "archive"
	commit(t, w, 0, 1)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	commit(t, w, 1, 1)
	first := strings.Split(string(read(t, path+".1")), "\n")
	if !strings.HasPrefix(first[0], "id,") || !strings.HasPrefix(first[1], "# herald sink archive opened "+path) {
		t.Errorf("want the header, then the marker:\n%s", strings.Join(first, "\n"))
	}
	if got := string(read(t, path)); strings.Contains(got, "# herald") {
		t.Errorf("the marker says when the sink started, once, not at every open:\n%s", got)
	}
	if got := readCSV(t, read(t, path+".1")); len(got) != 1 {
		t.Errorf("a reader skipping # comments sees %d records, want 1", len(got))
	}
}

func TestBadOptionsAreErrorsOnTheirKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
		field  string
	}{
		{"no path", func(o *Options) { o.Path = "" }, "path"},
		{"an unknown format", func(o *Options) { o.Format = "yaml" }, "format"},
		{"a template that does not compile", func(o *Options) { o.Format, o.Template = "template", "%(message" }, "template"},
		{"a template with another format", func(o *Options) { o.Template = "%(message)" }, "template"},
		{"a bad @n", func(o *Options) { o.Format, o.Fields = "csv", []string{"message", "@0"} }, "fields[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts("x.log", "json", tc.change)
			errs := o.Validate()
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Errorf("Validate = %v, want one error on %s", errs, tc.field)
			}
			if tc.field != "path" {
				if _, err := New(o); err == nil {
					t.Error("New must refuse what Validate refuses")
				}
			}
		})
	}
}

// configWith is a whole config whose one sink has the given keys.
func configWith(sinkKeys string) string {
	return `
receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:5514}
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, ` + sinkKeys + `}
`
}

func TestConfigKeysDecodeStrictlyAndOldConfigsStillLoad(t *testing.T) {
	r := sink.NewRegistry()
	Register(r)
	rr := receiver.NewRegistry()
	receiver.RegisterSyslog(rr)
	kinds := config.Kinds{Receivers: rr.ConfigKinds(), Sinks: r.ConfigKinds()}
	for _, tc := range []struct {
		name string
		keys string
		want func(*Options) bool
		err  string // the field of the one expected error
	}{
		{"a config from before formats loads unchanged", `path: var/log/events.jsonl, format: json, fsync: false, mode: 0640`,
			func(o *Options) bool {
				return o.Format == "json" && o.Mode == 0o640 && o.KeepOpen && o.Header && !o.LaunchMarker && len(o.Fields) == 0
			}, ""},
		{"every new key decodes", `path: e.csv, format: csv, fields: [time, host, message, "@2"], header: false, launch_marker: true, keep_open: false`,
			func(o *Options) bool {
				return o.Format == "csv" && strings.Join(o.Fields, " ") == "time host message @2" && !o.Header && o.LaunchMarker && !o.KeepOpen
			}, ""},
		{"a template", `path: e.log, format: template, template: "%(time) %(host) %(service): %(message)"`,
			func(o *Options) bool { return o.Template != "" }, ""},
		{"a bad template is a config error on its key", `path: e.log, format: template, template: "%(time"`, nil, "sinks.events.template"},
		{"a bad field set is a config error on its item", `path: e.log, format: kv, fields: [host, "@", "@3"]`, nil, "sinks.events.fields[2]"},
		{"an unknown key is an error", `path: e.log, keepopen: false`, nil, "sinks.events.keepopen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse(filepath.Join(t.TempDir(), "herald.yaml"), []byte(configWith(tc.keys)), kinds)
			if tc.err != "" {
				var errs *config.Errors
				if !errors.As(err, &errs) || len(errs.List) != 1 || errs.List[0].Field != tc.err {
					t.Fatalf("Parse = %v, want one error on %s", err, tc.err)
				}
				if errs.List[0].Pos.Line == 0 {
					t.Errorf("the error must give a position: %v", errs.List[0])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o := cfg.Sinks["events"].Options.(*Options)
			if !tc.want(o) {
				t.Errorf("decoded %+v", o)
			}
			if _, err := r.New(sink.Env{Name: "events", Config: cfg}, cfg.Sinks["events"]); err != nil {
				t.Errorf("the provider must build from what the config accepted: %v", err)
			}
		})
	}
}

func TestAFullDiskIsARetryableError(t *testing.T) {
	// /dev/full is a real device whose every write fails with ENOSPC.
	w := newWriter(t, opts("/dev/full", "csv"))
	r := sink.Transact(t.Context(), w, []*schemas.Event{sinktest.Event(0, "x")})
	if r.Err == nil || r.Committed != 0 {
		t.Fatalf("a write to a full disk must fail the transaction: %+v", r)
	}
	if !errors.Is(r.Err, syscall.ENOSPC) {
		t.Errorf("want ENOSPC in the chain: %v", r.Err)
	}
	if _, permanent := sink.IsPermanent(r.Err); permanent {
		t.Errorf("a full disk is retryable, the event is fine: %v", r.Err)
	}
}

func TestARecordTornByACrashIsCutBeforeAppending(t *testing.T) {
	for _, tc := range []struct{ name, before, want string }{
		{"a fragment after whole records is cut", "{\"id\":\"a\"}\n{\"id\":\"b\",\"mess", "{\"id\":\"a\"}\n"},
		{"a file of only a fragment is emptied", "{\"id\":\"b\",\"mess", ""},
		{"a whole file is kept", "{\"id\":\"a\"}\n", "{\"id\":\"a\"}\n"},
		{"a fragment longer than one read is cut", "{\"id\":\"a\"}\n" + strings.Repeat("x", 200<<10), "{\"id\":\"a\"}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			if err := os.WriteFile(path, []byte(tc.before), 0o600); err != nil {
				t.Fatal(err)
			}
			o := DefaultOptions()
			o.Path = path
			w, err := New(*o)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if r := sink.Transact(ctx, w, []*schemas.Event{{Id: "c", Message: "next"}}); r.Err != nil {
				t.Fatal(r.Err)
			}
			_ = w.Close(ctx)
			got, _ := os.ReadFile(path)
			if !strings.HasPrefix(string(got), tc.want) || strings.Count(string(got), "\n") != strings.Count(tc.want, "\n")+1 {
				t.Fatalf("file after the append:\n%q\nwant %q then one whole record", got, tc.want)
			}
			if !strings.HasSuffix(string(got), "\"message\":\"next\"}\n") {
				t.Errorf("the appended record is not whole: %q", got)
			}
		})
	}
}
