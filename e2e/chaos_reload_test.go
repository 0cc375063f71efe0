package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The chaos suite's reload storm and SIGTERM cases (issue 9): reload_test.go
// proves five reloads under load lose nothing; here thirty come as fast as
// herald takes them, by SIGHUP and POST /reload, some at once, some invalid,
// while lines stream in, and the process must end the storm as lean as it
// began. Then SIGTERM falls on a loaded process again and again: each stop
// must finish within shutdown_timeout, and every record herald acknowledged
// must reach the sink, across the restarts on the same data folder.

// stormVariant is one config file of the storm.
type stormVariant struct {
	name     string
	valid    bool
	targets  string // the targets section and any rules
	fsyncOne bool   // sink one with fsync: the same sink, other options
}

// stormVariants are the files the storm alternates: the marked lines go to
// target log through sink one or two; audit, when present, never gets them.
var stormVariants = []stormVariant{
	{name: "base", valid: true, targets: `targets:
  log: {bit: 4, sinks: [one]}
`},
	{name: "log's sink changed to two", valid: true, targets: `targets:
  log: {bit: 4, sinks: [two]}
`},
	{name: "sink one's options changed in place", valid: true, fsyncOne: true, targets: `targets:
  log: {bit: 4, sinks: [one]}
`},
	{name: "a filter on log", valid: true, targets: `targets:
  log: {bit: 4, sinks: [one], filter: 'host != "nobody" && message contains "seq="'}
`},
	{name: "target audit added", valid: true, targets: `targets:
  log: {bit: 4, sinks: [one]}
  audit: {bit: 2, sinks: [audit]}
rules:
  - {when: 'host == "nobody"', mask: 2, add: true}
`},
	{name: "log's chain becomes two then one", valid: true, targets: `targets:
  log: {bit: 4, sinks: [two, one]}
`},
	{name: "an unknown sink", targets: `targets:
  log: {bit: 4, sinks: [nowhere]}
`},
	{name: "a filter comparing a number with a string", targets: `targets:
  log: {bit: 4, sinks: [one], filter: 'severity == "high"'}
`},
	{name: "broken YAML", targets: `targets:
  log: {bit: 4, sinks: [one]
`},
}

// stormConfig renders variant v: the fixed head (bus, metrics, the
// receiver, which no variant changes so it keeps its connections), v's
// targets and rules, then the sinks.
func stormConfig(v stormVariant, natsPort, metricsPort, syslogPort int) string {
	fsync := ""
	if v.fsyncOne {
		fsync = ", fsync: true"
	}
	return fmt.Sprintf(`# written by herald's e2e reload storm: %s
log: {level: info, format: text}
bus:
  embedded: {listen: 127.0.0.1:%d, data_dir: nats}
  ack_wait: 5s
metrics: {listen: 127.0.0.1:%d, pprof: true}
shutdown_timeout: 30s
receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:%d}
%ssinks:
  one: {type: file, path: out/one.jsonl, format: json%s}
  two: {type: file, path: out/two.jsonl, format: json}
  audit: {type: file, path: out/audit.jsonl, format: json}
`, v.name, natsPort, metricsPort, syslogPort, v.targets, fsync)
}

// writeFileAtomic replaces path's content in one rename, as an operator's
// editor or config management does, so a reload never reads half a file.
func writeFileAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// stormStep is one reload of the storm.
type stormStep struct {
	variant int
	how     string // "hup", "post" or "both" (a SIGHUP and a POST at once)
}

// stormPlan: 30 reloads, each file after the one before as soon as herald
// has answered; it ends on the base config so the process can be compared
// with itself before the storm.
func stormPlan() []stormStep {
	order := []int{1, 6, 8, 4, 3, 7, 2, 5, 4, 8, 0, 1, 4, 6, 3, 2, 0, 7, 5, 4, 6, 3, 1, 2, 7, 6, 4, 7, 1, 0}
	steps := make([]stormStep, len(order))
	for i, v := range order {
		how := []string{"hup", "post"}[i%2]
		if i%7 == 6 {
			how = "both"
		}
		steps[i] = stormStep{variant: v, how: how}
	}
	return steps
}

// logOutcomes counts the reload outcomes herald has logged: each reload
// logs "reloaded", or "reload refused" once per problem (every invalid
// variant has exactly one, checked below), or "reload failed".
func logOutcomes(p *proc) (ok, refused int) {
	data, _ := os.ReadFile(p.logPath)
	s := string(data)
	return strings.Count(s, "msg=reloaded"), strings.Count(s, "reload refused") + strings.Count(s, "reload failed")
}

// stormResult is what the storm goroutine reports.
type stormResult struct {
	err              error
	ok, refused      int // outcomes logged
	posts            map[int]int
	longest, total   time.Duration
	longestVariant   string
	took             time.Duration // the whole storm
	reloadsPerSecond float64
}

// runStorm performs the plan, pacing one step every `every` at most (the
// load keeps running), and waits for each step's outcome before the next.
func runStorm(h *proc, cfgPath string, plan []stormStep, every time.Duration, render func(stormVariant) string) stormResult {
	res := stormResult{posts: map[int]int{}}
	client := &http.Client{Timeout: 60 * time.Second}
	post := func() (int, error) {
		resp, err := client.Post(fmt.Sprintf("http://127.0.0.1:%d/reload", h.metricsPort), "text/plain", nil)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	start := time.Now()
	for i, st := range plan {
		if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
			time.Sleep(d) // pacing the storm, not synchronising with herald
		}
		v := stormVariants[st.variant]
		content := render(v)
		tmp := cfgPath + ".new"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			res.err = err
			return res
		}
		if err := os.Rename(tmp, cfgPath); err != nil {
			res.err = err
			return res
		}
		ok0, ref0 := logOutcomes(h)
		began := time.Now()
		want := 1
		var wg sync.WaitGroup
		var code int
		var perr error
		if st.how == "post" || st.how == "both" {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, perr = post()
			}()
		}
		if st.how == "hup" || st.how == "both" {
			if err := h.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				res.err = fmt.Errorf("step %d: SIGHUP: %w", i+1, err)
				return res
			}
		}
		if st.how == "both" {
			want = 2
		}
		wg.Wait()
		if perr != nil {
			res.err = fmt.Errorf("step %d (%s, %s): POST /reload: %w", i+1, v.name, st.how, perr)
			return res
		}
		if code != 0 {
			res.posts[code]++
			if wantCode := map[bool]int{true: 200, false: 422}[v.valid]; code != wantCode {
				res.err = fmt.Errorf("step %d (%s): POST /reload answered %d, want %d", i+1, v.name, code, wantCode)
				return res
			}
		}
		// The SIGHUP's outcome (and the POST's) shows in the log.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			ok, ref := logOutcomes(h)
			if v.valid && ok-ok0 >= want || !v.valid && ref-ref0 >= want {
				break
			}
			if v.valid && ref > ref0 {
				res.err = fmt.Errorf("step %d: the valid file %q was refused; see the log", i+1, v.name)
				return res
			}
			if !v.valid && ok > ok0 {
				res.err = fmt.Errorf("step %d: the invalid file %q was loaded", i+1, v.name)
				return res
			}
			if h.exited() {
				res.err = fmt.Errorf("step %d (%s): herald exited with code %d", i+1, v.name, h.exitCode)
				return res
			}
			if time.Now().After(deadline) {
				res.err = fmt.Errorf("step %d (%s, %s): no outcome logged within 30s (reloaded %d→%d, refused %d→%d)", i+1, v.name, st.how, ok0, ok, ref0, ref)
				return res
			}
		}
		took := time.Since(began)
		res.total += took
		if took > res.longest {
			res.longest, res.longestVariant = took, fmt.Sprintf("step %d: %s by %s", i+1, v.name, st.how)
		}
	}
	res.ok, res.refused = logOutcomes(h)
	res.took = time.Since(start)
	res.reloadsPerSecond = float64(res.ok+res.refused) / res.took.Seconds()
	return res
}

func TestChaosReloadStormUnderLoadLosesNothingAndLeaksNothing(t *testing.T) {
	const events, rate = 100000, 6500.0
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	render := func(v stormVariant) string { return stormConfig(v, natsPort, metricsPort, syslogPort) }

	// Every file is what the storm thinks it is: valid ones pass herald
	// check, invalid ones fail with exactly one problem (the log count
	// above relies on it).
	for _, v := range stormVariants {
		p := filepath.Join(dir, "check.yaml")
		writeFileAtomic(t, p, render(v))
		code, out, errOut := runCommand(t, dir, 30*time.Second, "check", "--config", p)
		switch {
		case v.valid && code != 0:
			t.Fatalf("variant %q: herald check exit %d:\n%s%s", v.name, code, out, errOut)
		case !v.valid && (code == 0 || !strings.Contains(out+errOut, ": 1 problem(s)")):
			t.Fatalf("variant %q: herald check exit %d, want exactly 1 problem:\n%s%s", v.name, code, out, errOut)
		}
	}

	cfgPath := filepath.Join(dir, "herald.yaml")
	writeFileAtomic(t, cfgPath, render(stormVariants[0]))
	h := startHerald(t, "herald", cfgPath, metricsPort)
	h.waitReady(30 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	start := time.Now()
	sendDone := make(chan error, 1)
	go func() {
		sendDone <- sendChaosLines(ctx, fmt.Sprintf("127.0.0.1:%d", syslogPort), events, rate)
	}()
	t.Cleanup(func() {
		cancel()
		<-sendDone
	})

	// The marked lines may be in one.jsonl or two.jsonl: both readers share
	// one count per id, so their distinct and duplicate counts add up.
	one := newChaosSink(filepath.Join(dir, "out/one.jsonl"), events)
	two := &chaosSink{path: filepath.Join(dir, "out/two.jsonl"), counts: one.counts}
	audit := newChaosSink(filepath.Join(dir, "out/audit.jsonl"), events)
	delivered := func() int { return one.distinct + two.distinct }
	var longestStall, stallAt time.Duration
	lastNew := time.Time{}
	poll := func() {
		t.Helper()
		n := 0
		for _, s := range []*chaosSink{one, two, audit} {
			k, err := s.poll()
			if err != nil {
				t.Fatalf("reading %s: %v", s.path, err)
			}
			if s != audit {
				n += k
			}
		}
		if now := time.Now(); n > 0 {
			if !lastNew.IsZero() && now.Sub(lastNew) > longestStall {
				longestStall, stallAt = now.Sub(lastNew), lastNew.Sub(start)
			}
			lastNew = now
		}
	}
	waitFor := func(what string, within time.Duration, done func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !done() {
			if h.exited() {
				t.Fatalf("%s: herald exited with code %d", what, h.exitCode)
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Errorf("%s: not done within %s: %d of %d ids delivered (%d duplicates), sender: %v; missing: %s",
					what, within, delivered(), events, one.duplicates+two.duplicates, senderState(sendDone), firstFew(missingOf(one.counts), 20))
				chaosDiagnose(t, natsURL)
				t.FailNow()
			}
			poll()
			time.Sleep(10 * time.Millisecond)
		}
	}

	// The baseline: the pipeline warm, the sender connected, the base config.
	waitFor("warm-up", 30*time.Second, func() bool { return delivered() >= 3000 })
	gBefore, fdBefore := h.metricOrFail("go_goroutines"), h.metricOrFail("process_open_fds")

	plan := stormPlan()
	stormDone := make(chan stormResult, 1)
	go func() {
		stormDone <- runStorm(h, cfgPath, plan, 450*time.Millisecond, render)
	}()
	var storm stormResult
	stormOver := false
	waitFor("the reload storm", 60*time.Second, func() bool {
		select {
		case storm = <-stormDone:
			stormOver = true
		default:
		}
		return stormOver
	})
	if storm.err != nil {
		t.Fatalf("reload storm: %v", storm.err)
	}
	waitFor("delivery of every id", 60*time.Second, func() bool { return delivered() == events })
	if err := <-sendDone; err != nil {
		t.Errorf("sender: %v", err)
	}
	sendDone <- nil // for the cleanup
	// Duplicates may still be on their way: read on until target log's
	// consumer holds nothing, so the count is final.
	waitFor("target log's consumer to drain", 30*time.Second, func() bool { return sinkDrained(t, ctx, natsURL) })
	poll()

	// Leaks: the storm ends on the base config, with the sender gone, so
	// the process must come back to (about) its goroutines and files from
	// before; a generation left behind holds at least its runners'
	// goroutines (a pump, an actor, a keeper) and, for a file sink, a file.
	// The slack is below the number of reloads that succeed (21), so even
	// one goroutine left per reload shows.
	const goroutineSlack, fdSlack = 15, 3
	var gAfter, fdAfter float64
	leakDeadline := time.Now().Add(20 * time.Second)
	for {
		gAfter, fdAfter = h.metricOrFail("go_goroutines"), h.metricOrFail("process_open_fds")
		if gAfter <= gBefore+goroutineSlack && fdAfter <= fdBefore+fdSlack {
			break
		}
		if time.Now().After(leakDeadline) {
			t.Errorf("after %d reloads the process holds %.0f goroutines (%.0f before) and %.0f files (%.0f before): a generation was left behind",
				len(plan), gAfter, gBefore, fdAfter, fdBefore)
			t.Logf("goroutines:\n%s", h.pprofGoroutines())
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := h.ready(); err != nil {
		t.Errorf("after the storm: %v", err)
	}

	dups := one.duplicates + two.duplicates
	lost := events - delivered()
	t.Logf("reload storm: sent %d, delivered %d, lost %d, duplicates %d, longest stall %s (from %s); "+
		"%d reload steps in %s (%.1f/s): %d reloaded, %d refused, POST answers %v, slowest %s (%s), mean %s; "+
		"goroutines %.0f → %.0f, open files %.0f → %.0f; one.jsonl first had %d ids, two.jsonl %d",
		events, delivered(), lost, dups, longestStall.Round(time.Millisecond), stallAt.Round(time.Millisecond),
		len(plan), storm.took.Round(time.Millisecond), storm.reloadsPerSecond, storm.ok, storm.refused, storm.posts,
		storm.longest.Round(time.Millisecond), storm.longestVariant, (storm.total / time.Duration(len(plan))).Round(time.Millisecond),
		gBefore, gAfter, fdBefore, fdAfter, one.distinct, two.distinct)

	if lost != 0 {
		t.Errorf("%d ids lost over the storm: %s", lost, firstFew(missingOf(one.counts), 20))
	}
	// A reload drains the old stages before it returns (their batches are
	// finished, not handed back), so no reload makes a sink write twice.
	if dups != 0 {
		t.Errorf("%d duplicates: a reload made a sink write a batch twice", dups)
	}
	for _, s := range []*chaosSink{one, two} {
		if s.torn > 0 || s.foreign > 0 {
			t.Errorf("%s: %d torn lines (e.g. %q), %d foreign (e.g. %q)", s.path, s.torn, s.tornExample, s.foreign, s.foreignExample)
		}
	}
	if two.distinct == 0 {
		t.Error("two.jsonl got no id first: the sink changes of the storm did not take effect")
	}
	if n := audit.distinct + audit.duplicates + audit.torn + audit.foreign; n != 0 {
		t.Errorf("target audit, which no marked line is for, got %d lines", n)
	}
	if code := h.stop(60 * time.Second); code != 0 {
		t.Errorf("herald exited with %d after the storm", code)
	}
}

// metricOrFail reads a sample and fails the test when /metrics does not
// answer or lacks it.
func (p *proc) metricOrFail(series string) float64 {
	p.t.Helper()
	v, err := p.metric(series)
	if err != nil {
		p.t.Fatalf("%s: %v", series, err)
	}
	if v == 0 {
		p.t.Fatalf("%s: no sample on /metrics", series)
	}
	return v
}

// ready reports whether /readyz answers 200.
func (p *proc) ready() error {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", p.metricsPort))
	if err != nil {
		return fmt.Errorf("%s /readyz: %w", p.name, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s /readyz: %s", p.name, resp.Status)
	}
	return nil
}

// pprofGoroutines returns the goroutine dump (metrics.pprof must be on),
// grouped by stack, to show what a leak holds.
func (p *proc) pprofGoroutines() string {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/goroutine?debug=1", p.metricsPort))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(b)
}

// missingOf lists the ids with no copy.
func missingOf(counts []uint16) []string {
	var out []string
	for seq, c := range counts {
		if c == 0 {
			out = append(out, fmt.Sprint(seq))
		}
	}
	return out
}

// ---- SIGTERM during load ----

// ackedSender posts chaos lines to herald's HTTP intake, which answers 200
// only after JetStream stored them, so "acknowledged" has a meaning TCP
// syslog cannot give. Each worker takes the next block of ids and posts it
// until it is acknowledged, as a real client does, across herald's stops
// and restarts.
type ackedSender struct {
	url   string
	n     int     // ids in all
	per   int     // lines per request
	rate  float64 // lines/s, for all workers together
	stamp string

	next      atomic.Int64 // the first id of the next block
	mu        sync.Mutex
	acked     []bool
	nAcked    int
	retries   atomic.Int64
	ambiguous atomic.Int64 // lines of requests that failed after herald may have stored them
	firstWhy  string       // the first such failure (under mu)
}

func newAckedSender(url string, n, per int, rate float64) *ackedSender {
	return &ackedSender{url: url, n: n, per: per, rate: rate, stamp: time.Now().Format(time.Stamp), acked: make([]bool, n)}
}

func (s *ackedSender) ackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nAcked
}

// ackedIDs is a copy of the ids acknowledged so far.
func (s *ackedSender) ackedIDs() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.acked...)
}

// run is one worker; it returns when every block is handed out and its
// own are acknowledged, or ctx ends.
func (s *ackedSender) run(ctx context.Context, start time.Time) error {
	client := &http.Client{Timeout: 30 * time.Second}
	var body []byte
	for {
		from := int(s.next.Add(int64(s.per))) - s.per
		if from >= s.n {
			return nil
		}
		to := min(from+s.per, s.n)
		// Pacing, not synchronisation: a block is due at its share of the
		// rate; after a stop the overdue ones go at once, as a client's
		// backlog does.
		if d := time.Until(start.Add(time.Duration(float64(from) / s.rate * float64(time.Second)))); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		body = body[:0]
		for seq := from; seq < to; seq++ {
			body = appendChaosLine(body, s.stamp, seq)
		}
		for {
			code, answer, err := s.post(ctx, client, body)
			if err == nil && code == http.StatusOK {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("ids %d-%d not acknowledged: %w (last: %d %s %v)", from, to-1, ctx.Err(), code, answer, err)
			}
			// Refused before anything was read (herald down, shutting down,
			// saturated) cannot have stored the lines; anything else may have.
			clean := errors.Is(err, syscall.ECONNREFUSED) || code == http.StatusTooManyRequests ||
				code == http.StatusServiceUnavailable && strings.Contains(answer, "shutting down")
			if !clean {
				s.ambiguous.Add(int64(to - from))
				s.mu.Lock()
				if s.firstWhy == "" {
					s.firstWhy = fmt.Sprintf("%d %s %v", code, answer, err)
				}
				s.mu.Unlock()
			}
			s.retries.Add(1)
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		s.mu.Lock()
		for seq := from; seq < to; seq++ {
			if !s.acked[seq] {
				s.acked[seq] = true
				s.nAcked++
			}
		}
		s.mu.Unlock()
	}
}

func (s *ackedSender) post(ctx context.Context, client *http.Client, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// termCycle is what one SIGTERM measured.
type termCycle struct {
	stuck        bool          // a target whose only sink is down was running
	ackedAtTerm  int           // acknowledged when the signal was sent
	inSinkAtTerm int           // ids in the sink then: the rest was in the pipeline
	ackedAtExit  int           // acknowledged when the process was gone
	missingExit  int           // of those, not in the sink at exit
	drain        time.Duration // SIGTERM to exit
	timedOut     bool          // herald logged that shutdown_timeout cut the drain
	down         time.Duration // exit to the restart's readiness
	raced        string        // the answer to a POST /reload sent with the signal
}

// termConfig is the SIGTERM test's config; with stuck, a second target
// takes every line too (a rule adds its bit), through a file sink that cannot open its file (its
// folder is a regular file), so its queue never empties.
func termConfig(natsPort, metricsPort, httpPort int, shutdownTimeout time.Duration, stuck bool) string {
	targets := "  log: {bit: 4, sinks: [events]}\n"
	if stuck {
		targets += "  stuck: {bit: 8, sinks: [blocked]}\nrules:\n  - {when: 'message contains \"seq=\"', mask: 8, add: true}\n"
	}
	return fmt.Sprintf(`# written by herald's e2e SIGTERM chaos test
log: {level: info, format: text}
bus:
  embedded: {listen: 127.0.0.1:%d, data_dir: nats}
  ack_wait: 5s
metrics: {listen: 127.0.0.1:%d}
shutdown_timeout: %s
receivers:
  web: {type: http, listen: 127.0.0.1:%d}
targets:
%ssinks:
  events: {type: file, path: out/events.jsonl, format: json}
  blocked: {type: file, path: blocker/stuck.jsonl, format: json}
`, natsPort, metricsPort, shutdownTimeout, httpPort, targets)
}

func TestChaosSIGTERMUnderLoadDrainsInTimeAndLosesNothingAcknowledged(t *testing.T) {
	const (
		events, perRequest, workers, rate = 80000, 200, 4, 16000.0
		terms                             = 3
		shutdownTimeout                   = 8 * time.Second
	)
	seed := chaosSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dir := t.TempDir()
	natsPort, metricsPort, httpPort := freePort(t), freePort(t), freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	cfgPath := filepath.Join(dir, "herald.yaml")
	configure := func(stuck bool) {
		t.Helper()
		writeFileAtomic(t, cfgPath, termConfig(natsPort, metricsPort, httpPort, shutdownTimeout, stuck))
	}
	if err := os.WriteFile(filepath.Join(dir, "blocker"), []byte("a file where sink blocked wants a folder\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	configure(false)

	starts := 1
	h := startHerald(t, "herald-1", cfgPath, metricsPort)
	h.waitReady(30 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	snd := newAckedSender(fmt.Sprintf("http://127.0.0.1:%d/ingest", httpPort), events, perRequest, rate)
	start := time.Now()
	sendErr := make(chan error, workers)
	var sending sync.WaitGroup
	for range workers {
		sending.Add(1)
		go func() {
			defer sending.Done()
			sendErr <- snd.run(ctx, start)
		}()
	}
	t.Cleanup(func() {
		cancel()
		sending.Wait()
	})

	sink := newChaosSink(filepath.Join(dir, "out/events.jsonl"), events)
	var longestStall time.Duration
	lastNew := time.Time{}
	poll := func() {
		t.Helper()
		n, err := sink.poll()
		if err != nil {
			t.Fatalf("reading the sink: %v", err)
		}
		if now := time.Now(); n > 0 {
			if !lastNew.IsZero() && now.Sub(lastNew) > longestStall {
				longestStall = now.Sub(lastNew)
			}
			lastNew = now
		}
	}
	waitFor := func(what string, within time.Duration, done func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !done() {
			if h.exited() {
				t.Fatalf("%s: %s exited with code %d", what, h.name, h.exitCode)
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Errorf("%s: not done within %s: %d acknowledged, %d of %d ids in the sink; missing: %s",
					what, within, snd.ackedCount(), sink.distinct, events, firstFew(sink.missing(), 20))
				chaosDiagnose(t, natsURL)
				t.FailNow()
			}
			poll()
			time.Sleep(10 * time.Millisecond)
		}
	}

	var cycles []termCycle
	for c := range terms {
		// SIGTERM at a random moment of each quarter of the load, with
		// requests in flight and batches in every stage.
		at := int(float64(events) * (float64(c) + 0.4 + 0.5*rng.Float64()) / (terms + 1))
		waitFor(fmt.Sprintf("SIGTERM %d at %d acknowledged", c+1, at), 40*time.Second, func() bool { return snd.ackedCount() >= at })
		cy := termCycle{stuck: c == terms-1}
		if cy.stuck {
			// The last stop meets a sink outage: the reload adds target
			// stuck, whose queue grows until the signal and can never
			// drain, so herald must give up at shutdown_timeout and leave
			// it in JetStream.
			configure(true)
			if err := h.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitFor("the reload adding target stuck", 30*time.Second, func() bool {
				ok, refused := logOutcomes(h)
				if refused > 0 {
					t.Fatalf("the config with target stuck was refused; see the log")
				}
				return ok > 0
			})
			waitFor("target stuck's sink to be suspended", 30*time.Second, func() bool {
				v, err := h.metric(`herald_sink_suspended{sink="blocked"}`)
				return err == nil && v == 1
			})
			more := snd.ackedCount() + 2000
			waitFor("a backlog for target stuck", 30*time.Second, func() bool { return snd.ackedCount() >= more })
		}
		poll()
		cy.ackedAtTerm, cy.inSinkAtTerm = snd.ackedCount(), sink.distinct
		// In the middle stop a reload races the signal: it either finishes
		// first or is refused as too late, and the stop is as bounded.
		raced := make(chan string, 1)
		if c == 1 {
			go func() {
				client := &http.Client{Timeout: 30 * time.Second}
				resp, err := client.Post(fmt.Sprintf("http://127.0.0.1:%d/reload", metricsPort), "text/plain", nil)
				if err != nil {
					raced <- err.Error()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				raced <- fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
			}()
		} else {
			raced <- ""
		}
		signalled := time.Now()
		if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-h.done:
		case <-time.After(shutdownTimeout + 20*time.Second):
			t.Fatalf("SIGTERM %d: herald still running %s after the signal (shutdown_timeout %s)", c+1, shutdownTimeout+20*time.Second, shutdownTimeout)
		}
		cy.drain = time.Since(signalled)
		cy.raced = <-raced
		if h.exitCode != 0 {
			t.Errorf("SIGTERM %d: exit code %d", c+1, h.exitCode)
		}
		// No request can be acknowledged now: the count is final for this run.
		acked := snd.ackedIDs()
		poll()
		for seq, ok := range acked {
			if ok {
				cy.ackedAtExit++
				if sink.counts[seq] == 0 {
					cy.missingExit++
				}
			}
		}
		log, _ := os.ReadFile(h.logPath)
		cy.timedOut = bytes.Contains(log, []byte("shutdown timeout"))
		switch {
		case cy.stuck && !cy.timedOut:
			t.Errorf("SIGTERM %d: target stuck cannot drain, yet herald did not report running out of shutdown_timeout", c+1)
		case !cy.stuck && cy.timedOut:
			t.Errorf("SIGTERM %d: a healthy pipeline did not drain within shutdown_timeout %s", c+1, shutdownTimeout)
		case !cy.timedOut && cy.missingExit > 0:
			// A stop that finished in time has written everything acknowledged.
			t.Errorf("SIGTERM %d: the drain finished in time, yet %d of %d acknowledged ids are not in the sink at exit",
				c+1, cy.missingExit, cy.ackedAtExit)
		}
		if cy.drain > shutdownTimeout {
			t.Errorf("SIGTERM %d: herald took %s to stop, over shutdown_timeout %s", c+1, cy.drain.Round(time.Millisecond), shutdownTimeout)
		}
		if cy.stuck {
			configure(false) // the outage is over: the next start has no target stuck
		}
		starts++
		h = startHerald(t, fmt.Sprintf("herald-%d", starts), cfgPath, metricsPort)
		h.waitReady(30 * time.Second)
		cy.down = time.Since(signalled) - cy.drain
		cycles = append(cycles, cy)
		what := ""
		switch {
		case cy.stuck:
			what = " (target stuck)"
		case cy.raced != "":
			what = fmt.Sprintf(" (with a POST /reload, answered %q)", cy.raced)
		}
		t.Logf("SIGTERM %d%s: %d acknowledged at the signal, %d of them in the sink; %d at exit, %d of them not yet in the sink; drain %s (timed out: %v); restarted, ready %s after the exit",
			c+1, what, cy.ackedAtTerm, cy.inSinkAtTerm, cy.ackedAtExit, cy.missingExit,
			cy.drain.Round(time.Millisecond), cy.timedOut, cy.down.Round(time.Millisecond))
	}

	waitFor("every id acknowledged", 40*time.Second, func() bool { return snd.ackedCount() == events })
	sending.Wait()
	for range workers {
		if err := <-sendErr; err != nil {
			t.Errorf("sender: %v", err)
		}
	}
	waitFor("delivery of every acknowledged id", 40*time.Second, func() bool { return sink.distinct == events })
	waitFor("target log's consumer to drain", 30*time.Second, func() bool { return sinkDrained(t, ctx, natsURL) })
	poll()
	// The last stop, idle, is measured too.
	signalled := time.Now()
	if code := h.stop(shutdownTimeout + 20*time.Second); code != 0 {
		t.Errorf("the last stop: exit code %d", code)
	}
	last := time.Since(signalled)

	var drains []string
	for _, cy := range cycles {
		drains = append(drains, cy.drain.Round(time.Millisecond).String())
	}
	lost := events - sink.distinct
	snd.mu.Lock()
	why := snd.firstWhy
	snd.mu.Unlock()
	t.Logf("SIGTERM under load: sent %d (acknowledged %d, %d retried requests, %d lines in requests that failed ambiguously, first: %q), delivered %d, lost %d, duplicates %d, longest stall %s; "+
		"drains under load %s (the last with a sink down), idle %s (shutdown_timeout %s); %s in all, seed %d",
		events, snd.ackedCount(), snd.retries.Load(), snd.ambiguous.Load(), why, sink.distinct, lost, sink.duplicates, longestStall.Round(time.Millisecond),
		strings.Join(drains, ", "), last.Round(time.Millisecond), shutdownTimeout, time.Since(start).Round(time.Millisecond), seed)
	if lost != 0 {
		t.Errorf("%d acknowledged ids lost: %s", lost, firstFew(sink.missing(), 20))
	}
	if sink.torn > 0 || sink.foreign > 0 {
		t.Errorf("%d torn lines (e.g. %q), %d foreign (e.g. %q)", sink.torn, sink.tornExample, sink.foreign, sink.foreignExample)
	}
	// A graceful stop redoes nothing; only a request that failed after
	// herald may have stored it and was sent again can be written twice.
	if bound := int(snd.ambiguous.Load()); sink.duplicates > bound {
		t.Errorf("%d duplicates, more than the %d lines of requests sent again after an ambiguous failure", sink.duplicates, bound)
	}
}
