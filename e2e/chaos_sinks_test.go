package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/actors/sink/postgres/pgtest"
	"github.com/herald-router/herald/actors/sink/syslog/rsyslogtest"
	"github.com/herald-router/herald/actors/xmpp"
	"github.com/herald-router/herald/actors/xmpp/prosodytest"
	"github.com/herald-router/herald/bus"
)

// Sink outages under load (issue 9, chaos): one herald with one target per
// sink kind takes a paced stream of syslog lines with unique ids while each
// destination goes away for a while and comes back, the outages staggered
// so that they overlap. Each broken sink must be suspended, its chain must
// fail over where it has somewhere to go (pg → pg_spill, node →
// xmpp_spill) or hold its backlog in JetStream where it has not (disk,
// disk_closed, remote), the sink must resume once its destination is back,
// and every target must end up with every id: 0 lost. Each run prints,
// per target, sent, delivered, lost, duplicates and the longest stall.
//
// The outages:
//
//   - disk, disk_closed (file, keep_open true and false): the folder the
//     files live in stops being a folder. We run as root, and root ignores
//     permission bits, so chmod cannot make a path unwritable; chattr +i
//     needs CAP_LINUX_IMMUTABLE and a file system that has the flag, and a
//     read-only bind mount needs mount rights: none is portable. A path
//     whose folder is not a folder fails with ENOTDIR for everyone, root
//     included. The folder is a symlink (out/disk → real) swapped
//     atomically (rename over it) for a symlink to a regular file, so the
//     files stay where they are (the test reads them in out/real) and
//     herald's MkdirAll cannot "repair" the path by creating a new folder,
//     which is what it does, by design, when the folder is only removed.
//     With keep_open the sink notices at Begin that the path no longer
//     names its open file and reopens, which fails; without it End's open
//     fails. Either way nothing is written until the link is swapped back.
//   - pg (postgres, chain [pg, pg_spill]): PostgreSQL stopped (fast
//     shutdown) and started again. failover_test.go checks this chain in
//     detail (order, the one-batch overlap, the revived sink taking over);
//     here it runs at the same time as the other outages.
//   - remote (syslog over RELP, chain [remote]): rsyslogd killed with
//     SIGKILL and started again. RELP commits only what rsyslog
//     acknowledged, and rsyslogtest's rsyslog writes before it acknowledges,
//     so not even SIGKILL may lose a line; over plain TCP the lines in the
//     dead receiver's socket buffer would be lost, which is why the 0-loss
//     claim is made for RELP.
//   - node (xmpp PubSub, chain [node, xmpp_spill], one event in 50 by
//     the target's filter, so prosody keeps up on a loaded machine):
//     prosody stopped with SIGTERM and started again; the subscriber
//     reconnects. Not SIGKILL: prosody confirms a publish once routed, and
//     a killed prosody loses the notification it had not yet sent to the
//     subscriber, which would measure prosody (xmpp_test.go explains).
//
// failover_test.go, syslogsink_test.go and xmpp_test.go check each of the
// last three outages alone, in more detail; this run has them all at once,
// with the file outage, on one herald under load.

// sinkChaosParams size one run.
type sinkChaosParams struct {
	rate float64 // lines/s sent
	// minSend is the least time the sender runs; it goes on until every
	// outage is over and then tail more, so the revived sinks take over
	// under load (a failed-over chain probes its first sink only with a
	// batch in hand).
	minSend, tail time.Duration
	// hold is how long each destination stays down once herald has
	// suspended its sink.
	hold time.Duration
	// stagger is the delay between the starts of the outages; rounds is
	// how many times each destination goes down (the next round starts
	// when the last one is over).
	stagger time.Duration
	rounds  int
}

// TestChaosSinkOutagesUnderLoadLoseNothing: about 70,000 lines at 2,500/s
// for 28 s; each destination down once for 5 s after its sink was
// suspended, one starting every 3 s, so that up to three are down at a
// time. About 30 s on two cores.
func TestChaosSinkOutagesUnderLoadLoseNothing(t *testing.T) {
	runSinkChaos(t, sinkChaosParams{rate: 2500, minSend: 25 * time.Second, tail: 3 * time.Second,
		hold: 5 * time.Second, stagger: 3 * time.Second, rounds: 1})
}

// sinkChaosConfig: every line goes to every target (mask 31); xmpp takes
// one line in 50. A linger of 20 ms makes fewer, larger batches than the
// default 5 ms (about 50 events instead of 13 at this rate): the same
// events in a quarter of the transactions, which spares the shared two
// cores without changing what an outage does. ack_wait is long, as in
// failover_test.go: a batch that a process starved by the other peers held
// past ack_wait would be delivered twice, which is at-least-once but not
// what this run measures. The timeouts are short so that a destination
// that went away is noticed soon.
var sinkChaosConfig = template.Must(template.New("sinkchaos").Parse(`# written by herald's e2e tests
log: {level: info, format: text}
bus:
  embedded:
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
  ack_wait: 30s
batch: {linger: 20ms}
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 30s
receivers:
  syslog:
    type: syslog
    tcp: 127.0.0.1:{{.SyslogPort}}
    target_mask: 31
targets:
  disk: {bit: 1, sinks: [disk]}
  disk_closed: {bit: 2, sinks: [disk_closed]}
  pg: {bit: 4, sinks: [pg, pg_spill]}
  relp: {bit: 8, sinks: [remote]}
  xmpp:
    bit: 16
    sinks: [node, xmpp_spill]
    filter: 'message matches "seq=([0-9]*(00|50)|0) "'
sinks:
  disk: {type: file, path: out/disk/events.jsonl, format: json}
  disk_closed: {type: file, path: out/disk/closed.jsonl, format: json, keep_open: false}
  pg:
    type: postgres
    dsn: {{.DSN}}
    password_file: {{.PGPasswordFile}}
    table: herald_events
    connect_timeout: 2s
    write_timeout: 5s
  pg_spill: {type: file, path: out/pg_spill.jsonl, format: json}
  remote:
    type: syslog
    transport: relp
    address: 127.0.0.1:{{.RELPPort}}
    dial_timeout: 2s
    ack_timeout: 2s
  node:
    type: xmpp
    server: {{.XMPPServer}}
    jid: pub@localhost
    password_file: {{.XMPPPasswordFile}}
    ca_file: {{.CAFile}}
    resource: publish
    pubsub: {service: pubsub.localhost, node: {{.Node}}, create: true, max_items: 100000, access_model: open}
    timeouts: {connect: 2s, write: 2s, confirm: 5s}
  xmpp_spill: {type: file, path: out/xmpp_spill.jsonl, format: json}
`))

type sinkChaosConfigParams struct {
	NATSPort, MetricsPort, SyslogPort, RELPPort int
	DSN, PGPasswordFile                         string
	XMPPServer, XMPPPasswordFile, CAFile, Node  string
}

// sinkChaosXMPPEvery: the xmpp target's filter passes the lines whose seq
// is a multiple of 50 (50 events/s at 2,500 lines/s): prosody, a Lua
// process, confirms a few hundred publishes a second on an idle machine,
// far fewer on a loaded one, and its lag would only make the run longer.
const sinkChaosXMPPEvery = 50

// sinkChaosDupsPerOutage bounds the duplicates one outage may cause in a
// target: only the transaction in progress when the destination went away
// can be written twice (its commit reached the destination, the answer
// did not, so it is written again or to the next sink), and a transaction
// holds one batch of at most batch.max_events (1000, the default) events.
const sinkChaosDupsPerOutage = 1000

func runSinkChaos(t *testing.T, p sinkChaosParams) {
	t.Helper()
	start := time.Now()
	dir := t.TempDir()
	pg := pgtest.Start(t)
	rs := rsyslogtest.Start(t, rsyslogtest.Options{})
	xs := prosodytest.Start(t, prosodytest.Options{})
	const node = "chaos"
	sub := xs.Dial(t, "sub")
	sub.Subscribe(t, node)
	t.Logf("PostgreSQL, rsyslogd and prosody up after %s", time.Since(start).Round(time.Millisecond))

	// out/disk is a symlink to out/real (see the file outage above).
	out := filepath.Join(dir, "out")
	realDir := filepath.Join(out, "real")
	if err := os.MkdirAll(realDir, 0o750); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(out, "not-a-folder")
	if err := os.WriteFile(blocker, []byte("the file sink's folder is gone\n"), 0o600); err != nil {
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
		if err := os.Rename(tmp, diskLink); err != nil { // atomic: no moment without the link
			t.Fatal(err)
		}
	}
	pointDisk("real")

	natsPort, metricsPort, syslogPort := freePort(t), freePort(t), freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	cfg := writeTemplate(t, dir, sinkChaosConfig, sinkChaosConfigParams{NATSPort: natsPort, MetricsPort: metricsPort,
		SyslogPort: syslogPort, RELPPort: rs.RELP, DSN: pg.DSNWithoutPassword(), PGPasswordFile: pg.PasswordFile(),
		XMPPServer: xs.Addr(), XMPPPasswordFile: xs.PasswordFile(t), CAFile: xs.CAFile, Node: node})
	h := startHerald(t, "herald", cfg, metricsPort)
	h.waitReady(30 * time.Second)

	// Destinations, read by a goroutine of their own so that the test's
	// waits on the peers (a restart takes seconds) do not show as stalls.
	maxEvents := int(p.rate*(p.minSend+p.tail+time.Duration(p.rounds)*(p.hold+90*time.Second)).Seconds()) + 1
	follow := func(path string) *sinkChaosDest {
		return &sinkChaosDest{name: filepath.Base(path), read: (&sinkChaosFile{path: path}).read}
	}
	pgDest := &sinkChaosPG{srv: pg}
	itemDest := &sinkChaosItems{sub: sub, node: node, ids: map[string]bool{}}
	targets := []*sinkChaosTarget{
		newSinkChaosTarget("disk", 1, maxEvents, follow(filepath.Join(realDir, "events.jsonl"))),
		newSinkChaosTarget("disk_closed", 1, maxEvents, follow(filepath.Join(realDir, "closed.jsonl"))),
		newSinkChaosTarget("pg", 1, maxEvents, &sinkChaosDest{name: "pg", read: pgDest.read}, follow(filepath.Join(out, "pg_spill.jsonl"))),
		newSinkChaosTarget("relp", 1, maxEvents, &sinkChaosDest{name: "rsyslog", read: (&sinkChaosFile{path: rs.Out, notJSON: true}).read}),
		newSinkChaosTarget("xmpp", sinkChaosXMPPEvery, maxEvents, &sinkChaosDest{name: "node", read: itemDest.read}, follow(filepath.Join(out, "xmpp_spill.jsonl"))),
	}
	var mu sync.Mutex // guards targets' tallies and watch
	// herald's own progress: a stall of the receiver or the router stalls
	// every target at once, which is no sink's doing.
	watch := &sinkChaosWatch{series: []string{
		`herald_stage_received_events_total{stage="receiver.syslog"}`,
		`herald_stage_published_events_total{stage="router"}`,
	}}
	// One goroutine per target and one for the watch, so that a slow read
	// (a backlog just flushed) shows only as that target's stall.
	pollCtx, stopPolling := context.WithCancel(context.Background())
	var polling sync.WaitGroup
	every := func(f func()) {
		polling.Go(func() {
			for pollCtx.Err() == nil {
				f()
				select {
				case <-pollCtx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
	for _, tg := range targets {
		every(func() { tg.poll(&mu) })
	}
	every(func() {
		if m, err := sinkChaosMetrics(h, watch.series...); err == nil {
			mu.Lock()
			watch.sample(m, time.Now())
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		stopPolling()
		polling.Wait()
		pgDest.close()
	})

	// The load: one TCP connection, paced, until told to stop.
	var sent atomic.Int64
	stopSending := make(chan struct{})
	sendDone := make(chan error, 1)
	sendCtx, cancelSend := context.WithCancel(context.Background())
	go func() {
		sendDone <- sinkChaosSend(sendCtx, fmt.Sprintf("127.0.0.1:%d", syslogPort), p.rate, maxEvents, stopSending, &sent)
	}()
	t.Cleanup(func() {
		cancelSend()
		select {
		case <-sendDone:
		case <-time.After(10 * time.Second):
		}
	})
	sendStart := time.Now()
	since := func() time.Duration { return time.Since(sendStart).Round(10 * time.Millisecond) }

	outages := []*sinkChaosOutage{
		{name: "file folder replaced by a file", sinks: []string{"disk", "disk_closed"}, targets: []string{"disk", "disk_closed"}, holds: true,
			brk: func() { pointDisk(filepath.Base(blocker)) }, restore: func() { pointDisk("real") }},
		{name: "PostgreSQL stopped", sinks: []string{"pg"}, targets: []string{"pg"},
			brk: func() { pg.Stop(t) }, restore: func() { pg.Start(t) }},
		{name: "rsyslogd killed (RELP)", sinks: []string{"remote"}, targets: []string{"relp"}, holds: true,
			brk: func() { rs.Kill() }, restore: func() { rs.Start() }},
		{name: "prosody stopped", sinks: []string{"node"}, targets: []string{"xmpp"},
			brk: func() { xs.Stop(t) }, restore: func() { xs.Start(t); sub.Reconnect(t) }},
	}
	for i, o := range outages {
		o.next = time.Duration(i+1) * p.stagger
	}

	// The outages' state machines, advanced by polling herald's metrics.
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		mu.Lock()
		for _, tg := range targets {
			t.Logf("%s: %s", tg.name, tg.progress(int(sent.Load())))
		}
		mu.Unlock()
		chaosDiagnose(t, natsURL)
		t.FailNow()
	}
	var series []string
	for _, o := range outages {
		for _, s := range o.sinks {
			series = append(series, fmt.Sprintf(`herald_sink_suspended{sink=%q}`, s))
		}
		for _, tg := range o.targets {
			series = append(series, fmt.Sprintf(`herald_target_backlog_messages{target=%q}`, tg))
		}
	}
	for {
		if h.exited() {
			fail("herald exited with code %d", h.exitCode)
		}
		select {
		case err := <-sendDone:
			fail("the sender stopped early: %v", err)
		default:
		}
		m, err := sinkChaosMetrics(h, series...)
		if err != nil {
			fail("metrics: %v", err)
		}
		done := true
		for _, o := range outages {
			if err := o.step(m, since(), p, &sent); err != nil {
				fail("%s: %v", o.name, err)
			}
			if o.round < p.rounds {
				done = false
			}
		}
		if done && time.Since(sendStart) >= p.minSend {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, o := range outages {
		for _, e := range o.log {
			t.Log(e)
		}
	}
	// A tail of load after the last revival: the failed-over chains must
	// go back to their first sink.
	tailFrom := int(sent.Load())
	tailEnd := time.Now().Add(p.tail)
	for time.Now().Before(tailEnd) {
		if h.exited() {
			fail("herald exited with code %d", h.exitCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stopSending)
	mu.Lock()
	watch.stopped = true // no progress is expected once the load ends
	mu.Unlock()
	if err := <-sendDone; err != nil {
		t.Fatalf("sender: %v", err)
	}
	sendDone <- nil // for the cleanup
	total := int(sent.Load())
	sendTime := time.Since(sendStart)
	t.Logf("sent %d lines in %s (%.0f lines/s)", total, sendTime.Round(time.Millisecond), float64(total)/sendTime.Seconds())

	// Every id to every target, failing early when nothing new arrives.
	const stallLimit = 30 * time.Second
	deadline := time.Now().Add(90 * time.Second)
	for {
		if h.exited() {
			fail("herald exited with code %d", h.exitCode)
		}
		mu.Lock()
		var waiting []string
		lastNew := time.Time{}
		for _, tg := range targets {
			if tg.distinct < tg.expected(total) {
				waiting = append(waiting, tg.progress(total))
			}
			if tg.lastNew.After(lastNew) {
				lastNew = tg.lastNew
			}
		}
		mu.Unlock()
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) || time.Since(lastNew) > stallLimit {
			fail("not every id arrived (no new one for %s): %s", time.Since(lastNew).Round(time.Millisecond), strings.Join(waiting, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
	allIn := time.Since(sendStart)
	// Duplicates may still be on their way: read on until no target's
	// consumer has anything pending or unacknowledged.
	var names []string
	for _, tg := range targets {
		names = append(names, tg.name)
	}
	eventually(t, 60*time.Second, 100*time.Millisecond, func() error { return sinkChaosDrained(natsURL, names) })
	sub.Sync(t) // every notification prosody sent is recorded
	stopPolling()
	polling.Wait()
	for _, tg := range targets {
		for tg.poll(&mu) > 0 { // until every destination is read to its end
			continue
		}
	}

	// The verdict.
	var lostAll, dupsAll int
	var longest time.Duration
	for _, tg := range targets {
		r := tg.result(total, sendStart)
		t.Logf("%s: %s", tg.name, r)
		lostAll += r.lost
		dupsAll += r.duplicates
		longest = max(longest, r.longestStall)
		if r.lost > 0 {
			t.Errorf("%s: %d ids lost: %s", tg.name, r.lost, firstFew(tg.missing(total), 20))
		}
		rounds := 0
		for _, o := range outages {
			if slices.Contains(o.targets, tg.name) {
				rounds += o.round
			}
		}
		if bound := rounds * sinkChaosDupsPerOutage; r.duplicates > bound {
			t.Errorf("%s: %d duplicates, more than the %d that %d outages can explain", tg.name, r.duplicates, bound, rounds)
		}
		for _, d := range tg.dests {
			if d.problem != "" {
				t.Errorf("%s: %s: %s", tg.name, d.name, d.problem)
			}
		}
	}
	// Fail-over and take-over: the spills got what came during the
	// outages, the first sinks what came after the last revival.
	for _, tg := range targets {
		if len(tg.dests) < 2 {
			continue
		}
		first, spill := tg.dests[0], tg.dests[1]
		if spill.events == 0 {
			t.Errorf("%s: nothing reached %s: the chain never failed over", tg.name, spill.name)
		}
		if first.maxSeq < tailFrom {
			t.Errorf("%s: the last id in %s is %d, none of those sent after the last revival (from %d): the revived sink did not take over",
				tg.name, first.name, first.maxSeq, tailFrom)
		}
	}
	for _, o := range outages {
		if o.holds && o.maxBacklog == 0 {
			t.Errorf("%s: herald_target_backlog_messages stayed 0 during the outage: the target did not hold a backlog", o.name)
		}
	}
	mu.Lock()
	t.Logf("herald under load: %s", watch)
	mu.Unlock()
	if n, err := sinkChaosDeadLetters(natsURL); err != nil || n != 0 {
		t.Errorf("%d dead letters (%v), want none", n, err)
	}
	if code := h.stop(30 * time.Second); code != 0 {
		t.Errorf("herald exited with code %d after SIGTERM, want 0", code)
	}
	t.Logf("all: sent %d, lost %d, duplicates %d, longest stall %s; every id in every target %s after the first send, %s in all",
		total, lostAll, dupsAll, longest.Round(time.Millisecond), allIn.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// sinkChaosOutage is one destination's outages, advanced by step.
type sinkChaosOutage struct {
	name    string
	sinks   []string // herald's sinks that must be suspended, then resume
	targets []string // the targets whose backlog is watched
	holds   bool     // the targets have no fail-over: they must hold a backlog
	brk     func()
	restore func()

	round      int           // outages completed
	state      int           // 0 up, 1 broken, 2 suspended, 3 restored
	next       time.Duration // when the next one starts, from the first send
	at         time.Duration // when the state changed
	maxBacklog float64
	log        []string
}

// step advances the outage by the metrics m at now (from the first send).
func (o *sinkChaosOutage) step(m map[string]float64, now time.Duration, p sinkChaosParams, sent *atomic.Int64) error {
	suspended := func(want float64) bool {
		for _, s := range o.sinks {
			if m[fmt.Sprintf(`herald_sink_suspended{sink=%q}`, s)] != want {
				return false
			}
		}
		return true
	}
	if o.state == 1 || o.state == 2 {
		for _, tg := range o.targets {
			o.maxBacklog = max(o.maxBacklog, m[fmt.Sprintf(`herald_target_backlog_messages{target=%q}`, tg)])
		}
	}
	switch o.state {
	case 0:
		if o.round < p.rounds && now >= o.next {
			o.brk()
			o.state, o.at = 1, now
		}
	case 1:
		if suspended(1) {
			o.logf("round %d: broken at %s, %v suspended %s later", o.round+1, o.at, o.sinks, now-o.at)
			o.state, o.at = 2, now
		} else if now-o.at > 30*time.Second {
			return fmt.Errorf("sinks %v not all suspended %s after the outage began: %v", o.sinks, now-o.at, m)
		}
	case 2:
		if now-o.at >= p.hold {
			t0 := time.Now()
			o.restore()
			took := time.Since(t0)
			o.logf("round %d: destination back at %s (its start took %s), %d lines sent so far",
				o.round+1, (now + took).Round(10*time.Millisecond), took.Round(10*time.Millisecond), sent.Load())
			o.state, o.at = 3, now+took
		}
	case 3:
		// The back-off after a long outage is up to 30 s (the executor's
		// cap), plus a probe that may time out.
		if suspended(0) {
			o.logf("round %d: %v resumed %s after the restore; backlog peaked at %.0f messages",
				o.round+1, o.sinks, (now - o.at).Round(10*time.Millisecond), o.maxBacklog)
			o.state, o.round = 0, o.round+1
			o.next = now + p.stagger
		} else if now-o.at > 60*time.Second {
			return fmt.Errorf("sinks %v still suspended %s after the destination came back: %v", o.sinks, now-o.at, m)
		}
	}
	return nil
}

func (o *sinkChaosOutage) logf(format string, args ...any) {
	o.log = append(o.log, o.name+": "+fmt.Sprintf(format, args...))
}

// sinkChaosWatch keeps, for counters of herald's, the longest time during
// which one did not grow.
type sinkChaosWatch struct {
	series  []string
	stopped bool
	last    []float64
	at      []time.Time
	longest []time.Duration
	from    []time.Time
	start   time.Time
}

func (w *sinkChaosWatch) sample(m map[string]float64, now time.Time) {
	if w.stopped {
		return
	}
	if w.last == nil {
		n := len(w.series)
		w.last, w.at, w.longest, w.from, w.start = make([]float64, n), make([]time.Time, n), make([]time.Duration, n), make([]time.Time, n), now
	}
	for i, s := range w.series {
		if v := m[s]; v > w.last[i] {
			if !w.at[i].IsZero() && now.Sub(w.at[i]) > w.longest[i] {
				w.longest[i], w.from[i] = now.Sub(w.at[i]), w.at[i]
			}
			w.last[i], w.at[i] = v, now
		}
	}
}

func (w *sinkChaosWatch) String() string {
	var parts []string
	for i, s := range w.series {
		if w.last == nil {
			break
		}
		parts = append(parts, fmt.Sprintf("%s grew to %.0f, longest still %s (from %s after the watch began)",
			s, w.last[i], w.longest[i].Round(time.Millisecond), w.from[i].Sub(w.start).Round(time.Millisecond)))
	}
	return strings.Join(parts, "; ")
}

// sinkChaosMetrics reads several series from one scrape of /metrics; a
// series not exposed yet is 0.
func sinkChaosMetrics(p *proc, series ...string) (map[string]float64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.metricsPort))
	if err != nil {
		return nil, fmt.Errorf("%s /metrics: %w", p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /metrics: %s", p.name, resp.Status)
	}
	want := map[string]bool{}
	out := map[string]float64{}
	for _, s := range series {
		want[s], out[s] = true, 0
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return nil, fmt.Errorf("%s /metrics: %q: %w", p.name, sc.Text(), err)
		}
		out[name] = v
	}
	return out, sc.Err()
}

// sinkChaosDrained reports, as an error, a target consumer that still has
// messages pending or unacknowledged.
func sinkChaosDrained(url string, targets []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := nats.Connect(url, nats.Name("e2e-sink-chaos"), nats.Timeout(2*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for _, tg := range targets {
		c, err := js.Consumer(ctx, bus.StreamTargets, bus.SinkConsumer(tg))
		if err != nil {
			return fmt.Errorf("consumer of %s: %w", tg, err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer of %s: %w", tg, err)
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Errorf("target %s: %d messages pending, %d unacknowledged", tg, info.NumPending, info.NumAckPending)
		}
	}
	return nil
}

// sinkChaosDeadLetters is how many messages the dead-letter stream holds.
func sinkChaosDeadLetters(url string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := nats.Connect(url, nats.Name("e2e-sink-chaos"), nats.Timeout(2*time.Second))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	st, err := js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// sinkChaosSend sends chaos lines (appendChaosLine) over one TCP
// connection at rate lines/s until stop is closed or max lines are sent,
// counting in sent the lines flushed to the socket. The receiver never
// dies, so every line flushed is read.
func sinkChaosSend(ctx context.Context, addr string, rate float64, max int, stop <-chan struct{}, sent *atomic.Int64) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	unblock := context.AfterFunc(ctx, func() { _ = conn.SetWriteDeadline(time.Now()) })
	defer unblock()
	w := bufio.NewWriterSize(conn, 64<<10)
	stamp := time.Now().Format(time.Stamp)
	line := make([]byte, 0, 128)
	const chunk = 50
	start := time.Now()
	for seq := 0; seq < max; {
		for end := min(seq+chunk, max); seq < end; seq++ {
			line = appendChaosLine(line[:0], stamp, seq)
			if _, err := w.Write(line); err != nil {
				return fmt.Errorf("line %d: %w", seq, err)
			}
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("line %d: %w", seq, err)
		}
		sent.Store(int64(seq))
		// Pacing, not synchronisation: hold the schedule.
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(start.Add(time.Duration(float64(seq) / rate * float64(time.Second))))):
		}
	}
	return nil
}

// sinkChaosTarget tallies the ids one target's destinations hold, together:
// an id in the first sink and in the spill is a duplicate.
type sinkChaosTarget struct {
	name  string
	every int // the target gets the ids divisible by every
	dests []*sinkChaosDest

	counts               []uint16
	distinct, duplicates int
	firstNew, lastNew    time.Time
	longestStall         time.Duration
	stallAt              time.Time
}

// sinkChaosDest is one destination of a target; read returns the ids added
// since the last call (none while the destination is down).
type sinkChaosDest struct {
	name    string
	read    func() ([]int, error)
	events  int           // ids read, duplicates included
	maxSeq  int           // the largest id read
	slowest time.Duration // the longest read: a slow read shows as a stall
	problem string        // what was wrong with what it holds (first problem)
}

func newSinkChaosTarget(name string, every, max int, dests ...*sinkChaosDest) *sinkChaosTarget {
	for _, d := range dests {
		d.maxSeq = -1
	}
	return &sinkChaosTarget{name: name, every: every, dests: dests, counts: make([]uint16, max)}
}

// poll reads every destination (outside mu: reading may take a while) and
// counts what they brought (under mu); it returns how many ids it read.
func (tg *sinkChaosTarget) poll(mu *sync.Mutex) int {
	news := make([][]int, len(tg.dests))
	errs := make([]error, len(tg.dests))
	took := make([]time.Duration, len(tg.dests))
	for i, d := range tg.dests {
		t0 := time.Now()
		news[i], errs[i] = d.read()
		took[i] = time.Since(t0)
	}
	mu.Lock()
	defer mu.Unlock()
	now := time.Now()
	fresh, read := 0, 0
	for i, d := range tg.dests {
		read += len(news[i])
		d.slowest = max(d.slowest, took[i])
		if errs[i] != nil && d.problem == "" {
			d.problem = errs[i].Error()
		}
		for _, seq := range news[i] {
			d.events++
			d.maxSeq = max(d.maxSeq, seq)
			if seq < 0 || seq >= len(tg.counts) || seq%tg.every != 0 {
				if d.problem == "" {
					d.problem = fmt.Sprintf("id %d was not sent to this target", seq)
				}
				continue
			}
			if tg.counts[seq] == 0 {
				tg.distinct++
				fresh++
			} else {
				tg.duplicates++
			}
			if tg.counts[seq] < 65535 {
				tg.counts[seq]++
			}
		}
	}
	if fresh > 0 {
		if tg.firstNew.IsZero() {
			tg.firstNew = now
		} else if gap := now.Sub(tg.lastNew); gap > tg.longestStall {
			tg.longestStall, tg.stallAt = gap, tg.lastNew
		}
		tg.lastNew = now
	}
	return read
}

// expected is how many of the first total ids the target gets.
func (tg *sinkChaosTarget) expected(total int) int { return (total + tg.every - 1) / tg.every }

func (tg *sinkChaosTarget) progress(total int) string {
	var parts []string
	for _, d := range tg.dests {
		parts = append(parts, fmt.Sprintf("%s %d", d.name, d.events))
	}
	return fmt.Sprintf("%d of %d ids (%s), missing %s", tg.distinct, tg.expected(total), strings.Join(parts, ", "), firstFew(tg.missing(total), 10))
}

func (tg *sinkChaosTarget) missing(total int) []string {
	var out []string
	for seq := 0; seq < total && seq < len(tg.counts); seq += tg.every {
		if tg.counts[seq] == 0 {
			out = append(out, strconv.Itoa(seq))
		}
	}
	return out
}

// sinkChaosResult is what a run prints per target (chaosResult's shape).
type sinkChaosResult struct {
	sent, delivered, lost, duplicates int
	longestStall                      time.Duration
	stallAt                           time.Duration // when the longest stall began, from the first send
	complete                          time.Duration // when the last new id arrived, from the first send
	perDest                           string
}

func (r sinkChaosResult) String() string {
	return fmt.Sprintf("sent %d, delivered %d, lost %d, duplicates %d, longest stall %s (from %s), complete at %s; %s",
		r.sent, r.delivered, r.lost, r.duplicates, r.longestStall.Round(time.Millisecond), r.stallAt.Round(time.Millisecond),
		r.complete.Round(time.Millisecond), r.perDest)
}

func (tg *sinkChaosTarget) result(total int, sendStart time.Time) sinkChaosResult {
	var parts []string
	for _, d := range tg.dests {
		parts = append(parts, fmt.Sprintf("%s %d (slowest read %s)", d.name, d.events, d.slowest.Round(time.Millisecond)))
	}
	r := sinkChaosResult{sent: tg.expected(total), delivered: tg.distinct, duplicates: tg.duplicates,
		longestStall: tg.longestStall, perDest: strings.Join(parts, ", ")}
	r.lost = r.sent - r.delivered
	if !tg.stallAt.IsZero() {
		r.stallAt = tg.stallAt.Sub(sendStart)
	}
	r.complete = tg.lastNew.Sub(sendStart)
	return r
}

// sinkChaosFile follows a file and returns the chaos ids of its complete new
// lines, at most sinkChaosChunk bytes of them per call so that a big
// backlog shows as steady progress; notJSON is for rsyslog's output, whose
// lines are tab-separated and include its readiness probes (lines without
// an id, skipped).
const sinkChaosChunk = 1 << 20

type sinkChaosFile struct {
	path    string
	notJSON bool
	off     int64
}

func (s *sinkChaosFile) read() ([]int, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(s.off, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, sinkChaosChunk))
	if err != nil {
		return nil, err
	}
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		if len(data) == sinkChaosChunk {
			return nil, fmt.Errorf("a line longer than %d bytes at offset %d", sinkChaosChunk, s.off)
		}
		return nil, nil
	}
	data = data[:end+1]
	s.off += int64(len(data))
	var seqs []int
	var bad error
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line := data[:i]
		data = data[i+1:]
		if !s.notJSON && !json.Valid(line) {
			if bad == nil {
				bad = fmt.Errorf("a line is not one JSON object (torn write?): %.200q", line)
			}
			continue
		}
		if !bytes.Contains(line, chaosToken) {
			if !s.notJSON && bad == nil {
				bad = fmt.Errorf("a line holds no id: %.200q", line)
			}
			continue
		}
		// Every whole id of the line (digits, then the space before the
		// padding): a record rsyslog had half written when it was killed
		// has the next record glued to it, and RELP sends the torn one
		// again, so it shows up whole later.
		for rest := line; ; {
			j := bytes.Index(rest, chaosToken)
			if j < 0 {
				break
			}
			rest = rest[j+len(chaosToken):]
			if v, after, ok := leadingDigits(rest); ok && len(after) > 0 && after[0] == ' ' {
				seqs = append(seqs, v)
			}
		}
	}
	return seqs, bad
}

// sinkChaosPG reads the rows added to herald_events since the last call, in
// the order they were stored. While PostgreSQL is down it returns nothing.
type sinkChaosPG struct {
	srv  *pgtest.Server
	conn *pgx.Conn
	last int64 // the seq column of the last row read
}

func (p *sinkChaosPG) read() ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if p.conn == nil {
		cfg, err := pgx.ParseConfig(p.srv.DSN())
		if err != nil {
			return nil, err
		}
		cfg.ConnectTimeout = time.Second
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, nil // down: nothing new
		}
		p.conn = c
	}
	rows, err := p.conn.Query(ctx, `SELECT seq, message FROM herald_events WHERE seq > $1 ORDER BY seq LIMIT 5000`, p.last)
	if err != nil {
		p.close() // down, or the table is not created yet
		return nil, nil
	}
	defer rows.Close()
	var seqs []int
	for rows.Next() {
		var (
			n   int64
			msg string
		)
		if err := rows.Scan(&n, &msg); err != nil {
			return seqs, err
		}
		p.last = n
		if j := strings.Index(msg, string(chaosToken)); j >= 0 {
			if v, _, ok := leadingDigits([]byte(msg[j+len(chaosToken):])); ok {
				seqs = append(seqs, v)
				continue
			}
		}
		return seqs, fmt.Errorf("a row holds no id: %.200q", msg)
	}
	if rows.Err() != nil {
		p.close()
	}
	return seqs, nil
}

func (p *sinkChaosPG) close() {
	if p.conn != nil {
		_ = p.conn.Close(context.Background())
		p.conn = nil
	}
}

// sinkChaosItems reads the PubSub items the subscriber recorded since the last
// call. An item published again under its own id (a redelivered event)
// replaces itself on the node, so it counts once.
type sinkChaosItems struct {
	sub  *prosodytest.Client
	node string
	n    int // items already read
	ids  map[string]bool
}

func (s *sinkChaosItems) read() ([]int, error) {
	items := s.sub.Items()
	var (
		seqs []int
		bad  error
	)
	for _, it := range items[s.n:] {
		if it.Node != s.node || s.ids[it.ID] {
			continue
		}
		s.ids[it.ID] = true
		ev, err := xmpp.DecodeEvent(it.Payload)
		if err != nil {
			bad = cmp.Or(bad, fmt.Errorf("item %s: %w", it.ID, err))
			continue
		}
		j := strings.Index(ev.Message, string(chaosToken))
		if j < 0 {
			bad = cmp.Or(bad, fmt.Errorf("item %s holds no id: %.200q", it.ID, ev.Message))
			continue
		}
		if v, _, ok := leadingDigits([]byte(ev.Message[j+len(chaosToken):])); ok {
			seqs = append(seqs, v)
		}
	}
	s.n = len(items)
	return seqs, bad
}
