package xmpp

import (
	"encoding/xml"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

func TestEscapedTextParsesBackToWhatXMLCanCarry(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"markup characters become entities", `<a href="x">&amp; 'q' ]]> </body>`},
		{"controls other than tab, LF and CR become U+FFFD", "a\x00b\x01c\x1fd\te\nf"},
		{"invalid UTF-8 becomes U+FFFD byte by byte", "x\xff\xfey\xc3"},
		{"U+FFFE and U+FFFF become U+FFFD", "\ufffe\uffff\ufeff🦜"},
		{"CR survives as a reference", "a\r\nb\rc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, attr := range []bool{false, true} {
				doc := "<x a='" + string(appendEscaped(nil, tc.in, true)) + "'>" + string(appendEscaped(nil, tc.in, false)) + "</x>"
				var v struct {
					A    string `xml:"a,attr"`
					Text string `xml:",chardata"`
				}
				if err := xml.Unmarshal([]byte(doc), &v); err != nil {
					t.Fatalf("escaped text does not parse: %v\n%q", err, doc)
				}
				got := v.Text
				if attr {
					got = v.A
				}
				want := strings.Map(func(r rune) rune {
					if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
						return 0xFFFD
					}
					return r
				}, strings.ToValidUTF8(tc.in, "\x00"))
				want = strings.ReplaceAll(want, "\x00", "\uFFFD")
				if tc.name == "invalid UTF-8 becomes U+FFFD byte by byte" {
					want = "x\uFFFD\uFFFDy\uFFFD"
				}
				if got != want {
					t.Errorf("attr=%v: parsed back as %q, want %q", attr, got, want)
				}
			}
		})
	}
}

func TestCutPointNeverSplitsAnEntityOrACharacter(t *testing.T) {
	e := appendEscaped(nil, strings.Repeat("é&<x>🦜", 50), false)
	for max := 1; max < len(e); max++ {
		n := cutPoint(e, max)
		if n > max {
			t.Fatalf("cutPoint(%d) = %d", max, n)
		}
		for _, part := range [][]byte{e[:n], e[n:]} {
			if err := xml.Unmarshal([]byte("<x>"+string(part)+"</x>"), new(string)); err != nil {
				t.Fatalf("cut at %d of max %d leaves a part that does not parse: %v", n, max, err)
			}
		}
	}
}

func TestThePayloadRoundTripsEveryValueExactly(t *testing.T) {
	str := func(s string) *schemas.Value { return &schemas.Value{Kind: &schemas.Value_Str{Str: s}} }
	ev := &schemas.Event{
		Id: "01ID<&>", TargetMask: math.MaxUint64, Source: "syslog", ReceivedUnixNano: 1795673647913930292,
		Class: "rfc5424", Certainty: 0.75, Host: "h\x00st", Service: "s\r\nv", TimeUnixNano: -5,
		Raw: []byte{0, 0xff, '<'}, Message: "nul \x00 \xff\xfe ]]> <b>&amp;</b>\r\n", Peer: "127.0.0.1:5",
		Fields: []*schemas.Field{
			{Key: "s", Value: str("text\twith\ttabs & <markup>")},
			{Key: "key\nwith newline", Value: str("\ufffe")},
			{Key: "i", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: math.MinInt64}}},
			{Key: "f", Value: &schemas.Value{Kind: &schemas.Value_Float{Float: math.Inf(-1)}}},
			{Key: "g", Value: &schemas.Value{Kind: &schemas.Value_Float{Float: 0.1}}},
			{Key: "b", Value: &schemas.Value{Kind: &schemas.Value_Bool{Bool: true}}},
			{Key: "t", Value: &schemas.Value{Kind: &schemas.Value_TimeUnixNano{TimeUnixNano: 1}}},
			{Key: "by", Value: &schemas.Value{Kind: &schemas.Value_Bytes{Bytes: []byte{1, 2, 3}}}},
			{Key: "null", Value: &schemas.Value{}},
			{Key: "l", Value: &schemas.Value{Kind: &schemas.Value_List{List: &schemas.List{Values: []*schemas.Value{str("a"), {Kind: &schemas.Value_Int{Int: 1}}}}}}},
			{Key: "m", Value: &schemas.Value{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: []*schemas.Field{{Key: "k", Value: str("v\x01")}}}}}},
		},
	}
	data := appendPayload(nil, ev)
	got, err := DecodeEvent(data)
	if err != nil {
		t.Fatalf("DecodeEvent: %v\n%s", err, data)
	}
	if !proto.Equal(got, ev) {
		t.Errorf("round trip changed the event:\n got %v\nwant %v\npayload %s", got, ev, data)
	}
}

func TestTheBodyTemplate(t *testing.T) {
	ev := &schemas.Event{Id: "01X", Host: "web1", Message: "plain", Fields: []*schemas.Field{
		{Key: "host", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "field-host"}}},
		{Key: "n", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 7}}},
	}}
	withR := proto.Clone(ev).(*schemas.Event)
	withR.Fields = append(withR.Fields, &schemas.Field{Key: rMessage, Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "resolved"}}})
	for _, tc := range []struct {
		name, tpl string
		ev        *schemas.Event
		want      string
	}{
		{"the default body is the message", "", ev, "plain"},
		{"the default body prefers the resolved R_message__", "", withR, "resolved"},
		{"placeholders take envelope items and fields", "%(host)/%(_host) n=%(n) %% %(missing).", ev, "web1/field-host n=7 % ."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl, err := compileTemplate(tc.tpl)
			if err != nil {
				t.Fatal(err)
			}
			if got := tpl.render(tc.ev); got != tc.want {
				t.Errorf("render = %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"%x", "%(", "%()", "100%"} {
		if _, err := compileTemplate(bad); err == nil {
			t.Errorf("template %q compiled, want an error", bad)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	valid := func() *Options {
		o := DefaultOptions()
		o.JID, o.PasswordFile = "herald@example.org", "pw"
		o.Push.To = []string{"ops@example.org"}
		return o
	}
	for _, tc := range []struct {
		name   string
		change func(o *Options)
		field  string // "" when valid
	}{
		{"the defaults with a JID, a password and a recipient are valid", func(o *Options) {}, ""},
		{"a JID is required", func(o *Options) { o.JID = "" }, "jid"},
		{"a JID with markup is refused", func(o *Options) { o.JID = "a'b@example.org" }, "jid"},
		{"a password is required", func(o *Options) { o.PasswordFile = "" }, "password_file"},
		{"password and password_file exclude each other", func(o *Options) { o.Password = "x" }, "password"},
		{"insecure_plain needs the explicit flag", func(o *Options) { o.TLS = TLSInsecurePlain }, "insecure"},
		{"insecure_plain with the flag is valid", func(o *Options) { o.TLS, o.Insecure = TLSInsecurePlain, true }, ""},
		{"an unknown TLS mode is refused", func(o *Options) { o.TLS = "maybe" }, "tls"},
		{"an unknown mechanism is refused", func(o *Options) { o.Mechanism = "DIGEST-MD5" }, "mechanism"},
		{"something to send to is required", func(o *Options) { o.Push.To = nil }, "push"},
		{"a room must be a bare JID", func(o *Options) { o.Push.Rooms = []string{"room"} }, "push.rooms[0]"},
		{"the message type is chat, normal or headline", func(o *Options) { o.Push.Type = "groupchat" }, "push.type"},
		{"a node needs its service", func(o *Options) { o.PubSub.Node = "events" }, "pubsub.service"},
		{"a bad template is refused", func(o *Options) { o.Body = "%(" }, "body"},
		{"stanzas of less than 4KiB are refused", func(o *Options) { o.MaxStanzaBytes = 1000 }, "max_stanza_bytes"},
		{"an unknown oversize policy is refused", func(o *Options) { o.Oversize = "drop" }, "oversize"},
		{"a throttle needs a key", func(o *Options) { o.Throttle.Events, o.Throttle.Key = 10, nil }, "throttle.key"},
		{"a throttle needs push recipients", func(o *Options) {
			o.Throttle.Events, o.Push.To, o.PubSub = 10, nil, PubSubOptions{Service: "pubsub.example.org", Node: "n"}
		}, "throttle.events"},
		{"timeouts must be positive", func(o *Options) { o.Timeouts.Confirm = 0 }, "timeouts.confirm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.change(o)
			errs := o.Validate()
			if tc.field == "" {
				if len(errs) > 0 {
					t.Fatalf("Validate = %+v, want none", errs)
				}
				return
			}
			for _, e := range errs {
				if e.Field == tc.field {
					return
				}
			}
			t.Errorf("Validate = %+v, want an error on %s", errs, tc.field)
		})
	}
}

func TestAFailedTransactionDoesNotCountItsEventsTwice(t *testing.T) {
	now := time.Unix(1000, 0)
	th := newThrottle(ThrottleOptions{Events: 2, Window: config.Duration(time.Minute), Key: []string{"host"}, MaxKeys: 10})
	th.now = func() time.Time { return now }
	ev := &schemas.Event{Id: "e", Host: "h"}
	admit := func(n int) (sent int) {
		for range n {
			if ok, _ := th.admit(ev, "b"); ok {
				sent++
			}
		}
		return sent
	}
	th.begin()
	if sent := admit(5); sent != 2 {
		t.Fatalf("sent %d of 5, want 2", sent)
	}
	th.rollback()
	th.begin()
	if sent := admit(5); sent != 2 {
		t.Fatalf("after a rollback sent %d of 5, want 2 again", sent)
	}
	th.commit()
	now = now.Add(time.Minute)
	ds := th.begin()
	if len(ds) != 1 || ds[0].count != 3 {
		t.Fatalf("digests after the window = %+v, want one of 3", ds)
	}
	th.rollback()
	if ds := th.begin(); len(ds) != 1 || ds[0].count != 3 {
		t.Fatalf("after a failed transaction the digest is %+v, want the same one again", ds)
	}
	th.commit()
	if ds := th.begin(); len(ds) != 0 {
		t.Fatalf("a confirmed digest came again: %+v", ds)
	}
	th.commit()
	if ds := th.flush(); len(ds) != 0 {
		t.Fatalf("flush after everything was sent = %+v", ds)
	}
}
