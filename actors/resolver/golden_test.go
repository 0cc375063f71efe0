package resolver

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/sink/format"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenReceived is the arrival time of every golden event.
var goldenReceived = time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)

// separator splits a .input file into the config (a herald config file's
// resolver: section) and the events, one JSON event (or array) per line.
const separator = "----------\n"

// testKinds lets config.Parse accept the minimal targets and sinks every
// golden config is completed with.
var testKinds = config.Kinds{Sinks: map[string]func() any{"file": func() any {
	return &struct {
		Path string `yaml:"path"`
	}{}
}}}

const minimalTail = `
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out.jsonl}
`

// parseResolver reads a resolver config as herald does, positions and all.
func parseResolver(t testing.TB, name, yaml string) config.Resolver {
	t.Helper()
	cfg, err := config.Parse(name, []byte(yaml+minimalTail), testKinds)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg.Resolver
}

// goldenCase is one testdata/*.input file read.
type goldenCase struct {
	proc   Processor
	events []*schemas.Event
}

func readGolden(t testing.TB, path string) goldenCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := strings.Cut(string(data), separator)
	if !ok {
		t.Fatalf("%s: no %q line between config and events", path, strings.TrimSpace(separator))
	}
	proc, err := New(parseResolver(t, path, head))
	if err != nil {
		t.Fatal(err)
	}
	var events []*schemas.Event
	for i, line := range strings.Split(body, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		evs, err := bus.ParseJSONEvents([]byte(line), "app", goldenReceived)
		if err != nil {
			t.Fatalf("%s: event line %d: %v", path, i+1, err)
		}
		events = append(events, evs...)
	}
	return goldenCase{proc: proc, events: events}
}

// Each testdata/*.input is resolved and written as JSON, one line per
// event, and compared with its .golden (go test -update rewrites them).
// Every case is then resolved a second time, which must change nothing.
func TestResolveGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.input"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".input")
		t.Run(name, func(t *testing.T) {
			gc := readGolden(t, in)
			b := &schemas.Batch{Id: "golden-" + name, Events: gc.events}
			if _, err := gc.proc.Process(b); err != nil {
				t.Fatal(err)
			}
			var got []byte
			for _, ev := range b.Events {
				got = format.AppendJSON(got, ev)
				if _, err := proto.Marshal(ev); err != nil {
					t.Errorf("a resolved event must encode: %v", err)
				}
			}
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("resolved events differ from %s (go test -update rewrites it):\n got:\n%s\nwant:\n%s", path, got, want)
			}

			again := &schemas.Batch{Id: "another-batch"}
			for _, ev := range b.Events {
				again.Events = append(again.Events, proto.Clone(ev).(*schemas.Event))
			}
			if _, err := gc.proc.Process(again); err != nil {
				t.Fatal(err)
			}
			for i := range b.Events {
				if !proto.Equal(again.Events[i], b.Events[i]) {
					t.Errorf("event %d changed when resolved again:\n first  %v\n second %v", i, b.Events[i], again.Events[i])
				}
			}
		})
	}
}
