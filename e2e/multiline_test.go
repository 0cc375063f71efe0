package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAStackTraceOverTCPBecomesOneEvent(t *testing.T) {
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg := filepath.Join(dir, "herald.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`bus:
  embedded: {listen: 127.0.0.1:%d, data_dir: nats}
metrics: {listen: 127.0.0.1:%d}
receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:%d, multiline: {start: '^<\d+>', timeout: 200ms}}
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out/events.jsonl}
`, natsPort, metricsPort, syslogPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", syslogPort))
	if err != nil {
		t.Fatal(err)
	}
	stamp := time.Now().Format(time.Stamp)
	fmt.Fprintf(c, "<11>%s web1 app[7]: java.lang.IllegalStateException: boom\n\tat a.B.c(B.java:10)\n\tat a.D.e(D.java:20)\n<14>%s web1 app[7]: next\n", stamp, stamp)
	_ = c.Close()
	var lines []sinkLine
	eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		data, _ := os.ReadFile(filepath.Join(dir, "out/events.jsonl"))
		lines = nil
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var e sinkLine
			if json.Unmarshal([]byte(l), &e) == nil {
				lines = append(lines, e)
			}
		}
		if len(lines) < 2 {
			return fmt.Errorf("%d events so far", len(lines))
		}
		return nil
	})
	if len(lines) != 2 {
		t.Fatalf("%d events, want 2: %+v", len(lines), lines)
	}
	trace := lines[0]
	if lines[1].Message == "next" {
		trace = lines[0]
	} else {
		trace = lines[1]
	}
	if !strings.Contains(trace.Message, "boom\n\tat a.B.c(B.java:10)\n\tat a.D.e(D.java:20)") || trace.Class != "rfc3164" {
		t.Errorf("the stack trace is not one event: %+v", trace)
	}
}
