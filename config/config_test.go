package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fileOpts struct {
	Path string `yaml:"path"`
}

func (o *fileOpts) Validate() []FieldError {
	if o.Path == "" {
		return []FieldError{{Field: "path", Reason: "required"}}
	}
	return nil
}

// syslogOpts stands for a listening receiver kind (the real ones live in
// actors/receiver, which imports this package).
type syslogOpts struct {
	TCP        string `yaml:"tcp"`
	UDP        string `yaml:"udp"`
	TargetMask uint64 `yaml:"target_mask"`
}

func (o *syslogOpts) Addresses() []Address {
	return []Address{{Field: "tcp", Network: "tcp", Addr: o.TCP}, {Field: "udp", Network: "udp", Addr: o.UDP}}
}

func (o *syslogOpts) Mask() uint64 { return o.TargetMask }

var testKinds = Kinds{
	Receivers: map[string]func() any{"syslog": func() any { return &syslogOpts{TargetMask: 4} }},
	Sinks:     map[string]func() any{"file": func() any { return &fileOpts{} }},
}

const good = `
bus:
  embedded:
    data_dir: data
  ack_wait: 5s
batch:
  max_bytes: 128KiB
receivers:
  syslog:
    type: syslog
    tcp: 127.0.0.1:5514
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out.jsonl}
`

func TestAGoodFileGetsDefaultsAndAbsolutePaths(t *testing.T) {
	cfg, err := Parse("/etc/herald/herald.yaml", []byte(good), testKinds)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bus.AckWait.D() != 5*time.Second || cfg.Batch.MaxBytes != 128<<10 || cfg.Batch.MaxEvents != 1000 {
		t.Errorf("values: ack_wait %v, max_bytes %d, max_events %d", cfg.Bus.AckWait.D(), cfg.Batch.MaxBytes, cfg.Batch.MaxEvents)
	}
	if cfg.Bus.Embedded.DataDir != filepath.FromSlash("/etc/herald/data") {
		t.Errorf("data_dir = %s, want it resolved against the config's folder", cfg.Bus.Embedded.DataDir)
	}
	s := cfg.Receivers["syslog"].Options.(*syslogOpts)
	if s.TCP != "127.0.0.1:5514" || s.TargetMask != 4 {
		t.Errorf("syslog receiver = %+v", s)
	}
	if cfg.Sinks["events"].Options.(*fileOpts).Path != "out.jsonl" {
		t.Error("sink options not decoded")
	}
}

func TestEveryProblemIsReportedWithItsPosition(t *testing.T) {
	bad := `bus:
  embeded: {}
  ack_wait: soon
batch:
  max_events: lots
receivers:
  syslog:
    type: syslog
    tcp: 127.0.0.1:99999
    colour: red
targets:
  log: {bit: 3, sinks: [nowhere]}
sinks:
  events: {type: file}
  other: {type: kafka}
`
	_, err := Parse("h.yaml", []byte(bad), testKinds)
	var ce *Errors
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *Errors", err)
	}
	want := []string{
		`h.yaml:2:3: field "bus.embeded": unknown key (did you mean "embedded"?)`,
		`h.yaml:3:13: field "bus.ack_wait": want a duration such as 10s, got "soon"`,
		`h.yaml:5:15: field "batch.max_events": cannot unmarshal !!str ` + "`lots`" + ` into int`,
		`h.yaml:9:10: field "receivers.syslog.tcp": port "99999" is not a number from 0 to 65535`,
		`h.yaml:10:5: field "receivers.syslog.colour": unknown key`,
		`h.yaml:12:14: field "targets.log.bit": want a power of two`,
		`h.yaml:12:25: field "targets.log.sinks[0]": no sink named "nowhere"`,
		`h.yaml:14:11: field "sinks.events.path": required`,
		`h.yaml:15:17: field "sinks.other.type": unknown type "kafka"; want one of file`,
	}
	got := ce.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
	if len(ce.List) != len(want) {
		t.Errorf("%d problems, want %d, in file order:\n%s", len(ce.List), len(want), got)
	}
}

func TestAValueThatFailedToDecodeIsNotReportedTwice(t *testing.T) {
	_, err := Parse("h.yaml", []byte("targets:\n  log: {bit: lots, sinks: [events]}\nsinks:\n  events: {type: file, path: x}\n"), testKinds)
	var ce *Errors
	if !errors.As(err, &ce) || len(ce.List) != 1 {
		t.Fatalf("want exactly the type error, got %v", err)
	}
}

func TestMeaningIsCheckedOnceTypesAreRight(t *testing.T) {
	bad := `receivers:
  syslog:
    type: syslog
    tcp: 127.0.0.1:99999
targets:
  log: {bit: 3, sinks: [nowhere]}
sinks:
  events: {type: file}
`
	_, err := Parse("h.yaml", []byte(bad), testKinds)
	var ce *Errors
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	for _, w := range []string{
		`h.yaml:4:10: field "receivers.syslog.tcp": port "99999" is not a number from 0 to 65535`,
		`h.yaml:6:14: field "targets.log.bit": want a power of two`,
		`h.yaml:6:25: field "targets.log.sinks[0]": no sink named "nowhere"`,
		`h.yaml:8:11: field "sinks.events.path": required`,
	} {
		if !strings.Contains(ce.Error(), w) {
			t.Errorf("missing %q in:\n%s", w, ce.Error())
		}
	}
}

func TestSyntaxErrorsNameTheLine(t *testing.T) {
	_, err := Parse("h.yaml", []byte("targets:\n  log: [unclosed\n"), testKinds)
	var ce *Errors
	if !errors.As(err, &ce) || ce.List[0].Pos.Line == 0 {
		t.Fatalf("err = %v, want a positioned syntax error", err)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]Size{"512": 512, "64KiB": 64 << 10, "1MiB": 1 << 20, "2MB": 2e6, "10 KB": 10e3, "3B": 3} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "lots", "1TiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) should fail", in)
		}
	}
}

func TestAnEmptyEntryIsAnErrorNotACrash(t *testing.T) {
	for _, in := range []string{"sinks: {events: }\n", "receivers:\n  x:\n", "targets: {log: }\n"} {
		_, err := Parse("h.yaml", []byte(in), testKinds)
		var ce *Errors
		if !errors.As(err, &ce) || !strings.Contains(ce.Error(), "empty: give its keys") {
			t.Errorf("%q: %v", in, err)
		}
	}
}

func TestFiltersRulesAndMasksAreCheckedAtLoad(t *testing.T) {
	bad := `receivers:
  syslog: {type: syslog, tcp: 127.0.0.1:5514, target_mask: 12}
targets:
  log: {bit: 4, sinks: [events], filter: 'host == 1'}
rules:
  - when: 'severity <='
    mask: 4
  - when: 'severity <= 3'
    mask: 16
    receiver: nope
sinks:
  events: {type: file, path: x}
`
	_, err := Parse("h.yaml", []byte(bad), testKinds)
	var ce *Errors
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	for _, w := range []string{
		`h.yaml:2:60: field "receivers.syslog.target_mask": bits 8 belong to no target`,
		`h.yaml:4:42: field "targets.log.filter": bad expression: invalid operation: == (mismatched types string and int)`,
		`h.yaml:6:11: field "rules[0].when": bad expression:`,
		`h.yaml:9:11: field "rules[1].mask": bits 16 belong to no target`,
		`h.yaml:10:15: field "rules[1].receiver": no receiver named "nope"`,
	} {
		if !strings.Contains(ce.Error(), w) {
			t.Errorf("missing %q in:\n%s", w, ce.Error())
		}
	}
}
