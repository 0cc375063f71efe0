package xmpp

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

// openWindows opens the windows of sink name on a real embedded server.
func openWindows(t testing.TB, b *bus.Bus, name string) *windowStore {
	t.Helper()
	return newWindowStore(b.NC, config.Default().Bus, name, bustest.Logger(t))
}

func loadAll(t *testing.T, s *windowStore) map[string]*window {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ws, err := s.load(ctx, bustest.Logger(t))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return ws
}

func saveAll(t *testing.T, s *windowStore, changes map[string]*window) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	keys, err := s.save(ctx, changes)
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	if len(keys) != len(changes) {
		t.Fatalf("saved %d keys of %d", len(keys), len(changes))
	}
}

func TestWindowsInTheBucket(t *testing.T) {
	b := bustest.Open(t)
	start := time.Date(2026, 11, 26, 6, 0, 0, 123456789, time.UTC)
	full := &window{key: "web1", label: "host=web1", start: start, sent: 10, folded: 3,
		first: folded{"e1", "first body"}, last: folded{"e3", "last body"}, firstSet: true}

	cases := []struct {
		name string
		run  func(t *testing.T, s *windowStore)
	}{
		{"a window written is read back whole", func(t *testing.T, s *windowStore) {
			saveAll(t, s, map[string]*window{"web1": full})
			got := loadAll(t, s)
			if len(got) != 1 || got["web1"] == nil {
				t.Fatalf("loaded %v, want web1", got)
			}
			if w := got["web1"]; !w.start.Equal(full.start) || w.sent != 10 || w.folded != 3 || w.first != full.first || w.last != full.last || w.label != full.label || !w.firstSet {
				t.Errorf("loaded %+v, want %+v", *w, *full)
			}
		}},
		{"a window written again replaces itself", func(t *testing.T, s *windowStore) {
			saveAll(t, s, map[string]*window{"web1": {key: "web1", label: "host=web1", start: start, sent: 1}})
			saveAll(t, s, map[string]*window{"web1": full})
			if got := loadAll(t, s); len(got) != 1 || got["web1"].folded != 3 {
				t.Errorf("loaded %v, want the last write only", got)
			}
		}},
		{"a deleted window is not read", func(t *testing.T, s *windowStore) {
			saveAll(t, s, map[string]*window{"web1": full, "db1": {key: "db1", label: "host=db1", start: start, sent: 2}})
			saveAll(t, s, map[string]*window{"web1": nil})
			got := loadAll(t, s)
			if len(got) != 1 || got["db1"] == nil {
				t.Errorf("loaded %v, want db1 only", got)
			}
		}},
		{"deleting a window never written is no error", func(t *testing.T, s *windowStore) {
			saveAll(t, s, map[string]*window{"never": nil})
			if got := loadAll(t, s); len(got) != 0 {
				t.Errorf("loaded %v, want nothing", got)
			}
		}},
		{"keys of any bytes and length keep their identity", func(t *testing.T, s *windowStore) {
			keys := []string{"", "a\x00b", "\xff\xfe not utf-8", strings.Repeat("long.key*>", 100), otherKeys, "été"}
			changes := map[string]*window{}
			for i, k := range keys {
				changes[k] = &window{key: k, label: "l", start: start, sent: i + 1}
			}
			saveAll(t, s, changes)
			got := loadAll(t, s)
			for i, k := range keys {
				if w := got[k]; w == nil || w.sent != i+1 || w.key != k {
					t.Errorf("key %q: loaded %+v", k, w)
				}
			}
		}},
		{"a transaction's many windows are written together", func(t *testing.T, s *windowStore) {
			changes := map[string]*window{}
			for i := range 500 {
				k := "host" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String()
				changes[k] = &window{key: k, label: k, start: start, sent: 1}
			}
			began := time.Now()
			saveAll(t, s, changes)
			t.Logf("500 windows written in %s", time.Since(began).Round(time.Millisecond))
			if got := loadAll(t, s); len(got) != 500 {
				t.Errorf("loaded %d windows, want 500", len(got))
			}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A sink of its own per case: the cases share the bucket, and
			// each also checks that it sees no other sink's windows.
			tc.run(t, openWindows(t, b, "sink"+string(rune('a'+i))))
		})
	}
}

func TestAProcessThatLostTheLeaseOverwritesNoWindow(t *testing.T) {
	b := bustest.Open(t)
	start := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	old, next := openWindows(t, b, "alerts"), openWindows(t, b, "alerts")
	saveAll(t, old, map[string]*window{
		"web1": {key: "web1", label: "host=web1", start: start, sent: 3},
		"db1":  {key: "db1", label: "host=db1", start: start, sent: 1},
	})
	loadAll(t, next) // the takeover
	saveAll(t, next, map[string]*window{
		"web1": {key: "web1", label: "host=web1", start: start, sent: 10, folded: 1, first: folded{"e", "b"}, last: folded{"e", "b"}, firstSet: true},
		"db1":  {key: "db1", label: "host=db1", start: start, sent: 2},
		"new1": {key: "new1", label: "host=new1", start: start, sent: 1},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for name, changes := range map[string]map[string]*window{
		"a write":                  {"web1": {key: "web1", label: "host=web1", start: start, sent: 4}},
		"a delete":                 {"db1": nil},
		"a key it never knew of":   {"new1": {key: "new1", label: "host=new1", start: start, sent: 7}},
		"several keys at once too": {"web1": nil, "db1": nil, "new1": nil},
	} {
		if _, err := old.save(ctx, changes); !errors.Is(err, errMovedOn) {
			t.Errorf("%s by the old holder: %v, want errMovedOn", name, err)
		}
	}
	got := loadAll(t, next)
	if w := got["web1"]; w == nil || w.sent != 10 || w.folded != 1 {
		t.Errorf("web1 = %+v, want the next holder's", w)
	}
	if w := got["db1"]; w == nil || w.sent != 2 {
		t.Errorf("db1 = %+v, want the next holder's", w)
	}
	if w := got["new1"]; w == nil || w.sent != 1 {
		t.Errorf("new1 = %+v, want the next holder's", w)
	}
	// Reading the bucket again makes the old process current.
	loadAll(t, old)
	saveAll(t, old, map[string]*window{"web1": nil})
}

func TestAThrottleWritesWhatItsTransactionsCommitted(t *testing.T) {
	b := bustest.Open(t)
	s := openWindows(t, b, "alerts")
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	th := newThrottle(ThrottleOptions{Events: 2, Window: config.Duration(time.Minute), Key: []string{"host"}, MaxKeys: 10})
	th.now = func() time.Time { return now }
	th.persist()
	save := func() {
		t.Helper()
		changes := th.unsaved()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		keys, err := s.save(ctx, changes)
		if err != nil {
			t.Fatal(err)
		}
		th.saved(changes, keys)
	}
	admit := func(host string, n int) {
		for i := range n {
			th.admit(&schemas.Event{Id: host + string(rune('a'+i)), Host: host}, "body of "+host)
		}
	}

	th.begin()
	admit("web1", 5)
	th.rollback()
	if u := th.unsaved(); len(u) != 0 {
		t.Fatalf("a failed transaction left %d windows to write", len(u))
	}

	th.begin()
	admit("web1", 5)
	admit("db1", 1)
	th.commit()
	if u := th.unsaved(); len(u) != 2 {
		t.Fatalf("%d windows to write after a transaction touching 2 keys, want 2", len(u))
	}
	save()
	if u := th.unsaved(); len(u) != 0 {
		t.Fatalf("%d windows still to write after saving", len(u))
	}
	got := loadAll(t, s)
	if w := got["web1"]; w == nil || w.sent != 2 || w.folded != 3 || w.first.id != "web1c" || w.last.id != "web1e" {
		t.Fatalf("web1 in the bucket: %+v", w)
	}

	// A second throttle on the same bucket, as after a takeover, goes on
	// with the window and gives the digest of the events both folded.
	th2 := newThrottle(ThrottleOptions{Events: 2, Window: config.Duration(time.Minute), Key: []string{"host"}, MaxKeys: 10})
	th2.now = th.now
	th2.persist()
	th2.restore(got)
	now = now.Add(10 * time.Second)
	th2.begin()
	sent := 0
	for i := range 4 {
		if ok, _ := th2.admit(&schemas.Event{Id: "more" + string(rune('a'+i)), Host: "web1"}, "more"); ok {
			sent++
		}
	}
	th2.commit()
	if sent != 0 {
		t.Errorf("the second throttle sent %d events of a full window", sent)
	}
	now = now.Add(time.Minute)
	ds := th2.begin()
	if len(ds) != 1 || ds[0].count != 7 || ds[0].first.id != "web1c" || ds[0].last.id != "mored" {
		t.Fatalf("digests after the window = %+v, want one of 7 from web1c to mored", ds)
	}
	th2.commit()
	th = th2
	save()
	if got := loadAll(t, s); len(got) != 0 {
		t.Errorf("windows left in the bucket after their digests were confirmed: %v", got)
	}
}

// BenchmarkWindowWrites is the cost a committing transaction adds: the
// writes of the windows it touched, on an embedded server.
func BenchmarkWindowWrites(b *testing.B) {
	bb := bustest.Open(b)
	for _, keys := range []int{1, 10, 100} {
		b.Run(strconv.Itoa(keys)+" keys", func(b *testing.B) {
			s := openWindows(b, bb, "bench"+strconv.Itoa(keys))
			start := time.Now()
			changes := map[string]*window{}
			for i := range keys {
				k := "host" + strconv.Itoa(i)
				changes[k] = &window{key: k, label: "host=" + k, start: start, sent: 10, folded: 5,
					first: folded{"01TEST1", strings.Repeat("x", 200)}, last: folded{"01TEST2", strings.Repeat("y", 200)}, firstSet: true}
			}
			for b.Loop() {
				if _, err := s.save(b.Context(), changes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
