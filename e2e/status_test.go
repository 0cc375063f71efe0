package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestStatusShowsTheBusStreamsConsumersAndTheSinksLeaseHolder(t *testing.T) {
	dir := t.TempDir()
	natsPort, syslogPort, mp := freePort(t), freePort(t), freePort(t)
	cfg := writeConfig(t, dir, configParams{NATSPort: natsPort, MetricsPort: mp, SyslogPort: syslogPort})
	p := startHerald(t, "herald", cfg, mp)
	p.waitReady(30 * time.Second)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", syslogPort))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		line, _ := syslogLine("tcp", 0, i, time.Now().Format(time.Stamp))
		if _, err := fmt.Fprintln(conn, line); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.Close()
	sink := newSinkFile(filepath.Join(dir, "out", "events.jsonl"), func(line []byte) (string, error) { return string(line), nil })
	eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if err := sink.poll(); err != nil {
			return err
		}
		if sink.lines < 10 {
			return fmt.Errorf("%d of 10 lines in the sink", sink.lines)
		}
		return nil
	})
	pid := p.cmd.Process.Pid

	t.Run("the text form has every section, with the holder of the file sink's lease", func(t *testing.T) {
		code, out, errOut := runCommand(t, dir, 20*time.Second, "status", "--config", cfg)
		if code != 0 {
			t.Fatalf("herald status exited %d: %s", code, errOut)
		}
		t.Logf("herald status:\n%s", out)
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(fmt.Sprintf(`(?m)^  url +nats://127\.0\.0\.1:%d$`, natsPort)),
			regexp.MustCompile(`(?m)^streams$`),
			// The work streams carry their share of max_store as LIMIT.
			regexp.MustCompile(`(?m)^  HERALD_RAW +\d+ +\d+ +[1-9]\d* +1 +1 +- +-$`),
			regexp.MustCompile(`(?m)^  HERALD_TARGETS +\d+ +\d+ +[1-9]\d* +1 +1 +- +-$`),
			regexp.MustCompile(`(?m)^consumers$`),
			regexp.MustCompile(`(?m)^  HERALD_RAW +classifier +\d+ +\d+ +\d+$`),
			regexp.MustCompile(`(?m)^  HERALD_TARGETS +sink-log +\d+ +\d+ +\d+$`),
			regexp.MustCompile(`(?m)^sinks$`),
			regexp.MustCompile(fmt.Sprintf(`(?m)^  events +file +up +[^ ]+:%d/[0-9a-f]+ +\d{4}-\d\d-\d\dT[0-9:]+Z$`, pid)),
		} {
			if !want.MatchString(out) {
				t.Errorf("no line matches %s", want)
			}
		}
	})

	t.Run("the JSON form names the same holder and the sink as up", func(t *testing.T) {
		code, out, errOut := runCommand(t, dir, 20*time.Second, "status", "--config", cfg, "--json")
		if code != 0 {
			t.Fatalf("herald status --json exited %d: %s", code, errOut)
		}
		var st struct {
			Bus struct {
				URL string `json:"url"`
			} `json:"bus"`
			Streams []struct {
				Name     string `json:"name"`
				Messages uint64 `json:"messages"`
			} `json:"streams"`
			Consumers []struct {
				Stream, Name string
				Pending      uint64 `json:"pending"`
				AckPending   int    `json:"ack_pending"`
			} `json:"consumers"`
			Sinks []struct {
				Name      string `json:"name"`
				Type      string `json:"type"`
				Suspended *bool  `json:"suspended"`
				Holder    *struct {
					Host     string `json:"host"`
					PID      int    `json:"pid"`
					Instance string `json:"instance"`
				} `json:"holder"`
			} `json:"sinks"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if len(st.Sinks) != 1 || st.Sinks[0].Name != "events" || st.Sinks[0].Holder == nil || st.Sinks[0].Holder.PID != pid {
			t.Fatalf("sinks: %s; want events held by pid %d", out, pid)
		}
		if s := st.Sinks[0].Suspended; s == nil || *s {
			t.Errorf("suspended: %v, want false", s)
		}
		var names []string
		for _, c := range st.Consumers {
			names = append(names, c.Stream+"/"+c.Name)
		}
		if got := strings.Join(names, " "); !strings.Contains(got, "HERALD_TARGETS/sink-log") {
			t.Errorf("consumers %s: want HERALD_TARGETS/sink-log", got)
		}
	})

	t.Run("an unreachable metrics endpoint leaves the state unknown and is no error", func(t *testing.T) {
		code, out, errOut := runCommand(t, dir, 20*time.Second, "status", "--config", cfg,
			"--metrics", fmt.Sprintf("http://127.0.0.1:%d/metrics", freePort(t)))
		if code != 0 {
			t.Fatalf("herald status exited %d: %s", code, errOut)
		}
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^  events +file +- +[^ ]+:%d/`, pid)).MatchString(out) ||
			!strings.Contains(out, "# STATE unknown: ") {
			t.Fatalf("want the events sink with state - and a note on the metrics:\n%s", out)
		}
	})

	t.Run("no NATS to reach is exit 1", func(t *testing.T) {
		other := t.TempDir()
		c := writeConfig(t, other, configParams{NATSPort: freePort(t), MetricsPort: freePort(t)})
		code, _, errOut := runCommand(t, other, 20*time.Second, "status", "--config", c)
		if code != 1 || !strings.Contains(errOut, "connect") {
			t.Fatalf("exit %d, stderr %q; want 1 and the connection error", code, errOut)
		}
	})
}
