package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReplayDeliversArchivedEventsAgain(t *testing.T) {
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`bus:
  embedded: {listen: 127.0.0.1:%d, data_dir: nats}
metrics: {listen: 127.0.0.1:%d}
archive: {max_age: 1h}
receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:%d}
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out/events.jsonl}
`, natsPort, metricsPort, syslogPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Second)
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", syslogPort))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(conn)
	stamp := time.Now().Format(time.Stamp)
	for i := range 200 {
		line, _ := syslogLine("tcp", 0, i, stamp)
		fmt.Fprintln(w, line)
	}
	_ = w.Flush()
	_ = conn.Close()
	count := func() map[string]int {
		data, _ := os.ReadFile(filepath.Join(dir, "out/events.jsonl"))
		n := map[string]int{}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var e sinkLine
			if json.Unmarshal([]byte(l), &e) == nil {
				n[syslogKey.FindString(e.Message)]++
			}
		}
		return n
	}
	eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if n := len(count()); n < 200 {
			return fmt.Errorf("%d of 200 lines in the sink", n)
		}
		return nil
	})

	code, out, errOut := runCommand(t, dir, 30*time.Second, "replay", "--config", cfg, "--target", "log",
		"--since", start.UTC().Format(time.RFC3339), "--filter", `message startsWith "tcp-0-00001"`)
	if code != 0 || !strings.Contains(out, "replayed 10 events") {
		t.Fatalf("replay: exit %d\n%s\n%s", code, out, errOut)
	}
	eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		n := count()
		for i := 10; i < 20; i++ {
			if k := fmt.Sprintf("tcp-0-0000%02d", i); n[k] != 2 {
				return fmt.Errorf("%s is in the sink %d times, want 2 after the replay", k, n[k])
			}
		}
		return nil
	})
	if n := count(); n["tcp-0-000000"] != 1 || n["tcp-0-000199"] != 1 {
		t.Errorf("events the filter excluded were replayed: %d, %d", n["tcp-0-000000"], n["tcp-0-000199"])
	}
	if code, _, errOut := runCommand(t, dir, 10*time.Second, "replay", "--config", cfg, "--target", "nosuch", "--since", "1h"); code != 2 {
		t.Errorf("unknown target: exit %d (%s), want 2", code, errOut)
	}
}
