package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-router/herald/internal/testnet"
)

func TestLineRoundTripThroughJSON(t *testing.T) {
	const runID = "3f9c0e1d2a4b5c6d"
	now := time.Date(2026, time.November, 6, 6, 10, 0, 123456789, time.Local)
	for _, size := range []int{1, 60, 199, 1000} {
		lf := newLineFormat("benchhost", runID, 123, size)
		line := lf.appendLine(nil, now, 42)

		re := regexp.MustCompile(`^<13>Nov  6 06:10:00 benchhost loadgen\[123\]: run=` + runID + ` seq=42 ts=(\d+)( [a-z0-9]+)?$`)
		m := re.FindSubmatch(line)
		if m == nil {
			t.Fatalf("size %d: line %q does not match %v", size, line, re)
		}
		if want := now.UnixNano(); string(m[1]) != itoa(want) {
			t.Errorf("size %d: ts %s, want %d", size, m[1], want)
		}
		if size >= 100 && len(line) != size {
			t.Errorf("size %d: line is %d bytes", size, len(line))
		}

		// What a file sink writes: the MSG part in a JSON string, with
		// encoding/json's HTML escaping, among other fields that need escaping.
		msg := string(line[len("<13>Nov  6 06:10:00 benchhost loadgen[123]: "):])
		out, err := json.Marshal(map[string]string{
			"host":    "bench\"host\\<x>",
			"message": "say \"hi\" <&> " + msg + "\tend",
			"raw":     string(line),
		})
		if err != nil {
			t.Fatal(err)
		}
		seq, ts, r := parseLine(out, runToken(runID))
		if r != parsed || seq != 42 || ts != now.UnixNano() {
			t.Errorf("size %d: parseLine(%s) = %d, %d, %v", size, out, seq, ts, r)
		}
	}
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestParseLine(t *testing.T) {
	tok := runToken("abc")
	for _, c := range []struct {
		line    string
		seq, ts int64
		r       parseResult
	}{
		{`{"message":"run=abc seq=0 ts=1 x"}`, 0, 1, parsed},
		{`{"message":"run=abc seq=999999 ts=9223372036854775807"}`, 999999, math.MaxInt64, parsed},
		{`{"a":"\u003c13\u003e","message":"\"q\" run=abc seq=7 ts=1795673400123456789 pad\\"}`, 7, 1795673400123456789, parsed},
		{`{"message":"run=abcd seq=1 ts=2"}`, 0, 0, notOurs}, // another run
		{`{"message":"run=xabc seq=1 ts=2"}`, 0, 0, notOurs},
		{`{"message":"hello"}`, 0, 0, notOurs},
		{`{"message":"run=abc seq= ts=2"}`, 0, 0, malformed},
		{`{"message":"run=abc seq=1 tx=2"}`, 0, 0, malformed},
		{`{"message":"run=abc seq=1 ts="}`, 0, 0, malformed},
		{`{"message":"run=abc seq=1 ts=9223372036854775808"}`, 0, 0, malformed}, // overflow
	} {
		seq, ts, r := parseLine([]byte(c.line), tok)
		if seq != c.seq || ts != c.ts || r != c.r {
			t.Errorf("parseLine(%s) = %d, %d, %v; want %d, %d, %v", c.line, seq, ts, r, c.seq, c.ts, c.r)
		}
	}
}

func TestTrackerCountsDuplicatesAndRange(t *testing.T) {
	tr := newTracker("r1", 100)
	now := int64(5_000_000)
	lines := []string{
		`{"message":"run=r1 seq=0 ts=1000000"}`,
		`{"message":"run=r1 seq=99 ts=3000000"}`,
		`{"message":"run=r1 seq=0 ts=1000000"}`, // duplicate
		`{"message":"run=r1 seq=100 ts=1"}`,     // out of range
		`{"message":"run=r2 seq=5 ts=1"}`,       // not ours
	}
	var fresh int
	for _, l := range lines {
		if tr.line([]byte(l), now) {
			fresh++
		}
	}
	if fresh != 2 || tr.delivered.Load() != 2 || tr.dups.Load() != 1 || tr.malformed.Load() != 1 {
		t.Errorf("fresh %d delivered %d dups %d malformed %d", fresh, tr.delivered.Load(), tr.dups.Load(), tr.malformed.Load())
	}
	if got := tr.hist.quantile(1); got != 4_000_000 {
		t.Errorf("max latency %d, want 4000000", got)
	}
	if got := tr.hist.quantile(0.5); got != 2_000_000 && math.Abs(float64(got)-2e6) > 2e6/histSub {
		t.Errorf("p50 latency %d, want about 2000000", got)
	}
}

func TestHistogramBuckets(t *testing.T) {
	prevHi := int64(-1)
	for i := range histBuckets {
		lo, hi := histBounds(i)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d = [%d, %d], previous ended at %d", i, lo, hi, prevHi)
		}
		if histIndex(lo) != i || histIndex(hi) != i {
			t.Fatalf("bucket %d = [%d, %d] but histIndex gives %d, %d", i, lo, hi, histIndex(lo), histIndex(hi))
		}
		if lo >= histSub && float64(hi-lo+1)/float64(lo) > 1.0/histSub+1e-12 {
			t.Fatalf("bucket %d = [%d, %d] is too wide", i, lo, hi)
		}
		prevHi = hi
	}
	if prevHi != math.MaxInt64 {
		t.Fatalf("last bucket ends at %d", prevHi)
	}
}

// exactQuantile is the nearest-rank quantile of sorted values.
func exactQuantile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Error("empty histogram")
	}
	// Small values are exact.
	for v := int64(1); v <= 10; v++ {
		h.add(v)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0, 1}, {0.1, 1}, {0.5, 5}, {0.51, 6}, {0.99, 10}, {1, 10}} {
		if got := h.quantile(c.q); got != c.want {
			t.Errorf("1..10: quantile(%v) = %d, want %d", c.q, got, c.want)
		}
	}

	// Latency-like data: within the bucket resolution of the exact answer.
	rng := rand.New(rand.NewPCG(1, 2))
	h = histogram{}
	vals := make([]int64, 200_000)
	for i := range vals {
		v := int64(rng.ExpFloat64()*20e6) + int64(rng.IntN(1000)) // ~20 ms mean, in ns
		if i%1000 == 0 {
			v = int64(rng.Float64() * 30e9) // a tail up to 30 s
		}
		vals[i] = v
		h.add(v)
	}
	h.add(-5) // clock step: counts as 0
	vals = append(vals, 0)
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		want, got := exactQuantile(vals, q), h.quantile(q)
		if math.Abs(float64(got-want)) > float64(want)/histSub+1 {
			t.Errorf("quantile(%v) = %d, exact %d", q, got, want)
		}
	}
	if got, want := h.quantile(1), vals[len(vals)-1]; got != want {
		t.Errorf("max = %d, want %d", got, want)
	}
	if got := h.quantile(0); got != 0 {
		t.Errorf("min = %d, want 0", got)
	}
}

func TestFollower(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out", "events.jsonl")
	fl := newFollower(path)
	defer fl.close()
	var got []string
	collect := func(l []byte, _ int64) bool { got = append(got, string(l)); return true }
	poll := func() {
		t.Helper()
		if _, err := fl.poll(collect); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("lines %q, want %q", got, want)
		}
		got = nil
	}

	poll() // no file yet
	expect()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("a\nb\npar")
	poll()
	expect("a", "b")
	f.WriteString("tial\n")
	poll()
	expect("partial")
	f.WriteString(string(make([]byte, 3*readBufSize)) + "\nafter\n") // longer than the read buffer
	poll()
	if len(got) != 2 || len(got[0]) != 3*readBufSize || got[1] != "after" {
		t.Fatalf("long line: got %d lines", len(got))
	}
	got = nil

	// Truncated and written again.
	f.Truncate(0)
	f.WriteString("t\n")
	poll()
	expect("t")

	// Replaced (rotation): the rest of the old file, then the new one from its start.
	f.WriteString("old\n")
	f.Close()
	os.Rename(path, path+".1")
	os.WriteFile(path, []byte("new1\n"), 0o644)
	poll()
	expect("old", "new1")

	// A follower starts at the end of an existing file.
	fl2 := newFollower(path)
	defer fl2.close()
	f, _ = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	f.WriteString("new2\n")
	f.Close()
	if _, err := fl2.poll(collect); err != nil {
		t.Fatal(err)
	}
	expect("new2")
}

func TestParseStatCPU(t *testing.T) {
	stat := "1234 (we(ird) name) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 12 0 100 1000000 5000 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 325 {
		t.Errorf("parseStatCPU = %d, %v; want 325", got, err)
	}
	if _, err := parseStatCPU([]byte("1 (x) S 1 2")); err == nil {
		t.Error("short stat: no error")
	}
}

func TestProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := procCPUTicks(os.Getpid()); err != nil {
		t.Error(err)
	}
	if rss, err := procPeakRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("procPeakRSS = %d, %v", rss, err)
	}
	if hz := clockTicks(); hz <= 0 {
		t.Errorf("clockTicks = %v", hz)
	}
}

// The peers in compare.sh write plain text, not JSON; the same parser must
// find the tokens in each one's format.
func TestParseLineInPeersPlainTextOutput(t *testing.T) {
	tok := runToken("3f9c")
	for _, c := range []struct{ peer, line string }{
		{"rsyslog", `Nov 26 06:10:00 benchhost loadgen[123]: run=3f9c seq=42 ts=1795673400123456789 abcdef`},
		{"syslog-ng", `Nov 26 06:10:00 benchhost loadgen[123]: run=3f9c seq=42 ts=1795673400123456789 abcdef`},
		{"benthos", `{"appname":"loadgen","hostname":"benchhost","message":"run=3f9c seq=42 ts=1795673400123456789 abcdef","procid":"123","timestamp":"2026-11-26T06:10:00Z"}`},
		{"a message cut right after ts", `Nov 26 06:10:00 benchhost loadgen[123]: run=3f9c seq=42 ts=1795673400123456789`},
	} {
		seq, ts, r := parseLine([]byte(c.line), tok)
		if r != parsed || seq != 42 || ts != 1795673400123456789 {
			t.Errorf("%s: parseLine(%s) = %d, %d, %v", c.peer, c.line, seq, ts, r)
		}
	}
}

func TestPidFlagTakesAListOfProcesses(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want []int
		ok   bool
	}{
		{"", nil, true},
		{"12", []int{12}, true},
		{"12,13, 14", []int{12, 13, 14}, true},
		{"12,,13", nil, false},
		{"0", nil, false},
		{"x", nil, false},
	} {
		var args []string
		if c.arg != "" {
			args = []string{"-pid", c.arg}
		}
		o, err := parseFlags(args, io.Discard)
		if (err == nil) != c.ok {
			t.Errorf("-pid %q: error %v, want ok=%v", c.arg, err, c.ok)
			continue
		}
		if err == nil && !slices.Equal(o.pids, c.want) {
			t.Errorf("-pid %q: pids %v, want %v", c.arg, o.pids, c.want)
		}
	}
	self := []int{os.Getpid(), os.Getpid()}
	one, err1 := procPeakRSS(os.Getpid())
	two, err2 := procsPeakRSS(self)
	if err1 != nil || err2 != nil || two < 2*one {
		t.Errorf("procsPeakRSS of the same process twice = %d, %v; one = %d, %v", two, err2, one, err1)
	}
	if _, err := procsCPUTicks(self); err != nil {
		t.Error(err)
	}
}

func TestApacheLinesCarryTheTokensInTheUserAgent(t *testing.T) {
	const runID = "3f9c0e1d2a4b5c6d"
	now := time.Date(2026, time.November, 6, 6, 10, 0, 123456789, time.UTC)
	for _, size := range []int{1, 150, 199, 1000} {
		lf := newApacheFormat(runID, size)
		line := lf.appendLine(nil, now.In(time.FixedZone("", 0)), 42)
		re := regexp.MustCompile(`^10\.1\.2\.3 - - \[06/Nov/2026:06:10:00 \+0000\] "GET /index\.html HTTP/1\.1" 200 2326 "http://www\.example\.com/start\.html" "Mozilla/5\.0 \(loadgen\) run=` +
			runID + ` seq=42 ts=\d+( [a-z0-9]+)?"$`)
		if !re.Match(line) {
			t.Fatalf("size %d: line %q does not match %v", size, line, re)
		}
		if size >= 200 && len(line) != size {
			t.Errorf("size %d: line is %d bytes", size, len(line))
		}
		if seq, ts, r := parseLine(line, runToken(runID)); r != parsed || seq != 42 || ts != now.UnixNano() {
			t.Errorf("size %d: parseLine = %d, %d, %v", size, seq, ts, r)
		}
	}
}

func TestCounterIsReadFromPrometheusText(t *testing.T) {
	const series = `herald_sink_committed_events_total{sink="events"}`
	for _, c := range []struct {
		name, text string
		want       int64
		ok         bool
	}{
		{"a counter among others", "# HELP x\nherald_sink_committed_events_total{sink=\"other\"} 7\n" + series + " 1.2345e+06\nup 1\n", 1234500, true},
		{"a counter not created yet is zero", "up 1\n", 0, true},
		{"a value that is no number is an error", series + " many\n", 0, false},
	} {
		got, err := parseCounter(strings.NewReader(c.text), series)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%s: got %d, %v; want %d, ok=%v", c.name, got, err, c.want, c.ok)
		}
	}
}

// The loadgen is its own server under test here: what it sends comes back to
// its counting listener, or into the file it follows.
func TestLoopbackRunsCountEveryLine(t *testing.T) {
	port := testnet.FreePort(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "in.log")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"tcp lines to the counting listener", []string{"-proto", "tcp", "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-listen", fmt.Sprintf("127.0.0.1:%d", port)}},
		{"apache lines over two connections", []string{"-format", "apache", "-conns", "2", "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-listen", fmt.Sprintf("127.0.0.1:%d", port)}},
		{"lines appended to a file it follows", []string{"-proto", "file", "-addr", file, "-out", file}},
		{"only the last line looked for", []string{"-proto", "file", "-addr", file, "-out", file, "-last"}},
	} {
		var out, errb strings.Builder
		args := append([]string{"-n", "20000", "-timeout", "60s", "-progress", "0", "-json"}, c.args...)
		if rc := run(args, &out, &errb); rc != 0 {
			t.Fatalf("%s: exit %d\n%s%s", c.name, rc, out.String(), errb.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		var res result
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if res.Delivered != 20000 || res.Missing != 0 || res.Duplicates != 0 || res.StopReason != "complete" {
			t.Errorf("%s: delivered %d missing %d duplicates %d stop %s", c.name, res.Delivered, res.Missing, res.Duplicates, res.StopReason)
		}
	}
}

func TestDeliveryIsCountedOneWayOnly(t *testing.T) {
	for _, args := range [][]string{
		{"-out", "x", "-listen", "127.0.0.1:1"},
		{"-metric", "http://127.0.0.1:1/metrics", "-out", "x"},
		{"-last"},
		{"-proto", "file", "-conns", "2"},
		{"-format", "json"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestBlackholeRunEndsWhenTheCounterReachesN(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var received atomic.Int64 // lines the blackhole read: what its counter says
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					received.Add(int64(bytes.Count(buf[:n], []byte{'\n'})))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE herald_sink_committed_events_total counter\nherald_sink_committed_events_total{sink=\"events\"} %d\n", received.Load())
	}))
	t.Cleanup(srv.Close)

	var out, errb strings.Builder
	if rc := run([]string{"-n", "20000", "-timeout", "60s", "-progress", "0", "-json", "-addr", ln.Addr().String(), "-metric", srv.URL}, &out, &errb); rc != 0 {
		t.Fatalf("exit %d\n%s%s", rc, out.String(), errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var res result
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatal(err)
	}
	if res.Delivered != 20000 || res.Delivery != "metric" || res.StopReason != "complete" || res.P50Ms != 0 {
		t.Errorf("delivered %d by %s, stop %s, p50 %v ms", res.Delivered, res.Delivery, res.StopReason, res.P50Ms)
	}
}
