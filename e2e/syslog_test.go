package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

// sinkLine is the part of a file sink's JSON line the tests look at.
type sinkLine struct {
	ID      string `json:"id"`
	Host    string `json:"host"`
	Service string `json:"service"`
	Class   string `json:"class"`
	Message string `json:"message"`
}

var syslogKey = regexp.MustCompile(`\b(tcp|udp)-\d+-\d+\b`)

// syslogLine is line seq of connection conn over proto: an RFC 3164 record
// whose MSG part starts with a unique key.
func syslogLine(proto string, conn, seq int, stamp string) (line, msg string) {
	msg = fmt.Sprintf("%s-%d-%06d the quick brown fox jumps over the lazy dog", proto, conn, seq)
	return fmt.Sprintf("<13>%s host%d e2e[%d]: %s", stamp, conn, 1000+conn, msg), msg
}

func TestSyslogTCPAndUDPLinesArriveExactlyOnce(t *testing.T) {
	const (
		tcpConns   = 4
		tcpPerConn = 25000
		tcpTotal   = tcpConns * tcpPerConn
		udpTotal   = 1000
	)
	start := time.Now()
	dir := t.TempDir()
	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	cfg := writeConfig(t, dir, configParams{NATSPort: natsPort, MetricsPort: metricsPort, SyslogPort: syslogPort})
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)
	t.Logf("herald ready after %s", time.Since(start).Round(time.Millisecond))

	stamp := time.Now().Format(time.Stamp)
	addr := fmt.Sprintf("127.0.0.1:%d", syslogPort)
	expectTCP := map[string]bool{}
	wantMsg := map[string]string{} // key -> full MSG part
	for c := range tcpConns {
		for i := range tcpPerConn {
			_, msg := syslogLine("tcp", c, i, stamp)
			k := syslogKey.FindString(msg)
			expectTCP[k] = true
			wantMsg[k] = msg
		}
	}

	sendStart := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, tcpConns+1)
	for c := range tcpConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				errs <- fmt.Errorf("tcp connection %d: %w", c, err)
				return
			}
			defer conn.Close()
			_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Minute))
			w := bufio.NewWriterSize(conn, 64<<10)
			for i := range tcpPerConn {
				line, _ := syslogLine("tcp", c, i, stamp)
				if _, err := w.WriteString(line + "\n"); err != nil {
					errs <- fmt.Errorf("tcp connection %d line %d: %w", c, i, err)
					return
				}
			}
			if err := w.Flush(); err != nil {
				errs <- fmt.Errorf("tcp connection %d flush: %w", c, err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := net.Dial("udp", addr)
		if err != nil {
			errs <- fmt.Errorf("udp: %w", err)
			return
		}
		defer conn.Close()
		for i := range udpTotal {
			line, _ := syslogLine("udp", 9, i, stamp)
			if _, err := conn.Write([]byte(line)); err != nil {
				errs <- fmt.Errorf("udp datagram %d: %w", i, err)
				return
			}
			if i%20 == 19 {
				time.Sleep(time.Millisecond) // pacing: UDP has no back-pressure
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("sent %d TCP lines on %d connections and %d UDP datagrams in %s",
		tcpTotal, tcpConns, udpTotal, time.Since(sendStart).Round(time.Millisecond))

	// The clients closed their connections; wait until herald has read every
	// connection to its end, so that the shutdown below is tested for the
	// drain of the pipeline, not for how much of a socket buffer it reads.
	eventually(t, 60*time.Second, 20*time.Millisecond, func() error {
		if h.exited() {
			t.Fatalf("herald exited with code %d while receiving", h.exitCode)
		}
		got, err := h.metric(`herald_stage_received_events_total{stage="receiver.syslog"}`)
		if err != nil {
			return err
		}
		open, err := h.metric(`herald_receiver_connections{receiver="syslog"}`)
		if err != nil {
			return err
		}
		if got < tcpTotal || open != 0 {
			return fmt.Errorf("receiver has taken in %.0f records (want at least %d TCP lines) and has %.0f connections open (want 0)", got, tcpTotal, open)
		}
		return nil
	})
	received, _ := h.metric(`herald_stage_received_events_total{stage="receiver.syslog"}`)
	t.Logf("receiver took in %.0f records, %s after the first line was sent", received, time.Since(sendStart).Round(time.Millisecond))

	stopStart := time.Now()
	if code := h.stop(90 * time.Second); code != 0 {
		t.Fatalf("herald exited with code %d after SIGTERM, want 0", code)
	}
	t.Logf("herald drained and exited 0 in %s after SIGTERM", time.Since(stopStart).Round(time.Millisecond))

	type bad struct{ key, why string }
	var wrong []bad
	sink := newSinkFile(filepath.Join(dir, "out", "events.jsonl"), func(line []byte) (string, error) {
		var ev sinkLine
		if err := json.Unmarshal(line, &ev); err != nil {
			return "", err
		}
		k := syslogKey.FindString(ev.Message)
		if k == "" {
			return "", fmt.Errorf("no tcp-/udp- key in message %q", ev.Message)
		}
		if k[0] == 't' {
			switch {
			case ev.Message != wantMsg[k]:
				wrong = append(wrong, bad{k, fmt.Sprintf("message %q, want %q", ev.Message, wantMsg[k])})
			case ev.Class != "rfc3164":
				wrong = append(wrong, bad{k, fmt.Sprintf("class %q, want rfc3164", ev.Class)})
			case ev.ID == "":
				wrong = append(wrong, bad{k, "no id"})
			}
		}
		return k, nil
	})
	if err := sink.poll(); err != nil {
		t.Fatalf("read sink: %v", err)
	}
	if sink.nbad > 0 {
		t.Errorf("%d sink lines could not be read, e.g. %q", sink.nbad, sink.bad)
	}
	if len(wrong) > 0 {
		t.Errorf("%d TCP events arrived altered, e.g. %s: %s", len(wrong), wrong[0].key, wrong[0].why)
	}
	tcp := map[string]int{}
	udp, udpDups := 0, 0
	for k, n := range sink.counts {
		if k[0] == 't' {
			tcp[k] = n
		} else {
			udp++
			udpDups += n - 1
		}
	}
	tl := sink.tally(expectTCP)
	var tcpDupKeys []string
	tcpDups := 0
	for _, k := range tl.dupKeys {
		if k[0] == 't' {
			tcpDupKeys = append(tcpDupKeys, k)
			tcpDups += sink.counts[k] - 1
		}
	}
	var unexpected []string
	for _, k := range tl.unexpected {
		if k[0] == 't' {
			unexpected = append(unexpected, k)
		}
	}
	t.Logf("sink: %d lines; TCP: %d of %d distinct, %d missing, %d duplicate copies; UDP: %d of %d arrived (%.1f%% loss)",
		sink.lines, len(tcp), tcpTotal, len(tl.missing), tcpDups, udp, udpTotal, 100*float64(udpTotal-udp)/udpTotal)
	if len(tl.missing) > 0 {
		t.Errorf("%d TCP lines missing from the sink: %s", len(tl.missing), firstFew(tl.missing, 10))
	}
	if tcpDups > 0 {
		t.Errorf("%d TCP lines written more than once (%d extra copies): %s", len(tcpDupKeys), tcpDups, firstFew(tcpDupKeys, 10))
	}
	if len(unexpected) > 0 {
		t.Errorf("%d unexpected keys in the sink: %s", len(unexpected), firstFew(unexpected, 10))
	}
	if udpDups > 0 {
		t.Errorf("%d extra copies of UDP lines in the sink after a clean run", udpDups)
	}
	if udp > udpTotal {
		t.Errorf("%d distinct UDP lines in the sink, but only %d were sent", udp, udpTotal)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}
