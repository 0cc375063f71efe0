package filter

import (
	"strings"
	"testing"

	"github.com/herald-router/herald/schemas"
)

func ev() *schemas.Event {
	return &schemas.Event{Host: "db1", Class: "rfc3164", Message: "disk full", TargetMask: 4, Source: "syslog",
		Fields: []*schemas.Field{
			{Key: "severity", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 2}}},
			{Key: "facility", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 4}}},
			{Key: "pid", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "42"}}},
			{Key: "user", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "ann"}}},
			{Key: "n", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 7}}},
		}}
}

func TestExpressionsSeeTheEnvelopeAndTheFields(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{`host == "db1"`, true},
		{`severity <= 3 && facility == 4`, true},
		{`message contains "disk"`, true},
		{`class startsWith "rfc5424"`, false},
		{`fields.user == "ann"`, true},
		{`fields["n"] > 5`, true},
		{`pid == "42" and source == "syslog"`, true},
		{`"missing" in fields`, false},
		{`mask == 4`, true},
	} {
		p, err := Compile(tc.src)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		got, err := p.Match(ev())
		if err != nil || got != tc.want {
			t.Errorf("%s = %v, %v; want %v", tc.src, got, err, tc.want)
		}
	}
}

func TestTypeErrorsAreCaughtAtCompileTime(t *testing.T) {
	for _, src := range []string{`host == 1`, `severity == "high"`, `host`, `nosuch == 1`, `host ==`, `message + 1 > 0`} {
		if _, err := Compile(src); err == nil {
			t.Errorf("%s compiled; want a config error", src)
		}
	}
}

func TestARecordWithoutSeverityHasMinusOne(t *testing.T) {
	p, _ := Compile(`severity == -1`)
	if ok, _ := p.Match(&schemas.Event{}); !ok {
		t.Error("severity of a record without one must be -1")
	}
}

func TestARunTimeTypeMismatchInFieldsIsAnError(t *testing.T) {
	p, err := Compile(`fields.user > 3`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Match(ev()); err == nil || !strings.Contains(err.Error(), "fields.user > 3") {
		t.Errorf("comparing the string field user with a number: err = %v", err)
	}
}
