package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus"
)

// The chaos suite: events with unique ids go through the whole pipeline with
// each stage in its own process while a random stage process is killed with
// SIGKILL at random moments and restarted. Every id must reach the sink;
// duplicates are counted and must stay within what the sink can have had
// written but not yet acknowledged when it died. This file holds the suite
// and its short version, which runs in `make test`; chaos_long_test.go (build
// tag chaos, `make chaos`) runs the full one.

// chaosParams size one chaos run.
type chaosParams struct {
	events int     // lines sent, each with a unique sequence number
	kills  int     // SIGKILLs, each of a random stage process, each followed by a restart
	rate   float64 // lines/s sent; 0 = as fast as the receiver reads
	// deadline for the whole run, from the first send to the last id in the sink
	deadline time.Duration
}

// chaosStages are the processes the suite kills: every stage but the
// receiver. The receiver's process also runs the embedded NATS server that
// holds the streams, and a syslog sender over TCP has no acknowledgements,
// so lines the receiver read but had not stored die with it by design
// (README: "What acked survives"); killing it would measure that, not herald.
var chaosStages = []string{"classifier", "resolver", "router", "sink"}

// Duplicates can come only from the sink: the other stages publish under
// de-duplication ids derived from their input, so work redone after a kill is
// dropped by JetStream. A sink killed after writing a batch and before its ack
// rewrites it; at most bus.MaxAckPending (64) messages of at most
// batch.max_events (1000, the default) events each are in flight to it.
const chaosDupsPerSinkKill = 64 * 1000

// chaosStallLimit is how long the sink may see no new id before the run
// fails as stuck.
const chaosStallLimit = 30 * time.Second

// chaosResult is what a run prints.
type chaosResult struct {
	sent, delivered, lost, duplicates int
	kills                             map[string]int
	longestStall                      time.Duration
	stallAt                           time.Duration // when the longest stall began, from the first send
	elapsed                           time.Duration
	seed                              uint64
}

func (r chaosResult) String() string {
	return fmt.Sprintf("sent %d, delivered %d, lost %d, duplicates %d, longest stall %s (from %s), kills %v, %s in all, seed %d",
		r.sent, r.delivered, r.lost, r.duplicates, r.longestStall.Round(time.Millisecond),
		r.stallAt.Round(time.Millisecond), r.kills, r.elapsed.Round(time.Millisecond), r.seed)
}

func TestChaosKill9OfStageProcessesLosesNothing(t *testing.T) {
	r := runChaos(t, chaosParams{events: 50000, kills: 4, rate: 10000, deadline: 35 * time.Second})
	t.Log(r)
}

// chaosSeed is HERALD_CHAOS_SEED when set (to replay a run), else random.
func chaosSeed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv("HERALD_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HERALD_CHAOS_SEED=%q: %v", s, err)
		}
		return v
	}
	return rand.Uint64()
}

// runChaos runs one chaos run and fails the test if an id is lost, a line
// in the sink is torn or foreign, or duplicates exceed the bound.
func runChaos(t *testing.T, p chaosParams) chaosResult {
	t.Helper()
	seed := chaosSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	t.Logf("chaos: %d events, %d kills, seed %d (HERALD_CHAOS_SEED=%d replays the choices)", p.events, p.kills, seed, seed)

	natsPort, syslogPort := freePort(t), freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	sinkPath := filepath.Join(t.TempDir(), "events.jsonl")

	// The bus: embedded NATS and the syslog receiver.
	busDir := t.TempDir()
	busMetrics := freePort(t)
	busCfg := writeConfig(t, busDir, configParams{NATSPort: natsPort, MetricsPort: busMetrics,
		SyslogPort: syslogPort, AckWait: "2s", SinkPath: sinkPath})
	bus := startHerald(t, "receiver", busCfg, busMetrics, "--stages", "receiver")
	bus.waitReady(30 * time.Second)

	// One process per stage, each with its own config (metrics port).
	type stageProc struct {
		cfg     string
		metrics int
		p       *proc
		starts  int
	}
	stages := map[string]*stageProc{}
	for _, s := range chaosStages {
		d := filepath.Join(t.TempDir(), s)
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
		m := freePort(t)
		sp := &stageProc{cfg: writeConfig(t, d, configParams{NATSURL: natsURL, MetricsPort: m, AckWait: "2s", SinkPath: sinkPath}), metrics: m}
		sp.p = startHerald(t, s+"-1", sp.cfg, m, "--stages", s)
		sp.starts = 1
		stages[s] = sp
	}
	for _, s := range chaosStages {
		stages[s].p.waitReady(30 * time.Second)
	}
	alive := func() {
		t.Helper()
		if bus.exited() {
			t.Fatalf("the receiver process (NATS) exited with code %d", bus.exitCode)
		}
		for _, s := range chaosStages {
			if sp := stages[s]; sp.p.exited() {
				t.Fatalf("%s exited with code %d without being killed", sp.p.name, sp.p.exitCode)
			}
		}
	}

	// Kill moments: when the sink has a random share of the ids, plus a
	// random delay, so kills fall on a loaded pipeline at random points of
	// every phase (while sending, with a backlog, near the end).
	thresholds := make([]int, p.kills)
	for i := range thresholds {
		thresholds[i] = int(float64(p.events) * (0.02 + 0.93*rng.Float64()))
	}
	slices.Sort(thresholds)

	ctx, cancel := context.WithTimeout(context.Background(), p.deadline)
	defer cancel()
	start := time.Now()
	sendDone := make(chan error, 1)
	go func() { sendDone <- sendChaosLines(ctx, fmt.Sprintf("127.0.0.1:%d", syslogPort), p.events, p.rate) }()
	t.Cleanup(func() {
		cancel()
		<-sendDone
	})

	sink := newChaosSink(sinkPath, p.events)
	res := chaosResult{sent: p.events, kills: map[string]int{}, seed: seed}
	lastNew, firstNew := time.Time{}, time.Time{}
	poll := func() {
		t.Helper()
		n, err := sink.poll()
		if err != nil {
			t.Fatalf("reading the sink: %v", err)
		}
		now := time.Now()
		if n > 0 {
			if firstNew.IsZero() {
				firstNew = now
			} else if gap := now.Sub(lastNew); gap > res.longestStall {
				res.longestStall, res.stallAt = gap, lastNew.Sub(start)
			}
			lastNew = now
		}
	}
	// A run fails early, with a picture of the streams, when no new id
	// arrived for chaosStallLimit: recovery from a kill takes about ack_wait
	// (2 s), so a longer silence means an event is stuck, not late.
	lastKill := time.Now()
	waitFor := func(what string, done func() bool) {
		t.Helper()
		for !done() {
			alive()
			stalled := sink.distinct < p.events && time.Since(lastNew) > chaosStallLimit && time.Since(lastKill) > chaosStallLimit
			if ctx.Err() != nil || stalled {
				why := fmt.Sprintf("deadline %s passed", p.deadline)
				if stalled {
					why = fmt.Sprintf("no new id for %s", time.Since(lastNew).Round(time.Millisecond))
				}
				t.Errorf("%s: %s with %d of %d ids in the sink, %d duplicates, kills %v; missing: %s; sender: %v; %d torn lines, e.g. %q",
					what, why, sink.distinct, p.events, sink.duplicates, res.kills, firstFew(sink.missing(), 20), senderState(sendDone),
					sink.torn, sink.tornExample)
				if sink.torn > 0 {
					t.Errorf("ids inside the torn lines (not counted as delivered): %v", sink.tornSeqs)
				}
				chaosDiagnose(t, natsURL)
				t.FailNow()
			}
			poll()
			time.Sleep(5 * time.Millisecond)
		}
	}

	for k, th := range thresholds {
		waitFor(fmt.Sprintf("kill %d at %d ids", k+1, th), func() bool { return sink.distinct >= th })
		at := time.Now().Add(time.Duration(rng.Int64N(int64(200 * time.Millisecond))))
		waitFor("kill jitter", func() bool { return !time.Now().Before(at) })
		s := chaosStages[rng.IntN(len(chaosStages))]
		sp := stages[s]
		sp.p.kill()
		res.kills[s]++
		killedAt := time.Since(start)
		sp.starts++
		sp.p = startHerald(t, fmt.Sprintf("%s-%d", s, sp.starts), sp.cfg, sp.metrics, "--stages", s)
		sp.p.waitReady(30 * time.Second)
		lastKill = time.Now()
		t.Logf("kill %d: SIGKILL %s at %s with %d ids in the sink; restarted, ready after %s",
			k+1, s, killedAt.Round(time.Millisecond), sink.distinct, (time.Since(start) - killedAt).Round(time.Millisecond))
	}
	waitFor("delivery of every id", func() bool { return sink.distinct == p.events })
	res.elapsed = time.Since(start)
	if err := <-sendDone; err != nil {
		t.Errorf("sender: %v", err)
	}
	sendDone <- nil // for the cleanup
	// Duplicates can still be on their way (a batch redelivered to the sink
	// after the last new id): read on until the sink's consumer has nothing
	// pending or unacknowledged, so the count is final.
	waitFor("the sink's consumer to drain", func() bool { return sinkDrained(t, ctx, natsURL) })
	poll()

	res.delivered = sink.distinct
	res.lost = p.events - sink.distinct
	res.duplicates = sink.duplicates
	bound := res.kills["sink"] * chaosDupsPerSinkKill
	if sink.torn > 0 {
		t.Errorf("%d sink lines are not one JSON object each (torn writes?), e.g. %q; ids inside them: %v", sink.torn, sink.tornExample, sink.tornSeqs)
		if sink.torn > 0 {
			t.Errorf("ids inside the torn lines (not counted as delivered): %v", sink.tornSeqs)
		}
	}
	if sink.foreign > 0 {
		t.Errorf("%d sink lines hold no id of this run or one out of range, e.g. %q", sink.foreign, sink.foreignExample)
	}
	if res.duplicates > bound {
		t.Errorf("%d duplicates, more than the %d that %d sink kills can explain (%d each): a stage other than the sink replays work",
			res.duplicates, bound, res.kills["sink"], chaosDupsPerSinkKill)
	}
	if res.lost != 0 {
		t.Errorf("%d ids lost", res.lost)
	}
	return res
}

// chaosDiagnose logs every stream's and consumer's state and the dead
// letters: where a missing event is stuck.
func chaosDiagnose(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := nats.Connect(url, nats.Name("e2e-chaos-diagnose"), nats.Timeout(2*time.Second))
	if err != nil {
		t.Logf("diagnose: connect %s: %v", url, err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Logf("diagnose: jetstream: %v", err)
		return
	}
	for name := range js.StreamNames(ctx).Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Logf("diagnose: stream %s: %v", name, err)
			continue
		}
		si, err := st.Info(ctx)
		if err != nil {
			t.Logf("diagnose: stream %s info: %v", name, err)
			continue
		}
		t.Logf("diagnose: stream %s: %d messages, seq %d..%d", name, si.State.Msgs, si.State.FirstSeq, si.State.LastSeq)
		for ci := range st.ListConsumers(ctx).Info() {
			t.Logf("diagnose:   consumer %s: pending %d, ack pending %d, redelivered %d, delivered stream seq %d, ack floor stream seq %d, waiting pulls %d",
				ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumWaiting)
		}
		if name == bus.StreamDLQ {
			for seq := si.State.FirstSeq; seq <= si.State.LastSeq && seq < si.State.FirstSeq+10; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if err != nil {
					t.Logf("diagnose:   dead letter %d: %v", seq, err)
					continue
				}
				t.Logf("diagnose:   dead letter %d on %s: stage %q reason %q detail %q origin %q, %d bytes",
					seq, m.Subject, m.Header.Get(bus.HeaderDLQStage), m.Header.Get(bus.HeaderDLQReason),
					m.Header.Get(bus.HeaderDLQDetail), m.Header.Get(bus.HeaderDLQSubject), len(m.Data))
			}
		}
	}
}

// sinkDrained reports whether the consumer of target "log" has no message
// pending or awaiting an ack: after that nothing more reaches the file.
func sinkDrained(t testing.TB, ctx context.Context, url string) bool {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("e2e-chaos"), nats.Timeout(2*time.Second))
	if err != nil {
		t.Logf("connect %s: %v", url, err)
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	c, err := js.Consumer(ctx, bus.StreamTargets, bus.SinkConsumer("log"))
	if err != nil {
		t.Logf("consumer %s: %v", bus.SinkConsumer("log"), err)
		return false
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Logf("consumer info: %v", err)
		return false
	}
	return info.NumPending == 0 && info.NumAckPending == 0
}

func senderState(done chan error) string {
	select {
	case err := <-done:
		done <- err
		if err != nil {
			return err.Error()
		}
		return "finished"
	default:
		return "still sending"
	}
}

// chaosLine is line seq as sent: RFC 3164 with a unique "chaos seq=<n>".
func appendChaosLine(dst []byte, stamp string, seq int) []byte {
	dst = append(dst, "<13>"...)
	dst = append(dst, stamp...)
	dst = append(dst, " chaoshost chaos[1]: chaos seq="...)
	dst = strconv.AppendInt(dst, int64(seq), 10)
	dst = append(dst, " padding-to-make-a-line-of-about-a-hundred-bytes\n"...)
	return dst
}

// sendChaosLines sends n lines over one TCP connection, at rate lines/s
// (0: unpaced), and closes it. The receiver never dies, so every line
// written is read.
func sendChaosLines(ctx context.Context, addr string, n int, rate float64) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetWriteDeadline(time.Now()) })
	defer stop()
	w := bufio.NewWriterSize(conn, 64<<10)
	stamp := time.Now().Format(time.Stamp)
	line := make([]byte, 0, 128)
	const chunk = 100
	start := time.Now()
	for seq := 0; seq < n; seq++ {
		line = appendChaosLine(line[:0], stamp, seq)
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("line %d: %w", seq, err)
		}
		if rate > 0 && seq%chunk == chunk-1 {
			if err := w.Flush(); err != nil {
				return fmt.Errorf("line %d: %w", seq, err)
			}
			// Pacing, not synchronisation: hold the schedule.
			if d := time.Until(start.Add(time.Duration(float64(seq+1) / rate * float64(time.Second)))); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
	}
	return w.Flush()
}

// chaosSink follows the sink's file and counts every id: a slice, not a
// map, because the long run has a million of them.
type chaosSink struct {
	path   string
	off    int64
	buf    []byte
	counts []uint16

	distinct, duplicates int
	torn, foreign        int
	tornSeqs             []int // ids inside torn lines (not counted as delivered)
	tornExample          string
	foreignExample       string
}

func newChaosSink(path string, n int) *chaosSink {
	return &chaosSink{path: path, counts: make([]uint16, n)}
}

var chaosToken = []byte("chaos seq=")

// poll reads the complete lines added since the last call and returns how
// many new ids they brought.
func (s *chaosSink) poll() (int, error) {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(s.off, io.SeekStart); err != nil {
		return 0, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return 0, err
	}
	end := bytes.LastIndexByte(data, '\n')
	if end < 0 {
		return 0, nil
	}
	data = data[:end+1]
	s.off += int64(len(data))
	fresh := 0
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line := data[:i]
		data = data[i+1:]
		if !json.Valid(line) {
			s.torn++
			for rest := line; ; {
				j := bytes.Index(rest, chaosToken)
				if j < 0 {
					break
				}
				rest = rest[j+len(chaosToken):]
				if v, _, ok := leadingDigits(rest); ok && len(s.tornSeqs) < 20 {
					s.tornSeqs = append(s.tornSeqs, v)
				}
			}
			if s.tornExample == "" {
				// Where a second record starts inside the line shows a
				// fragment with a whole record appended to it.
				s.tornExample = string(line[:min(len(line), 200)])
				if j := bytes.LastIndex(line, []byte(`{"id":`)); j > 0 {
					s.tornExample += fmt.Sprintf(" ... [at byte %d a record starts:] %.200s", j, line[j:])
				}
			}
			continue
		}
		seq := -1
		if j := bytes.Index(line, chaosToken); j >= 0 {
			if v, _, ok := leadingDigits(line[j+len(chaosToken):]); ok && v < len(s.counts) {
				seq = v
			}
		}
		if seq < 0 {
			s.foreign++
			if s.foreignExample == "" {
				s.foreignExample = string(line[:min(len(line), 300)])
			}
			continue
		}
		switch s.counts[seq] {
		case 0:
			s.distinct++
			fresh++
		default:
			s.duplicates++
		}
		if s.counts[seq] < 65535 {
			s.counts[seq]++
		}
	}
	return fresh, nil
}

// missing lists the sequence numbers not in the sink.
func (s *chaosSink) missing() []string {
	var out []string
	for seq, c := range s.counts {
		if c == 0 {
			out = append(out, strconv.Itoa(seq))
		}
	}
	return out
}

func leadingDigits(b []byte) (v int, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && i < 12 && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + int(b[i]-'0')
	}
	return v, b[i:], i > 0
}
