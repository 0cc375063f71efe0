package tail

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// rawEvents reads every record published to the raw stream so far (by
// sequence: a work-queue stream allows no second consumer).
func rawEvents(t *testing.T, b *bus.Bus) []*schemas.Event {
	t.Helper()
	ctx := context.Background()
	st, err := b.JS.Stream(ctx, bus.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*schemas.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var bt schemas.Batch
		if err := proto.Unmarshal(m.Data, &bt); err != nil {
			t.Fatal(err)
		}
		out = append(out, bt.Events...)
	}
	return out
}

func raws(evs []*schemas.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = string(ev.Raw)
	}
	return out
}

// running is one started Tailer with its batcher.
type running struct {
	t  *Tailer
	bt *receiver.Batcher
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.t.Shutdown(ctx)
	if err := r.bt.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func startTailer(t *testing.T, b *bus.Bus, name string, o *Options) *running {
	t.Helper()
	if errs := o.Validate(); len(errs) > 0 {
		t.Fatalf("options: %v", errs)
	}
	m := metrics.New().Stage("receiver." + name)
	bt := receiver.NewBatcher(b, bus.RawSubject(name), 100, 64<<10, 2*time.Millisecond, m, bustest.Logger(t))
	tl := New(name, *o, Deps{Bus: b, Batcher: bt, Metrics: m, Log: bustest.Logger(t)})
	if err := tl.Listen(); err != nil {
		t.Fatal(err)
	}
	tl.Serve()
	r := &running{t: tl, bt: bt}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			r.stop(t)
		}
	})
	return r
}

func fastOptions(paths ...string) *Options {
	o := DefaultOptions()
	o.Paths = paths
	o.PollInterval = config.Duration(10 * time.Millisecond)
	o.RotateWait = config.Duration(100 * time.Millisecond)
	o.CommitInterval = config.Duration(20 * time.Millisecond)
	o.Multiline.Timeout = config.Duration(50 * time.Millisecond)
	return o
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func lines(prefix string, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s %06d\n", prefix, i)
	}
	return b.String()
}

// waitRaw waits until the raw stream holds want records and returns them.
func waitRaw(t *testing.T, b *bus.Bus, want int) []string {
	t.Helper()
	var got []string
	bustest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		got = raws(rawEvents(t, b))
		if len(got) < want {
			return fmt.Errorf("%d of %d records in the raw stream", len(got), want)
		}
		return nil
	})
	return got
}

// once checks that got holds every line of want exactly once.
func once(t *testing.T, got []string, want string) {
	t.Helper()
	counts := map[string]int{}
	for _, g := range got {
		counts[g]++
	}
	for _, w := range strings.Split(strings.TrimSuffix(want, "\n"), "\n") {
		if counts[w] != 1 {
			t.Errorf("record %q arrived %d times", w, counts[w])
		}
		delete(counts, w)
	}
	for k := range counts {
		t.Errorf("unexpected record %q", k)
	}
}

func TestEveryLineIsPublishedAndARestartResumesAfterTheLastAcknowledgedRecord(t *testing.T) {
	b := bustest.Open(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("a", 0, 100))
	r := startTailer(t, b, "files", fastOptions(filepath.Join(dir, "*.log")))
	waitRaw(t, b, 100)
	r.stop(t)

	appendFile(t, path, lines("a", 100, 150)+"unterminated")
	r2 := startTailer(t, b, "files", fastOptions(filepath.Join(dir, "*.log")))
	got := waitRaw(t, b, 150)
	once(t, got, lines("a", 0, 150))
	appendFile(t, path, " now ends\n")
	got = waitRaw(t, b, 151)
	once(t, got, lines("a", 0, 150)+"unterminated now ends\n")
	evs := rawEvents(t, b)
	if ev := evs[0]; ev.Source != "files" || ev.Peer != path || ev.TargetMask != 4 || ev.ReceivedUnixNano == 0 {
		t.Errorf("envelope: source %q peer %q mask %d received %d", ev.Source, ev.Peer, ev.TargetMask, ev.ReceivedUnixNano)
	}
	_ = r2
}

func TestRenameAndCreateRotationLosesNothing(t *testing.T) {
	b := bustest.Open(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("r", 0, 50))
	startTailer(t, b, "files", fastOptions(path))
	waitRaw(t, b, 50)
	// The writer still has the old file open after the rename.
	old, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines("r", 60, 80))
	if _, err := old.WriteString(lines("r", 50, 60)); err != nil {
		t.Fatal(err)
	}
	_ = old.Close()
	got := waitRaw(t, b, 80)
	once(t, got, lines("r", 0, 80))
}

func TestCopytruncateIsNoticedAndTheFileReadAgainFromItsStart(t *testing.T) {
	b := bustest.Open(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("c", 0, 40))
	startTailer(t, b, "files", fastOptions(path))
	waitRaw(t, b, 40)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	// More than was there before, so only the changed bytes give it away.
	appendFile(t, path, lines("d", 0, 60))
	got := waitRaw(t, b, 100)
	once(t, got, lines("c", 0, 40)+lines("d", 0, 60))
}

func TestMultilineJoinsAStackTraceIntoOneRecord(t *testing.T) {
	b := bustest.Open(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	o := fastOptions(path)
	o.Multiline.Start = `^\d{4}-`
	appendFile(t, path, "continuation before any start\n"+
		"2024-01-01 ERROR boom\n"+
		"java.lang.IllegalStateException: x\n"+
		"\tat a.b.C.d(C.java:10)\n"+
		"\tat a.b.C.e(C.java:20)\n"+
		"2024-01-01 INFO fine\n"+
		"2024-01-01 INFO last\r\n")
	startTailer(t, b, "files", o)
	got := waitRaw(t, b, 4)
	want := []string{
		"continuation before any start",
		"2024-01-01 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.b.C.d(C.java:10)\n\tat a.b.C.e(C.java:20)",
		"2024-01-01 INFO fine",
		"2024-01-01 INFO last\r",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("records\n%q\nwant\n%q", got, want)
	}
}

func TestAFileChangedWhileHeraldWasDownIsReadFromItsStart(t *testing.T) {
	b := bustest.Open(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("x", 0, 30))
	r := startTailer(t, b, "files", fastOptions(path))
	waitRaw(t, b, 30)
	r.stop(t)
	// Same inode, other content of the same length and more.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, lines("y", 0, 35))
	startTailer(t, b, "files", fastOptions(path))
	got := waitRaw(t, b, 65)
	once(t, got, lines("x", 0, 30)+lines("y", 0, 35))
}

func TestStartAtEndSkipsWhatWasThereAndReadsWhatComes(t *testing.T) {
	b := bustest.Open(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	appendFile(t, path, lines("old", 0, 10))
	o := fastOptions(path)
	o.StartAt = StartEnd
	r := startTailer(t, b, "files", o)
	// The position is stored once the start is done; then new lines come.
	bustest.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		p, err := r.t.store.load(context.Background())
		if err != nil || len(p) != 1 {
			return fmt.Errorf("positions %v, %v", p, err)
		}
		return nil
	})
	appendFile(t, path, lines("new", 0, 5))
	got := waitRaw(t, b, 5)
	once(t, got, lines("new", 0, 5))
}

func TestLongLinesAreCutAndEmptyLinesSkipped(t *testing.T) {
	b := bustest.Open(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	o := fastOptions(path)
	o.MaxMessageSize = 100
	appendFile(t, path, strings.Repeat("x", 250)+"\n\n   \nshort\n")
	startTailer(t, b, "files", o)
	got := waitRaw(t, b, 4)
	want := []string{strings.Repeat("x", 100), strings.Repeat("x", 100), strings.Repeat("x", 50), "short"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("records %q, want %q", got, want)
	}
}

func TestMboxFormatGivesOneRecordPerMailWithItsEnvelope(t *testing.T) {
	b := bustest.Open(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "root.mbox")
	o := fastOptions(path)
	o.Format = FormatMbox
	appendFile(t, path, "From root@db1 Tue Mar 12 10:00:00 2024\n"+
		"Received: from db1.example.com (db1 [10.0.0.5]) by mx.example.com; Tue, 12 Mar 2024 10:00:00 +0000\n"+
		"Subject: cron: backup done\nDate: Tue, 12 Mar 2024 09:59:58 +0000\n\nall good\n>From here on\n\n"+
		"From root@db2 Tue Mar 12 11:00:00 2024\nSubject: second\n\nbody\n")
	startTailer(t, b, "files", o)
	var evs []*schemas.Event
	bustest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		evs = rawEvents(t, b)
		if len(evs) < 2 {
			return fmt.Errorf("%d of 2 mails", len(evs))
		}
		return nil
	})
	ev := evs[0]
	if ev.Host != "db1.example.com" || time.Unix(0, ev.TimeUnixNano).UTC().Format(time.RFC3339) != "2024-03-12T09:59:58Z" {
		t.Errorf("host %q time %s", ev.Host, time.Unix(0, ev.TimeUnixNano).UTC())
	}
	if !strings.HasSuffix(string(ev.Raw), "all good\nFrom here on\n") || strings.HasPrefix(string(ev.Raw), "From ") {
		t.Errorf("raw %q", ev.Raw)
	}
	if got := time.Unix(0, ev.ReceivedUnixNano); !got.Equal(time.Date(2024, 3, 12, 10, 0, 0, 0, time.Local)) {
		t.Errorf("reception time %s, want the From_ line's", got)
	}
	if string(evs[1].Raw) != "Subject: second\n\nbody\n" {
		t.Errorf("second mail %q", evs[1].Raw)
	}
}

func TestAnAcknowledgementOfAnEarlierEpochOrAfterAFailureDoesNotMoveThePosition(t *testing.T) {
	s := &ackState{}
	s.ack(0, 10, print{}, nil)
	s.reset(print{})
	s.ack(0, 20, print{}, nil) // a record read before the truncation
	if s.acked != 0 {
		t.Errorf("stale epoch moved the position to %d", s.acked)
	}
	s.ack(1, 5, print{}, nil)
	s.ack(1, 9, print{}, fmt.Errorf("not stored"))
	s.ack(1, 12, print{}, nil)
	if s.acked != 5 {
		t.Errorf("position %d passed a record that was not stored, want 5", s.acked)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(o *Options)
		field string
	}{
		{"paths are required", func(o *Options) { o.Paths = nil }, fieldPaths},
		{"a bad glob is refused", func(o *Options) { o.Paths = []string{"[x"} }, "paths[0]"},
		{"start_at is beginning or end", func(o *Options) { o.StartAt = "middle" }, fieldStartAt},
		{"a bad regular expression is refused", func(o *Options) { o.Multiline.Start = "(" }, fieldMultilineStart},
		{"mbox fixes the start pattern", func(o *Options) { o.Format = FormatMbox; o.Multiline.Start = "^x" }, fieldMultilineStart},
		{"an unknown format is refused", func(o *Options) { o.Format = "csv" }, fieldFormat},
		{"a tiny max_message_size is refused", func(o *Options) { o.MaxMessageSize = 1 }, fieldMaxMessageSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Paths = []string{"/var/log/*.log"}
			tc.edit(o)
			errs := o.Validate()
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Errorf("errors %v, want one about %s", errs, tc.field)
			}
		})
	}
	o := DefaultOptions()
	o.Paths = []string{"/var/log/*.log"}
	if errs := o.Validate(); len(errs) != 0 {
		t.Errorf("defaults with a path: %v", errs)
	}
}
