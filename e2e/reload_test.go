package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// reloadConfig is a config whose target log writes to logSink and which,
// when audit is set, adds a target audit fed by a rule.
func reloadConfig(natsPort, metricsPort, syslogPort int, logSink, auditFilter string, audit bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `log: {level: info, format: text}
bus:
  embedded: {listen: 127.0.0.1:%d, data_dir: nats}
  ack_wait: 5s
metrics: {listen: 127.0.0.1:%d}
shutdown_timeout: 60s
receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:%d}
targets:
  log: {bit: 4, sinks: [%s]}
`, natsPort, metricsPort, syslogPort, logSink)
	if audit {
		fmt.Fprintf(&b, "  audit: {bit: 2, sinks: [audit], filter: '%s'}\nrules:\n  - {when: 'host == \"host1\"', mask: 2, add: true}\n", auditFilter)
	}
	b.WriteString(`sinks:
  one: {type: file, path: out/one.jsonl}
  two: {type: file, path: out/two.jsonl}
  audit: {type: file, path: out/audit.jsonl}
`)
	return b.String()
}

func TestReloadUnderLoadLosesNothingAndAnInvalidFileChangesNothing(t *testing.T) {
	const conns, perConn = 2, 50000
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfgPath := filepath.Join(dir, "herald.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadConfig(natsPort, metricsPort, syslogPort, "one", "", false))
	h := startHerald(t, "herald", cfgPath, metricsPort)
	h.waitReady(30 * time.Second)

	// Stream lines for the whole test.
	stamp := time.Now().Format(time.Stamp)
	addr := fmt.Sprintf("127.0.0.1:%d", syslogPort)
	var sent atomic.Int64
	done := make(chan error, conns)
	for c := range conns {
		go func() {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				done <- err
				return
			}
			defer conn.Close()
			w := bufio.NewWriterSize(conn, 16<<10)
			for i := range perConn {
				line, _ := syslogLine("tcp", c, i, stamp)
				if _, err := w.WriteString(line + "\n"); err != nil {
					done <- fmt.Errorf("connection %d line %d: %w", c, i, err)
					return
				}
				sent.Add(1)
				if i%2000 == 1999 {
					_ = w.Flush()
					time.Sleep(20 * time.Millisecond) // spread the stream over the reloads
				}
			}
			done <- w.Flush()
		}()
	}

	reloaded := func(n float64) {
		t.Helper()
		eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
			data, _ := os.ReadFile(h.logPath)
			if got := float64(strings.Count(string(data), `msg=reloaded`)); got < n {
				return fmt.Errorf("%.0f reloads logged, want %.0f", got, n)
			}
			return nil
		})
	}
	hup := func() {
		t.Helper()
		if err := h.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitSent := func(n int64) {
		t.Helper()
		eventually(t, 30*time.Second, 5*time.Millisecond, func() error {
			if sent.Load() < n {
				return fmt.Errorf("%d lines sent", sent.Load())
			}
			return nil
		})
	}

	// 1: add a target (audit, fed by a rule) — no restart.
	waitSent(10000)
	write(reloadConfig(natsPort, metricsPort, syslogPort, "one", `host == "host1"`, true))
	hup()
	reloaded(1)
	eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if fi, err := os.Stat(filepath.Join(dir, "out/audit.jsonl")); err != nil || fi.Size() == 0 {
			return fmt.Errorf("audit.jsonl has nothing yet")
		}
		return nil
	})
	// 2: an invalid file: refused, the running config stays.
	waitSent(30000)
	write("targets: {log: {bit: 4, sinks: [nowhere]}\n")
	hup()
	eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		data, _ := os.ReadFile(h.logPath)
		if !strings.Contains(string(data), "reload refused") {
			return fmt.Errorf("no refusal logged yet")
		}
		return nil
	})
	if h.exited() {
		t.Fatal("an invalid config made herald exit")
	}
	// 3: change the log target's sink, and wait until the new sink has
	// written something (the pipeline may lag the sender on a busy machine).
	waitSent(45000)
	write(reloadConfig(natsPort, metricsPort, syslogPort, "two", `host == "host1"`, true))
	hup()
	reloaded(2)
	eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if fi, err := os.Stat(filepath.Join(dir, "out/two.jsonl")); err != nil || fi.Size() == 0 {
			return fmt.Errorf("two.jsonl has nothing yet")
		}
		return nil
	})
	// 4: change the audit filter (now nothing passes it).
	waitSent(60000)
	write(reloadConfig(natsPort, metricsPort, syslogPort, "two", `host == "nobody"`, true))
	hup()
	reloaded(3)
	// 5: back to the first sink.
	waitSent(75000)
	write(reloadConfig(natsPort, metricsPort, syslogPort, "one", `host == "nobody"`, true))
	hup()
	reloaded(4)

	for range conns {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	expected := map[string]bool{}
	for c := range conns {
		for i := range perConn {
			_, msg := syslogLine("tcp", c, i, stamp)
			expected[syslogKey.FindString(msg)] = true
		}
	}
	keyOf := func(line []byte) (string, error) {
		var l sinkLine
		if err := json.Unmarshal(line, &l); err != nil {
			return "", err
		}
		k := syslogKey.FindString(l.Message)
		if k == "" {
			return "", fmt.Errorf("no key in %q", l.Message)
		}
		return k, nil
	}
	one := newSinkFile(filepath.Join(dir, "out/one.jsonl"), keyOf)
	two := newSinkFile(filepath.Join(dir, "out/two.jsonl"), keyOf)
	audit := newSinkFile(filepath.Join(dir, "out/audit.jsonl"), keyOf)
	eventually(t, 90*time.Second, 100*time.Millisecond, func() error {
		for _, f := range []*sinkFile{one, two, audit} {
			if err := f.poll(); err != nil {
				return err
			}
		}
		missing := 0
		for k := range expected {
			if one.counts[k] == 0 && two.counts[k] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d lines in neither sink of target log (one: %d, two: %d)", missing, len(expected), one.distinct(), two.distinct())
		}
		return nil
	})
	if two.distinct() == 0 {
		t.Error("changing the log target's sink did not take effect: two.jsonl is empty")
	}
	if audit.distinct() == 0 {
		t.Error("the target added by reload got nothing")
	}
	for k := range audit.counts {
		if !strings.HasPrefix(k, "tcp-1-") {
			t.Errorf("audit got %s, which its filter (host1 only) excludes", k)
			break
		}
	}
	dups := 0
	for k := range expected {
		if n := one.counts[k] + two.counts[k]; n > 1 {
			dups += n - 1
		}
	}
	t.Logf("%d lines over 5 reloads (one invalid): target log wrote %d to one and %d to two, %d duplicates; audit got %d",
		len(expected), one.distinct(), two.distinct(), dups, audit.distinct())
	if code := h.stop(60 * time.Second); code != 0 {
		t.Errorf("herald exited with %d", code)
	}
}
