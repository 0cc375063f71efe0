package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// sendTCP sends lines [from, to) of syslogLine over conns TCP connections
// (line i on connection i%conns) and closes them.
func sendTCP(addr string, conns, from, to int, stamp string) error {
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Minute))
			w := bufio.NewWriterSize(conn, 64<<10)
			for i := from + c; i < to; i += conns {
				line, _ := syslogLine("tcp", 0, i, stamp)
				if _, err := w.WriteString(line + "\n"); err != nil {
					errs <- fmt.Errorf("line %d: %w", i, err)
					return
				}
			}
			if err := w.Flush(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

const resolverPublished = `herald_stage_published_events_total{stage="resolver"}`

func TestResolverStageScalesAcrossProcesses(t *testing.T) {
	const total = 60000
	start := time.Now()
	natsPort, syslogPort := freePort(t), freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)

	dirA := t.TempDir()
	mA := freePort(t)
	cfgA := writeConfig(t, dirA, configParams{NATSPort: natsPort, MetricsPort: mA, SyslogPort: syslogPort, AckWait: "2s"})
	a := startHerald(t, "A-receiver-classifier-router-sink", cfgA, mA, "--stages", "receiver,classifier,router,sink")
	a.waitReady(30 * time.Second)

	var resolvers []*proc
	for _, name := range []string{"B-resolver", "C-resolver"} {
		d := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
		m := freePort(t)
		cfg := writeConfig(t, d, configParams{NATSURL: natsURL, MetricsPort: m, AckWait: "2s"})
		resolvers = append(resolvers, startHerald(t, name, cfg, m, "--stages", "resolver"))
	}
	for _, r := range resolvers {
		r.waitReady(30 * time.Second)
	}
	b, c := resolvers[0], resolvers[1]
	t.Logf("A, B and C ready at %s", time.Since(start).Round(time.Millisecond))

	stamp := time.Now().Format(time.Stamp)
	addr := fmt.Sprintf("127.0.0.1:%d", syslogPort)
	expected := map[string]bool{}
	for i := range total {
		expected[fmt.Sprintf("tcp-0-%06d", i)] = true
	}
	sink := newSinkFile(filepath.Join(dirA, "out", "events.jsonl"), func(line []byte) (string, error) {
		var ev sinkLine
		if err := json.Unmarshal(line, &ev); err != nil {
			return "", err
		}
		if k := syslogKey.FindString(ev.Message); k != "" {
			return k, nil
		}
		return "", fmt.Errorf("no key in message %q", ev.Message)
	})
	alive := func() {
		for _, p := range []*proc{a, b, c} {
			if p.exited() && p != b {
				t.Fatalf("%s exited with code %d", p.name, p.exitCode)
			}
		}
	}

	if err := sendTCP(addr, 3, 0, total/2, stamp); err != nil {
		t.Fatalf("send first half: %v", err)
	}
	t.Logf("first %d lines sent at %s", total/2, time.Since(start).Round(time.Millisecond))
	var pubB, pubC float64
	eventually(t, 60*time.Second, 5*time.Millisecond, func() error {
		alive()
		var err error
		if pubB, err = b.metric(resolverPublished); err != nil {
			return err
		}
		if pubC, err = c.metric(resolverPublished); err != nil {
			return err
		}
		if pubB == 0 || pubC == 0 {
			return fmt.Errorf("resolver B published %.0f events and C %.0f: want both above 0", pubB, pubC)
		}
		return nil
	})
	b.kill()
	if err := sink.poll(); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL B at %s: before it B had published %.0f events and C %.0f; %d events in the sink",
		time.Since(start).Round(time.Millisecond), pubB, pubC, sink.distinct())

	if err := sendTCP(addr, 3, total/2, total, stamp); err != nil {
		t.Fatalf("send second half: %v", err)
	}
	t.Logf("all %d lines sent at %s", total, time.Since(start).Round(time.Millisecond))
	eventually(t, 90*time.Second, 20*time.Millisecond, func() error {
		alive()
		if err := sink.poll(); err != nil {
			return err
		}
		tl := sink.tally(expected)
		if len(tl.missing) > 0 {
			pc, _ := c.metric(resolverPublished)
			return fmt.Errorf("%d lines not in the sink yet, e.g. %s (C has published %.0f)", len(tl.missing), firstFew(tl.missing, 5), pc)
		}
		return nil
	})
	finalC, err := c.metric(resolverPublished)
	if err != nil {
		t.Fatal(err)
	}
	redelivered, _ := c.metric(`herald_stage_redelivered_messages_total{stage="resolver"}`)
	tl := sink.tally(expected)
	t.Logf("C took over %.0f messages redelivered after B's death", redelivered)
	t.Logf("done at %s: all %d lines in the sink (%d lines written, %d duplicate copies of %d lines); resolver C published %.0f in all, B %.0f before its kill",
		time.Since(start).Round(time.Millisecond), total, sink.lines, tl.duplicates, len(tl.dupKeys), finalC, pubB)
	if len(tl.dupKeys) > 0 {
		t.Logf("duplicated lines, e.g.: %s", firstFew(tl.dupKeys, 10))
	}
	if sink.nbad > 0 {
		t.Errorf("%d sink lines could not be read, e.g. %q", sink.nbad, sink.bad)
	}
	if len(tl.unexpected) > 0 {
		t.Errorf("%d unexpected lines in the sink: %s", len(tl.unexpected), firstFew(tl.unexpected, 10))
	}
	if finalC <= pubC {
		t.Errorf("resolver C published nothing after B was killed (%.0f before, %.0f at the end)", pubC, finalC)
	}
}
