package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// superNode fills superTemplate: one herald whose embedded server is the
// only node of its cluster, joined to the other cluster by gateways.
type superNode struct {
	Cluster, Other string // this cluster's name and the other's
	NATSPort       int
	RoutePort      int
	GatewayPort    int
	OtherGateway   int // the other cluster's gateway port
	MetricsPort    int
	SyslogPort     int // 0: no receivers
}

var superTemplate = template.Must(template.New("super").Parse(`# written by herald's e2e tests: one node of a two-cluster supercluster
log: {level: info, format: text}
bus:
  placement: {cluster: a}     # every herald stream and bucket lives in cluster a
  embedded:
    server_name: {{.Cluster}}-1
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
    cluster:
      name: {{.Cluster}}
      listen: 127.0.0.1:{{.RoutePort}}
      routes: [nats-route://127.0.0.1:{{.RoutePort}}]   # one node: JetStream wants a route all the same
    gateway:
      name: {{.Cluster}}
      listen: 127.0.0.1:{{.GatewayPort}}
      gateways: [{name: {{.Other}}, urls: ["nats://127.0.0.1:{{.OtherGateway}}"]}]
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 20s
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
    path: out/events.jsonl
    format: json
`))

// Events enter in cluster a and are written by the sink in cluster b.
//
// Where the streams live: in cluster a (bus.placement.cluster: a, the same
// in both configs), where the events enter. The receiver's writes and the
// classifier, resolver and router hops then stay inside a; only the sink's
// pull consumer on HERALD_TARGETS crosses the gateway (deliveries to b, acks
// back). Placed in b instead, every hop of a's stages would cross the
// gateway twice. Without placement a stream lives in the cluster of
// whichever herald creates it first, which is a race between the two; the
// lease bucket, which only b's sink stage creates, would land in b.
func TestEventsEnteringOneClusterOfASuperclusterAreWrittenOnceBySinksInTheOther(t *testing.T) {
	const total = 5000
	start := time.Now()
	gwA, gwB := freePort(t), freePort(t)
	a := superNode{Cluster: "a", Other: "b", NATSPort: freePort(t), RoutePort: freePort(t), GatewayPort: gwA, OtherGateway: gwB,
		MetricsPort: freePort(t), SyslogPort: freePort(t)}
	b := superNode{Cluster: "b", Other: "a", NATSPort: freePort(t), RoutePort: freePort(t), GatewayPort: gwB, OtherGateway: gwA,
		MetricsPort: freePort(t)}
	cfgA := writeTemplate(t, filepath.Join(t.TempDir(), a.Cluster), superTemplate, a)
	cfgB := writeTemplate(t, filepath.Join(t.TempDir(), b.Cluster), superTemplate, b)
	// b first: its declarations may well come before a's.
	pb := startHerald(t, "b-sink", cfgB, b.MetricsPort, "--stages", "sink")
	pa := startHerald(t, "a-receiver-to-router", cfgA, a.MetricsPort, "--stages", "receiver,classifier,resolver,router")
	// Each waits for the supercluster's JetStream meta leader, which needs
	// both servers, before it declares the streams.
	pa.waitReady(40 * time.Second)
	pb.waitReady(40 * time.Second)
	t.Logf("both clusters ready at %s", time.Since(start).Round(time.Millisecond))

	expected := map[string]bool{}
	for i := range total {
		expected[fmt.Sprintf("tcp-0-%06d", i)] = true
	}
	sink := newSinkFile(filepath.Join(filepath.Dir(cfgB), "out", "events.jsonl"), jsonKey)
	sent := time.Now()
	if err := sendTCP(fmt.Sprintf("127.0.0.1:%d", a.SyslogPort), 1, 0, total, time.Now().Format(time.Stamp)); err != nil {
		t.Fatalf("send to a's syslog receiver: %v", err)
	}
	eventually(t, 40*time.Second, 20*time.Millisecond, func() error {
		for _, p := range []*proc{pa, pb} {
			if p.exited() {
				t.Fatalf("%s exited with code %d", p.name, p.exitCode)
			}
		}
		if err := sink.poll(); err != nil {
			return err
		}
		if tl := sink.tally(expected); len(tl.missing) > 0 {
			return fmt.Errorf("%d of %d lines not in b's sink yet, e.g. %s", len(tl.missing), total, firstFew(tl.missing, 5))
		}
		return nil
	})
	t.Logf("all %d lines in b's sink %s after the first was sent (done at %s)",
		total, time.Since(sent).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	t.Run("herald status in b shows every stream led in a, nothing pending, and b holding the sink", func(t *testing.T) {
		var st struct {
			Bus struct {
				Cluster string `json:"cluster"`
			} `json:"bus"`
			Streams []struct {
				Name   string `json:"name"`
				Leader string `json:"leader"`
			} `json:"streams"`
			Consumers []struct {
				Stream, Name string
				Pending      uint64 `json:"pending"`
				AckPending   int    `json:"ack_pending"`
			} `json:"consumers"`
			Sinks []struct {
				Name   string `json:"name"`
				Holder *struct {
					PID int `json:"pid"`
				} `json:"holder"`
			} `json:"sinks"`
		}
		// The last acks may still be on their way: poll until the
		// consumers are empty.
		eventually(t, 20*time.Second, 200*time.Millisecond, func() error {
			code, out, errOut := runCommand(t, filepath.Dir(cfgB), 20*time.Second, "status", "--config", cfgB, "--json")
			if code != 0 {
				return fmt.Errorf("herald status exited %d: %s", code, errOut)
			}
			st.Consumers = nil
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				return fmt.Errorf("herald status --json: %w", err)
			}
			for _, c := range st.Consumers {
				if c.Pending != 0 || c.AckPending != 0 {
					return fmt.Errorf("consumer %s on %s: %d pending, %d ack-pending", c.Name, c.Stream, c.Pending, c.AckPending)
				}
			}
			return nil
		})
		if st.Bus.Cluster != "b" {
			t.Errorf("status connected to cluster %q, want b", st.Bus.Cluster)
		}
		var names []string
		for _, s := range st.Streams {
			names = append(names, s.Name)
			if s.Leader != "a-1" {
				t.Errorf("stream %s is led by %q, want a-1 (bus.placement.cluster: a)", s.Name, s.Leader)
			}
		}
		for _, want := range []string{"HERALD_RAW", "HERALD_TARGETS", "HERALD_DLQ", "KV_HERALD_LEASES"} {
			if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
				t.Errorf("status lists streams %v, without %s", names, want)
			}
		}
		if len(st.Consumers) == 0 {
			t.Error("status lists no consumers")
		}
		held := false
		for _, s := range st.Sinks {
			if s.Name == "events" && s.Holder != nil {
				held = s.Holder.PID == pb.cmd.Process.Pid
				if !held {
					t.Errorf("sink events is held by pid %d, want b's %d", s.Holder.PID, pb.cmd.Process.Pid)
				}
			}
		}
		if !held {
			t.Errorf("sink events has no lease holder in %+v", st.Sinks)
		}
	})

	// Counted once every consumer is empty (the status check waits for
	// that), so no redelivery can add a copy afterwards.
	t.Run("every line is in b's sink exactly once, and a wrote none", func(t *testing.T) {
		if err := sink.poll(); err != nil {
			t.Fatal(err)
		}
		tl := sink.tally(expected)
		if tl.duplicates > 0 {
			t.Errorf("%d duplicate copies, e.g. %s", tl.duplicates, firstFew(tl.dupKeys, 10))
		}
		if len(tl.unexpected) > 0 {
			t.Errorf("%d unexpected lines: %s", len(tl.unexpected), firstFew(tl.unexpected, 10))
		}
		if sink.nbad > 0 {
			t.Errorf("%d sink lines could not be read, e.g. %q", sink.nbad, sink.bad)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(cfgA), "out", "events.jsonl")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a, which runs no sink stage, has a sink file (stat: %v)", err)
		}
	})
}
