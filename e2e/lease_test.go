package e2e

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"text/template"
	"time"
)

// leaseParams fill leaseConfigTemplate: a herald whose one target writes a
// file sink (single-writer, so leased) at an absolute path that several
// processes share.
type leaseParams struct {
	NATSPort    int    // embedded server's port, when NATSURL is empty
	NATSURL     string // the bus process's server
	MetricsPort int
	SyslogPort  int // 0: no receivers
	SinkPath    string
	LeaseTTL    string
}

var leaseConfigTemplate = template.Must(template.New("lease").Parse(`# written by herald's e2e lease tests
log: {level: info, format: text}
bus:
{{- if .NATSURL}}
  urls: [{{.NATSURL}}]
{{- else}}
  embedded:
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
{{- end}}
  ack_wait: 2s
  lease_ttl: {{.LeaseTTL}}
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 20s
{{- if .SyslogPort}}
receivers:
  syslog:
    type: syslog
    tcp: 127.0.0.1:{{.SyslogPort}}
    udp: 127.0.0.1:{{.SyslogPort}}
{{- end}}
targets:
  log:
    bit: 4
    sinks: [events]
sinks:
  events:
    type: file
    path: {{.SinkPath}}
    format: json
`))

func writeLeaseConfig(t testing.TB, name string, p leaseParams) string {
	t.Helper()
	if p.LeaseTTL == "" {
		p.LeaseTTL = e2eLeaseTTL.String()
	}
	return writeTemplate(t, filepath.Join(t.TempDir(), name), leaseConfigTemplate, p)
}

// e2eLeaseTTL is bus.lease_ttl in these tests.
const e2eLeaseTTL = 2 * time.Second

const (
	leaseHeld      = `herald_sink_lease_held{sink="events"}`
	eventsCommited = `herald_sink_committed_events_total{sink="events"}`
)

// leaseWatch samples the lease gauge and the sink's commits of each sink
// process every few milliseconds and records every sign of two writers:
// both processes holding the lease in one sample, or a process committing
// events between two samples in which it did not hold the lease.
type leaseWatch struct {
	procs []*proc
	mu    sync.Mutex
	dead  map[*proc]bool
	bad   []string
	stop  chan struct{}
	done  chan struct{}
	n     int // samples taken
}

func watchLeases(procs ...*proc) *leaseWatch {
	w := &leaseWatch{procs: procs, dead: map[*proc]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	type reading struct {
		ok              bool
		held, committed float64
	}
	last := map[*proc]reading{}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			holders := 0
			w.mu.Lock()
			for _, p := range w.procs {
				if w.dead[p] {
					continue
				}
				// Commits first, then the lease: the gauge is set before a
				// holder starts, so a commit seen here implies the lease
				// was held when it is read just after. (The other order
				// could read "not held" just before the lease is taken and
				// the first commits just after.)
				committed, err2 := p.metric(eventsCommited)
				held, err1 := p.metric(leaseHeld)
				if err1 != nil || err2 != nil {
					continue // killed meanwhile
				}
				if held > 0 {
					holders++
				}
				prev := last[p]
				if prev.ok && prev.held == 0 && held == 0 && committed > prev.committed {
					w.bad = append(w.bad, fmt.Sprintf("%s committed %.0f events without holding the lease", p.name, committed-prev.committed))
				}
				last[p] = reading{ok: true, held: held, committed: committed}
			}
			if holders > 1 {
				w.bad = append(w.bad, fmt.Sprintf("%d processes held the lease at %s", holders, time.Now().Format(time.StampMilli)))
			}
			w.n++
			w.mu.Unlock()
		}
	}()
	return w
}

// killed stops sampling p before it is killed.
func (w *leaseWatch) killed(p *proc) {
	w.mu.Lock()
	w.dead[p] = true
	w.mu.Unlock()
}

func (w *leaseWatch) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	t.Logf("lease watch: %d samples", w.n)
	if len(w.bad) > 0 {
		t.Fatalf("two writers: %s", firstFew(w.bad, 5))
	}
}

// holderOf waits until exactly one of a and b holds the lease and returns
// it first.
func holderOf(t *testing.T, a, b *proc, within time.Duration) (*proc, *proc) {
	t.Helper()
	var holder, other *proc
	eventually(t, within, 20*time.Millisecond, func() error {
		ha, err := a.metric(leaseHeld)
		if err != nil {
			return err
		}
		hb, err := b.metric(leaseHeld)
		if err != nil {
			return err
		}
		switch {
		case ha == 1 && hb == 0:
			holder, other = a, b
		case hb == 1 && ha == 0:
			holder, other = b, a
		default:
			return fmt.Errorf("lease held: %s %.0f, %s %.0f; want exactly one", a.name, ha, b.name, hb)
		}
		return nil
	})
	return holder, other
}

func TestAKilledFileSinkHolderIsTakenOverWithoutLossOrTwoWriters(t *testing.T) {
	const (
		total = 20000
		rate  = 2500 // lines a second: the stream lasts about 8 s
	)
	start := time.Now()
	sinkPath := filepath.Join(t.TempDir(), "events.jsonl")
	natsPort, syslogPort, mN := freePort(t), freePort(t), freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	// The bus and the receiver live in their own process, so that killing
	// a sink process never takes NATS down with it.
	cfgN := writeLeaseConfig(t, "N", leaseParams{NATSPort: natsPort, MetricsPort: mN, SyslogPort: syslogPort, SinkPath: sinkPath})
	n := startHerald(t, "N-bus-receiver", cfgN, mN, "--stages", "receiver")
	n.waitReady(30 * time.Second)
	mA, mB := freePort(t), freePort(t)
	a := startHerald(t, "A-all-stages", writeLeaseConfig(t, "A", leaseParams{NATSURL: natsURL, MetricsPort: mA, SinkPath: sinkPath}), mA)
	b := startHerald(t, "B-all-stages", writeLeaseConfig(t, "B", leaseParams{NATSURL: natsURL, MetricsPort: mB, SinkPath: sinkPath}), mB)
	a.waitReady(30 * time.Second)
	b.waitReady(30 * time.Second)
	holder, other := holderOf(t, a, b, 10*time.Second)
	t.Logf("N, A and B ready at %s; %s holds the file sink's lease", time.Since(start).Round(time.Millisecond), holder.name)
	watch := watchLeases(a, b)

	stamp := time.Now().Format(time.Stamp)
	expected := map[string]bool{}
	for i := range total {
		expected[fmt.Sprintf("tcp-0-%06d", i)] = true
	}
	sendErr := make(chan error, 1)
	go func() { sendErr <- sendPaced(fmt.Sprintf("127.0.0.1:%d", syslogPort), total, rate, stamp) }()
	sink := newSinkFile(sinkPath, jsonKey)
	eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		if err := sink.poll(); err != nil {
			return err
		}
		if sink.distinct() < total/4 {
			return fmt.Errorf("%d lines in the sink, waiting for %d before the kill", sink.distinct(), total/4)
		}
		return nil
	})
	committedBefore, err := other.metric(eventsCommited)
	if err != nil {
		t.Fatal(err)
	}
	watch.killed(holder)
	holder.kill()
	killed := time.Now()
	t.Logf("SIGKILL %s (the holder) at %s with %d lines in the file; %s had committed %.0f",
		holder.name, killed.Sub(start).Round(time.Millisecond), sink.distinct(), other.name, committedBefore)

	eventually(t, 15*time.Second, 10*time.Millisecond, func() error {
		h, err := other.metric(leaseHeld)
		if err != nil {
			return err
		}
		if h != 1 {
			return fmt.Errorf("%s does not hold the lease yet", other.name)
		}
		return nil
	})
	takeover := time.Since(killed)
	eventually(t, 15*time.Second, 10*time.Millisecond, func() error {
		c, err := other.metric(eventsCommited)
		if err != nil {
			return err
		}
		if c <= committedBefore {
			return fmt.Errorf("%s has committed nothing since the kill", other.name)
		}
		return nil
	})
	firstWrite := time.Since(killed)
	t.Logf("%s took the lease over %s after the kill (lease_ttl %s) and wrote %s after it",
		other.name, takeover.Round(time.Millisecond), e2eLeaseTTL, firstWrite.Round(time.Millisecond))
	if takeover > e2eLeaseTTL+2*time.Second {
		t.Errorf("takeover took %s, want within the TTL %s plus 2s", takeover, e2eLeaseTTL)
	}

	if err := <-sendErr; err != nil {
		t.Fatalf("send: %v", err)
	}
	eventually(t, 60*time.Second, 20*time.Millisecond, func() error {
		if other.exited() || n.exited() {
			t.Fatalf("%s or %s exited", other.name, n.name)
		}
		if err := sink.poll(); err != nil {
			return err
		}
		if tl := sink.tally(expected); len(tl.missing) > 0 {
			return fmt.Errorf("%d lines not in the file yet, e.g. %s", len(tl.missing), firstFew(tl.missing, 5))
		}
		return nil
	})
	watch.finish(t)
	tl := sink.tally(expected)
	t.Logf("all %d lines in the file at %s: %d lines read, %d duplicates (batches the killed holder wrote but had not acked)",
		total, time.Since(start).Round(time.Millisecond), sink.lines, tl.duplicates)
	if sink.nbad > 0 {
		t.Fatalf("%d lines are not whole events (interleaved or torn), e.g. %s", sink.nbad, firstFew(sink.bad, 3))
	}
	if len(tl.unexpected) > 0 {
		t.Fatalf("unexpected lines: %s", firstFew(tl.unexpected, 5))
	}
}

// sendPaced sends lines [0, total) of syslogLine over one TCP connection
// at about rate lines a second.
func sendPaced(addr string, total, rate int, stamp string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	w := bufio.NewWriter(conn)
	const every = 20 * time.Millisecond
	per := max(rate*int(every)/int(time.Second), 1)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; i < total; {
		for j := 0; j < per && i < total; j, i = j+1, i+1 {
			line, _ := syslogLine("tcp", 0, i, stamp)
			if _, err := w.WriteString(line + "\n"); err != nil {
				return fmt.Errorf("line %d: %w", i, err)
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
		<-tick.C
	}
	return nil
}

func TestAGracefullyStoppedHolderHandsItsLeaseOverAtOnce(t *testing.T) {
	sinkPath := filepath.Join(t.TempDir(), "events.jsonl")
	natsPort, mN := freePort(t), freePort(t)
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	n := startHerald(t, "N-bus", writeLeaseConfig(t, "N", leaseParams{NATSPort: natsPort, MetricsPort: mN, SinkPath: sinkPath}),
		mN, "--stages", "receiver")
	n.waitReady(30 * time.Second)
	mA, mB := freePort(t), freePort(t)
	a := startHerald(t, "A", writeLeaseConfig(t, "A", leaseParams{NATSURL: natsURL, MetricsPort: mA, SinkPath: sinkPath}), mA)
	b := startHerald(t, "B", writeLeaseConfig(t, "B", leaseParams{NATSURL: natsURL, MetricsPort: mB, SinkPath: sinkPath}), mB)
	a.waitReady(30 * time.Second)
	b.waitReady(30 * time.Second)
	holder, other := holderOf(t, a, b, 10*time.Second)
	stopped := time.Now()
	if code := holder.stop(20 * time.Second); code != 0 {
		t.Fatalf("%s exited %d after SIGTERM", holder.name, code)
	}
	eventually(t, e2eLeaseTTL, 10*time.Millisecond, func() error {
		if h, err := other.metric(leaseHeld); err != nil || h != 1 {
			return fmt.Errorf("%s does not hold the lease yet (%v)", other.name, err)
		}
		return nil
	})
	t.Logf("%s held the lease %s after %s was sent SIGTERM (its whole stop included)",
		other.name, time.Since(stopped).Round(time.Millisecond), holder.name)
}
