package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tapProc is a running `herald tap`.
type tapProc struct {
	cmd    *exec.Cmd
	events chan map[string]any
	stderr *lockedBuffer
	done   chan error
}

// lockedBuffer is a bytes.Buffer one goroutine writes while a failing
// test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) WriteString(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startTap runs herald tap with args and returns once it said it is
// subscribed; every JSON line it prints arrives on events.
func startTap(t *testing.T, cfg string, args ...string) *tapProc {
	t.Helper()
	cmd := exec.Command(heraldBin(t), append([]string{"tap", "--config", cfg}, args...)...)
	cmd.Dir = filepath.Dir(cfg)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start herald tap: %v", err)
	}
	tp := &tapProc{cmd: cmd, events: make(chan map[string]any, 1024), stderr: &lockedBuffer{}, done: make(chan error, 1)}
	subscribed := make(chan struct{})
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(stderrPipe)
		once := false
		for sc.Scan() {
			tp.stderr.WriteString(sc.Text() + "\n")
			if !once && strings.HasPrefix(sc.Text(), "tapping ") {
				once = true
				close(subscribed)
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"unparsable": sc.Text()}
			}
			tp.events <- m
		}
		close(tp.events)
		<-stderrDone // Wait must not run before the pipes are read out
		tp.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	select {
	case <-subscribed:
	case err := <-tp.done:
		t.Fatalf("herald tap exited before subscribing: %v\n%s", err, tp.stderr.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("herald tap did not subscribe within 30s")
	}
	return tp
}

// collect reads events until the tap exits, failing after timeout.
func (tp *tapProc) collect(t *testing.T, timeout time.Duration) []map[string]any {
	t.Helper()
	var evs []map[string]any
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-tp.events:
			if !ok {
				if err := <-tp.done; err != nil {
					t.Fatalf("herald tap: %v\n%s", err, tp.stderr.String())
				}
				return evs
			}
			evs = append(evs, ev)
		case <-deadline:
			t.Fatalf("herald tap did not finish within %s; got %d events", timeout, len(evs))
		}
	}
}

func sendTapLines(t *testing.T, addr string, lines ...string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		t.Fatal(err)
	}
}

// A tap on the resolved stage sees every event with its id, and the sink
// still gets every one of them: the tap takes nothing away.
func TestTapShowsTheEventsPassingAStageAndTakesNoneAway(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg := writeConfig(t, dir, configParams{NATSPort: natsPort, MetricsPort: metricsPort, SyslogPort: syslogPort})
	p := startHerald(t, "herald", cfg, metricsPort)
	p.waitReady(30 * time.Second)

	const n = 20
	tp := startTap(t, cfg, "--stage", "resolved", "--count", fmt.Sprint(n))
	var lines []string
	want := map[string]bool{}
	for i := range n {
		line, msg := syslogLine("tap", 0, i, "Mar  1 12:00:00")
		lines = append(lines, line)
		want[msg] = true
	}
	sendTapLines(t, fmt.Sprintf("127.0.0.1:%d", syslogPort), lines...)
	evs := tp.collect(t, 30*time.Second)
	if len(evs) != n {
		t.Fatalf("tap printed %d events, want %d", len(evs), n)
	}
	for _, ev := range evs {
		msg, _ := ev["message"].(string)
		if !want[msg] {
			t.Errorf("unexpected event %v", ev)
		}
		if id, _ := ev["id"].(string); id == "" {
			t.Errorf("a resolved event without id: %v", ev)
		}
		if ev["class"] != "rfc3164" || ev["R_time__"] == nil {
			t.Errorf("not a classified, resolved event: %v", ev)
		}
	}

	sink := newSinkFile(filepath.Join(dir, "out", "events.jsonl"), func(line []byte) (string, error) {
		var m struct{ Message string }
		err := json.Unmarshal(line, &m)
		return m.Message, err
	})
	eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		if err := sink.poll(); err != nil {
			return err
		}
		if r := sink.tally(want); len(r.missing) > 0 || r.duplicates > 0 {
			return fmt.Errorf("sink: %d missing, %d duplicates", len(r.missing), r.duplicates)
		}
		return nil
	})
	t.Logf("took %s", time.Since(start).Round(time.Millisecond))
}

func TestTapFiltersATargetsEvents(t *testing.T) {
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg := writeConfig(t, dir, configParams{NATSPort: natsPort, MetricsPort: metricsPort, SyslogPort: syslogPort})
	p := startHerald(t, "herald", cfg, metricsPort)
	p.waitReady(30 * time.Second)

	tp := startTap(t, cfg, "--stage", "target.log", "--filter", `message startsWith "keep"`, "--count", "2")
	sendTapLines(t, fmt.Sprintf("127.0.0.1:%d", syslogPort),
		"<13>Mar  1 12:00:00 h app: drop 1", "<13>Mar  1 12:00:00 h app: keep 1",
		"<13>Mar  1 12:00:00 h app: drop 2", "<13>Mar  1 12:00:00 h app: keep 2")
	evs := tp.collect(t, 30*time.Second)
	if len(evs) != 2 || evs[0]["message"] != "keep 1" || evs[1]["message"] != "keep 2" {
		t.Fatalf("tap printed %v, want the two keep events in order", evs)
	}
}

func TestTapRefusesAnUnknownStageOrABadFilter(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, configParams{NATSPort: freePort(t), MetricsPort: freePort(t)})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown stage names the stages there are", []string{"--stage", "classifier"}, "want one of raw, events"},
		{"a filter that does not compile is refused before connecting", []string{"--stage", "raw", "--filter", "severity >"}, "--filter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCommand(t, dir, 30*time.Second, append([]string{"tap", "--config", cfg}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.want)
			}
		})
	}
}
