package classifier

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/schemas"
)

// want describes the expected outcome; zero strings must be empty, nil
// fields mean "do not check".
type want struct {
	class     string
	certainty float32
	host      string
	service   string
	message   string
	time      string // RFC 3339, "" for 0
	fields    string // rendered Fields, see renderFields; "-" = not checked
}

// renderFields renders ev.Fields as "k=v k=v" with maps as {k=v ...}.
func renderFields(fs []*schemas.Field) string {
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f.Key)
		b.WriteByte('=')
		renderValue(&b, f.Value)
	}
	return b.String()
}

func renderValue(b *strings.Builder, v *schemas.Value) {
	switch k := v.Kind.(type) {
	case *schemas.Value_Str:
		b.WriteString(`"` + k.Str + `"`)
	case *schemas.Value_Int:
		b.WriteString(strconv.FormatInt(k.Int, 10))
	case *schemas.Value_Map:
		b.WriteByte('{')
		b.WriteString(renderFields(k.Map.Fields))
		b.WriteByte('}')
	case *schemas.Value_Float:
		b.WriteString(strconv.FormatFloat(k.Float, 'g', -1, 64))
	case *schemas.Value_Bool:
		b.WriteString(strconv.FormatBool(k.Bool))
	case *schemas.Value_List:
		b.WriteByte('[')
		for i, x := range k.List.Values {
			if i > 0 {
				b.WriteByte(' ')
			}
			renderValue(b, x)
		}
		b.WriteByte(']')
	case nil:
		b.WriteString("null")
	default:
		b.WriteString("?")
	}
}

// now for the table: 2019-02-08 09:37:49 UTC; stamps without zone are read in
// now's location, UTC here.
var tableNow = time.Date(2019, 2, 8, 9, 37, 49, 0, time.UTC)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want want
	}{
		{"an RFC 5424 example with a BOM before MSG parses strictly",
			"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \uFEFF'su root' failed for lonvick on /dev/pts/8",
			want{ClassRFC5424, 1, "mymachine.example.com", "su", "'su root' failed for lonvick on /dev/pts/8",
				"2003-10-11T22:14:15.003Z", `pri=34 facility=4 severity=2 version=1 msgid="ID47"`}},
		{"an RFC 5424 example with microseconds and an offset keeps its instant",
			"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
			want{ClassRFC5424, 1, "192.0.2.1", "myproc", "%% It's time to make the do-nuts.",
				"2003-08-24T12:14:15.000003Z", `pri=165 facility=20 severity=5 version=1 pid="8710"`}},
		{"RFC 5424 structured data keeps the order of the record",
			`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`,
			want{ClassRFC5424, 1, "mymachine.example.com", "evntslog", "", "2003-10-11T22:14:15.003Z",
				`pri=165 facility=20 severity=5 version=1 msgid="ID47" sd={exampleSDID@32473={iut="3" eventSource="Application" eventID="1011"} examplePriority@32473={class="high"}}`}},
		{"RFC 5424 structured data escapes are resolved",
			`<34>1 2026-07-23T09:30:45+02:00 host app 123 msg [meta@32473 value="escaped\]bracket" quote="\""] payload`,
			want{ClassRFC5424, 1, "host", "app", "payload", "2026-07-23T07:30:45Z",
				`pri=34 facility=4 severity=2 version=1 pid="123" msgid="msg" sd={meta@32473={value="escaped]bracket" quote="""}}`}},
		{"an RFC 5424 record of nil values has no fields beyond PRI and VERSION",
			"<13>1 - - - - - - minimal",
			want{ClassRFC5424, 1, "", "", "minimal", "", `pri=13 facility=1 severity=5 version=1`}},
		{"RFC 5424 keeps a second space before MSG",
			"<13>1 2019-05-15T11:21:57+03:00 domain.tld tag - - -  nosd-sp",
			want{ClassRFC5424, 1, "domain.tld", "tag", " nosd-sp", "2019-05-15T08:21:57Z", "-"}},
		{"an RFC 5424 timestamp without zone is read leniently in local time",
			"<134>1 2009-10-16T11:51:56 exchange MSExchange_ADAccess 20208 - - An application event log entry...",
			want{ClassRFC5424, 0.7, "exchange", "MSExchange_ADAccess", "An application event log entry...",
				"2009-10-16T11:51:56Z", `pri=134 facility=16 severity=6 version=1 pid="20208"`}},
		{"RFC 5424 with broken structured data keeps the header and the message",
			`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource= "Application" eventID="1011"] An application event log entry...`,
			want{ClassRFC5424, 0.7, "mymachine.example.com", "evntslog", "An application event log entry...",
				"2003-10-11T22:14:15.003Z", "-"}},
		{"RFC 5424 without PRI is recognised with less certainty",
			"1 2020-05-22T14:59:09.250-03:00 OX-MX204 OX-CONTEUDO:rpd 6589 - - bgp_listen_accept: Connection attempt",
			want{ClassRFC5424, 0.7, "OX-MX204", "OX-CONTEUDO:rpd", "bgp_listen_accept: Connection attempt",
				"2020-05-22T17:59:09.25Z", `version=1 pid="6589"`}},
		{"a BSD syslog line from RFC 3164 gets host, tag and this year's date",
			"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
			want{ClassRFC3164, 0.9, "mymachine", "su", "'su root' failed for lonvick on /dev/pts/8",
				"2018-10-11T22:14:15Z", `pri=34 facility=4 severity=2`}},
		{"a BSD syslog line with a pid and a trailing CRLF",
			"<15>Jan 10 01:00:00 bzorp openvpn[2499]: PTHREAD support initialized\r\n",
			want{ClassRFC3164, 0.9, "bzorp", "openvpn", "PTHREAD support initialized",
				"2019-01-10T01:00:00Z", `pri=15 facility=1 severity=7 pid="2499"`}},
		{"a BSD syslog line without tag keeps the text as message",
			"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
			want{ClassRFC3164, 0.9, "10.0.0.99", "", "Use the BFG!", "2019-02-05T17:32:18Z", `pri=13 facility=1 severity=5`}},
		{"a tag followed directly by the message is split off",
			"<129>Mar 10 01:00:00 Hostname3 tag:msgnum:3",
			want{ClassRFC3164, 0.9, "Hostname3", "tag", "msgnum:3", "2019-03-10T01:00:00Z", "-"}},
		{"a log-file line without PRI is rfc3164 with less certainty",
			"May 11 10:40:48 scrooge disk-health-nurse[26783]: [ID 702911 user.error] m:SY-mon-full-500",
			want{ClassRFC3164, 0.7, "scrooge", "disk-health-nurse", "[ID 702911 user.error] m:SY-mon-full-500",
				"2019-05-11T10:40:48Z", `pid="26783"`}},
		{"a log-file line without host has only a tag",
			"Jan 11 22:33:44 su: 'su root' failed for luser on /dev/pts/8",
			want{ClassRFC3164, 0.7, "", "su", "'su root' failed for luser on /dev/pts/8", "2019-01-11T22:33:44Z", ""}},
		{"an RFC 3339 timestamp in a BSD line keeps its zone",
			"<13>2026-07-23T09:30:45.123+02:00 host daemon: timestamp variant",
			want{ClassRFC3164, 0.9, "host", "daemon", "timestamp variant", "2026-07-23T07:30:45.123Z", "-"}},
		{"an upper-case month and a year in the stamp are read leniently",
			"<175>Oct 16 2009 23:47:31 hostname tag[1234]: This is a message",
			want{ClassRFC3164, 0.6, "hostname", "tag", "This is a message", "2009-10-16T23:47:31Z", `pri=175 facility=21 severity=7 pid="1234"`}},
		{"a Cisco IOS line with counter and origin host is read leniently",
			"<189>29: foo: *Apr 29 13:58:40.411: %SYS-5-CONFIG_I: Configured from console by console",
			want{ClassRFC3164, 0.6, "foo", "%SYS-5-CONFIG_I", "Configured from console by console",
				"2019-04-29T13:58:40.411Z", `pri=189 facility=23 severity=5`}},
		{"a Cisco ASA line with a year and a colon after the time has no host",
			"<190>Apr 15 2007 21:28:13: %PIX-6-302014: Teardown TCP connection 1688438",
			want{ClassRFC3164, 0.6, "", "%PIX-6-302014", "Teardown TCP connection 1688438", "2007-04-15T21:28:13Z", "-"}},
		{"a PRI followed by text only is a partial rfc3164 record",
			"<13>last message repeated 5 times",
			want{ClassRFC3164, 0.5, "", "", "last message repeated 5 times", "", `pri=13 facility=1 severity=5`}},
		{"an out-of-range PRI is dropped and the rest read without it",
			"<999>Oct 11 22:14:15 mymachine su: failed",
			want{ClassRFC3164, 0.4, "mymachine", "su", "failed", "2018-10-11T22:14:15Z", ""}},
		{"an out-of-range PRI before plain text is unknown",
			"<999>hello",
			want{ClassUnknown, 0, "", "", "<999>hello", "", ""}},
		{"plain text is unknown with the text as message",
			"this is not syslog\n",
			want{ClassUnknown, 0, "", "", "this is not syslog", "", ""}},
		{"an empty record is unknown",
			"",
			want{ClassUnknown, 0, "", "", "", "", ""}},
		{"invalid UTF-8 in an unknown record is replaced",
			"caf\xe9 \xff\xfe",
			want{ClassUnknown, 0, "", "", "caf\uFFFD \uFFFD", "", ""}},
		{"invalid UTF-8 in an RFC 5424 MSG is replaced",
			"<7>1 - bzorp openvpn 2499 - - PTHREAD \xf0\x28\x8c\x28 initialized",
			want{ClassRFC5424, 1, "bzorp", "openvpn", "PTHREAD \uFFFD(\uFFFD( initialized", "", "-"}},
		{"invalid UTF-8 in an RFC 5424 SD value is replaced",
			"<134>1 2024-01-01T00:00:00Z host app 2 - [test@32473 clean=\"ok\" dirty=\"Brain\xa0Twist\"] invalid NBSP",
			want{ClassRFC5424, 0.7, "host", "app", "invalid NBSP", "2024-01-01T00:00:00Z", "-"}},
		{"NUL bytes in a BSD message are kept",
			"<34>Oct 11 22:14:15 mymachine su: a\x00b",
			want{ClassRFC3164, 0.9, "mymachine", "su", "a\x00b", "2018-10-11T22:14:15Z", "-"}},
		{"a TAB in a BSD message is kept",
			"<167>Mar  6 16:57:54 172.20.245.8 test: before HT\tafter HT",
			want{ClassRFC3164, 0.9, "172.20.245.8", "test", "before HT\tafter HT", "2019-03-06T16:57:54Z", "-"}},
		{"a pretty-printed datagram is trimmed around the record",
			"\n   <13>1 2019-02-13T19:48:34+00:00 74794bfb6795 root 8449 - [meta sequenceId=\"1\"] i am foobar\n   ",
			want{ClassRFC5424, 1, "74794bfb6795", "root", "i am foobar", "2019-02-13T19:48:34Z", "-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(tt.raw)
			ev := &schemas.Event{Raw: raw}
			Classify(ev, tableNow)
			if !bytes.Equal(ev.Raw, []byte(tt.raw)) {
				t.Fatalf("Raw changed")
			}
			w := tt.want
			if ev.Class != w.class || ev.Certainty != w.certainty {
				t.Errorf("class %q %.2f, want %q %.2f", ev.Class, ev.Certainty, w.class, w.certainty)
			}
			if ev.Host != w.host {
				t.Errorf("host %q, want %q", ev.Host, w.host)
			}
			if ev.Service != w.service {
				t.Errorf("service %q, want %q", ev.Service, w.service)
			}
			if ev.Message != w.message {
				t.Errorf("message %q, want %q", ev.Message, w.message)
			}
			var wantNano int64
			if w.time != "" {
				tm, err := time.Parse(time.RFC3339Nano, w.time)
				if err != nil {
					t.Fatal(err)
				}
				wantNano = tm.UnixNano()
			}
			if ev.TimeUnixNano != wantNano {
				t.Errorf("time %s, want %s", time.Unix(0, ev.TimeUnixNano).UTC().Format(time.RFC3339Nano), w.time)
			}
			if w.fields != "-" {
				if got := renderFields(ev.Fields); got != w.fields {
					t.Errorf("fields\n got %s\nwant %s", got, w.fields)
				}
			}
			checkEvent(t, ev)
		})
	}
}

func TestYearBoundary(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		now  time.Time
		want time.Time
	}{
		{"a December line read on New Year's Day is last year's",
			"<34>Dec 31 23:59:59 host app: x", time.Date(2024, 1, 1, 0, 0, 5, 0, time.UTC),
			time.Date(2023, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"a January line read on New Year's Eve is next year's",
			"<34>Jan  1 00:00:01 host app: x", time.Date(2023, 12, 31, 23, 59, 50, 0, time.UTC),
			time.Date(2024, 1, 1, 0, 0, 1, 0, time.UTC)},
		{"a line from earlier today is this year's",
			"<34>Jun 15 08:00:00 host app: x", time.Date(2024, 6, 15, 9, 0, 0, 0, time.UTC),
			time.Date(2024, 6, 15, 8, 0, 0, 0, time.UTC)},
		{"a Feb 29 read in a leap year is this year's",
			"Feb 29 01:15:43 host app: x", time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC),
			time.Date(2024, 2, 29, 1, 15, 43, 0, time.UTC)},
		{"a Feb 29 read two years after a leap year is that leap year's",
			"Feb 29 01:15:43 host app: x", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
			time.Date(2024, 2, 29, 1, 15, 43, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &schemas.Event{Raw: []byte(tt.raw)}
			Classify(ev, tt.now)
			if got := time.Unix(0, ev.TimeUnixNano).UTC(); !got.Equal(tt.want) {
				t.Errorf("time %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStampsWithoutZoneAreInTheArrivalTimesZone(t *testing.T) {
	loc := time.FixedZone("X", 2*3600)
	ev := &schemas.Event{Raw: []byte("<34>Oct 11 22:14:15 mymachine su: x")}
	Classify(ev, time.Date(2019, 2, 8, 0, 0, 0, 0, time.UTC).In(loc))
	want := time.Date(2018, 10, 11, 20, 14, 15, 0, time.UTC)
	if got := time.Unix(0, ev.TimeUnixNano).UTC(); !got.Equal(want) {
		t.Errorf("time %v, want %v", got, want)
	}
}

func TestLongAndHostileInputs(t *testing.T) {
	long5424 := "<34>1 2003-10-11T22:14:15.003Z host app - - - " + strings.Repeat("x", 1<<20)
	long3164 := "<34>Oct 11 22:14:15 host app: " + strings.Repeat("y", 1<<20)
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i*131 + i/7)
	}
	for _, raw := range [][]byte{[]byte(long5424), []byte(long3164), garbage,
		[]byte(strings.Repeat("\x00", 1<<20)), []byte("<"), []byte("<1>"), []byte("<1>1"), []byte("<1>1 "),
		[]byte("\r\n"), []byte("Feb 29"), []byte("<34>Oct 11 22:14:15"), []byte("1 - - - - - -")} {
		ev := &schemas.Event{Raw: bytes.Clone(raw)}
		Classify(ev, tableNow)
		if !bytes.Equal(ev.Raw, raw) {
			t.Fatalf("Raw changed")
		}
		checkEvent(t, ev)
	}
	ev := &schemas.Event{Raw: []byte(long5424)}
	Classify(ev, tableNow)
	if ev.Class != ClassRFC5424 || len(ev.Message) != 1<<20 {
		t.Errorf("long RFC 5424: class %s, message length %d", ev.Class, len(ev.Message))
	}
	ev = &schemas.Event{Raw: []byte(long3164)}
	Classify(ev, tableNow)
	if ev.Class != ClassRFC3164 || len(ev.Message) != 1<<20 {
		t.Errorf("long RFC 3164: class %s, message length %d", ev.Class, len(ev.Message))
	}
}

func TestFieldsAlreadyPresentAreKept(t *testing.T) {
	ev := &schemas.Event{
		Raw:    []byte("<34>1 - host app 12 - - x"),
		Fields: []*schemas.Field{{Key: "given", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "v"}}}},
	}
	Classify(ev, tableNow)
	if got, want := renderFields(ev.Fields), `given="v" pri=34 facility=4 severity=2 version=1 pid="12"`; got != want {
		t.Errorf("fields %s, want %s", got, want)
	}
}

// checkEvent asserts the invariants every classified event has.
func checkEvent(t *testing.T, ev *schemas.Event) {
	t.Helper()
	for name, s := range map[string]string{"class": ev.Class, "host": ev.Host, "service": ev.Service, "message": ev.Message} {
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8: %q", name, s)
		}
	}
	var walk func(fs []*schemas.Field)
	walk = func(fs []*schemas.Field) {
		for _, f := range fs {
			if !utf8.ValidString(f.Key) {
				t.Errorf("field key not valid UTF-8: %q", f.Key)
			}
			switch k := f.Value.Kind.(type) {
			case *schemas.Value_Str:
				if !utf8.ValidString(k.Str) {
					t.Errorf("field %s not valid UTF-8: %q", f.Key, k.Str)
				}
			case *schemas.Value_Map:
				walk(k.Map.Fields)
			}
		}
	}
	walk(ev.Fields)
	if ev.Certainty < 0 || ev.Certainty > 1 {
		t.Errorf("certainty %v", ev.Certainty)
	}
	if ev.Class == ClassUnknown && ev.Certainty != 0 {
		t.Errorf("unknown with certainty %v", ev.Certainty)
	}
	if _, err := proto.Marshal(ev); err != nil {
		t.Errorf("Marshal: %v", err)
	}
}

var seeds = []string{
	"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \uFEFF'su root' failed for lonvick on /dev/pts/8",
	`<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`,
	`<29>2 2016-01-15T01:00:43Z some-host-name SEKRETPROGRAM prg - [meta escape="\]\"\\\\\]\""]`,
	"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
	"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
	"<189>29: foo: *Apr 29 13:58:40.411: %SYS-5-CONFIG_I: Configured from console by console",
	"<187>138076: RP/0/RP0/CPU0:Dec 11 12:43:29.227 EST: snmpd[1002]: %SNMP-SNMP-3-AUTH_FAIL : Received",
	"Feb 29 01:15:43: --- testing leap year ---",
	"1 2020-05-22T14:59:09.250-03:00 OX-MX204 OX-CONTEUDO:rpd 6589 - - bgp",
	"<134>1 2009-10-16T11:51:56.1234567890123 exchange MSExchange_ADAccess 20208 - - x",
	"<999>Oct 11 22:14:15 host app: x",
	"<7>2006-10-29 02:00:00.156+01:00",
	"this is not syslog",
	"caf\xe9\x00\xff",
	"",
	`203.0.113.7 - - [04/Mar/2024:10:15:32 +0100] "GET /robots.txt HTTP/1.1" 404 196`,
	`www.example.com:443 ::1 - bob [04/Mar/2024:10:15:35 +0000] "GET /a\"b HTTP/1.1" 200 - "-" "x \xe2\x82\xac"`,
	`0.0.0.0 - - [18/Mar/2023:15:00:00 +0000] "GET / HTTP/2.0" 200 1 "-" "ua" 462 0.050 [up-9000] [] 10.0.50.80:9000 19437 0.049 200 75217`,
	`10.1.2.3 - - [04/Mar/2024:10:15:35 +0000] "" 400 0 "-" "-" "2.75"`,
	`2024/03/04 10:16:02 [warn] 1234#1234: *56789 upstream down, client: 192.0.2.10, request: "GET / HTTP/1.1", host: "a"`,
	`{"time":"2024-03-04T10:17:00.123Z","host":{"name":"db"},"msg":"a\u00e9\ud83d\ude00","n":[1,2.5e3,true,null,{"x":-0}]}`,
	`{"@fields":{"msg":"x"},"time":1709547420500,"big":18446744073709551615}`,
	`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]`,
	`{"msg":"cut off`,
	`ts=2024-03-04T10:18:00Z level=warn app=gateway msg="rate \"limit\" hit\n" bare k=`,
	`a=="1 b="\u1" \x80=c`,
	"From: a@example.org\nReceived: from h1 (h1 [192.0.2.1])\n\tby mx; Mon, 04 Mar 2024 03:12:08 +0100\nSubject: =?utf-8?q?x=E2=9C=93?=\nDate: Mon, 04 Mar 2024 03:12:07 +0100\n\nbody\n",
	"From x Mon Mar  4 04:02:11 2024\nSubject: s\n\nFrom time to time\n",
	"junk\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n- -- text\n-----BEGIN PGP SIGNATURE-----\n\niHUE\n=pQ3a\n-----END PGP SIGNATURE-----\n",
	"-----BEGIN PGP MESSAGE-----garbage\nVersion: \x0b\n\nhF4D\n",
}

func FuzzClassify(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		orig := bytes.Clone(raw)
		ev := &schemas.Event{Raw: raw}
		Classify(ev, tableNow)
		if !bytes.Equal(ev.Raw, orig) {
			t.Fatalf("Raw changed")
		}
		checkEvent(t, ev)
	})
}

func BenchmarkClassify(b *testing.B) {
	lines := []struct{ name, raw string }{
		{"rfc5424", `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry with some text in it`},
		{"rfc5424-nosd", "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su 1234 ID47 - 'su root' failed for lonvick on /dev/pts/8 while doing something rather long here"},
		{"rfc3164", "<34>Oct 11 22:14:15 mymachine sshd[12345]: Accepted publickey for nagios from 192.0.2.1 port 42096 ssh2: RSA SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEF"},
		{"unknown", "this is not syslog at all, just a line of text that someone wrote into a file somewhere and that happens to be long"},
		{"apache_common", `203.0.113.7 - - [04/Mar/2024:10:15:32 +0100] "GET /wp-content/themes/site/style.css?ver=6.4.3 HTTP/1.1" 200 18342`},
		{"apache_combined", `198.51.100.23 - alice [04/Mar/2024:10:15:33 +0100] "POST /login HTTP/1.1" 302 - "https://shop.example.org/cart" "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0"`},
		{"nginx", `10.1.2.3 - - [04/Mar/2024:10:15:35 +0000] "GET /api/v1/items?page=2 HTTP/1.1" 200 877 "-" "okhttp/4.12.0" "203.0.113.9, 10.0.0.5"`},
		{"json", `{"time":"2024-03-04T10:17:00.123Z","level":"info","service":"billing","host":"app-7","msg":"invoice sent","invoice":4711,"amount":12.5}`},
		{"logfmt", `ts=2024-03-04T10:18:00Z level=warn app=gateway host=edge-3 msg="rate limit hit" route=/v1/orders limit=100`},
		{"mail", mailBackup},
		{"pgp", pgpClearSigned},
	}
	now := time.Now()
	for _, l := range lines {
		raw := []byte(l.raw)
		b.Run(l.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				ev := &schemas.Event{Raw: raw}
				Classify(ev, now)
			}
		})
	}
}
