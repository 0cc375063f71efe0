package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus"
)

// globalStoreConfig: the default pipeline (every stage in one process, a
// file sink that holds a lease) under a small bus.embedded.max_store and
// no per-stream limits; TCP syslog and HTTP intake.
var globalStoreConfig = template.Must(template.New("globalstore").Parse(`# written by herald's e2e tests
log: {level: info, format: text}
bus:
  embedded:
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
    max_store: {{.MaxStore}}
  lease_ttl: 2s
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 30s
receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:{{.SyslogPort}}}
  web: {type: http, listen: 127.0.0.1:{{.HTTPPort}}, timeout: 2s}
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out/disk/events.jsonl, format: json}
`))

// TestAFullMaxStoreHoldsIntakeAndDrainsOnceTheSinkIsBack fills a
// bus.embedded.max_store of 128 MiB (no other limit) with TCP syslog while
// the only sink, a file, cannot write, and checks that herald holds the
// TCP sender and refuses posts visibly (503 naming max_store and the share
// that is full, herald_receiver_store_full, the log line); that the
// pipeline does not jam at the limit: the store keeps room for the file
// sink's lease, which stays held (before the work streams had budgets,
// the stages took the store's last byte, the lease renewal was refused,
// the sink stopped and nothing ever drained); and that once the file can
// be written again every line herald accepted arrives exactly once and
// new lines are accepted.
func TestAFullMaxStoreHoldsIntakeAndDrainsOnceTheSinkIsBack(t *testing.T) {
	start := time.Now()
	dir := t.TempDir()

	// out/disk is a symlink, pointed at a regular file while the sink is
	// to be down (see chaos_sinks_test.go: root ignores permissions).
	out := filepath.Join(dir, "out")
	realDir := filepath.Join(out, "real")
	if err := os.MkdirAll(realDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "not-a-folder"), []byte("the sink's folder is gone\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	diskLink := filepath.Join(out, "disk")
	pointDisk := func(target string) {
		t.Helper()
		tmp := diskLink + ".new"
		_ = os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, diskLink); err != nil {
			t.Fatal(err)
		}
	}
	pointDisk("not-a-folder")

	const maxStore = 128 << 20
	const leaseTTL = 2 * time.Second
	ports := map[string]int{"NATSPort": freePort(t), "MetricsPort": freePort(t), "SyslogPort": freePort(t),
		"HTTPPort": freePort(t)}
	cfgPath := writeTemplate(t, dir, globalStoreConfig, map[string]any{"NATSPort": ports["NATSPort"], "MetricsPort": ports["MetricsPort"],
		"SyslogPort": ports["SyslogPort"], "HTTPPort": ports["HTTPPort"], "MaxStore": maxStore})
	h := startHerald(t, "herald", cfgPath, ports["MetricsPort"])
	h.waitReady(30 * time.Second)
	js := storeClient(t, fmt.Sprintf("nats://127.0.0.1:%d", ports["NATSPort"]))
	web := fmt.Sprintf("http://127.0.0.1:%d/ingest", ports["HTTPPort"])

	want, maybe := map[string]bool{}, map[string]bool{}
	refused := map[string]bool{}
	httpSeq := 0
	post := func() (string, int, http.Header, string) {
		t.Helper()
		httpSeq++
		key := fmt.Sprintf("dp-http-%06d", httpSeq)
		code, hdr, body, err := postPadded(web, key)
		if err != nil {
			t.Fatalf("post %s: %v", key, err)
		}
		switch code {
		case http.StatusOK:
			want[key] = true
		case http.StatusServiceUnavailable:
			refused[key] = true
		default:
			t.Fatalf("post %s: %d %s", key, code, body)
		}
		return key, code, hdr, body
	}
	if _, code, _, body := post(); code != http.StatusOK {
		t.Fatalf("a post before the store is full: %d %s", code, body)
	}

	tcp := startHeldSender(t, fmt.Sprintf("127.0.0.1:%d", ports["SyslogPort"]))
	fillStart := time.Now()
	eventually(t, 90*time.Second, 100*time.Millisecond, func() error {
		if v, err := h.metric(`herald_receiver_store_full{receiver="syslog"}`); err != nil || v != 1 {
			return fmt.Errorf("herald_receiver_store_full of the syslog receiver is %v (%v); %d lines written; %s",
				v, err, tcp.written.Load(), storeState(js))
		}
		if !tcp.held.Load() {
			return fmt.Errorf("the store is full but the TCP sender is not held yet (%d lines written)", tcp.written.Load())
		}
		return nil
	})
	t.Logf("intake held after %s, %d lines written; %s", time.Since(fillStart).Round(time.Millisecond), tcp.written.Load(), storeState(js))

	// Nothing moves any more: RAW and TARGETS are at the budgets herald
	// gave them under max_store. The store still has room for the rest:
	// the sink's lease is renewed all along (its TTL is 2s here).
	budgets := bus.WorkBudgets(maxStore, 0)
	eventually(t, 60*time.Second, 200*time.Millisecond, func() error {
		return streamsAt(js, map[string]int64{bus.StreamRaw: budgets[bus.StreamRaw] - 1<<20, bus.StreamTargets: budgets[bus.StreamTargets] - 2<<20})
	})
	t.Logf("the work streams are full: %s", storeState(js))
	// HTTP: refused with the reason while the store is full.
	expectStoreFull503(t, post, "bus.embedded.max_store", refused, maybe)

	for watch := time.Now(); time.Since(watch) < 2*leaseTTL; time.Sleep(250 * time.Millisecond) {
		if v, err := h.metric(`herald_sink_lease_held{sink="events"}`); err != nil || v != 1 {
			t.Fatalf("the file sink's lease was lost while the store is full: held %v (%v); %s", v, err, storeState(js))
		}
	}
	if used := storeUsed(t, js); used >= maxStore {
		t.Errorf("the store is at %d bytes of max_store %d: the work streams should have left room", used, maxStore)
	}
	logData, err := os.ReadFile(h.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(logData, []byte("jetstream store full")) || !bytes.Contains(logData, []byte("bus.embedded.max_store")) {
		t.Errorf("herald's log does not say the store is full and which limit")
	}

	// The sink comes back.
	backAt := time.Now()
	pointDisk("real")
	tcp.stop()
	written := int(tcp.written.Load())
	for i := range written {
		want[fmt.Sprintf("dp-tcp-%06d", i)] = true
	}
	var resumed time.Time // the sink no longer suspended
	sf := newSinkFile(filepath.Join(realDir, "events.jsonl"), func(line []byte) (string, error) {
		if k := diskPressureKey.Find(line); k != nil {
			return string(k), nil
		}
		return "", fmt.Errorf("no key")
	})
	deliveredAll := func() error {
		if err := sf.poll(); err != nil {
			return err
		}
		if v, err := h.metric(`herald_sink_suspended{sink="events"}`); err == nil && v == 0 && resumed.IsZero() {
			resumed = time.Now()
		}
		if n := sf.distinct(); n < len(want) { // cheap, until it may be complete
			return fmt.Errorf("the sink holds %d of %d lines; %s", n, len(want), storeState(js))
		}
		if r := sf.tally(want); len(r.missing) > 0 {
			return fmt.Errorf("the sink lacks %d of %d lines (%s); %s", len(r.missing), len(want), firstFew(r.missing, 3), storeState(js))
		}
		return nil
	}
	eventually(t, 90*time.Second, 250*time.Millisecond, deliveredAll)
	t.Logf("every accepted line delivered %s after the sink came back (its back-off ended after %s); %s",
		time.Since(backAt).Round(time.Millisecond), resumed.Sub(backAt).Round(time.Millisecond), storeState(js))

	// herald takes new lines again: a post and a TCP line.
	eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		if _, code, _, body := post(); code != http.StatusOK {
			return fmt.Errorf("post after the drain: %d %s", code, body)
		}
		return nil
	})
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports["SyslogPort"]), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	after := fmt.Sprintf("dp-tcp-%06d", 999999)
	if _, err := fmt.Fprintf(conn, "<13>%s dphost dpapp: %s after\n", time.Now().Format(time.Stamp), after); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	want[after] = true
	eventually(t, 30*time.Second, 250*time.Millisecond, deliveredAll)

	r := sf.tally(want)
	var unexpected []string
	for _, k := range r.unexpected {
		if !maybe[k] {
			unexpected = append(unexpected, k)
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("lines delivered that herald never accepted: %s", firstFew(unexpected, 5))
	}
	for k := range refused {
		if sf.counts[k] > 0 {
			t.Errorf("post %s was answered 503 at once and still delivered", k)
		}
	}
	if r.duplicates > 0 {
		t.Errorf("%d duplicates (%s)", r.duplicates, firstFew(r.dupKeys, 5))
	}
	if v, err := h.metric(`herald_receiver_store_full{receiver="syslog"}`); err != nil || v != 0 {
		t.Errorf("herald_receiver_store_full of the syslog receiver after the drain = %v (%v), want 0", v, err)
	}
	if code := h.stop(60 * time.Second); code != 0 {
		t.Errorf("herald exited with %d", code)
	}
	t.Logf("sent %d TCP lines and %d posts (%d refused at once); delivered %d, lost 0, duplicates %d; run %s",
		written+1, httpSeq, len(refused), sf.distinct(), r.duplicates, time.Since(start).Round(time.Millisecond))
}

// storeClient connects to herald's embedded server to read JetStream's use.
func storeClient(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("e2e-diskpressure-global"), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// storeState says how much of the store JetStream uses and what the work
// streams hold, for progress and failure messages.
func storeState(js jetstream.JetStream) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		return fmt.Sprintf("account info: %v", err)
	}
	parts := []string{fmt.Sprintf("store %.1f MiB", float64(ai.Store)/(1<<20))}
	for _, name := range workStreams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		st := s.CachedInfo().State
		parts = append(parts, fmt.Sprintf("%s %.1f MiB/%d", strings.TrimPrefix(name, "HERALD_"), float64(st.Bytes)/(1<<20), st.Msgs))
	}
	return strings.Join(parts, ", ")
}

// storeUsed is JetStream's use of the store, in bytes.
func storeUsed(t testing.TB, js jetstream.JetStream) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatalf("account info: %v", err)
	}
	return int64(ai.Store)
}

// streamsAt says whether each stream holds at least the bytes given.
func streamsAt(js jetstream.JetStream, atLeast map[string]int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, n := range atLeast {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		if b := s.CachedInfo().State.Bytes; b < uint64(n) {
			return fmt.Errorf("%s holds %d bytes, not yet %d; %s", name, b, n, storeState(js))
		}
	}
	return nil
}

// postPadded posts one syslog line whose message is key and 8 KiB of
// padding, so that a few posts take what room a full stream has left
// below its limit (a held TCP batch is larger).
func postPadded(url, key string) (int, http.Header, string, error) {
	body := fmt.Sprintf("<13>%s dphost dpapp: %s %s\n", time.Now().Format(time.Stamp), key, strings.Repeat("p", 8<<10))
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), err
}
