package pipetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/herald-router/herald/actors/classifier"
	"github.com/herald-router/herald/actors/resolver"
	"github.com/herald-router/herald/actors/router"
	"github.com/herald-router/herald/actors/sink/format"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

// batchID names the one-event batch every case's input is; the resolver
// derives the event id from it and the arrival time.
const batchID = "herald-test"

// Pipeline is a config made ready to run cases: the resolver, the router
// and, on demand, the formatter of each sink.
type Pipeline struct {
	cfg        *config.Config
	resolver   resolver.Processor
	router     *router.Router
	formatters map[string]*format.Formatter
}

// NewPipeline builds the stages' logic from cfg as herald run does.
func NewPipeline(cfg *config.Config) (*Pipeline, error) {
	res, err := resolver.New(cfg.Resolver)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	var ts []router.Target
	for name, t := range cfg.Targets {
		ts = append(ts, router.Target{Name: name, Bit: t.Bit, Filter: t.Filter})
	}
	var rules []router.Rule
	for _, r := range cfg.Rules {
		rules = append(rules, router.Rule{When: r.When, Receiver: r.Receiver, Mask: r.Mask, Add: r.Add})
	}
	rt, err := router.New(ts, rules)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	return &Pipeline{cfg: cfg, resolver: res, router: rt, formatters: map[string]*format.Formatter{}}, nil
}

// Outcome is what the pipeline made of one input.
type Outcome struct {
	// Event is the event as the router saw it (classified and resolved).
	Event *schemas.Event
	// Targets are the targets chosen, in name order.
	Targets []string
	// Failed are the targets whose filter could not judge the event: the
	// router dead-letters their copies, the other targets get theirs.
	Failed map[string]error
	// RouteErr is why a rule could not judge the event: the router
	// dead-letters it whole, and no target gets it.
	RouteErr error
}

// Process runs one input through classification (a line only),
// resolution and routing.
func (p *Pipeline) Process(in Input, received time.Time) (*Outcome, error) {
	var ev *schemas.Event
	if in.Line != nil {
		name := in.Receiver
		if name == "" {
			if len(p.cfg.Receivers) != 1 {
				return nil, fmt.Errorf("input.receiver: required, the config has %d receivers", len(p.cfg.Receivers))
			}
			for n := range p.cfg.Receivers {
				name = n
			}
		}
		rc := p.cfg.Receivers[name]
		if rc == nil {
			return nil, fmt.Errorf("input.receiver: the config has no receiver %q", name)
		}
		ev = &schemas.Event{
			Raw: []byte(*in.Line), Source: name, Peer: in.Peer,
			ReceivedUnixNano: received.UnixNano(), TargetMask: receiverMask(rc),
		}
		classifier.Classify(ev, received)
	} else {
		data, err := eventJSON(&in.Event)
		if err != nil {
			return nil, fmt.Errorf("input.event: %w", err)
		}
		class := in.Class
		if class == "" {
			class = "app"
		}
		evs, err := bus.ParseJSONEvents(data, class, received)
		if err != nil {
			return nil, fmt.Errorf("input.event: %w", err)
		}
		if len(evs) != 1 {
			return nil, fmt.Errorf("input.event: want one event, got %d (one case per event)", len(evs))
		}
		ev = evs[0]
		ev.Peer = in.Peer
	}
	p.resolver.Resolve(ev, batchID, 0)
	out := &Outcome{Event: ev}
	out.Targets, out.Failed, out.RouteErr = p.router.Match(ev)
	return out, nil
}

// eventJSON is an input event as JSON: the text itself when it is a
// string, else the YAML mapping converted in order.
func eventJSON(n *yaml.Node) ([]byte, error) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		return []byte(n.Value), nil
	}
	return nodeJSON(nil, n)
}

// receiverMask is the target_mask of a receiver's options: every receiver
// kind that routes has a TargetMask field.
func receiverMask(rc *config.Receiver) uint64 {
	v := reflect.ValueOf(rc.Options)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return 0
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return 0
	}
	f := v.FieldByName("TargetMask")
	if !f.IsValid() || f.Kind() != reflect.Uint64 {
		return 0
	}
	return f.Uint()
}

// Format returns the record sink name would write for ev: its header and
// footer left out, as in the middle of a file.
func (p *Pipeline) Format(name string, ev *schemas.Event) ([]byte, error) {
	f, ok := p.formatters[name]
	if !ok {
		s := p.cfg.Sinks[name]
		if s == nil {
			return nil, fmt.Errorf("the config has no sink %q", name)
		}
		spec, ok := formatSpec(s.Options)
		if !ok {
			return nil, fmt.Errorf("sink %s is of type %s, which has no file format to show (file and stdout sinks have)", name, s.Type)
		}
		var err error
		if f, err = format.Compile(spec); err != nil {
			return nil, fmt.Errorf("sink %s: %w", name, err)
		}
		p.formatters[name] = f
	}
	return f.Append(nil, ev), nil
}

// formatSpec reads the format keys of a sink's options: every provider
// that writes package format's records (file, stdout) has the fields
// Format, Fields, Template and Header.
func formatSpec(options any) (format.Spec, bool) {
	v := reflect.ValueOf(options)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return format.Spec{}, false
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return format.Spec{}, false
	}
	get := func(name string, k reflect.Kind) (reflect.Value, bool) {
		f := v.FieldByName(name)
		return f, f.IsValid() && f.Kind() == k
	}
	fm, ok1 := get("Format", reflect.String)
	fs, ok2 := get("Fields", reflect.Slice)
	tp, ok3 := get("Template", reflect.String)
	hd, ok4 := get("Header", reflect.Bool)
	if !ok1 || !ok2 || !ok3 || !ok4 || fs.Type().Elem().Kind() != reflect.String {
		return format.Spec{}, false
	}
	var fields []string
	for i := range fs.Len() {
		fields = append(fields, fs.Index(i).String())
	}
	return format.Spec{Format: fm.String(), Fields: fields, Template: tp.String(), Header: hd.Bool()}, true
}

// sinksOf are the sinks of the targets chosen.
func (p *Pipeline) sinksOf(targets []string) []string {
	var out []string
	for _, t := range targets {
		for _, s := range p.cfg.Targets[t].Sinks {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// Result is one case's verdict.
type Result struct {
	Case *Case
	// Failures are the mismatches, each a self-contained message (the
	// first line names what was checked).
	Failures []string
}

// Passed reports whether every check held.
func (r Result) Passed() bool { return len(r.Failures) == 0 }

// Run runs c and compares the outcome with its expectations.
func (p *Pipeline) Run(f *File, c *Case) Result {
	r := Result{Case: c}
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	out, err := p.Process(c.Input, f.receivedOf(c))
	if err != nil {
		fail("%v", err)
		return r
	}
	ev, x := out.Event, &c.Expect
	str := func(key string, want *string, got string) {
		if want != nil && *want != got {
			fail("%s:\n  want %q\n  got  %q", key, *want, got)
		}
	}
	str("id", x.ID, ev.Id)
	str("class", x.Class, ev.Class)
	if x.Certainty != nil && float32(*x.Certainty) != ev.Certainty {
		fail("certainty:\n  want %g\n  got  %g", *x.Certainty, ev.Certainty)
	}
	str("host", x.Host, ev.Host)
	str("service", x.Service, ev.Service)
	str("message", x.Message, ev.Message)
	if x.Time != nil {
		want, err := time.Parse(time.RFC3339Nano, *x.Time)
		switch {
		case err != nil:
			fail("time: want an RFC 3339 time: %v", err)
		case ev.TimeUnixNano == 0:
			fail("time:\n  want %s\n  got  none (the record carries no time)", *x.Time)
		case want.UnixNano() != ev.TimeUnixNano:
			fail("time:\n  want %s\n  got  %s", want.UTC().Format(time.RFC3339Nano), time.Unix(0, ev.TimeUnixNano).UTC().Format(time.RFC3339Nano))
		}
	}
	r.Failures = append(r.Failures, checkFields(&x.Fields, x.NoFields, ev)...)
	if got := deadLettered(out); x.DeadLettered != nil || len(got) > 0 {
		want := slices.Clone(x.DeadLettered)
		sort.Strings(want)
		if !slices.Equal(want, got) {
			msg := fmt.Sprintf("dead_lettered:\n  want %s\n  got  %s", list(want), list(got))
			for _, name := range got {
				if name == AllTargets {
					msg += "\n  (a rule cannot judge the event: " + firstLine(out.RouteErr) + ")"
				} else {
					msg += "\n  (" + name + ": " + firstLine(out.Failed[name]) + ")"
				}
			}
			fail("%s", msg)
		}
	}
	if x.Targets != nil {
		want := slices.Clone(*x.Targets)
		sort.Strings(want)
		if !slices.Equal(want, out.Targets) {
			fail("targets:\n  want %s\n  got  %s", list(want), list(out.Targets))
		}
	}
	sinks := p.sinksOf(out.Targets)
	for _, name := range sortedKeys(x.Outputs) {
		if !slices.Contains(sinks, name) {
			fail("outputs.%s: the sink gets no copy: it is in no chain of the targets chosen (%s)", name, list(out.Targets))
			continue
		}
		got, err := p.Format(name, ev)
		if err != nil {
			fail("outputs.%s: %v", name, err)
			continue
		}
		want := strings.TrimRight(x.Outputs[name], "\n")
		gotS := strings.TrimRight(string(got), "\n")
		if want != gotS {
			fail("outputs.%s: (- want, + got)\n%s", name, Diff(want, gotS))
		}
	}
	return r
}

// AllTargets in dead_lettered stands for the whole event, dead-lettered
// because a rule could not judge it.
const AllTargets = "*"

// deadLettered lists, sorted, the targets whose copy the router
// dead-letters, or AllTargets alone when it dead-letters the whole event.
func deadLettered(out *Outcome) []string {
	if out.RouteErr != nil {
		return []string{AllTargets}
	}
	return sortedKeys(out.Failed)
}

// checkFields compares the expected fields, as JSON values, and checks
// that the forbidden ones are absent.
func checkFields(want *yaml.Node, absent []string, ev *schemas.Event) []string {
	var fails []string
	got := map[string]*schemas.Field{}
	for _, f := range ev.Fields {
		if _, dup := got[f.Key]; !dup {
			got[f.Key] = f
		}
	}
	for i := 0; want.Kind == yaml.MappingNode && i+1 < len(want.Content); i += 2 {
		key := want.Content[i].Value
		wj, err := nodeJSON(nil, want.Content[i+1])
		if err != nil {
			fails = append(fails, fmt.Sprintf("fields.%s: %v", key, err))
			continue
		}
		f := got[key]
		if f == nil {
			fails = append(fails, fmt.Sprintf("fields.%s:\n  want %s\n  got  no such field (the event has %s)", key, wj, keys(ev.Fields)))
			continue
		}
		gj := fieldJSON(f)
		if !sameJSON(wj, gj) {
			fails = append(fails, fmt.Sprintf("fields.%s:\n  want %s\n  got  %s", key, wj, gj))
		}
	}
	for _, key := range absent {
		if f := got[key]; f != nil {
			fails = append(fails, fmt.Sprintf("no_fields: %s is present: %s", key, fieldJSON(f)))
		}
	}
	return fails
}

// fieldJSON is a field's value in the JSON form of the file sink.
func fieldJSON(f *schemas.Field) []byte {
	obj := format.AppendFieldsJSON(nil, []*schemas.Field{{Key: "v", Value: f.Value}})
	return obj[len(`{"v":`) : len(obj)-1]
}

// sameJSON compares two JSON texts as values: key order and number
// spelling (1 and 1.0) do not matter, types do.
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

func keys(fs []*schemas.Field) string {
	if len(fs) == 0 {
		return "no fields"
	}
	var ks []string
	for _, f := range fs {
		ks = append(ks, f.Key)
	}
	return strings.Join(ks, ", ")
}

// firstLine is an error's first line: expr's errors go on with the
// expression and a caret, which an indented report cannot align.
func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

func list(s []string) string { return "[" + strings.Join(s, " ") + "]" }

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Report is the verdict on one file.
type Report struct {
	File    *File
	Results []Result
}

// Failed counts the failed cases.
func (r *Report) Failed() int {
	n := 0
	for _, res := range r.Results {
		if !res.Passed() {
			n++
		}
	}
	return n
}

// RunFile loads the test file at path and its config (decoded with
// kinds), and runs every case. An error means the file or config could
// not be used at all; failing cases are in the report.
func RunFile(path string, kinds config.Kinds) (*Report, error) {
	f, err := Load(path)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(f.ConfigPath, kinds)
	if err != nil {
		return nil, fmt.Errorf("%s: config %s:\n%w", path, f.ConfigPath, err)
	}
	p, err := NewPipeline(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: config %s: %w", path, f.ConfigPath, err)
	}
	rep := &Report{File: f}
	for i := range f.Tests {
		rep.Results = append(rep.Results, p.Run(f, &f.Tests[i]))
	}
	return rep, nil
}

// Write prints the report: a line per case, each failure indented below
// its case, and a closing count.
func (r *Report) Write(w io.Writer) {
	for _, res := range r.Results {
		c := res.Case
		if res.Passed() {
			fmt.Fprintf(w, "ok    %s:%d: %s\n", r.File.Path, c.Line, c.Name)
			continue
		}
		fmt.Fprintf(w, "FAIL  %s:%d: %s\n", r.File.Path, c.Line, c.Name)
		for _, f := range res.Failures {
			for _, line := range strings.Split(f, "\n") {
				fmt.Fprintf(w, "      %s\n", line)
			}
		}
	}
	if n := r.Failed(); n > 0 {
		fmt.Fprintf(w, "%s: %d of %d cases failed\n", r.File.Path, n, len(r.Results))
	} else {
		fmt.Fprintf(w, "%s: all %d cases passed\n", r.File.Path, len(r.Results))
	}
}
