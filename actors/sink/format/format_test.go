package format

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-router/herald/actors/sink/format/formattest"
	"github.com/herald-router/herald/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func str(s string) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Str{Str: s}} }
func num(i int64) *schemas.Value  { return &schemas.Value{Kind: &schemas.Value_Int{Int: i}} }

// goldenEvents are the inputs of every golden file: an ordinary syslog
// event, one full of characters each format must escape, a bare one, and
// one with every value type.
func goldenEvents() []*schemas.Event {
	t0 := time.Date(2026, 11, 26, 6, 14, 7, 913813000, time.UTC).UnixNano()
	return []*schemas.Event{
		{
			Id: "01M8B7TTS94HZMYNRKESPDG10Y", TimeUnixNano: t0, ReceivedUnixNano: t0 + 116292,
			Host: "vm", Service: "sshd", Class: "rfc5424", Certainty: 1, Source: "syslog", Peer: "127.0.0.1:55530",
			Message: "Accepted publickey for alice from 10.0.0.7 port 50122",
			Fields: []*schemas.Field{
				{Key: "pri", Value: num(38)}, {Key: "facility", Value: num(4)}, {Key: "severity", Value: num(6)},
				{Key: "pid", Value: str("1234")},
				{Key: "sd", Value: &schemas.Value{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: []*schemas.Field{
					{Key: "timeQuality", Value: &schemas.Value{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: []*schemas.Field{{Key: "tzKnown", Value: str("1")}}}}}},
				}}}}},
			},
		},
		{
			Id: "01M8B7TTS94HZMYNRKESPDG10Z", ReceivedUnixNano: t0 + 1,
			Host: "web,1", Service: "app \"x\"", Class: "unknown", Certainty: 0.25, Source: "nats",
			Message: "quote \" comma , lt < gt > amp & apos ' line one\nline two\r\nthree\ttab # %(x)",
			Raw:     []byte("raw \xff"),
			Fields: []*schemas.Field{
				{Key: "host", Value: str("a field named like the envelope")},
				{Key: "<weird key=\"x\">", Value: &schemas.Value{Kind: &schemas.Value_Bytes{Bytes: []byte{0, 0xff, 'A'}}}},
				{Key: "ctl", Value: str("nul \x00 bell \x07 esc \x1b[31m")},
				{Key: "bad utf8", Value: str("not utf-8 \xff\xfe end")},
				{Key: "uni", Value: str("emoji 🦜 nbsp\u00a0ls\u2028 bom \ufeff")},
				{Key: "empty", Value: str("")},
				{Key: "eq", Value: str("a=b")},
			},
		},
		{Message: "#bare event, no envelope"},
		{
			Id: "01M8B7TTS94HZMYNRKESPDG110", Message: "types",
			Fields: []*schemas.Field{
				{Key: "f", Value: &schemas.Value{Kind: &schemas.Value_Float{Float: 1.5e-7}}},
				{Key: "nan", Value: &schemas.Value{Kind: &schemas.Value_Float{Float: math.NaN()}}},
				{Key: "b", Value: &schemas.Value{Kind: &schemas.Value_Bool{Bool: false}}},
				{Key: "t", Value: &schemas.Value{Kind: &schemas.Value_TimeUnixNano{TimeUnixNano: t0}}},
				{Key: "list", Value: &schemas.Value{Kind: &schemas.Value_List{List: &schemas.List{Values: []*schemas.Value{num(1), str("two, \"2\""), {}}}}}},
				{Key: "null", Value: &schemas.Value{}},
				{Key: "pid", Value: num(99)},
			},
		},
	}
}

type goldenCase struct {
	name string
	spec Spec
}

var goldenCases = []goldenCase{
	{"json", Spec{Format: JSON}},
	{"json-set", Spec{Format: JSON, Fields: []string{"time", "host", "_host", "pid", "message", "@2"}}},
	{"csv", Spec{Format: CSV, Header: true}},
	{"csv-set", Spec{Format: CSV, Header: true, Fields: []string{"time", "host", "pid", "message", "@"}}},
	{"csv-set-rest-from-3", Spec{Format: CSV, Header: true, Fields: []string{"id", "message", "@3"}}},
	{"csv-one-column", Spec{Format: CSV, Header: true, Fields: []string{"service"}}},
	{"csv-no-header", Spec{Format: CSV, Fields: []string{"id", "message"}}},
	{"html", Spec{Format: HTML, Header: true}},
	{"html-set", Spec{Format: HTML, Header: true, Fields: []string{"time", "host", "message", "@2"}}},
	{"xml", Spec{Format: XML, Header: true}},
	{"xml-set", Spec{Format: XML, Header: true, Fields: []string{"message", "raw_b64", "_host", "pid", "@"}}},
	{"xml-no-header", Spec{Format: XML, Fields: []string{"id", "message"}}},
	{"kv", Spec{Format: KV}},
	{"kv-set", Spec{Format: KV, Fields: []string{"time", "host", "message", "@2"}}},
	{"template", Spec{Format: Template, Template: "%(time) %(host) %(service)[%(pid)]: %(message) (100%%) {%(@)}"}},
}

// goldenMarker is the launch marker every golden file holds after its
// header, so markers are pinned too.
const goldenMarker = "herald sink golden opened -- pid 1"

func render(t testing.TB, spec Spec) []byte {
	t.Helper()
	f, err := Compile(spec)
	if err != nil {
		t.Fatalf("Compile(%+v): %v", spec, err)
	}
	b := append([]byte(nil), f.Header()...)
	b = f.AppendMarker(b, goldenMarker)
	for _, ev := range goldenEvents() {
		b = f.Append(b, ev)
	}
	return append(b, f.Footer()...)
}

func TestGoldenFilesPinEveryFormat(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			got := render(t, tc.spec)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

func TestJSONWithoutASetIsExactlyAppendJSON(t *testing.T) {
	f, err := Compile(Spec{Format: JSON, Header: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.Header() != nil || f.Footer() != nil {
		t.Error("json has no header or footer")
	}
	for i, ev := range goldenEvents() {
		if got, want := f.Append(nil, ev), AppendJSON(nil, ev); !bytes.Equal(got, want) {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestEveryJSONLineParses(t *testing.T) {
	for _, name := range []string{"json", "json-set"} {
		data, err := os.ReadFile(filepath.Join("testdata", name+".golden"))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Errorf("%s line %d: %v: %s", name, i, err, line)
			}
		}
	}
}

// TestCSVIsReadByEncodingCSV proves the golden CSV is what a standard
// reader takes: same number of fields on every record, the marker skipped
// as a comment, the hostile message intact except for encoding/csv's own
// CRLF → LF folding inside quotes.
func TestCSVIsReadByEncodingCSV(t *testing.T) {
	for _, tc := range goldenCases {
		if tc.spec.Format != CSV {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			r := csv.NewReader(bytes.NewReader(render(t, tc.spec)))
			r.Comment = '#'
			recs, err := r.ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			want := len(goldenEvents())
			if tc.spec.Header {
				want++
			}
			if len(recs) != want {
				t.Fatalf("%d records, want %d: %q", len(recs), want, recs)
			}
		})
	}
	recs, err := formattest.ReadCSV(render(t, Spec{Format: CSV, Header: true, Fields: []string{"message", "host", "ctl"}}))
	if err != nil {
		t.Fatal(err)
	}
	ev := goldenEvents()[1]
	if recs[2][0] != ev.Message || recs[2][1] != ev.Host || recs[2][2] != ev.Fields[2].Value.GetStr() {
		t.Errorf("record came back as %q", recs[2])
	}
	if recs[3][0] != "#bare event, no envelope" {
		t.Errorf("a record starting with # must not read as a comment: %q", recs[3])
	}
}

func TestXMLRoundTripsEveryCharacter(t *testing.T) {
	evs := goldenEvents()
	for _, tc := range []struct {
		name   string
		footer bool
	}{{"a complete document", true}, {"a file whose footer is not written yet", false}} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Compile(Spec{Format: XML, Header: true})
			if err != nil {
				t.Fatal(err)
			}
			b := f.AppendMarker(f.Header(), goldenMarker)
			for _, ev := range evs {
				b = f.Append(b, ev)
			}
			if tc.footer {
				b = append(b, f.Footer()...)
			}
			got, err := formattest.ReadXML(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(evs) {
				t.Fatalf("%d events read, want %d", len(got), len(evs))
			}
			for i, ev := range evs {
				if got[i].Envelope["message"] != ev.Message || got[i].Envelope["id"] != ev.Id || got[i].Envelope["host"] != ev.Host {
					t.Errorf("event %d envelope came back as %q", i, got[i].Envelope)
				}
			}
			hostile := got[1].Fields
			want := evs[1].Fields
			for j := range want {
				name := want[j].Key
				if name == "host" {
					name = "_host"
				}
				val := want[j].Value.GetStr()
				if b := want[j].Value.GetBytes(); b != nil {
					val = string(b)
				}
				if hostile[j] != [2]string{name, val} {
					t.Errorf("field %d came back as %q, want %q", j, hostile[j], [2]string{name, val})
				}
			}
		})
	}
}

func TestKVRoundTripsThroughJSONQuoting(t *testing.T) {
	f, err := Compile(Spec{Format: KV, Fields: []string{"message", "@"}})
	if err != nil {
		t.Fatal(err)
	}
	ev := goldenEvents()[1]
	line := string(f.Append(nil, ev))
	if strings.Count(line, "\n") != 1 {
		t.Fatalf("one event must be one line: %q", line)
	}
	pairs := readKV(t, strings.TrimSuffix(line, "\n"))
	if pairs[0] != [2]string{"message", ev.Message} {
		t.Errorf("message came back as %q", pairs[0])
	}
	if pairs[3] != [2]string{"ctl", ev.Fields[2].Value.GetStr()} || pairs[6] != [2]string{"empty", ""} || pairs[7] != [2]string{"eq", "a=b"} {
		t.Errorf("fields came back as %q", pairs)
	}
}

// readKV splits a kv line: bare tokens, or JSON strings.
func readKV(t *testing.T, line string) [][2]string {
	t.Helper()
	var out [][2]string
	token := func() string {
		if line != "" && line[0] == '"' {
			d := json.NewDecoder(strings.NewReader(line))
			var s string
			if err := d.Decode(&s); err != nil {
				t.Fatalf("bad quoted token in %q: %v", line, err)
			}
			line = line[d.InputOffset():]
			return s
		}
		i := strings.IndexAny(line, "= ")
		if i < 0 {
			i = len(line)
		}
		s := line[:i]
		line = line[i:]
		return s
	}
	for line != "" {
		k := token()
		if line == "" || line[0] != '=' {
			t.Fatalf("key %q without =", k)
		}
		line = line[1:]
		v := token()
		out = append(out, [2]string{k, v})
		line = strings.TrimPrefix(line, " ")
	}
	return out
}

func TestBadSpecsAreErrorsNamingTheirKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		key  string
	}{
		{"an unknown format", Spec{Format: "yaml"}, "format"},
		{"a template without format template", Spec{Format: CSV, Template: "%(message)"}, "template"},
		{"format template without a template", Spec{Format: Template}, "template"},
		{"a field set with format template", Spec{Format: Template, Template: "%(message)", Fields: []string{"id"}}, "fields"},
		{"a lone percent sign", Spec{Format: Template, Template: "100% %(message)"}, "template"},
		{"a percent sign at the end", Spec{Format: Template, Template: "%(message) %"}, "template"},
		{"an unclosed placeholder", Spec{Format: Template, Template: "%(message"}, "template"},
		{"an empty placeholder", Spec{Format: Template, Template: "%()"}, "template"},
		{"two rest placeholders", Spec{Format: Template, Template: "%(@) %(@2)"}, "template"},
		{"@0", Spec{Format: CSV, Fields: []string{"id", "@0"}}, "fields[1]"},
		{"@ with a word", Spec{Format: CSV, Fields: []string{"@all"}}, "fields[0]"},
		{"@+2", Spec{Format: CSV, Fields: []string{"@+2"}}, "fields[0]"},
		{"two @ items", Spec{Format: XML, Fields: []string{"@", "message", "@2"}}, "fields[2]"},
		{"a name twice", Spec{Format: KV, Fields: []string{"host", "message", "host"}}, "fields[2]"},
		{"an empty name", Spec{Format: JSON, Fields: []string{""}}, "fields[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.spec)
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("Compile = %v, want a *SpecError", err)
			}
			if se.Key != tc.key {
				t.Errorf("error names %q, want %q (%v)", se.Key, tc.key, err)
			}
		})
	}
}

func TestHeadersAndFootersComeOnlyWithHeader(t *testing.T) {
	for _, format := range Names {
		spec := Spec{Format: format}
		if format == Template {
			spec.Template = "%(message)"
		}
		f, err := Compile(spec)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header() != nil || f.Footer() != nil {
			t.Errorf("%s without header: header %q, footer %q", format, f.Header(), f.Footer())
		}
	}
}

func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"%(time) %(host) %(service): %(message)", "%(@2) 100%%", "%(", "%(x", "%", "%%(a)", "%(_host)%(@)", "%()%(@0)",
	} {
		f.Add(s)
	}
	evs := goldenEvents()
	f.Fuzz(func(t *testing.T, tpl string) {
		fm, err := Compile(Spec{Format: Template, Template: tpl})
		if err != nil {
			var se *SpecError
			if !errors.As(err, &se) || se.Key != "template" {
				t.Fatalf("a bad template must be a template error: %v", err)
			}
			return
		}
		for _, ev := range evs {
			line := fm.Append(nil, ev)
			if !bytes.HasSuffix(line, []byte("\n")) {
				t.Fatalf("no newline: %q", line)
			}
		}
	})
}

func benchEvent() *schemas.Event {
	return &schemas.Event{Id: "01JD5Z5Z5Z5Z5Z5Z5Z5Z5Z5Z5Z", Host: "host", Service: "sshd", Class: "rfc3164", Certainty: 0.9,
		Message: strings.Repeat("message text ", 12), ReceivedUnixNano: 1_700_000_000_000_000_000, TimeUnixNano: 1_700_000_000_000_000_000,
		Fields: []*schemas.Field{{Key: "pri", Value: num(13)}, {Key: "pid", Value: str("1234")}}}
}

// BenchmarkFormat measures one event per iteration in each format, with
// the event BenchmarkAppendJSON uses.
func BenchmarkFormat(b *testing.B) {
	for _, tc := range []goldenCase{
		{"json", Spec{Format: JSON}},
		{"json-set", Spec{Format: JSON, Fields: []string{"time", "host", "message", "@"}}},
		{"csv", Spec{Format: CSV}},
		{"html", Spec{Format: HTML}},
		{"xml", Spec{Format: XML}},
		{"kv", Spec{Format: KV}},
		{"template", Spec{Format: Template, Template: "%(time) %(host) %(service)[%(pid)]: %(message)"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			f, err := Compile(tc.spec)
			if err != nil {
				b.Fatal(err)
			}
			ev := benchEvent()
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf = f.Append(buf[:0], ev)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// FuzzEscapingRoundTrips proves the escaping exact: any message and field
// value comes back from xml unchanged, and from csv and kv unchanged but
// for invalid UTF-8, which becomes U+FFFD byte by byte.
func FuzzEscapingRoundTrips(f *testing.F) {
	for _, s := range []string{"", "a,b\"c\r\nd", "nul \x00 \x1b[31m", "\xff\xfe", "\uFFFE\uFFFF", "]]> <!-- --> &amp;", "#x", " lead", "\u2028"} {
		f.Add(s)
	}
	xf, _ := Compile(Spec{Format: XML, Header: true, Fields: []string{"message", "@"}})
	cf, _ := Compile(Spec{Format: CSV, Header: true, Fields: []string{"message", "@"}})
	kf, _ := Compile(Spec{Format: KV, Fields: []string{"message", "@"}})
	f.Fuzz(func(t *testing.T, s string) {
		ev := &schemas.Event{Message: s, Fields: []*schemas.Field{{Key: s, Value: str(s)}}}
		valid := strings.Map(func(r rune) rune { return r }, s) // invalid bytes → U+FFFD one by one
		evs, err := formattest.ReadXML(append(append(xf.Header(), xf.Append(nil, ev)...), xf.Footer()...))
		if err != nil || len(evs) != 1 {
			t.Fatalf("xml: %v, %d events", err, len(evs))
		}
		if evs[0].Envelope["message"] != s || evs[0].Fields[0][1] != s {
			t.Errorf("xml: %q came back as %q", s, evs[0])
		}
		recs, err := formattest.ReadCSV(append(cf.Header(), cf.Append(nil, ev)...))
		if err != nil || len(recs) != 2 || len(recs[1]) != 2 {
			t.Fatalf("csv: %v, %q", err, recs)
		}
		if recs[1][0] != valid {
			t.Errorf("csv: %q came back as %q", s, recs[1][0])
		}
		line := kf.Append(nil, ev)
		if bytes.Count(line, []byte("\n")) != 1 {
			t.Fatalf("kv: not one line: %q", line)
		}
		rest := strings.TrimPrefix(string(line), "message=")
		k, _, _ := strings.Cut(rest, " ")
		if strings.HasPrefix(rest, `"`) {
			if err := json.NewDecoder(strings.NewReader(rest)).Decode(&k); err != nil {
				t.Fatalf("kv: %v in %q", err, line)
			}
		}
		if k != valid {
			t.Errorf("kv: %q came back as %q", s, k)
		}
	})
}
