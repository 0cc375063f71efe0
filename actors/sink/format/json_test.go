package format

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-router/herald/schemas"
)

func TestAppendJSONWritesValidOrderedJSON(t *testing.T) {
	ev := &schemas.Event{
		Id: "01ABC", Host: "web<1>", Service: "app", Class: "rfc3164", Certainty: 0.9,
		Message:          "quote \" backslash \\ newline \n tab \t nul \x00 bad \xff ls \u2028 <xml>&amp;",
		ReceivedUnixNano: 1_700_000_000_123_456_789,
		Raw:              []byte("raw \xff"),
		Fields: []*schemas.Field{
			{Key: "zeta", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: -3}}},
			{Key: "host", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "clash"}}},
			{Key: "alpha", Value: &schemas.Value{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: []*schemas.Field{
				{Key: "b", Value: &schemas.Value{Kind: &schemas.Value_Bool{Bool: true}}},
				{Key: "a", Value: &schemas.Value{Kind: &schemas.Value_List{List: &schemas.List{Values: []*schemas.Value{
					{Kind: &schemas.Value_Float{Float: 1.5}}, {},
				}}}}},
			}}}}},
		},
	}
	line := AppendJSON(nil, ev)
	if line[len(line)-1] != '\n' || strings.Count(string(line), "\n") != 1 {
		t.Fatalf("want exactly one line, got %q", line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("not valid JSON: %v\n%s", err, line)
	}
	if m["message"] != "quote \" backslash \\ newline \n tab \t nul \x00 bad \ufffd ls \u2028 <xml>&amp;" {
		t.Errorf("message = %q", m["message"])
	}
	if m["raw_b64"] != "cmF3IP8=" {
		t.Errorf("raw bytes that are not UTF-8 must be kept as raw_b64, got %v", m["raw_b64"])
	}
	if m["_host"] != "clash" || m["host"] != "web<1>" {
		t.Errorf("a field named like the envelope must not overwrite it: %v", m)
	}
	if m["received"] != "2023-11-14T22:13:20.123456789Z" {
		t.Errorf("received = %v", m["received"])
	}
	s := string(line)
	order := []string{`"id"`, `"received"`, `"host"`, `"service"`, `"class"`, `"certainty"`, `"message"`, `"raw_b64"`, `"zeta"`, `"_host"`, `"alpha"`}
	last := -1
	for _, k := range order {
		i := strings.Index(s, k)
		if i <= last {
			t.Fatalf("key %s out of order in %s", k, s)
		}
		last = i
	}
	if !strings.Contains(s, `"alpha":{"b":true,"a":[1.5,null]}`) {
		t.Errorf("nested values: %s", s)
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	ev := &schemas.Event{Id: "01JD5Z5Z5Z5Z5Z5Z5Z5Z5Z5Z5Z", Host: "host", Service: "sshd", Class: "rfc3164", Certainty: 0.9,
		Message: strings.Repeat("message text ", 12), ReceivedUnixNano: 1_700_000_000_000_000_000, TimeUnixNano: 1_700_000_000_000_000_000,
		Fields: []*schemas.Field{{Key: "pri", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 13}}}, {Key: "pid", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "1234"}}}}}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], ev)
	}
	b.SetBytes(int64(len(buf)))
}
