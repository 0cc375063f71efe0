package syslog

import (
	"testing"
	"time"

	"github.com/herald-router/herald/schemas"
)

func str(s string) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Str{Str: s}} }
func num(i int64) *schemas.Value  { return &schemas.Value{Kind: &schemas.Value_Int{Int: i}} }
func mapOf(fields ...*schemas.Field) *schemas.Value {
	return &schemas.Value{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: fields}}}
}
func kv(k string, v *schemas.Value) *schemas.Field { return &schemas.Field{Key: k, Value: v} }

var (
	when     = time.Date(2026, 11, 26, 6, 14, 7, 913813000, time.UTC).UnixNano()
	received = time.Date(2026, 11, 26, 6, 14, 8, 0, time.UTC).UnixNano()
)

// fullEvent is what the classifier makes of a received RFC 5424 line.
func fullEvent() *schemas.Event {
	return &schemas.Event{
		Id: "01M8B7TTS94HZMYNRKESPDG10Y", Host: "db1", Service: "postgres", Message: "checkpoint complete",
		TimeUnixNano: when, ReceivedUnixNano: received,
		Fields: []*schemas.Field{
			kv("pri", num(134)), kv("facility", num(16)), kv("severity", num(6)),
			kv("pid", str("4711")), kv("msgid", str("CKPT")),
			kv("sd", mapOf(
				kv("timeQuality", mapOf(kv("tzKnown", str("1")), kv("isSynced", str("0")))),
				kv("origin", mapOf(kv("ip", str("10.0.0.1")))),
			)),
		},
	}
}

func TestLinesAreFormattedAsTheRFCsSay(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   func() *schemas.Event
		f    Formatter
		want string
	}{
		{
			name: "an event received as RFC 5424 goes out with its own PRI, PROCID, MSGID and structured data, after the id element",
			ev:   fullEvent,
			f:    Formatter{Facility: 1, Severity: 5, IDElement: "herald@32473"},
			want: `<134>1 2026-11-26T06:14:07.913813Z db1 postgres 4711 CKPT [herald@32473 id="01M8B7TTS94HZMYNRKESPDG10Y"][timeQuality tzKnown="1" isSynced="0"][origin ip="10.0.0.1"] checkpoint complete`,
		},
		{
			name: "the same event in RFC 3164 keeps PRI, host, tag and pid, and has no place for MSGID or structured data",
			ev:   fullEvent,
			f:    Formatter{RFC3164: true, Facility: 1, Severity: 5, IDElement: "herald@32473", Location: time.UTC},
			want: `<134>Nov 26 06:14:07 db1 postgres[4711]: checkpoint complete`,
		},
		{
			name: "an event without fields gets the default PRI, NILVALUEs and the received time when it has no own time",
			ev: func() *schemas.Event {
				return &schemas.Event{Id: "X1", Message: "plain", ReceivedUnixNano: received}
			},
			f:    Formatter{Facility: 1, Severity: 5},
			want: `<13>1 2026-11-26T06:14:08Z - - - - - plain`,
		},
		{
			name: "the host stand-in and an int pid are used; an empty message leaves out the space before MSG",
			ev: func() *schemas.Event {
				return &schemas.Event{Id: "X2", Service: "app", Fields: []*schemas.Field{kv("pid", num(42))}}
			},
			f:    Formatter{Facility: 3, Severity: 7, Hostname: "relay", IDElement: "herald@32473"},
			want: `<31>1 - relay app 42 - [herald@32473 id="X2"]`,
		},
		{
			name: "SD parameter values escape the quote, the backslash and the closing bracket, and only those",
			ev: func() *schemas.Event {
				return &schemas.Event{Id: "X3", Message: "m", Fields: []*schemas.Field{kv("sd", mapOf(
					kv("ex@1", mapOf(kv("q", str(`say "hi"`)), kv("b", str(`C:\dir`)), kv("r", str("a]b[c")), kv("n", num(-3)))),
				))}}
			},
			f:    Formatter{Facility: 1, Severity: 5},
			want: `<13>1 - - - - - [ex@1 q="say \"hi\"" b="C:\\dir" r="a\]b[c" n="-3"] m`,
		},
		{
			name: "SD names lose the characters they cannot hold, invalid UTF-8 in values becomes U+FFFD, lists are left out",
			ev: func() *schemas.Event {
				return &schemas.Event{Id: "X4", Fields: []*schemas.Field{kv("sd", mapOf(
					kv(`a b="c]`, mapOf(kv("k=v", str("ok \xff")), kv("list", &schemas.Value{Kind: &schemas.Value_List{List: &schemas.List{}}}))),
					kv("notamap", str("ignored")),
				))}}
			},
			f:    Formatter{Facility: 1, Severity: 5},
			want: `<13>1 - - - - - [a_b__c_ k_v="ok ` + "\uFFFD" + `"]`,
		},
		{
			name: "an element with the id element's SD-ID is not written twice",
			ev: func() *schemas.Event {
				return &schemas.Event{Id: "NEW", Fields: []*schemas.Field{kv("sd", mapOf(kv("herald@32473", mapOf(kv("id", str("OLD"))))))}}
			},
			f:    Formatter{Facility: 1, Severity: 5, IDElement: "herald@32473"},
			want: `<13>1 - - - - - [herald@32473 id="NEW"]`,
		},
		{
			name: "header fields are cut to their RFC lengths and spaces and control characters become underscores",
			ev: func() *schemas.Event {
				return &schemas.Event{Host: "my host\n", Service: "a-service-name-that-is-far-longer-than-forty-eight-bytes",
					Fields: []*schemas.Field{kv("msgid", str("0123456789012345678901234567890123456789"))}, Message: "x"}
			},
			f:    Formatter{Facility: 1, Severity: 5},
			want: `<13>1 - my_host_ a-service-name-that-is-far-longer-than-forty-eig - 01234567890123456789012345678901 - x`,
		},
		{
			name: "facility and severity out of range or not integers fall back to the defaults",
			ev: func() *schemas.Event {
				return &schemas.Event{Message: "x", Fields: []*schemas.Field{kv("facility", num(24)), kv("severity", str("3"))}}
			},
			f:    Formatter{Facility: 4, Severity: 2},
			want: `<34>1 - - - - - - x`,
		},
		{
			name: "the message is carried as is: newlines, invalid UTF-8 and a leading space",
			ev: func() *schemas.Event {
				return &schemas.Event{Message: " two\nlines \xff"}
			},
			f:    Formatter{Facility: 1, Severity: 5},
			want: "<13>1 - - - - - -  two\nlines \xff",
		},
		{
			name: "RFC 3164 without service, pid or host uses a dash for host and tag",
			ev: func() *schemas.Event {
				return &schemas.Event{Message: "hello", TimeUnixNano: time.Date(2026, 1, 5, 3, 4, 5, 0, time.UTC).UnixNano()}
			},
			f:    Formatter{RFC3164: true, Facility: 1, Severity: 5, Location: time.UTC},
			want: `<13>Jan  5 03:04:05 - -: hello`,
		},
		{
			name: "RFC 3164 timestamps are in the formatter's zone",
			ev: func() *schemas.Event {
				return &schemas.Event{Host: "h", Service: "s", Message: "m", TimeUnixNano: when}
			},
			f:    Formatter{RFC3164: true, Facility: 1, Severity: 5, Location: time.FixedZone("CET", 3600)},
			want: `<13>Nov 26 07:14:07 h s: m`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(tc.f.Append(nil, tc.ev()))
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestNewlineFramingEscapesNewlinesAsRsyslogDoes(t *testing.T) {
	got := string(escapeNewlines(nil, []byte("a\nb\r\n\n")))
	if want := "a#012b\r#012#012"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCuttingALineNeverSplitsAUTF8Sequence(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"an ASCII line is cut where asked", "abcdef", 4, "abcd"},
		{"a cut inside a three-byte rune drops the rune", "ab€cd", 4, "ab"},
		{"a cut after a whole rune keeps it", "ab€cd", 5, "ab€"},
		{"a cut inside a four-byte rune drops the rune", "a🦜", 3, "a"},
		{"invalid bytes that were there before stay", "a\xff\xfeb", 3, "a\xff\xfe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(cutUTF8([]byte(tc.in), tc.n)); got != tc.want {
				t.Errorf("cutUTF8(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}

// BenchmarkFormat measures one event with a classifier's typical fields.
func BenchmarkFormat(b *testing.B) {
	ev := fullEvent()
	ev.Message = "connection received: host=10.0.0.7 port=51234 user=app database=orders application_name=web-42 ssl=on"
	for _, bc := range []struct {
		name string
		f    Formatter
	}{
		{"rfc5424", Formatter{Facility: 1, Severity: 5, IDElement: "herald@32473"}},
		{"rfc3164", Formatter{RFC3164: true, Facility: 1, Severity: 5, Location: time.UTC}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				buf = bc.f.Append(buf[:0], ev)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
