package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// clusterNode fills clusterTemplate: one herald whose embedded server is a
// node of a three-node NATS cluster with R3 streams.
type clusterNode struct {
	Name        string
	NATSPort    int
	RoutePort   int
	Routes      string // the cluster's route URLs, comma-separated
	MetricsPort int
	SyslogPort  int // 0: no receivers
}

var clusterTemplate = template.Must(template.New("cluster").Parse(`# written by herald's e2e tests: one node of a 3-node cluster
log: {level: info, format: text}
bus:
  replicas: 3
  ack_wait: 2s
  embedded:
    server_name: {{.Name}}
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
    cluster:
      name: herald
      listen: 127.0.0.1:{{.RoutePort}}
      routes: [{{.Routes}}]
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
    path: out/events.jsonl
    format: json
`))

// clusterNodes returns the three nodes of a cluster, named prefix-1 to
// prefix-3, each with its own ports and every node's route.
func clusterNodes(t testing.TB, prefix string) []clusterNode {
	t.Helper()
	var nodes []clusterNode
	var routes []string
	for i := range 3 {
		n := clusterNode{Name: fmt.Sprintf("%s-%d", prefix, i+1), NATSPort: freePort(t), RoutePort: freePort(t), MetricsPort: freePort(t)}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", n.RoutePort))
		nodes = append(nodes, n)
	}
	for i := range nodes {
		nodes[i].Routes = strings.Join(routes, ", ")
	}
	return nodes
}

func TestThreeHeraldsInOneNATSClusterDeliverEveryLineWhenOneIsKilled(t *testing.T) {
	const total = 20000
	start := time.Now()
	nodes := clusterNodes(t, "herald")
	nodes[0].SyslogPort = freePort(t)
	// A takes syslog in, B writes the file, C only works in the middle
	// stages, and is the one killed: its NATS node dies with it.
	stages := []string{"receiver,classifier,resolver,router", "classifier,resolver,router,sink", "classifier,resolver,router"}
	var procs []*proc
	var dirs []string
	for i, n := range nodes {
		cfg := writeTemplate(t, filepath.Join(t.TempDir(), n.Name), clusterTemplate, n)
		dirs = append(dirs, filepath.Dir(cfg))
		procs = append(procs, startHerald(t, n.Name, cfg, n.MetricsPort, "--stages", stages[i]))
	}
	// Each waits for the cluster's meta leader before it declares the
	// streams, so they become ready together, about five seconds in.
	for _, p := range procs {
		p.waitReady(30 * time.Second)
	}
	a, b, c := procs[0], procs[1], procs[2]
	t.Logf("three nodes ready at %s", time.Since(start).Round(time.Millisecond))

	expected := map[string]bool{}
	for i := range total {
		expected[fmt.Sprintf("tcp-0-%06d", i)] = true
	}
	sink := newSinkFile(filepath.Join(dirs[1], "out", "events.jsonl"), jsonKey)
	alive := func() {
		for _, p := range []*proc{a, b} {
			if p.exited() {
				t.Fatalf("%s exited with code %d", p.name, p.exitCode)
			}
		}
	}
	stamp := time.Now().Format(time.Stamp)
	addr := fmt.Sprintf("127.0.0.1:%d", nodes[0].SyslogPort)
	if err := sendTCP(addr, 2, 0, total/2, stamp); err != nil {
		t.Fatalf("send first half: %v", err)
	}
	// Kill C mid-stream: once it does part of the work (its resolver
	// published) and lines have begun to reach the sink.
	eventually(t, 20*time.Second, 5*time.Millisecond, func() error {
		alive()
		n, err := c.metric(resolverPublished)
		if err != nil {
			return err
		}
		if err := sink.poll(); err != nil {
			return err
		}
		if n == 0 || sink.distinct() == 0 {
			return fmt.Errorf("C's resolver has published %.0f events and the sink holds %d lines: want both above 0", n, sink.distinct())
		}
		return nil
	})
	c.kill()
	_ = sink.poll()
	t.Logf("SIGKILL C (herald and its NATS node) at %s; %d lines in the sink", time.Since(start).Round(time.Millisecond), sink.distinct())
	if err := sendTCP(addr, 2, total/2, total, stamp); err != nil {
		t.Fatalf("send second half: %v", err)
	}
	eventually(t, 25*time.Second, 20*time.Millisecond, func() error {
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
	t.Logf("done at %s: all %d lines in B's sink (%d lines written, %d duplicate copies)",
		time.Since(start).Round(time.Millisecond), total, sink.lines, tl.duplicates)
	if sink.nbad > 0 {
		t.Errorf("%d sink lines could not be read, e.g. %q", sink.nbad, sink.bad)
	}
	if len(tl.unexpected) > 0 {
		t.Errorf("%d unexpected lines in the sink: %s", len(tl.unexpected), firstFew(tl.unexpected, 10))
	}
}

// leafParams fill leafTemplate: a hub, or a forwarding branch that dials it.
type leafParams struct {
	Name        string
	NATSPort    int
	LeafPort    int // the hub's leafnode port
	MetricsPort int
	SyslogPort  int // the branch's receiver; 0 on the hub
}

var leafTemplate = template.Must(template.New("leaf").Parse(`# written by herald's e2e tests: a leafnode hub or branch
log: {level: info, format: text}
bus:
  ack_wait: 2s
{{- if .SyslogPort}}
  embedded:
    server_name: {{.Name}}
    jetstream_domain: {{.Name}}
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
    leafnode:
      forward: true
      remotes: [{urls: ["nats-leaf://127.0.0.1:{{.LeafPort}}"]}]
{{- else}}
  edge_domains: [branch1]
  embedded:
    server_name: hub
    jetstream_domain: hub
    listen: 127.0.0.1:{{.NATSPort}}
    data_dir: nats
    leafnode: {listen: "127.0.0.1:{{.LeafPort}}"}
{{- end}}
metrics:
  listen: 127.0.0.1:{{.MetricsPort}}
shutdown_timeout: 10s
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

func TestABranchKeepsAcceptingWhileItsHubIsDownAndTheHubDeliversEverythingWhenItReturns(t *testing.T) {
	const perPhase = 2000
	start := time.Now()
	leaf := freePort(t)
	hubP := leafParams{Name: "hub", NATSPort: freePort(t), LeafPort: leaf, MetricsPort: freePort(t)}
	branchP := leafParams{Name: "branch1", NATSPort: freePort(t), LeafPort: leaf, MetricsPort: freePort(t), SyslogPort: freePort(t)}
	hubCfg := writeTemplate(t, filepath.Join(t.TempDir(), hubP.Name), leafTemplate, hubP)
	branchCfg := writeTemplate(t, filepath.Join(t.TempDir(), branchP.Name), leafTemplate, branchP)
	hub := startHerald(t, "hub", hubCfg, hubP.MetricsPort)
	branch := startHerald(t, "branch1", branchCfg, branchP.MetricsPort, "--stages", "receiver")
	hub.waitReady(20 * time.Second)
	branch.waitReady(20 * time.Second)

	expected := map[string]bool{}
	sink := newSinkFile(filepath.Join(filepath.Dir(hubCfg), "out", "events.jsonl"), jsonKey)
	waitAll := func(within time.Duration) {
		t.Helper()
		eventually(t, within, 20*time.Millisecond, func() error {
			if branch.exited() {
				t.Fatalf("the branch exited with code %d", branch.exitCode)
			}
			if err := sink.poll(); err != nil {
				return err
			}
			if tl := sink.tally(expected); len(tl.missing) > 0 {
				return fmt.Errorf("%d lines not in the hub's sink yet, e.g. %s", len(tl.missing), firstFew(tl.missing, 5))
			}
			return nil
		})
	}
	stamp := time.Now().Format(time.Stamp)
	addr := fmt.Sprintf("127.0.0.1:%d", branchP.SyslogPort)
	send := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			expected[fmt.Sprintf("tcp-0-%06d", i)] = true
		}
		if err := sendTCP(addr, 1, from, to, stamp); err != nil {
			t.Fatalf("send lines %d to %d to the branch: %v", from, to, err)
		}
	}

	send(0, perPhase)
	waitAll(20 * time.Second)
	t.Logf("link up: %d lines through the branch into the hub's sink at %s", perPhase, time.Since(start).Round(time.Millisecond))

	if code := hub.stop(15 * time.Second); code != 0 {
		t.Fatalf("the hub exited with code %d", code)
	}
	send(perPhase, 2*perPhase) // the branch stores them: the link is down
	eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		n, err := branch.metric(`herald_stage_published_events_total{stage="receiver.syslog"}`)
		if err != nil {
			return err
		}
		if n < 2*perPhase {
			return fmt.Errorf("the branch stored %.0f of %d lines", n, 2*perPhase)
		}
		return nil
	})
	t.Logf("hub down: the branch stored %d more lines at %s", perPhase, time.Since(start).Round(time.Millisecond))

	hub = startHerald(t, "hub-again", hubCfg, hubP.MetricsPort)
	hub.waitReady(20 * time.Second)
	returned := time.Now()
	waitAll(25 * time.Second)
	tl := sink.tally(expected)
	t.Logf("hub back: all %d lines in its sink %s after it was ready (%d duplicate copies); done at %s",
		2*perPhase, time.Since(returned).Round(time.Millisecond), tl.duplicates, time.Since(start).Round(time.Millisecond))
	if len(tl.unexpected) > 0 || sink.nbad > 0 {
		t.Errorf("unexpected lines %v, unreadable %v", firstFew(tl.unexpected, 5), sink.bad)
	}
}

func TestAHeraldWithoutTheNATSCredentialsIsRefusedAndOneWithThemJoins(t *testing.T) {
	const password = "nats-pa55word-e2e"
	dir := t.TempDir()
	natsPort, mA := freePort(t), freePort(t)
	if err := os.WriteFile(filepath.Join(dir, "nats-password"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, bus string, metricsPort int) string {
		t.Helper()
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(d, "herald.yaml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`bus:
%s
metrics: {listen: 127.0.0.1:%d}
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out/events.jsonl}
`, bus, metricsPort)), 0o600); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	a := startHerald(t, "A-with-auth", write("a", fmt.Sprintf(`  embedded:
    listen: 127.0.0.1:%d
    data_dir: nats
    auth: {user: herald, password_file: ../nats-password}`, natsPort), mA), mA)
	a.waitReady(20 * time.Second)

	url := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	mB := freePort(t)
	b := startHerald(t, "B-without-credentials", write("b", "  urls: ["+url+"]", mB), mB, "--stages", "resolver")
	select {
	case <-b.done:
	case <-time.After(20 * time.Second):
		t.Fatal("a herald without credentials is still running after 20s")
	}
	out, _ := os.ReadFile(b.logPath)
	if b.exitCode == 0 || !bytes.Contains(bytes.ToLower(out), []byte("authorization violation")) {
		t.Fatalf("B exited with code %d; want a failure naming the authorization violation:\n%s", b.exitCode, out)
	}

	mC := freePort(t)
	t.Setenv("HERALD_E2E_NATS_PASSWORD", password) // C's password comes from its environment
	c := startHerald(t, "C-with-credentials", write("c", fmt.Sprintf("  urls: [%s]\n  user: herald\n  password_env: HERALD_E2E_NATS_PASSWORD", url), mC), mC, "--stages", "resolver")
	c.waitReady(20 * time.Second)
	for _, p := range []*proc{a, b, c} {
		if data, _ := os.ReadFile(p.logPath); bytes.Contains(data, []byte(password)) {
			t.Errorf("%s's log shows the password", p.name)
		}
	}
}
