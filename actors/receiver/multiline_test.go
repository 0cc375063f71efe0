package receiver

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-router/herald/config"
)

func TestStackTracesAreJoinedIntoOneRecord(t *testing.T) {
	var mu sync.Mutex
	var got []string
	o := MultilineOptions{Timeout: config.Duration(time.Hour), MaxLines: 3}
	j := newJoiner(regexp.MustCompile(`^\d{4}-`), o, 1000, func(b []byte) {
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	})
	for _, l := range []string{
		"  orphan continuation",
		"2026-11-26 ERROR boom",
		"java.lang.IllegalStateException: x",
		"\tat a.b(C.java:1)",
		"\tat d.e(F.java:2)", // the fourth line: max_lines 3 sent the record before
		"2026-11-26 INFO fine",
	} {
		j.line([]byte(l))
	}
	j.close()
	want := []string{
		"  orphan continuation",
		"2026-11-26 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.b(C.java:1)",
		"\tat d.e(F.java:2)",
		"2026-11-26 INFO fine",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("records:\n%q\nwant\n%q", got, want)
	}
}

func TestAQuietConnectionSendsItsRecordAfterTheTimeout(t *testing.T) {
	done := make(chan string, 1)
	j := newJoiner(regexp.MustCompile(`^START`), MultilineOptions{Timeout: config.Duration(50 * time.Millisecond), MaxLines: 100}, 1000,
		func(b []byte) { done <- string(b) })
	j.line([]byte("START one"))
	j.line([]byte("  two"))
	select {
	case r := <-done:
		if r != "START one\n  two" {
			t.Errorf("record %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the record was not sent after the timeout")
	}
	j.close()
}

func TestMultilineOptionsAreChecked(t *testing.T) {
	o := DefaultSyslogOptions()
	o.TCP = "127.0.0.1:5514"
	o.Multiline.Start = "([unclosed"
	o.Multiline.MaxLines = 0
	errs := o.Validate()
	var fields []string
	for _, e := range errs {
		fields = append(fields, e.Field)
	}
	if strings.Join(fields, ",") != "multiline.start,multiline.max_lines" {
		t.Errorf("errors %+v", errs)
	}
}
