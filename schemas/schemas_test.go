package schemas_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/providers"
	"github.com/herald-router/herald/internal/schemagen/gen"
)

// compile loads one of the schema files in this folder. Formats (date-time)
// are asserted, as herald checks them too.
func compile(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	url := "file://" + filepath.ToSlash(abs)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(url, doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile %s: %v", file, err)
	}
	return s
}

// yamlToJSON turns a YAML document into the JSON value an editor's schema
// check sees.
func yamlToJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("yaml to json: %v", err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	return out
}

func parseConfig(name string, data []byte) error {
	_, err := config.Parse(name, data, providers.Kinds(providers.Registry()))
	return err
}

// The configs herald ships and the one the e2e tests call good are valid
// for herald and for the schema.
func TestConfigSchemaAcceptsShippedConfigs(t *testing.T) {
	s := compile(t, "config.schema.json")
	files, err := filepath.Glob("../deploy/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../e2e/testdata/check/good.yaml")
	if len(files) < 2 {
		t.Fatalf("found only %v", files)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := parseConfig(file, data); err != nil {
				t.Fatalf("herald rejects it: %v", err)
			}
			if err := s.Validate(yamlToJSON(t, data)); err != nil {
				t.Errorf("schema rejects it: %v", err)
			}
		})
	}
}

// minimal is the smallest config herald accepts; cases add to it.
const minimal = `
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out/events.jsonl}
`

// Every case is checked against both the schema and config.Parse. The
// schema may accept what herald rejects (it does not check values' meaning,
// such as a log level's spelling or a port range), but it must never reject
// a config herald accepts: editors would flag a working file.
func TestConfigSchemaAgreesWithDecoder(t *testing.T) {
	s := compile(t, "config.schema.json")
	for _, tc := range []struct {
		name         string
		yaml         string
		schema, load bool // whether each accepts it
	}{
		{"the minimal config is valid", minimal, true, true},
		{"an unknown top-level key is rejected", minimal + "lgo: {level: info}\n", false, false},
		{"an unknown key in a nested mapping is rejected", minimal + "bus: {embedded: {listn: 127.0.0.1:4222}}\n", false, false},
		{"an unknown key in a sink is rejected", `
targets: {log: {bit: 4, sinks: [events]}}
sinks:
  events: {type: file, path: x.jsonl, pth: y}
`, false, false},
		{"a receiver's key in a sink is rejected", `
targets: {log: {bit: 4, sinks: [events]}}
sinks:
  events: {type: file, path: x.jsonl, tcp: "127.0.0.1:5514"}
`, false, false},
		{"a sink's key in a receiver is rejected", minimal + `
receivers:
  syslog: {type: syslog, tcp: "127.0.0.1:5514", path: x}
`, false, false},
		{"an unknown sink type is rejected", `
targets: {log: {bit: 4, sinks: [events]}}
sinks:
  events: {type: kafka, path: x.jsonl}
`, false, false},
		{"a sink without a type is rejected", `
targets: {log: {bit: 4, sinks: [events]}}
sinks:
  events: {path: x.jsonl}
`, false, false},
		{"a file sink without its required path is rejected", `
targets: {log: {bit: 4, sinks: [events]}}
sinks:
  events: {type: file, format: json}
`, false, false},
		{"a file sink with every key is valid", `
targets: {log: {bit: 4, sinks: [events]}}
sinks:
  events: {type: file, path: x.jsonl, format: json, fsync: true, mode: 0600}
`, true, true},
		{"a syslog receiver with every key is valid", minimal + `
receivers:
  syslog: {type: syslog, tcp: "127.0.0.1:5514", udp: "127.0.0.1:5514", max_message_size: 1MiB, max_connections: 10, target_mask: 4}
`, true, true},
		{"a word for an integer is rejected", minimal + "bus: {max_deliver: many}\n", false, false},
		{"a mapping for a list is rejected", `
targets: {log: {bit: 4, sinks: {a: events}}}
sinks:
  events: {type: file, path: x.jsonl}
`, false, false},
		{"a list for a mapping is rejected", minimal + "log: [info]\n", false, false},
		{"a negative target bit is rejected", `
targets: {log: {bit: -4, sinks: [events]}}
sinks:
  events: {type: file, path: x.jsonl}
`, false, false},
		{"a file mode beyond 32 bits is rejected", `
targets: {log: {bit: 4, sinks: [events]}}
sinks:
  events: {type: file, path: x.jsonl, mode: 4294967296}
`, false, false},
		{"a duration without a unit is rejected", minimal + "bus: {ack_wait: 10}\n", false, false},
		{"a negative duration is rejected", minimal + "batch: {linger: -5ms}\n", false, false},
		{"a compound duration is valid", minimal + "shutdown_timeout: 1m30s\n", true, true},
		{"a fractional duration is valid", minimal + "shutdown_timeout: 1.5s\n", true, true},
		{"a bare zero duration is valid", minimal + "batch: {linger: 0}\n", true, true},
		{"a size in bytes is valid", minimal + "memory_limit: 268435456\n", true, true},
		{"a size with a unit and a space is valid", minimal + "batch: {max_bytes: 64 KiB}\n", true, true},
		{"a size with an unknown unit is rejected", minimal + "memory_limit: 1TiB\n", false, false},
		{"a size in exponent notation passes the schema only", minimal + "memory_limit: 2e8\n", true, false},
		{"a negative size is rejected", minimal + "memory_limit: -1\n", false, false},
		{"empty keys keep their defaults", minimal + "metrics:\nbus: {embedded: {listen: }}\nlog: {level: }\n", true, true},
		{"a misspelt log level passes the schema only", minimal + "log: {level: loud}\n", true, false},
		{"a too small payload limit passes the schema only", minimal + "bus: {embedded: {max_payload: 1KiB}}\n", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.schema && tc.load {
				t.Fatal("bad case: the schema must not reject a config herald accepts")
			}
			err := s.Validate(yamlToJSON(t, []byte(tc.yaml)))
			if got := err == nil; got != tc.schema {
				t.Errorf("schema accepts: %v, want %v (%v)", got, tc.schema, err)
			}
			err = parseConfig("test.yaml", []byte(tc.yaml))
			if got := err == nil; got != tc.load {
				t.Errorf("config.Parse accepts: %v, want %v (%v)", got, tc.load, err)
			}
		})
	}
}

// The committed schema and reference are what make generate writes now.
func TestGeneratedFilesAreUpToDate(t *testing.T) {
	schema, doc, err := gen.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		want []byte
	}{{"config.schema.json", schema}, {"../docs/config.md", doc}} {
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.want) {
			t.Errorf("%s is stale: run make generate", f.path)
		}
	}
	again, _, err := gen.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(schema, again) {
		t.Error("two runs of the generator differ: the output is not deterministic")
	}
}

// Every sample is given both to bus.ParseJSONEvents and to the schema. They
// agree except where noted: the schema describes JSON values, so it cannot
// see how a message is spelt (duplicate keys, invalid UTF-8, 4.0 for 4).
func TestEventSchemaAgreesWithParseJSONEvents(t *testing.T) {
	s := compile(t, "event.schema.json")
	for _, tc := range []struct {
		name         string
		json         string
		herald, schm bool // whether each accepts it
	}{
		{"one event with every envelope key", `{"id":"a1","time":"2024-05-01T12:30:00Z","host":"web1","service":"shop","message":"paid","class":"audit","target_mask":6,"order":42}`, true, true},
		{"an empty object", `{}`, true, true},
		{"an array of events", `[{"message":"a"},{"message":"b","user":{"id":7,"roles":["x"]}}]`, true, true},
		{"fields of every JSON kind", `{"s":"x","i":-3,"f":1.5,"b":false,"n":null,"l":[1,"two",[3]],"m":{"time":"not an envelope key here"}}`, true, true},
		{"an empty array", `[]`, false, false},
		{"an array holding a non-object", `[{"message":"a"},"b"]`, false, false},
		{"a string", `"hello"`, false, false},
		{"null", `null`, false, false},
		{"a number", `42`, false, false},
		{"not JSON", `{"message":`, false, false},
		{"data after the event", `{"message":"a"} {"message":"b"}`, false, false},
		{"time with offset and nanoseconds", `{"time":"2024-05-01T14:30:00.123456789+02:00"}`, true, true},
		{"time as integer Unix seconds", `{"time":1714566600}`, true, true},
		{"time as fractional Unix seconds", `{"time":1714566600.25}`, true, true},
		{"time as a word", `{"time":"yesterday"}`, false, false},
		{"time on a day that does not exist", `{"time":"2024-02-30T00:00:00Z"}`, false, false},
		{"time with lower-case t and z", `{"time":"2024-05-01t12:30:00z"}`, false, false},
		{"time without a zone", `{"time":"2024-05-01T12:30:00"}`, false, false},
		{"time as a boolean", `{"time":true}`, false, false},
		{"a number for host", `{"host":7}`, false, false},
		{"null for message", `{"message":null}`, false, false},
		{"an object for service", `{"service":{"name":"x"}}`, false, false},
		{"an array for id", `{"id":["a"]}`, false, false},
		{"an empty class", `{"class":""}`, true, true},
		{"a negative target mask", `{"target_mask":-1}`, false, false},
		{"a fractional target mask", `{"target_mask":4.5}`, false, false},
		{"a string target mask", `{"target_mask":"4"}`, false, false},
		{"the largest target mask", `{"target_mask":9223372036854775807}`, true, true},
		{"a target mask beyond 63 bits", `{"target_mask":9223372036854775808}`, false, false},
		// Where the schema cannot follow herald; each is also stated in the
		// schema's description.
		{"a key given twice (herald only)", `{"message":"a","message":"b"}`, false, true},
		{"a target mask spelt 4.0 (herald only)", `{"target_mask":4.0}`, false, true},
		{"a number beyond float64 (herald only)", `{"n":1e400}`, false, true},
		{"invalid UTF-8 (herald only)", "{\"message\":\"\xff\"}", false, true},
		{"a comma before the fraction of a second (schema only)", `{"time":"2024-05-01T12:30:00,5Z"}`, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bus.ParseJSONEvents([]byte(tc.json), "app", time.Now())
			if got := err == nil; got != tc.herald {
				t.Errorf("ParseJSONEvents accepts: %v, want %v (%v)", got, tc.herald, err)
			}
			if err != nil && !errors.Is(err, bus.ErrMalformed) {
				t.Errorf("ParseJSONEvents error is not ErrMalformed: %v", err)
			}
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(tc.json)))
			if err == nil {
				err = s.Validate(v)
			}
			if got := err == nil; got != tc.schm {
				t.Errorf("schema accepts: %v, want %v (%v)", got, tc.schm, err)
			}
		})
	}
}
