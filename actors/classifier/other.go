package classifier

import (
	"bytes"
	"time"

	"github.com/herald-router/herald/schemas"
)

// candidate is one class a record may be: the event as that classifier
// filled it, and the classifier's own second choice.
type candidate struct {
	ev      *schemas.Event
	alt     string
	altCert float32
}

// classifyOther tries the formats other than syslog on a record the syslog
// parsers did not take (have false), or took with low certainty (have true:
// ev holds that result and competes). Cheap tests of the first bytes decide
// which parsers run; each fills a scratch event; the most certain wins (the
// first on ties, in the order below) and moves into ev. nf0 is the number of
// fields ev had before Classify.
func classifyOther(ev *schemas.Event, line []byte, now time.Time, nf0 int, have bool) bool {
	var cands [5]candidate
	n := 0
	var spare *schemas.Event
	try := func(run func(s *schemas.Event) (alt string, altCert float32, ok bool)) {
		if spare == nil {
			spare = &schemas.Event{}
		}
		if alt, altCert, ok := run(spare); ok {
			cands[n] = candidate{spare, alt, altCert}
			n++
			spare = nil
			return
		}
		spare.Reset()
	}

	start := 0
	for start < len(line) && isSpace(line[start]) {
		start++
	}
	first := byte(0)
	if start < len(line) {
		first = line[start]
	}
	multiline := bytes.IndexByte(line[start:], '\n') >= 0
	var buf Buffer

	if first == '{' || first == '[' {
		try(func(s *schemas.Event) (string, float32, bool) { return "", 0, classifyJSON(s, line, now) })
	}
	if bytes.Contains(line, pgpBegin) {
		buf.Reset(line)
		try(func(s *schemas.Event) (string, float32, bool) { return "", 0, classifyPGP(s, &buf) })
	}
	if multiline && looksLikeHeader(line) {
		buf.Reset(line)
		try(func(s *schemas.Event) (string, float32, bool) { return "", 0, classifyMail(s, &buf, now) })
	}
	if !multiline && first != '{' && (isNginxErrorStart(line) || mayBeAccess(line)) {
		try(func(s *schemas.Event) (string, float32, bool) { return classifyAccess(s, line, now) })
	}
	if first != '{' && first != '[' && bytes.IndexByte(line, '=') >= 0 {
		try(func(s *schemas.Event) (string, float32, bool) { return "", 0, classifyLogfmt(s, line, now) })
	}
	if n == 0 {
		return false
	}

	best := 0
	for i := 1; i < n; i++ {
		if cands[i].ev.Certainty > cands[best].ev.Certainty {
			best = i
		}
	}
	// The runner-up: the best of the other candidates (the syslog result
	// included) and the winner's own second choice.
	runnerUp, runnerCert := cands[best].alt, cands[best].altCert
	for i := 0; i < n; i++ {
		if i != best && cands[i].ev.Certainty > runnerCert {
			runnerUp, runnerCert = cands[i].ev.Class, cands[i].ev.Certainty
		}
	}
	win := cands[best].ev
	if have {
		if ev.Certainty >= win.Certainty {
			addRunnerUp(ev, win.Class, win.Certainty)
			return true
		}
		if ev.Certainty > runnerCert {
			runnerUp, runnerCert = ev.Class, ev.Certainty
		}
	}
	ev.Class, ev.Certainty = win.Class, win.Certainty
	ev.Host, ev.Service, ev.Message, ev.TimeUnixNano = win.Host, win.Service, win.Message, win.TimeUnixNano
	if nf0 == 0 {
		ev.Fields = win.Fields
	} else {
		ev.Fields = append(ev.Fields[:nf0:nf0], win.Fields...)
	}
	if runnerUp != "" {
		addRunnerUp(ev, runnerUp, runnerCert)
	}
	return true
}

// addRunnerUp names the second class when it came close.
func addRunnerUp(ev *schemas.Event, class string, cert float32) {
	if cert <= 0 || ev.Certainty-cert > RunnerUpWindow+1e-6 {
		return
	}
	f := newFieldWriter(2)
	defer f.done(ev)
	f.strS(KeyRunnerUp, class)
	f.floatV(KeyRunnerUpCertainty, float64(cert))
}

// mayBeAccess is the cheap test for an access-log line: "] " followed by a
// quote or dash, somewhere after a first word.
func mayBeAccess(line []byte) bool {
	lim := min(len(line), 400)
	i := bytes.Index(line[:lim], []byte("] "))
	return i > 0 && i+2 < len(line) && (line[i+2] == '"' || line[i+2] == '-') && line[0] != '['
}

// looksLikeHeader is the cheap test for a mail: the first line is an mbox
// "From " line or a "Name:" header.
func looksLikeHeader(line []byte) bool {
	if bytes.HasPrefix(line, []byte("From ")) {
		return true
	}
	lim := min(len(line), 80)
	for i, c := range line[:lim] {
		if c == ':' {
			return i > 0
		}
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return false
}
