package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"
)

// filesParams fill filesConfig.
type filesParams struct {
	NATSPort, MetricsPort, HTTPPort int
	MaxInFlight                     int
}

// filesConfig has a file receiver following logs/app.log, an HTTP
// receiver and a JSON file sink.
var filesConfig = template.Must(template.New("files").Parse(`# written by herald's e2e intake tests
log: {level: info, format: text}
bus:
  embedded:
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
  ack_wait: 10s
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 60s
receivers:
  files:
    type: file
    paths: [logs/app.log, logs/app.log.1]  # the rotated name too: lines rotated while herald is down are not lost
    poll_interval: 20ms
    rotate_wait: 2s
    commit_interval: 200ms
  web:
    type: http
    listen: 127.0.0.1:{{.HTTPPort}}
    max_in_flight: {{.MaxInFlight}}
    token: e2e-token
targets:
  log:
    bit: 4
    sinks: [events]
sinks:
  events:
    type: file
    path: out/events.jsonl
    format: json
`))

func writeFilesConfig(t *testing.T, dir string, p filesParams) string {
	t.Helper()
	if p.MaxInFlight == 0 {
		p.MaxInFlight = 64
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o750); err != nil {
		t.Fatal(err)
	}
	return writeTemplate(t, dir, filesConfig, p)
}

// filesEvent is the part of a sink line these tests look at.
type filesEvent struct {
	Time    string `json:"time"`
	Host    string `json:"host"`
	Service string `json:"service"`
	Class   string `json:"class"`
	Source  string `json:"source"`
	Message string `json:"message"`
	Subject string `json:"subject"`
}

// readFilesEvents returns every event the sink holds, by message.
func readFilesEvents(t *testing.T, path string) map[string]filesEvent {
	t.Helper()
	out := map[string]filesEvent{}
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var ev filesEvent
		if len(line) == 0 || json.Unmarshal(line, &ev) != nil {
			continue
		}
		out[ev.Message] = ev
	}
	return out
}

// filesTailKey is the key of a line of the tail test: its message.
func filesTailKey(line []byte) (string, error) {
	var ev filesEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return "", err
	}
	return ev.Message, nil
}

// filesLogWriter appends numbered lines to a file through one handle, as an
// application does (O_APPEND, so after a truncation it writes at the start).
type filesLogWriter struct {
	t    *testing.T
	f    *os.File
	path string
	want map[string]bool
	err  error
}

func filesOpenLog(t *testing.T, path string, want map[string]bool) *filesLogWriter {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &filesLogWriter{t: t, f: f, path: path, want: want}
}

func filesTailLine(i int) string {
	return fmt.Sprintf("tail-%06d some application said something worth keeping", i)
}

// writeQuiet is write for another goroutine: it records the first error
// in w.err instead of failing the test. Its caller must wait for it before
// reading w.want or w.err.
func (w *filesLogWriter) writeQuiet(from, to int) {
	var b bytes.Buffer
	for i := from; i < to; i++ {
		b.WriteString(filesTailLine(i))
		b.WriteByte('\n')
		w.want[filesTailLine(i)] = true
	}
	if _, err := w.f.Write(b.Bytes()); err != nil && w.err == nil {
		w.err = err
	}
}

// write appends lines [from, to) as a busy application does: 200 lines
// every 2 ms or so (about 60,000 lines a second here).
func (w *filesLogWriter) write(from, to int) {
	w.t.Helper()
	for i := from; i < to; i += 200 {
		w.writeQuiet(i, min(i+200, to))
		time.Sleep(2 * time.Millisecond) // pacing the load, not synchronising
	}
	if w.err != nil {
		w.t.Fatal(w.err)
	}
}

func TestFileTailRotationTruncationAndRestartsDeliverEveryLine(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	natsPort, metricsPort, httpPort := freePort(t), freePort(t), freePort(t)
	cfg := writeFilesConfig(t, dir, filesParams{NATSPort: natsPort, MetricsPort: metricsPort, HTTPPort: httpPort})
	logPath := filepath.Join(dir, "logs", "app.log")
	sink := newSinkFile(filepath.Join(dir, "out", "events.jsonl"), filesTailKey)
	want := map[string]bool{}
	waitAll := func(what string) {
		t.Helper()
		eventually(t, 60*time.Second, 50*time.Millisecond, func() error {
			if err := sink.poll(); err != nil {
				return err
			}
			if r := sink.tally(want); len(r.missing) > 0 {
				return fmt.Errorf("%s: %d of %d lines missing (%s)", what, len(r.missing), len(want), firstFew(r.missing, 3))
			}
			return nil
		})
	}

	h := startHerald(t, "herald-1", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	w := filesOpenLog(t, logPath, want)
	w.write(0, 20000)

	// logrotate's default: rename, the writer goes on writing to the old
	// file for a moment, then reopens the new one.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	w.write(20000, 22000)
	w = filesOpenLog(t, logPath, want)
	w.write(22000, 40000)

	// kill -9 while herald is reading: herald dies when the writer passes
	// line 50000, and the writer goes on while herald is down.
	half := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := 40000; i < 60000; i += 200 {
			w.writeQuiet(i, i+200)
			if i+200 == 50000 {
				close(half)
			}
			time.Sleep(2 * time.Millisecond) // pacing the load, not synchronising
		}
	}()
	<-half
	h.kill()
	<-wrote
	if w.err != nil {
		t.Fatal(w.err)
	}
	h = startHerald(t, "herald-2", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	waitAll("after the kill")
	afterKill := sink.tally(want)

	// copytruncate: copy, truncate, the writer goes on at the start. What
	// herald had not read at the truncation is lost by the method itself,
	// so it is truncated once herald has read everything.
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logPath+".copy", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(logPath, 0); err != nil {
		t.Fatal(err)
	}
	w.write(60000, 80000)
	waitAll("after copytruncate")

	// A graceful restart writes every position: nothing is read twice.
	if code := h.stop(60 * time.Second); code != 0 {
		t.Fatalf("herald exited %d after SIGTERM", code)
	}
	w.write(80000, 85000)
	h = startHerald(t, "herald-3", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	waitAll("after the graceful restart")

	r := sink.tally(want)
	t.Logf("%d lines written, %d events in the sink, %d duplicated lines (%d extra copies) after kill -9; %d extra copies at the end; %s in all",
		len(want), sink.lines, len(afterKill.dupKeys), afterKill.duplicates, r.duplicates, time.Since(start).Round(time.Millisecond))
	if len(r.unexpected) > 0 || sink.nbad > 0 {
		t.Errorf("unexpected events: %s; bad lines: %v", firstFew(r.unexpected, 3), sink.bad)
	}
	if r.duplicates != afterKill.duplicates {
		t.Errorf("copytruncate or the graceful restart made %d more duplicates (%s)", r.duplicates-afterKill.duplicates, firstFew(r.dupKeys, 5))
	}
	for _, k := range afterKill.dupKeys {
		n, _ := strconv.Atoi(strings.TrimPrefix(strings.Fields(k)[0], "tail-"))
		if n >= 60000 {
			t.Errorf("line %q repeated though written after the restart", k)
		}
	}
	if n := len(afterKill.dupKeys); n > 0 {
		first, _ := strconv.Atoi(strings.TrimPrefix(strings.Fields(afterKill.dupKeys[0])[0], "tail-"))
		last, _ := strconv.Atoi(strings.TrimPrefix(strings.Fields(afterKill.dupKeys[n-1])[0], "tail-"))
		if last-first+1 != n {
			t.Errorf("the repeated lines are not one run before the kill: %d lines from %d to %d", n, first, last)
		}
		t.Logf("duplicates at the kill -9 boundary: lines %s .. %s", afterKill.dupKeys[0], afterKill.dupKeys[len(afterKill.dupKeys)-1])
	}
}

// filesRunIngest runs herald ingest with stdin and returns its exit code and
// stderr.
func filesRunIngest(t *testing.T, dir, stdin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, heraldBin(t), append([]string{"ingest"}, args...)...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("herald ingest did not finish within 60s; output:\n%s", stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !filesExitError(err, &ee) {
		t.Fatalf("herald ingest: %v", err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

func filesExitError(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*ee = e
	}
	return ok
}

func TestIngestPublishesWithTheAssumedHostServiceAndTime(t *testing.T) {
	dir := t.TempDir()
	natsPort, metricsPort, httpPort := freePort(t), freePort(t), freePort(t)
	cfg := writeFilesConfig(t, dir, filesParams{NATSPort: natsPort, MetricsPort: metricsPort, HTTPPort: httpPort})

	// Without herald there is nothing to publish to: exit 1, at once.
	code, out := filesRunIngest(t, dir, "x\n", "-c", cfg)
	if code != 1 || !strings.Contains(out, "is herald running") {
		t.Errorf("ingest without herald: exit %d, output %s", code, out)
	}

	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	code, out = filesRunIngest(t, dir,
		"a plain line without host\nanother plain line\n\n<13>Mar 12 09:00:00 realhost sshd[7]: has its own envelope\n",
		"-c", cfg, "-h", "ghost", "-s", "cron", "-d", "2024-03-12 10:00:00", "-v")
	if code != 0 {
		t.Fatalf("ingest exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "3 records stored") {
		t.Errorf("verbose output: %s", out)
	}
	mbox := "From root@db1 Tue Mar 12 10:00:00 2024\n" +
		"Received: from db1.example.com (db1 [10.0.0.5]) by mx.example.com; Tue, 12 Mar 2024 10:00:02 +0000\n" +
		"Subject: backup done\nDate: Tue, 12 Mar 2024 09:59:58 +0000\n\nall good\n>From here\n\n" +
		"From root@db2 Tue Mar 12 11:00:00 2024\nFrom: root@db2\nTo: ops@example.com\nSubject: second mail\n\nbody\n"
	if err := os.WriteFile(filepath.Join(dir, "root.mbox"), []byte(mbox), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := filesRunIngest(t, dir, "", "-c", cfg, "--mbox", "root.mbox", "-h", "mailhost"); code != 0 {
		t.Fatalf("ingest --mbox exit %d:\n%s", code, out)
	}

	sinkPath := filepath.Join(dir, "out", "events.jsonl")
	var evs map[string]filesEvent
	eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		evs = readFilesEvents(t, sinkPath)
		if len(evs) < 5 {
			return fmt.Errorf("%d of 5 events in the sink", len(evs))
		}
		return nil
	})
	assumed := time.Date(2024, 3, 12, 10, 0, 0, 0, time.Local)
	for _, msg := range []string{"a plain line without host", "another plain line"} {
		ev := evs[msg]
		tm, _ := time.Parse(time.RFC3339Nano, ev.Time)
		if ev.Host != "ghost" || ev.Service != "cron" || !tm.Equal(assumed) || ev.Source != "ingest" {
			t.Errorf("%q: host %q service %q time %q source %q; want ghost, cron, %s, ingest", msg, ev.Host, ev.Service, ev.Time, ev.Source, assumed)
		}
	}
	ev := evs["has its own envelope"]
	tm, _ := time.Parse(time.RFC3339Nano, ev.Time)
	if ev.Host != "realhost" || ev.Service != "sshd" || tm.Year() != 2024 || ev.Class != "rfc3164" {
		t.Errorf("a syslog line keeps its own envelope: %+v", ev)
	}
	var mails []filesEvent
	for _, e := range evs {
		if e.Subject != "" {
			mails = append(mails, e)
		}
	}
	if len(mails) != 2 {
		t.Fatalf("%d mails in the sink: %+v", len(mails), evs)
	}
	for _, m := range mails {
		switch m.Subject {
		case "backup done":
			if m.Host != "db1.example.com" || !strings.HasPrefix(m.Time, "2024-03-12T09:59:58") {
				t.Errorf("first mail: %+v", m)
			}
		case "second mail":
			if m.Host != "mailhost" {
				t.Errorf("a mail without Received headers takes -h: %+v", m)
			}
		default:
			t.Errorf("mail %+v", m)
		}
	}
}

func TestHTTPIntakeAnswersAfterTheStoreAndPushesBack(t *testing.T) {
	dir := t.TempDir()
	natsPort, metricsPort, httpPort := freePort(t), freePort(t), freePort(t)
	cfg := writeFilesConfig(t, dir, filesParams{NATSPort: natsPort, MetricsPort: metricsPort, HTTPPort: httpPort, MaxInFlight: 1})
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	url := fmt.Sprintf("http://127.0.0.1:%d/ingest", httpPort)
	post := func(ctype, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Authorization", "Bearer e2e-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}

	var nd strings.Builder
	for i := range 200 {
		fmt.Fprintf(&nd, `{"message":"http-%03d","host":"api%d","service":"billing","amount":%d}`+"\n", i, i%3, i)
	}
	if code, body := post("application/x-ndjson", nd.String()); code != 200 || body != `{"accepted":200}` {
		t.Fatalf("NDJSON: %d %s", code, body)
	}
	if code, body := post("text/plain", "<13>Mar 12 09:00:00 web7 nginx: plain over http\n"); code != 200 {
		t.Fatalf("text/plain: %d %s", code, body)
	}
	if code, body := post("application/json", `{"message":"bad","time":"yesterday"}`); code != 400 || !strings.Contains(body, "time") {
		t.Errorf("bad event: %d %s", code, body)
	}
	sinkPath := filepath.Join(dir, "out", "events.jsonl")
	eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		evs := readFilesEvents(t, sinkPath)
		for i := range 200 {
			ev, ok := evs[fmt.Sprintf("http-%03d", i)]
			if !ok {
				return fmt.Errorf("http-%03d not in the sink (%d events)", i, len(evs))
			}
			if ev.Host != fmt.Sprintf("api%d", i%3) || ev.Service != "billing" || ev.Source != "web" {
				return fmt.Errorf("http-%03d: %+v", i, ev)
			}
		}
		if ev, ok := evs["plain over http"]; !ok || ev.Host != "web7" || ev.Service != "nginx" {
			return fmt.Errorf("the text/plain record: %+v (present %v)", ev, ok)
		}
		return nil
	})

	// Saturation: a sender slow to send its body holds the only slot. On a
	// loaded machine its request is sometimes not yet being handled when
	// the probes run; a fresh slow sender is tried then (closing the old
	// one frees whatever it held).
	body := `{"message":"slow one"}`
	var slow net.Conn
	saturated := false
	var last string
	for attempt := 0; attempt < 5 && !saturated; attempt++ {
		if slow != nil {
			_ = slow.Close()
		}
		var err error
		if slow, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort)); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(slow, "POST /ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer e2e-token\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:5])
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			code, b := post("application/json", `{"message":"pushed back"}`)
			if code == 429 {
				saturated = true
				break
			}
			last = fmt.Sprintf("%d %s", code, b)
		}
	}
	defer slow.Close()
	if !saturated {
		t.Fatalf("no 429 while a slow sender held the only slot (5 tries); last answer %s", last)
	}
	fmt.Fprint(slow, body[5:])
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the slow sender got %d", resp.StatusCode)
	}
	if code, body := post("application/json", `{"message":"after the push-back"}`); code != 200 {
		t.Errorf("after the slot was freed: %d %s", code, body)
	}
	rejected, err := h.metric(`herald_stage_rejected_total{reason="saturated",stage="receiver.web"}`)
	if err != nil || rejected < 1 {
		t.Errorf("saturated rejections counted: %v, %v", rejected, err)
	}
}
