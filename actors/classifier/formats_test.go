package classifier

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/herald-router/herald/schemas"
)

// formatNow is the arrival time of the format table: stamps without zone
// are read in its location, UTC.
var formatNow = time.Date(2024, 3, 4, 12, 0, 0, 0, time.UTC)

const mailBackup = "Return-Path: <cron@backup01.example.net>\n" +
	"Received: from mx.example.net (mx.example.net [192.0.2.25])\n" +
	"\tby mail.example.net (Postfix) with ESMTPS id 4TqK2b0x9Pz1\n" +
	"\tfor <ops@example.net>; Mon, 04 Mar 2024 03:12:09 +0100 (CET)\n" +
	"Received: from backup01.example.net (backup01.example.net [198.51.100.12])\n" +
	"\tby mx.example.net (Postfix) with ESMTP id 9C1F2A0033\n" +
	"\tfor <ops@example.net>; Mon, 04 Mar 2024 03:12:08 +0100 (CET)\n" +
	"From: Cron Daemon <cron@backup01.example.net>\n" +
	"To: ops@example.net\n" +
	"Subject: =?utf-8?q?Sicherung_abgeschlossen_=E2=9C=93?=\n" +
	"Date: Mon, 04 Mar 2024 03:12:07 +0100\n" +
	"Message-ID: <20240304021207.1A2B3C@backup01.example.net>\n" +
	"\n" +
	"/usr/local/bin/backup.sh: 42 GiB written, 0 errors\n"

const pgpKey = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n" +
	"Comment: ops signing key 2024\n" +
	"\n" +
	"mDMEZeWgyBYJKwYBBAHaRw8BAQdAq3Jw0l2nQ1bX9mX4Jd2S8s1kC7Vb0Yg0c2l1\n" +
	"bmcga2V5IDIwMjQgPG9wc0BleGFtcGxlLm5ldD6IkwQTFgoAOxYhBKq7\n" +
	"=Xm4Q\n" +
	"-----END PGP PUBLIC KEY BLOCK-----\n"

const pgpClearSigned = "-----BEGIN PGP SIGNED MESSAGE-----\n" +
	"Hash: SHA512\n" +
	"\n" +
	"Maintenance window: 2024-03-05 22:00 UTC\n" +
	"- -----\n" +
	"db-1 and db-2 restart\n" +
	"-----BEGIN PGP SIGNATURE-----\n" +
	"\n" +
	"iHUEARYKAB0WIQSqu6fwYnYx0H1dMyJ0c2lnbmluZyBrZXkFAmXloMkACgkQ\n" +
	"=pQ3a\n" +
	"-----END PGP SIGNATURE-----\n"

func TestClassifyFormats(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want want
	}{
		// Apache and nginx access logs
		{"an Apache common log line has client, request, status and size",
			`203.0.113.7 - - [04/Mar/2024:10:15:32 +0100] "GET /robots.txt HTTP/1.1" 404 196`,
			want{ClassApacheCommon, 0.9, "", "", `203.0.113.7 - - [04/Mar/2024:10:15:32 +0100] "GET /robots.txt HTTP/1.1" 404 196`,
				"2024-03-04T09:15:32Z", `client="203.0.113.7" request="GET /robots.txt HTTP/1.1" method="GET" path="/robots.txt" protocol="HTTP/1.1" status=404 size=196`}},
		{"a combined line with a user and size '-' is Apache's",
			`198.51.100.23 - alice [04/Mar/2024:10:15:33 +0100] "POST /login HTTP/1.1" 302 - "https://shop.example.org/cart" "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0"`,
			want{ClassApacheCombined, 0.8, "", "", "-", "2024-03-04T09:15:33Z",
				`client="198.51.100.23" user="alice" request="POST /login HTTP/1.1" method="POST" path="/login" protocol="HTTP/1.1" status=302 referer="https://shop.example.org/cart" agent="Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0"`}},
		{"a plain combined line could be nginx's too and names it as runner-up",
			`192.0.2.44 - - [04/Mar/2024:10:15:34 +0000] "GET /static/app.js HTTP/2.0" 200 51234 "https://www.example.com/" "curl/8.5.0"`,
			want{ClassApacheCombined, 0.6, "", "", "-", "2024-03-04T10:15:34Z",
				`client="192.0.2.44" request="GET /static/app.js HTTP/2.0" method="GET" path="/static/app.js" protocol="HTTP/2.0" status=200 size=51234 referer="https://www.example.com/" agent="curl/8.5.0" runner_up="nginx" runner_up_certainty=0.5`}},
		{"a vhost_combined line gives the virtual host as host",
			`www.example.com:443 192.0.2.44 - - [04/Mar/2024:10:15:35 +0000] "GET / HTTP/1.1" 200 1043 "-" "Wget/1.21.4"`,
			want{ClassApacheCombined, 0.8, "www.example.com", "", "-", "2024-03-04T10:15:35Z",
				`vhost="www.example.com" vhost_port=443 client="192.0.2.44" request="GET / HTTP/1.1" method="GET" path="/" protocol="HTTP/1.1" status=200 size=1043 referer="-" agent="Wget/1.21.4"`}},
		{"Apache's escapes in the agent are resolved when they make UTF-8",
			`::1 - - [04/Mar/2024:10:15:36 +0000] "GET /price HTTP/1.1" 200 12 "-" "probe \"v2\" \xe2\x82\xac"`,
			want{ClassApacheCombined, 0.6, "", "", "-", "2024-03-04T10:15:36Z",
				`client="::1" request="GET /price HTTP/1.1" method="GET" path="/price" protocol="HTTP/1.1" status=200 size=12 referer="-" agent="probe "v2" €" runner_up="nginx" runner_up_certainty=0.5`}},
		{"binary junk in the request stays as written",
			`198.51.100.99 - - [04/Mar/2024:10:16:00 +0000] "\x16\x03\x01\x02\x00\x01" 400 157 "-" "-"`,
			want{ClassApacheCombined, 0.6, "", "", "-", "2024-03-04T10:16:00Z",
				`client="198.51.100.99" request="\x16\x03\x01\x02\x00\x01" status=400 size=157 referer="-" agent="-" runner_up="nginx" runner_up_certainty=0.5`}},
		{"nginx's main format adds the X-Forwarded-For header",
			`10.1.2.3 - - [04/Mar/2024:10:15:35 +0000] "GET /api/v1/items?page=2 HTTP/1.1" 200 877 "-" "okhttp/4.12.0" "203.0.113.9, 10.0.0.5"`,
			want{ClassNginx, 0.8, "", "", "-", "2024-03-04T10:15:35Z",
				`client="10.1.2.3" request="GET /api/v1/items?page=2 HTTP/1.1" method="GET" path="/api/v1/items?page=2" protocol="HTTP/1.1" status=200 size=877 referer="-" agent="okhttp/4.12.0" x_forwarded_for="203.0.113.9, 10.0.0.5"`}},
		{"an empty request is nginx's way of logging a closed connection",
			`198.51.100.99 - - [04/Mar/2024:10:16:01 +0000] "" 400 0 "-" "-"`,
			want{ClassNginx, 0.8, "", "", "-", "2024-03-04T10:16:01Z",
				`client="198.51.100.99" request="" status=400 size=0 referer="-" agent="-"`}},
		{"an nginx error line gives level, pid and the request context",
			`2024/03/04 10:16:02 [warn] 1234#1234: *56789 upstream server temporarily disabled while connecting to upstream, client: 192.0.2.10, server: api.example.com, request: "GET /health HTTP/1.1", upstream: "http://10.0.0.8:8080/health", host: "api.example.com"`,
			want{ClassNginx, 0.9, "", "", "upstream server temporarily disabled while connecting to upstream", "2024-03-04T10:16:02Z",
				`level="warn" pid="1234" tid="1234" connection=56789 client="192.0.2.10" server="api.example.com" request="GET /health HTTP/1.1" upstream="http://10.0.0.8:8080/health" http_host="api.example.com"`}},
		{"an Apache error line fits no class",
			`[Mon Mar 04 10:17:02.123456 2024] [core:error] [pid 2211:tid 140001] [client 192.0.2.80:51234] AH00126: Invalid URI in request GET /..%2f HTTP/1.1`,
			want{ClassUnknown, 0, "", "", "-", "", ""}},

		// JSON
		{"a JSON line's keys become typed fields in order",
			`{"time":"2024-03-04T10:17:00.123Z","level":"info","service":"billing","host":"app-7","msg":"invoice sent","invoice":4711,"amount":12.5,"paid":true,"tags":["eu","b2b"],"customer":{"id":"c-9","tier":null}}`,
			want{ClassJSON, 1, "app-7", "billing", "invoice sent", "2024-03-04T10:17:00.123Z",
				`time="2024-03-04T10:17:00.123Z" level="info" service="billing" host="app-7" msg="invoice sent" invoice=4711 amount=12.5 paid=true tags=["eu" "b2b"] customer={id="c-9" tier=null}`}},
		{"a JSON time in epoch milliseconds is read",
			`{"level":40,"time":1709547420500,"pid":311,"hostname":"worker-2","msg":"queue slow"}`,
			want{ClassJSON, 1, "worker-2", "", "queue slow", "2024-03-04T10:17:00.5Z", "-"}},
		{"ECS objects under host and service give their names",
			`{"@timestamp":"2024-03-04T10:17:01Z","log.level":"error","message":"disk full","host":{"name":"db-1"},"service":{"name":"postgres-exporter"}}`,
			want{ClassJSON, 1, "db-1", "postgres-exporter", "disk full", "2024-03-04T10:17:01Z", "-"}},
		{"a Bunyan record's name is its service",
			`{"name":"checkout","hostname":"web-4","pid":88,"level":30,"msg":"order placed","time":"2024-03-04T10:17:03.250Z","v":0}`,
			want{ClassJSON, 1, "web-4", "checkout", "order placed", "2024-03-04T10:17:03.25Z", "-"}},
		{"journald's export names host, identifier and microseconds",
			`{"__REALTIME_TIMESTAMP":"1709547424000001","_HOSTNAME":"nas","SYSLOG_IDENTIFIER":"smartd","MESSAGE":"Device: /dev/sda, SMART Usage Attribute: 194 Temperature_Celsius changed from 36 to 38"}`,
			want{ClassJSON, 1, "nas", "smartd", "Device: /dev/sda, SMART Usage Attribute: 194 Temperature_Celsius changed from 36 to 38", "2024-03-04T10:17:04.000001Z", "-"}},
		{"a pretty-printed JSON message is one record",
			"{\n  \"msg\": \"reload\",\n  \"app\": \"haproxy\"\n}\n",
			want{ClassJSON, 1, "", "haproxy", "reload", "", `msg="reload" app="haproxy"`}},
		{"an integer too big for int64 keeps its digits",
			`{"id":18446744073709551615,"ratio":1e400}`,
			want{ClassJSON, 1, "", "", "-", "", `id="18446744073709551615" ratio="1e400"`}},
		{"escapes and surrogate pairs in JSON strings are resolved",
			`{"msg":"tab\there \u00e9 \ud83d\ude00 \ud800 end"}`,
			want{ClassJSON, 1, "", "", "tab\there é 😀 \uFFFD end", "", "-"}},
		{"a truncated JSON object is json with low certainty and no fields",
			`{"msg":"cut off`,
			want{ClassJSON, 0.3, "", "", `{"msg":"cut off`, "", ""}},
		{"JSON followed by more text is json with less certainty",
			`{"a":1} {"b":2}`,
			want{ClassJSON, 0.5, "", "", `{"a":1} {"b":2}`, "", `a=1`}},
		{"a JSON array is one field",
			`[1,"two",false]`,
			want{ClassJSON, 0.8, "", "", `[1,"two",false]`, "", `array=[1 "two" false]`}},

		// logfmt
		{"a logfmt line gives its pairs and envelope",
			`ts=2024-03-04T10:18:00Z level=warn app=gateway host=edge-3 msg="rate limit hit" route=/v1/orders limit=100`,
			want{ClassLogfmt, 0.9, "edge-3", "gateway", "rate limit hit", "2024-03-04T10:18:00Z",
				`ts="2024-03-04T10:18:00Z" level="warn" app="gateway" host="edge-3" msg="rate limit hit" route="/v1/orders" limit="100"`}},
		{"a bare key in logfmt is null and lowers the certainty",
			`level=debug msg=retrying attempt=3 dry-run`,
			want{ClassLogfmt, 0.7, "", "", "retrying", "", `level="debug" msg="retrying" attempt="3" dry-run=null`}},
		{"quoted logfmt values resolve their escapes",
			`err="open \"/etc/app.yaml\": permission denied\n" code=13`,
			want{ClassLogfmt, 0.9, "", "", "-", "", `err="open "/etc/app.yaml": permission denied` + "\n" + `" code="13"`}},
		{"an unterminated quote is logfmt with low certainty",
			`level=error msg="unterminated`,
			want{ClassLogfmt, 0.3, "", "", `unterminated`, "", `level="error" msg="unterminated"`}},
		{"a single pair is logfmt with half certainty",
			`status=ok`,
			want{ClassLogfmt, 0.5, "", "", "status=ok", "", `status="ok"`}},
		{"a duration under service is not a service",
			`at=info method=GET service=18ms status=200`,
			want{ClassLogfmt, 0.9, "", "", "-", "", "-"}},
		{"a sentence with one pair is unknown",
			`the value x=5 was rejected by the validator`,
			want{ClassUnknown, 0, "", "", "the value x=5 was rejected by the validator", "", ""}},

		// mail
		{"a mail header block gives sender host, date, subject and body",
			mailBackup,
			want{ClassMail, 0.9, "backup01.example.net", "", "/usr/local/bin/backup.sh: 42 GiB written, 0 errors", "2024-03-04T02:12:07Z",
				`from="Cron Daemon <cron@backup01.example.net>" to="ops@example.net" subject="Sicherung abgeschlossen ✓" date="Mon, 04 Mar 2024 03:12:07 +0100" message_id="<20240304021207.1A2B3C@backup01.example.net>" received=["from mx.example.net (mx.example.net [192.0.2.25])	by mail.example.net (Postfix) with ESMTPS id 4TqK2b0x9Pz1	for <ops@example.net>; Mon, 04 Mar 2024 03:12:09 +0100 (CET)" "from backup01.example.net (backup01.example.net [198.51.100.12])	by mx.example.net (Postfix) with ESMTP id 9C1F2A0033	for <ops@example.net>; Mon, 04 Mar 2024 03:12:08 +0100 (CET)"]`}},
		{"an mbox message without Date takes the From_ line's time",
			"From logwatch@fw1 Mon Mar  4 04:02:11 2024\nFrom: logwatch@fw1\nSubject: Logwatch for fw1 (Linux)\n\n --- iptables firewall Begin ---\n",
			want{ClassMail, 0.9, "", "", " --- iptables firewall Begin ---", "2024-03-04T04:02:11Z",
				`mbox_from="From logwatch@fw1 Mon Mar  4 04:02:11 2024" from="logwatch@fw1" subject="Logwatch for fw1 (Linux)"`}},
		{"a local submission's host comes from the by part",
			"Received: by backup02.example.net (Postfix, from userid 0)\n\tid 1F00A2; Mon,  4 Mar 2024 04:00:01 +0100 (CET)\nTo: root\nSubject: Cron <root@backup02> run-parts /etc/cron.daily\nDate: Mon,  4 Mar 2024 04:00:01 +0100 (CET)\n\nrun-parts: /etc/cron.daily/logrotate exited with return code 1\n",
			want{ClassMail, 0.9, "backup02.example.net", "", "run-parts: /etc/cron.daily/logrotate exited with return code 1", "2024-03-04T03:00:01Z", "-"}},
		{"headers followed by a body without blank line are mail with less certainty",
			"From: alerts@example.org\nSubject: CPU high\nload average 17.2 on db-3\n",
			want{ClassMail, 0.6, "", "", "load average 17.2 on db-3", "", `from="alerts@example.org" subject="CPU high"`}},
		{"an impossible Date gives no time",
			"From: a@example.org\nDate: Mon, 04 Mar 2024 25:61:00 +0000\nSubject: x\n\nbody\n",
			want{ClassMail, 0.9, "", "", "body", "", "-"}},
		{"key-value lines that name no mail header are not mail",
			"Origin: Debian\nLabel: Debian-Security\n",
			want{ClassUnknown, 0, "", "", "Origin: Debian\nLabel: Debian-Security", "", ""}},

		// PGP
		{"a PGP public key block gives its armour type, headers and checksum",
			pgpKey,
			want{ClassPGP, 1, "", "", strings.TrimSuffix(pgpKey, "\n"), "",
				`armor_type="PGP PUBLIC KEY BLOCK" armor_headers={Comment="ops signing key 2024"} checksum="=Xm4Q"`}},
		{"a clear-signed message gives the signed text without dash escapes",
			"mail junk before\n\n" + pgpClearSigned + "trailing text\n",
			want{ClassPGP, 1, "", "", "Maintenance window: 2024-03-05 22:00 UTC\n-----\ndb-1 and db-2 restart\n", "",
				`armor_type="PGP SIGNED MESSAGE" armor_headers={Hash="SHA512"} signature_armor_type="PGP SIGNATURE" checksum="=pQ3a"`}},
		{"an armour without END line is pgp with less certainty",
			"-----BEGIN PGP MESSAGE-----\n\nhF4DAAAAAAAAAAASAQdA\n",
			want{ClassPGP, 0.7, "", "", "-----BEGIN PGP MESSAGE-----\n\nhF4DAAAAAAAAAAASAQdA", "", `armor_type="PGP MESSAGE"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &schemas.Event{Raw: []byte(tt.raw)}
			Classify(ev, formatNow)
			if !bytes.Equal(ev.Raw, []byte(tt.raw)) {
				t.Fatalf("Raw changed")
			}
			checkWant(t, ev, tt.want)
			checkEvent(t, ev)
		})
	}
}

// checkWant compares ev with w; a message of "-" is not checked.
func checkWant(t *testing.T, ev *schemas.Event, w want) {
	t.Helper()
	if ev.Class != w.class || !near(ev.Certainty, w.certainty) {
		t.Errorf("class %q %.2f, want %q %.2f", ev.Class, ev.Certainty, w.class, w.certainty)
	}
	if ev.Host != w.host {
		t.Errorf("host %q, want %q", ev.Host, w.host)
	}
	if ev.Service != w.service {
		t.Errorf("service %q, want %q", ev.Service, w.service)
	}
	if w.message != "-" && ev.Message != w.message {
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
}

func near(a, b float32) bool { return a-b < 1e-5 && b-a < 1e-5 }

func TestFieldsAlreadyPresentAreKeptForOtherFormats(t *testing.T) {
	given := func() []*schemas.Field {
		return []*schemas.Field{{Key: "given", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "v"}}}}
	}
	for _, tt := range []struct{ name, raw, want string }{
		{"json", `{"msg":"x","n":1}`, `given="v" msg="x" n=1`},
		{"logfmt", `a=1 b=2`, `given="v" a="1" b="2"`},
		{"access", `192.0.2.1 - - [04/Mar/2024:10:15:32 +0000] "GET / HTTP/1.1" 200 5`, `given="v" client="192.0.2.1" request="GET / HTTP/1.1" method="GET" path="/" protocol="HTTP/1.1" status=200 size=5`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := &schemas.Event{Raw: []byte(tt.raw), Fields: given()}
			Classify(ev, formatNow)
			if got := renderFields(ev.Fields); got != tt.want {
				t.Errorf("fields %s, want %s", got, tt.want)
			}
		})
	}
}

func TestATieBetweenSyslogAndLogfmtIsVisible(t *testing.T) {
	// An RFC 3339 stamp and key=value pairs: syslog without PRI takes the
	// first pair for a host name (0.7), logfmt reads three pairs of four
	// words (0.7). Syslog keeps the record; logfmt is named as runner-up.
	ev := &schemas.Event{Raw: []byte(`2024-03-04T10:18:00Z level=info msg=started worker=3`)}
	Classify(ev, formatNow)
	if ev.Class != ClassRFC3164 || !near(ev.Certainty, CertaintyRFC3164NoPRI) {
		t.Errorf("class %s %.2f", ev.Class, ev.Certainty)
	}
	ru, _ := fieldValue(ev.Fields, KeyRunnerUp)
	rc, _ := fieldValue(ev.Fields, KeyRunnerUpCertainty)
	if ru.GetStr() != ClassLogfmt || !near(float32(rc.GetFloat()), CertaintyLogfmtBareWords) {
		t.Errorf("runner-up %s", renderFields(ev.Fields))
	}
}

func TestABetterFormatBeatsALenientSyslogReading(t *testing.T) {
	// go-syslog rejects the header; the lenient reader finds a stamp (0.5).
	// The rest is all pairs (logfmt 0.7 with the stamp as a bare word).
	ev := &schemas.Event{Raw: []byte(`2024-03-04 10:18:00,123 level=info msg="cache warmed" entries=5120`)}
	Classify(ev, formatNow)
	want := `2024-03-04=null 10:18:00,123=null level="info" msg="cache warmed" entries="5120" runner_up="rfc3164" runner_up_certainty=0.5`
	if ev.Class != ClassLogfmt || !near(ev.Certainty, CertaintyLogfmtBareWords) || renderFields(ev.Fields) != want {
		t.Errorf("%s %.2f %s", ev.Class, ev.Certainty, renderFields(ev.Fields))
	}
	if ev.Message != "cache warmed" || ev.Host != "" || ev.TimeUnixNano != 0 {
		t.Errorf("envelope of the syslog reading left over: %q %q %d", ev.Message, ev.Host, ev.TimeUnixNano)
	}
}

func fieldValue(fs []*schemas.Field, key string) (*schemas.Value, bool) {
	for _, f := range fs {
		if f.Key == key {
			return f.Value, true
		}
	}
	return nil, false
}

func TestBuffer(t *testing.T) {
	b := NewBuffer([]byte("one\r\ntwo\n\nfour\n"))
	var got []string
	for {
		l, ok := b.Next()
		if !ok {
			break
		}
		got = append(got, string(l))
	}
	if strings.Join(got, "|") != "one|two||four" {
		t.Fatalf("lines %q", got)
	}
	if b.Lines() != 4 || string(b.Line(0)) != "one" || string(b.Line(3)) != "four" || b.Line(4) != nil || b.Line(-1) != nil {
		t.Errorf("Lines %d, Line(0) %q, Line(3) %q", b.Lines(), b.Line(0), b.Line(3))
	}
	// step back and forth
	if !b.Back() {
		t.Fatal("Back at the end")
	}
	if l, _ := b.Next(); string(l) != "four" {
		t.Errorf("after Back: %q", l)
	}
	b.Back()
	b.Back()
	if l, _ := b.Next(); string(l) != "" || b.Pos() != 3 {
		t.Errorf("two back: %q at %d", l, b.Pos())
	}
	if string(b.Rest()) != "four" {
		t.Errorf("Rest %q", b.Rest())
	}
	b.Rewind()
	if b.Back() {
		t.Error("Back at the first line")
	}
	if l, _ := b.Next(); string(l) != "one" || b.Offset() != 5 {
		t.Errorf("after Rewind: %q, offset %d", l, b.Offset())
	}
	if string(b.Slice(0, 3)) != "one" {
		t.Errorf("Slice %q", b.Slice(0, 3))
	}

	for _, tt := range []struct {
		msg   string
		lines int
	}{{"", 0}, {"\n", 1}, {"a", 1}, {"a\n", 1}, {"a\n\n", 2}, {"\n\n", 2}} {
		b.Reset([]byte(tt.msg))
		n := 0
		for _, ok := b.Next(); ok; _, ok = b.Next() {
			n++
		}
		if n != tt.lines || b.Lines() != tt.lines {
			t.Errorf("%q: Next gave %d lines, Lines %d, want %d", tt.msg, n, b.Lines(), tt.lines)
		}
		for b.Back() {
			n--
		}
		if n != 0 {
			t.Errorf("%q: Back stepped %d lines too few", tt.msg, n)
		}
	}
}
