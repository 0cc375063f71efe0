package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/actors/sink/syslog/rsyslogtest"
)

// diskPressureConfig: the three intakes that can hold or refuse their
// senders (TCP syslog, HTTP, RELP), small batches, and one target whose
// only sink is a real rsyslog over RELP.
var diskPressureConfig = template.Must(template.New("diskpressure").Parse(`# written by herald's e2e tests
log: {level: info, format: text}
bus:
  embedded:
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
batch: {max_events: 100, max_bytes: 32KiB}
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 30s
receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:{{.SyslogPort}}}
  web: {type: http, listen: 127.0.0.1:{{.HTTPPort}}, timeout: 5s}
  relp: {type: relp, listen: 127.0.0.1:{{.RELPInPort}}}
targets:
  log: {bit: 4, sinks: [remote]}
sinks:
  remote:
    type: syslog
    transport: relp
    address: 127.0.0.1:{{.RELPOutPort}}
    dial_timeout: 2s
    ack_timeout: 2s
`))

var diskPressureKey = regexp.MustCompile(`\bdp-(?:tcp|http|relp)-\d{6}\b`)

// TestAFullStoreHoldsIntakeVisiblyAndLosesNothing gives each of herald's
// work streams a size limit of 1 MiB (as an operator may on a NATS system
// of their own) and fills them while the only sink is down, and checks
// what each intake does then: the TCP sender is held (its writes stop
// completing), HTTP posts are answered 503 with Retry-After and the limit
// named, RELP records stay unacknowledged, and herald says why (a log line
// naming the limit, herald_receiver_store_full). Then the sink comes back,
// the streams drain, and every record herald accepted arrives exactly
// once: every TCP line written, every post answered 200, every RELP
// record; no post answered 503 arrives.
//
// The limit is per stream, not bus.embedded.max_store: when the whole
// store is full, each stage needs room for its output before its input is
// deleted, and the pipeline can stall for good with nothing left for the
// sink to drain (see the report of issue 9); per-stream limits leave every
// stage its own room.
func TestAFullStoreHoldsIntakeVisiblyAndLosesNothing(t *testing.T) {
	start := time.Now()
	rs := rsyslogtest.Start(t, rsyslogtest.Options{})
	rs.Stop() // the sink is down from the start: the streams fill up

	dir := t.TempDir()
	ports := map[string]int{"NATSPort": freePort(t), "MetricsPort": freePort(t), "SyslogPort": freePort(t),
		"HTTPPort": freePort(t), "RELPInPort": freePort(t), "RELPOutPort": rs.RELP}
	cfgPath := writeTemplate(t, dir, diskPressureConfig, ports)
	h := startHerald(t, "herald", cfgPath, ports["MetricsPort"])
	h.waitReady(30 * time.Second)
	const streamLimit = 1 << 20
	js := limitStreams(t, fmt.Sprintf("nats://127.0.0.1:%d", ports["NATSPort"]), streamLimit)
	web := fmt.Sprintf("http://127.0.0.1:%d/ingest", ports["HTTPPort"])

	// A RELP session opened while there is room.
	relp := dialRELP(t, fmt.Sprintf("127.0.0.1:%d", ports["RELPInPort"]))

	// Posts answered 200 must arrive; posts answered 503 at once must not
	// (a post that waited for the store until its timeout stays queued,
	// and may arrive: maybe).
	accepted, refused, maybe := map[string]bool{}, map[string]bool{}, map[string]bool{}
	post := func(key string) (int, http.Header, string) {
		t.Helper()
		code, hdr, body, err := postLine(web, key)
		if err != nil {
			t.Fatalf("post %s: %v", key, err)
		}
		switch code {
		case http.StatusOK:
			accepted[key] = true
		case http.StatusServiceUnavailable:
			refused[key] = true
		default:
			t.Fatalf("post %s: %d %s", key, code, body)
		}
		return code, hdr, body
	}
	httpSeq := 0
	nextHTTP := func() string { httpSeq++; return fmt.Sprintf("dp-http-%06d", httpSeq) }
	if code, _, body := post(nextHTTP()); code != http.StatusOK {
		t.Fatalf("a post before the store is full: %d %s", code, body)
	}

	// The TCP sender writes until it is told to stop; a write that cannot
	// complete within a second is the sign that herald stopped reading.
	tcp := startHeldSender(t, fmt.Sprintf("127.0.0.1:%d", ports["SyslogPort"]))

	fillStart := time.Now()
	eventually(t, 60*time.Second, 100*time.Millisecond, func() error {
		if v, err := h.metric(`herald_receiver_store_full{receiver="syslog"}`); err != nil || v != 1 {
			return fmt.Errorf("herald_receiver_store_full of the syslog receiver is %v (%v); %d lines written", v, err, tcp.written.Load())
		}
		if !tcp.held.Load() {
			return fmt.Errorf("the store is full but the TCP sender is not held yet (%d lines written)", tcp.written.Load())
		}
		return nil
	})
	t.Logf("store full and the TCP sender held after %s, %d lines written", time.Since(fillStart).Round(time.Millisecond), tcp.written.Load())

	// Once every stream is full nothing moves any more (the sink is down):
	// then no record can slip into room a stage just made.
	eventually(t, 60*time.Second, 100*time.Millisecond, func() error {
		return streamsFull(js, streamLimit-256<<10)
	})

	// HTTP: the first post waits for the store (timeout 5s) and is
	// answered 503; from then on posts are refused at once, with the
	// reason, Retry-After and no trace.
	expectStoreFull503(t, func() (string, int, http.Header, string) {
		k := nextHTTP()
		code, hdr, body := post(k)
		return k, code, hdr, body
	}, "max_bytes or max_msgs of the stream of herald.raw.web", refused, maybe)
	if v, err := h.metric(`herald_stage_rejected_total{reason="store_full",stage="receiver.web"}`); err != nil || v < 1 {
		t.Errorf("herald_stage_rejected_total{store_full} of the http receiver = %v (%v), want the refusals counted", v, err)
	}

	// RELP: records are read but not acknowledged.
	const relpRecords = 20
	relpKeys := map[string]bool{}
	stamp := time.Now().Format(time.Stamp)
	for i := range relpRecords {
		k := fmt.Sprintf("dp-relp-%06d", i)
		relpKeys[k] = true
		relp.send(t, fmt.Sprintf("<13>%s dphost dpapp: %s", stamp, k))
	}
	if acked, err := relp.acks(3 * time.Second); acked > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("RELP records acknowledged while the store is full: %d acknowledged (%v)", acked, err)
	}
	eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		if v, err := h.metric(`herald_receiver_store_full{receiver="relp"}`); err != nil || v != 1 {
			return fmt.Errorf("herald_receiver_store_full of the relp receiver is %v (%v)", v, err)
		}
		return nil
	})

	// The reason is in the log, naming the limit.
	logData, err := os.ReadFile(h.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logData, []byte("jetstream store full")) || !bytes.Contains(logData, []byte("max_bytes or max_msgs of the stream of herald.raw.syslog")) {
		t.Errorf("herald's log does not say the store is full and which limit")
	}
	fullFor := time.Now()

	// Make room: the sink comes back and the streams drain.
	rs.Start()
	tcp.stop()
	if acked, err := relp.acks(90 * time.Second); acked != relpRecords {
		t.Fatalf("RELP records acknowledged after the store drained: %d of %d (%v)", acked, relpRecords, err)
	}
	relp.close(t)
	resumed := time.Since(fullFor)
	written := int(tcp.written.Load())
	want := map[string]bool{}
	for i := range written {
		want[fmt.Sprintf("dp-tcp-%06d", i)] = true
	}
	for k := range accepted {
		want[k] = true
	}
	for k := range relpKeys {
		want[k] = true
	}
	// Posts answered 200 now that there is room.
	eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		k := nextHTTP()
		if code, _, body := post(k); code != http.StatusOK {
			return fmt.Errorf("post after the drain: %d %s", code, body)
		}
		want[k] = true
		return nil
	})

	var counts map[string]int
	eventually(t, 90*time.Second, 250*time.Millisecond, func() error {
		recs, err := rs.Records()
		if err != nil {
			return err
		}
		counts = map[string]int{}
		for _, r := range recs {
			if k := diskPressureKey.FindString(r.Message); k != "" {
				counts[k]++
			}
		}
		missing := 0
		for k := range want {
			if counts[k] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("rsyslog lacks %d of %d records", missing, len(want))
		}
		return nil
	})
	dups, unexpected := 0, []string{}
	for k, n := range counts {
		if n > 1 {
			dups += n - 1
		}
		if !want[k] && !maybe[k] {
			unexpected = append(unexpected, k)
		}
	}
	for k := range refused {
		if counts[k] > 0 {
			t.Errorf("post %s was answered 503 and still delivered", k)
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("records delivered that herald never accepted: %s", firstFew(unexpected, 5))
	}
	if dups > 0 {
		t.Errorf("%d duplicates", dups)
	}
	if v, err := h.metric(`herald_receiver_store_full{receiver="syslog"}`); err != nil || v != 0 {
		t.Errorf("herald_receiver_store_full of the syslog receiver after the drain = %v (%v), want 0", v, err)
	}
	if code := h.stop(60 * time.Second); code != 0 {
		t.Errorf("herald exited with %d", code)
	}
	t.Logf("sent: %d TCP lines, %d posts (%d answered 200, %d answered 503), %d RELP records; delivered %d, lost 0, duplicates %d; intake resumed %s after the sink came back; run %s",
		written, httpSeq, len(accepted), len(refused), relpRecords, len(counts), dups, resumed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

var workStreams = []string{"HERALD_RAW", "HERALD_EVENTS", "HERALD_RESOLVED", "HERALD_TARGETS"}

// limitStreams sets max_bytes on herald's work streams and returns the
// connection it did that with.
func limitStreams(t testing.TB, url string, maxBytes int64) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("e2e-diskpressure"), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range workStreams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		cfg := s.CachedInfo().Config
		cfg.MaxBytes = maxBytes
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatalf("limit stream %s: %v", name, err)
		}
	}
	return js
}

// streamsFull says whether the first and the last work stream hold
// atLeast bytes each. The middle ones stay empty while every stage runs in
// one process: the classifier's hop then resolves and routes too.
func streamsFull(js jetstream.JetStream, atLeast int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var state []string
	full := true
	for _, name := range []string{"HERALD_RAW", "HERALD_TARGETS"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		st := s.CachedInfo().State
		state = append(state, fmt.Sprintf("%s %d bytes in %d messages", name, st.Bytes, st.Msgs))
		full = full && st.Bytes >= uint64(atLeast)
	}
	if !full {
		return fmt.Errorf("not full yet (%d bytes each): %s", atLeast, strings.Join(state, ", "))
	}
	return nil
}

// postLine posts one syslog line whose message is key.
func postLine(url, key string) (int, http.Header, string, error) {
	body := fmt.Sprintf("<13>%s dphost dpapp: %s\n", time.Now().Format(time.Stamp), key)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), err
}

// heldSender writes numbered syslog lines over one TCP connection until
// stopped, and notes when a write could not complete within a second.
type heldSender struct {
	written atomic.Int64 // complete lines written
	held    atomic.Bool
	quit    chan struct{}
	done    chan error
	once    sync.Once
	t       testing.TB
}

func startHeldSender(t testing.TB, addr string) *heldSender {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial syslog: %v", err)
	}
	s := &heldSender{quit: make(chan struct{}), done: make(chan error, 1), t: t}
	stamp := time.Now().Format(time.Stamp)
	pad := strings.Repeat("x", 150)
	go func() {
		defer conn.Close()
		s.done <- func() error {
			for seq := 0; ; seq++ {
				select {
				case <-s.quit:
					return nil
				default:
				}
				line := []byte(fmt.Sprintf("<13>%s dphost dpapp: dp-tcp-%06d %s\n", stamp, seq, pad))
				// A line is always written whole, even when asked to stop
				// meanwhile: a cut line would be a record nobody sent.
				for len(line) > 0 {
					_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
					n, err := conn.Write(line)
					line = line[n:]
					if errors.Is(err, os.ErrDeadlineExceeded) {
						s.held.Store(true)
						continue
					}
					if err != nil {
						return fmt.Errorf("line %d: %w", seq, err)
					}
				}
				s.written.Add(1)
			}
		}()
	}()
	t.Cleanup(func() {
		// A test that failed early: do not wait for room that never comes.
		_ = conn.Close()
		s.stop()
	})
	return s
}

// stop ends the sending after the line in hand and waits, up to a minute
// (the line may wait for room), for the sender to close the connection.
func (s *heldSender) stop() {
	s.once.Do(func() {
		close(s.quit)
		select {
		case err := <-s.done:
			if err != nil {
				s.t.Errorf("TCP sender: %v", err)
			}
		case <-time.After(time.Minute):
			s.t.Errorf("TCP sender still held a minute after it was stopped")
		}
	})
}

// relpClient is the sending side of a RELP session, kept minimal so that
// the test sees each acknowledgement (or its absence) itself.
type relpClient struct {
	conn    net.Conn
	r       *bufio.Reader
	next    int // next txnr
	pending int // syslog commands not yet answered
}

func dialRELP(t testing.TB, addr string) *relpClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial relp: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &relpClient{conn: conn, r: bufio.NewReader(conn), next: 1}
	c.frame(t, "open", "relp_version=0\nrelp_software=herald-e2e\ncommands=syslog")
	txnr, data, err := c.readRsp(5 * time.Second)
	if err != nil || txnr != 1 || !strings.HasPrefix(data, "200") {
		t.Fatalf("relp open: txnr %d %q %v", txnr, data, err)
	}
	return c
}

func (c *relpClient) frame(t testing.TB, cmd, data string) {
	t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	frame := fmt.Sprintf("%d %s %d %s\n", c.next, cmd, len(data), data)
	if data == "" {
		frame = fmt.Sprintf("%d %s 0\n", c.next, cmd)
	}
	if _, err := io.WriteString(c.conn, frame); err != nil {
		t.Fatalf("relp %s: %v", cmd, err)
	}
	c.next++
}

func (c *relpClient) send(t testing.TB, record string) {
	t.Helper()
	c.frame(t, "syslog", record)
	c.pending++
}

// acks reads answers to the pending syslog commands for up to wait and
// returns how many said 200 OK; the error says why it stopped early.
func (c *relpClient) acks(wait time.Duration) (int, error) {
	deadline := time.Now().Add(wait)
	n := 0
	for c.pending > 0 {
		_, data, err := c.readRsp(time.Until(deadline))
		if err != nil {
			return n, err
		}
		if !strings.HasPrefix(data, "200") {
			return n, fmt.Errorf("relp answer %q", data)
		}
		c.pending--
		n++
	}
	return n, nil
}

// readRsp reads one "TXNR rsp LEN DATA" frame.
func (c *relpClient) readRsp(wait time.Duration) (int, string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	head, err := c.r.ReadString(' ')
	if err != nil {
		return 0, "", err
	}
	txnr, err := strconv.Atoi(strings.TrimSpace(head))
	if err != nil {
		return 0, "", fmt.Errorf("relp txnr %q", head)
	}
	if cmd, err := c.r.ReadString(' '); err != nil || cmd != "rsp " {
		return 0, "", fmt.Errorf("relp command %q: %v", cmd, err)
	}
	var size int
	if _, err := fmt.Fscan(c.r, &size); err != nil {
		return 0, "", fmt.Errorf("relp datalen: %w", err)
	}
	buf := make([]byte, size+2) // SP, data, LF
	if size == 0 {
		buf = buf[:1]
	}
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return 0, "", err
	}
	return txnr, strings.TrimSpace(string(buf)), nil
}

// close ends the session as a client does.
func (c *relpClient) close(t testing.TB) {
	t.Helper()
	c.frame(t, "close", "")
	_, _, _ = c.readRsp(5 * time.Second)
	_ = c.conn.Close()
}

// expectStoreFull503 posts until a post is answered 503 because the store
// is full, checks that the answer names the limit (reason) and asks for a
// retry later, and that the next post is refused at once. A post answered
// 503 after it waited for room until its timeout may still be stored: its
// key moves from refused to maybe.
func expectStoreFull503(t *testing.T, post func() (key string, code int, hdr http.Header, body string), reason string, refused, maybe map[string]bool) {
	t.Helper()
	var body503 string
	var hdr503 http.Header
	eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		k, code, hdr, body := post()
		if code != http.StatusServiceUnavailable {
			return fmt.Errorf("post answered %d %s while the store is full", code, body)
		}
		delete(refused, k)
		maybe[k] = true
		body503, hdr503 = body, hdr
		return nil
	})
	if !strings.Contains(body503, "store full") || !strings.Contains(body503, reason) {
		t.Errorf("503 body should name the full store and %q: %s", reason, body503)
	}
	if hdr503.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After: %v", hdr503)
	}
	refusedAt := time.Now()
	if _, code, _, body := post(); code != http.StatusServiceUnavailable || time.Since(refusedAt) > 2*time.Second {
		t.Errorf("a second post while the store is full: %d after %s (want 503 at once): %s", code, time.Since(refusedAt), body)
	}
}
