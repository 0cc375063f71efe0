package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"text/template"
	"time"
)

// r3StageParams fill r3StageTemplate: one herald process running one stage,
// a client of the three-node cluster.
type r3StageParams struct {
	NATSURL     string
	MetricsPort int
	SyslogPort  int    // receivers only
	SinkPath    string // absolute: the two sink processes share one file
}

// The cluster's nodes write ack_wait 2s into the consumers and R3 into the
// streams; every process declares them again, so every process says the same.
var r3StageTemplate = template.Must(template.New("r3stage").Parse(`# written by herald's e2e tests: a stage process of the 3-node cluster
log: {level: info, format: text}
bus:
  urls: [{{.NATSURL}}]
  replicas: 3
  ack_wait: 2s
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 30s
{{- if .SyslogPort}}
receivers:
  syslog:
    type: syslog
    tcp: 127.0.0.1:{{.SyslogPort}}
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

// sendPacedCounted sends lines from, from+step, ... below to over one TCP
// connection at about perSec lines a second, adding each line written to
// sent. A bounded rate keeps the R3 cluster's backlog, and so the test's
// run time, bounded on a small machine.
func sendPacedCounted(addr string, from, to, step, perSec int, stamp string, sent *atomic.Int64) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(3 * time.Minute))
	w := bufio.NewWriterSize(conn, 64<<10)
	begin := time.Now()
	written := 0
	for i := from; i < to; {
		due := int(time.Since(begin).Seconds() * float64(perSec))
		for ; i < to && written < due; i += step {
			line, _ := syslogLine("tcp", 0, i, stamp)
			if _, err := w.WriteString(line + "\n"); err != nil {
				return fmt.Errorf("line %d: %w", i, err)
			}
			written++
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("line %d: %w", i, err)
		}
		sent.Store(int64(written))
		if i < to {
			time.Sleep(10 * time.Millisecond) // pacing, not synchronisation
		}
	}
	return nil
}

// Issue 8's acceptance: a 3-node cluster with R3 streams, two processes per
// stage spread over the nodes, 100,000 events; kill -9 of one NATS node and,
// separately, of one stage process mid-stream; every event reaches the sink.
func TestR3ClusterWithTwoProcessesPerStageLosesNoEventWhenANATSNodeAndAStageProcessAreKilled(t *testing.T) {
	const (
		total   = 100000
		perSec  = 4000 // per receiver: two receivers, 8,000 lines/s in all
		maxDups = total / 10
	)
	start := time.Now()
	since := func() time.Duration { return time.Since(start).Round(time.Millisecond) }
	base := t.TempDir()

	// Three processes whose only job is a NATS node (--stages none): the
	// nodes can then be killed apart from the stage processes.
	nodes := clusterNodes(t, "nats")
	var nodeProcs []*proc
	for _, n := range nodes {
		cfg := writeTemplate(t, filepath.Join(base, n.Name), clusterTemplate, n)
		nodeProcs = append(nodeProcs, startHerald(t, n.Name, cfg, n.MetricsPort, "--stages", "none"))
	}
	for _, p := range nodeProcs {
		p.waitReady(60 * time.Second)
	}
	t.Logf("three NATS nodes ready at %s", since())

	// Two processes per stage, each a client of one node, round-robin: as
	// on machines each running a node and stages that connect to it. A
	// process whose node dies reconnects to the nodes the cluster
	// advertises.
	type stageProc struct {
		stage string
		node  int
		*proc
	}
	sinkPath := filepath.Join(base, "sink", "events.jsonl")
	var stages []*stageProc
	var syslogPorts []int
	k := 0
	for _, stage := range []string{"receiver", "classifier", "resolver", "router", "sink"} {
		for i := range 2 {
			name := fmt.Sprintf("%s-%d", stage, i+1)
			node := k % 3
			k++
			p := r3StageParams{NATSURL: fmt.Sprintf("nats://127.0.0.1:%d", nodes[node].NATSPort), MetricsPort: freePort(t), SinkPath: sinkPath}
			if stage == "receiver" {
				p.SyslogPort = freePort(t)
				syslogPorts = append(syslogPorts, p.SyslogPort)
			}
			cfg := writeTemplate(t, filepath.Join(base, name), r3StageTemplate, p)
			stages = append(stages, &stageProc{stage: stage, node: node,
				proc: startHerald(t, name, cfg, p.MetricsPort, "--stages", stage)})
		}
	}
	for _, s := range stages {
		s.waitReady(60 * time.Second)
	}
	t.Logf("ten stage processes ready at %s", since())
	byName := map[string]*stageProc{}
	var onNode3 []string
	for _, s := range stages {
		byName[s.name] = s
		if s.node == 2 {
			onNode3 = append(onNode3, s.name)
		}
	}
	// No receiver process is killed: syslog over TCP has no acks, so lines
	// a killed receiver had read but not stored are lost by design. They
	// are clients of surviving nodes, yet a stream's leader may be on
	// nats-3: publishes in flight to it lose their acks without any
	// disconnect, and must be published again after a timeout.
	if byName["receiver-1"].node == 2 || byName["receiver-2"].node == 2 {
		t.Fatalf("a receiver is a client of nats-3, the node to be killed")
	}
	killedNode, killedStage := nodeProcs[2], byName["resolver-1"].proc
	if byName["resolver-1"].node == 2 {
		t.Fatalf("resolver-1, to be killed, is a client of nats-3: the two kills would not be apart")
	}

	expected := make(map[string]bool, total)
	for i := range total {
		expected[fmt.Sprintf("tcp-0-%06d", i)] = true
	}
	sink := newSinkFile(sinkPath, jsonKey)
	survivors := []*proc{nodeProcs[0], nodeProcs[1]}
	for _, s := range stages {
		if s.proc != killedStage {
			survivors = append(survivors, s.proc)
		}
	}
	alive := func() {
		for _, p := range survivors {
			if p.exited() {
				t.Fatalf("%s exited with code %d", p.name, p.exitCode)
			}
		}
	}

	// On failure, before the processes are killed: what each stage process
	// did and what the cluster holds, to tell where the events stopped.
	statusCfg := filepath.Join(base, "receiver-1", "herald.yaml")
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, s := range stages {
			if s.exited() {
				continue
			}
			label := map[string]string{"sink": "target.log", "receiver": "receiver.syslog"}[s.stage]
			if label == "" {
				label = s.stage
			}
			var vals []string
			for _, m := range []string{"received_events", "published_events", "acked_messages", "redelivered_messages", "nakked_messages"} {
				v, err := s.metric(fmt.Sprintf(`herald_stage_%s_total{stage=%q}`, m, label))
				if err != nil {
					vals = append(vals, err.Error())
					break
				}
				vals = append(vals, fmt.Sprintf("%s %.0f", m, v))
			}
			t.Logf("%s (client of nats-%d): %s", s.name, s.node+1, strings.Join(vals, ", "))
		}
		code, out, errOut := runCommand(t, filepath.Dir(statusCfg), 30*time.Second, "status", "--config", statusCfg)
		t.Logf("herald status (exit %d):\n%s%s", code, out, errOut)
	})

	// Even lines to receiver-1, odd ones to receiver-2, at a bounded rate.
	stamp := time.Now().Format(time.Stamp)
	var sent [2]atomic.Int64
	sendErr := make(chan error, 2)
	for r := range 2 {
		addr := fmt.Sprintf("127.0.0.1:%d", syslogPorts[r])
		go func() { sendErr <- sendPacedCounted(addr, r, total, 2, perSec, stamp, &sent[r]) }()
	}
	sentAll := func() int { return int(sent[0].Load() + sent[1].Load()) }

	// Kill nats-3 a quarter of the way in, once lines reach the sink.
	eventually(t, 60*time.Second, 10*time.Millisecond, func() error {
		alive()
		if err := sink.poll(); err != nil {
			return err
		}
		if n := sentAll(); n < total/4 || sink.distinct() == 0 {
			return fmt.Errorf("%d lines sent and %d in the sink: want %d sent and some in the sink", n, sink.distinct(), total/4)
		}
		return nil
	})
	resolver2AtNodeKill, err := byName["resolver-2"].metric(resolverPublished)
	if err != nil {
		t.Fatal(err)
	}
	killedNode.kill()
	nodeKilledAt := time.Now()
	t.Logf("SIGKILL nats-3 at %s (clients: %s): %d lines sent, %d in the sink", since(), strings.Join(onNode3, ", "), sentAll(), sink.distinct())

	// Kill resolver-1, a client of a surviving node, past the half, once it
	// has done part of the work; the sender keeps sending.
	eventually(t, 60*time.Second, 10*time.Millisecond, func() error {
		alive()
		n, err := killedStage.metric(resolverPublished)
		if err != nil {
			return err
		}
		if s := sentAll(); s < total*11/20 || n == 0 {
			return fmt.Errorf("%d lines sent and resolver-1 published %.0f: want %d sent and some published", s, n, total*11/20)
		}
		return nil
	})
	resolver1Published, _ := killedStage.metric(resolverPublished)
	killedStage.kill()
	_ = sink.poll()
	t.Logf("SIGKILL resolver-1 at %s, after it published %.0f events: %d lines sent, %d in the sink", since(), resolver1Published, sentAll(), sink.distinct())

	for range 2 {
		select {
		case err := <-sendErr:
			if err != nil {
				t.Fatalf("send: %v", err)
			}
		case <-time.After(3 * time.Minute):
			t.Fatalf("sending did not end within 3 minutes: %d of %d lines sent", sentAll(), total)
		}
	}
	t.Logf("all %d lines sent at %s", total, since())

	eventually(t, 120*time.Second, 50*time.Millisecond, func() error {
		alive()
		if err := sink.poll(); err != nil {
			return err
		}
		if tl := sink.tally(expected); len(tl.missing) > 0 {
			return fmt.Errorf("%d lines not in the sink yet, e.g. %s", len(tl.missing), firstFew(tl.missing, 5))
		}
		return nil
	})
	tl := sink.tally(expected)
	t.Logf("done at %s: all %d lines in the sink, %d lines written, %d duplicate copies of %d lines (bound %d)",
		since(), total, sink.lines, tl.duplicates, len(tl.dupKeys), maxDups)
	if len(tl.dupKeys) > 0 {
		t.Logf("duplicated lines, e.g.: %s", firstFew(tl.dupKeys, 10))
	}
	for _, s := range stages {
		if s.proc == killedStage || s.stage == "receiver" {
			continue
		}
		label := map[string]string{"sink": "target.log"}[s.stage]
		if label == "" {
			label = s.stage
		}
		red, _ := s.metric(fmt.Sprintf(`herald_stage_redelivered_messages_total{stage=%q}`, label))
		acked, _ := s.metric(fmt.Sprintf(`herald_stage_acked_messages_total{stage=%q}`, label))
		held, _ := s.metric(leaseHeld)
		t.Logf("%s (client of nats-%d): %.0f messages acked, %.0f redelivered; sink lease held %.0f", s.name, s.node+1, acked, red, held)
	}

	// Each client of nats-3 moved to a surviving node, and the resolver
	// among them carried the resolver's work alone after resolver-1 died.
	for _, name := range onNode3 {
		data, err := os.ReadFile(byName[name].logPath)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte("nats reconnected")) {
			t.Errorf("%s was a client of nats-3 and never logged that it reconnected", name)
		}
	}
	if r2, _ := byName["resolver-2"].metric(resolverPublished); r2 <= resolver2AtNodeKill {
		t.Errorf("resolver-2 published nothing after nats-3 was killed (%.0f then, %.0f at the end)", resolver2AtNodeKill, r2)
	}
	t.Logf("recovery: the last line reached the sink %s after nats-3 was killed", time.Since(nodeKilledAt).Round(time.Millisecond))
	if sink.nbad > 0 {
		t.Errorf("%d sink lines could not be read, e.g. %q", sink.nbad, sink.bad)
	}
	if len(tl.unexpected) > 0 {
		t.Errorf("%d unexpected lines in the sink: %s", len(tl.unexpected), firstFew(tl.unexpected, 10))
	}
	if tl.duplicates > maxDups {
		t.Errorf("%d duplicate copies: more than %d, more than the batches in flight at the two kills can explain", tl.duplicates, maxDups)
	}
}
