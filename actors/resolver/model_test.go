package resolver

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/resolver/attrs"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

func strValue(s string) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Str{Str: s}} }

func field(ev *schemas.Event, key string) *schemas.Field {
	for _, f := range ev.Fields {
		if f.Key == key {
			return f
		}
	}
	return nil
}

// JSON events cannot have a field named like an envelope key (the key sets
// the envelope), but syslog structured data and redriven events can.
func TestAFieldWinsOverAnEnvelopeAliasButNotOverAReservedName(t *testing.T) {
	ev := &schemas.Event{Host: "envelope", Fields: []*schemas.Field{
		{Key: "host", Value: strValue("field")},
		{Key: attrs.RMessage, Value: strValue("%(host) %(__host__)")},
	}}
	Processor{}.Resolve(ev, "b", 0)
	if got := field(ev, attrs.RMessage).Value.GetStr(); got != "field envelope" {
		t.Errorf("R_message__ = %q, want %q", got, "field envelope")
	}
}

func TestAttributeAnswersReservedAndEnvelopeNames(t *testing.T) {
	p, err := New(config.Resolver{Zone: "Asia/Kolkata", StampFormat: "%H:%M"})
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev := &schemas.Event{Id: "I", Host: "h", Service: "s", Message: "m", TimeUnixNano: when.UnixNano(), Class: "c",
		Fields: []*schemas.Field{{Key: "pid", Value: strValue("99")}}}
	for _, tc := range []struct {
		key  string
		want string // the value as text; "-" for absent
	}{
		{attrs.Host, "h"}, {"host", "h"}, {attrs.App, "s"}, {"app", "s"}, {"service", "s"},
		{attrs.Message, "m"}, {attrs.Time, "2026-01-02T03:04:05Z"}, {attrs.Pid, "99"},
		{attrs.Stamp, "08:34"}, {attrs.Loco, "19800"}, {"id", "I"}, {"class", "c"},
		{"source", "-"}, {"peer", "-"}, {"pid", "-"}, {"__nosuch__", "-"},
	} {
		v, ok := p.Attribute(ev, tc.key)
		got := "-"
		if ok {
			got = string(appendText(nil, v))
		}
		if got != tc.want {
			t.Errorf("%s = %s, want %s", tc.key, got, tc.want)
		}
	}
}

// Template values are shared by every event; resolving fills per-event
// copies of the fields, so concurrent batches never see each other.
func TestTemplatesAreSharedButNeverChanged(t *testing.T) {
	p, err := New(config.Resolver{Zone: "UTC", DefaultTemplate: "t", Templates: map[string]*config.Template{
		"t": {Fields: map[string]config.FieldText{attrs.RStamp: "", attrs.RMessage: "%(user)", "env": "prod"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				ev := &schemas.Event{ReceivedUnixNano: int64(g*1000+i) * int64(time.Second),
					Fields: []*schemas.Field{{Key: "user", Value: strValue("u")}}}
				p.Process(&schemas.Batch{Id: "b", Events: []*schemas.Event{ev}})
				if got := field(ev, attrs.RMessage).Value.GetStr(); got != "u" {
					t.Errorf("R_message__ = %q", got)
				}
			}
		})
	}
	wg.Wait()
	want := map[string]string{attrs.RStamp: "", attrs.RMessage: "%(user)", "env": "prod"}
	for _, f := range p.c.fallback.fields {
		if f.Value.GetStr() != want[f.Key] {
			t.Errorf("the template's %s was changed to %v", f.Key, f.Value)
		}
	}
}

// A config.Resolver made in code gets the checks config.Parse makes.
func TestNewRefusesWhatParseRefuses(t *testing.T) {
	loop := map[string]*config.Template{"a": {Base: "b"}, "b": {Base: "a"}}
	for _, tc := range []struct {
		name string
		cfg  config.Resolver
	}{
		{"an unknown strftime verb", config.Resolver{StampFormat: "%Q"}},
		{"an unknown zone", config.Resolver{Zone: "Mars/Olympus"}},
		{"an unknown missing_key mode", config.Resolver{MissingKey: "drop"}},
		{"templates in a loop", config.Resolver{Templates: loop}},
		{"a base that does not exist", config.Resolver{Templates: map[string]*config.Template{"a": {Base: "x"}}}},
		{"a reserved key in a template", config.Resolver{Templates: map[string]*config.Template{"a": {Fields: map[string]config.FieldText{"__host__": "h"}}}}},
		{"an unknown default template", config.Resolver{DefaultTemplate: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

// goldenEventLines returns the JSON event lines of the golden inputs: real
// events, edge cases included, to seed the fuzzer and the benchmarks.
func goldenEventLines(t testing.TB) []string {
	t.Helper()
	inputs, _ := filepath.Glob(filepath.Join("testdata", "*.input"))
	var lines []string
	for _, in := range inputs {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		_, body, _ := strings.Cut(string(data), separator)
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "{") {
				lines = append(lines, l)
			}
		}
	}
	if len(lines) < 10 {
		t.Fatalf("only %d golden events", len(lines))
	}
	return lines
}

// fuzzConfig exercises every feature: templates with a base, a default, an
// R_message__ in a template, a small size cap and the error mode.
const fuzzConfig = `
resolver:
  zone: Europe/Paris
  stamp_format: "%F %T.%L %Z"
  missing_key: error
  max_message_size: 512B
  default_template: base
  templates:
    base:
      fields: {env: prod, R_stamp__: ""}
    web:
      base: base
      fields: {app: shop, R_message__: "%(app)/%(env): %(user) %(nosuch) %%"}
`

// Any event resolves without panic into one that encodes, carries
// R_time__, keeps its id, has no reserved key but __template__, has an
// R_message__ no longer than the cap, and does not change when resolved
// again.
func FuzzResolve(f *testing.F) {
	for _, l := range goldenEventLines(f) {
		f.Add(l)
	}
	f.Add(`{"__template__":"web","user":"ann","R_message__":"%(R_message__)%(R_message__)"}`)
	p, err := New(parseResolver(f, "fuzz.yaml", fuzzConfig))
	if err != nil {
		f.Fatal(err)
	}
	received := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, line string) {
		evs, err := bus.ParseJSONEvents([]byte(line), "app", received)
		if err != nil {
			return
		}
		b := &schemas.Batch{Id: "fuzz", Events: evs}
		ids := make([]string, len(evs))
		for i, ev := range evs {
			ids[i] = ev.Id
		}
		if _, err := p.Process(b); err != nil {
			t.Fatal(err)
		}
		for i, ev := range b.Events {
			if _, err := proto.Marshal(ev); err != nil {
				t.Fatalf("event %d does not encode: %v", i, err)
			}
			if ids[i] != "" && ev.Id != ids[i] {
				t.Errorf("id %q changed to %q", ids[i], ev.Id)
			}
			if field(ev, attrs.RTime) == nil {
				t.Errorf("no R_time__: %v", ev)
			}
			if resolvedBefore(ev) {
				continue
			}
			for _, f := range ev.Fields {
				if attrs.IsReserved(f.Key) && f.Key != attrs.Template {
					t.Errorf("reserved key %s kept", f.Key)
				}
				if f.Key == attrs.RMessage && len(f.Value.GetStr()) > 512 {
					t.Errorf("R_message__ of %d bytes", len(f.Value.GetStr()))
				}
				if s := f.Value.GetStr(); !utf8.ValidString(s) {
					t.Errorf("%s is not UTF-8", f.Key)
				}
			}
		}
		again := proto.Clone(b).(*schemas.Batch)
		again.Id = "other"
		_, _ = p.Process(again)
		for i := range b.Events {
			if !proto.Equal(again.Events[i], b.Events[i]) {
				t.Errorf("event %d changed when resolved again", i)
			}
		}
	})
}

// BenchmarkProcess resolves a batch of 1000 application events; ns/event
// is the figure to watch.
func BenchmarkProcess(b *testing.B) {
	plain, err := New(config.Resolver{Zone: "Europe/Paris"})
	if err != nil {
		b.Fatal(err)
	}
	templated, err := New(parseResolver(b, "bench.yaml", fuzzConfig))
	if err != nil {
		b.Fatal(err)
	}
	received := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	for _, bc := range []struct {
		name  string
		proc  Processor
		event string
	}{
		{"no templates", plain, `{"host":"web1","service":"shop","message":"paid","user":"ann","amount":12.5,"pid":"42"}`},
		{"default template", templated, `{"host":"web1","service":"shop","message":"paid","user":"ann","amount":12.5,"pid":"42"}`},
		{"named template with R_message__", templated, `{"host":"web1","service":"shop","message":"paid","user":"ann","amount":12.5,"pid":"42","__template__":"web"}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const n = 1000
			evs, err := bus.ParseJSONEvents([]byte(bc.event), "app", received)
			if err != nil {
				b.Fatal(err)
			}
			fresh := make([]*schemas.Event, n)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for i := range fresh {
					fresh[i] = proto.Clone(evs[0]).(*schemas.Event)
				}
				b.StartTimer()
				_, _ = bc.proc.Process(&schemas.Batch{Id: "bench", Events: fresh})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}
