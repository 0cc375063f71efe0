package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/sinktest"
	"github.com/herald-router/herald/schemas"
)

func TestLinesAreWrittenAtEndAndAppendAcrossTransactions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "events.jsonl")
	w := New(Options{Path: path, Format: "json", Mode: 0o640, Fsync: true})
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

func TestAnUnwritableFileIsARetryableError(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file-not-dir")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w := New(Options{Path: filepath.Join(blocker, "events.jsonl"), Format: "json", Mode: 0o640})
	err := w.Begin(context.Background())
	if err == nil {
		t.Fatal("Begin must fail when the folder cannot be made")
	}
	if _, permanent := sink.IsPermanent(err); permanent {
		t.Error("a file that cannot be opened is the sink's problem, not the event's: retryable")
	}
	if err := w.Close(context.Background()); err != nil {
		t.Errorf("Close after a failed Begin: %v", err)
	}
}

func TestConformance(t *testing.T) {
	var path string
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sink.Provider {
			path = filepath.Join(t.TempDir(), "events.jsonl")
			return New(Options{Path: path, Format: "json", Mode: 0o640})
		},
		ReadBack: func(t *testing.T) []sinktest.Record {
			data, err := os.ReadFile(path)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
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
		},
		// A real outage for a file: its folder replaced by something that
		// is not a folder, so the reopen after the error fails. Root
		// ignores permissions, so chmod would not do.
		Break: func(t *testing.T) func() {
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
		},
	})
}
