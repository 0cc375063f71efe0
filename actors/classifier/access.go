package classifier

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/herald-router/herald/schemas"
)

// Access-log field keys, in the order in which they appear in Event.Fields.
const (
	KeyVhost        = "vhost"
	KeyVhostPort    = "vhost_port"
	KeyClient       = "client"
	KeyIdent        = "ident"
	KeyUser         = "user"
	KeyRequest      = "request"
	KeyMethod       = "method"
	KeyPath         = "path"
	KeyProtocol     = "protocol"
	KeyStatus       = "status"
	KeySize         = "size"
	KeyReferer      = "referer"
	KeyAgent        = "agent"
	KeyForwardedFor = "x_forwarded_for"
	KeyCompression  = "compression"
	KeyExtra        = "extra"
	KeyLevel        = "level"
	KeyTid          = "tid"
	KeyConnection   = "connection"
)

// ingress-nginx "upstreaminfo" adds these nine fields after the agent.
var upstreamKeys = [9]string{"request_length", "request_time", "proxy_upstream_name",
	"proxy_alternative_upstream_name", "upstream_addr", "upstream_response_length",
	"upstream_response_time", "upstream_status", "req_id"}

// accessLine is one access-log line taken apart; the byte slices point into
// the record.
type accessLine struct {
	vhost, vhostPort      []byte
	client, ident, user   []byte
	time                  time.Time
	hasTime               bool
	request               []byte
	quotedRequest         bool
	status, size          []byte
	referer, agent        []byte
	combined              bool
	tail                  []byte // what follows the agent
	odd                   int    // deviations from the format
	apacheHint, nginxHint bool
}

// classifyAccess reads an Apache or nginx access-log line ("common" or
// "combined", optionally behind a "vhost:port" and followed by nginx's extra
// fields) or an nginx error-log line.
func classifyAccess(ev *schemas.Event, line []byte, now time.Time) (alt string, altCert float32, ok bool) {
	if isNginxErrorStart(line) {
		return "", 0, classifyNginxError(ev, line, now)
	}
	a, ok := parseAccess(line, now)
	if !ok {
		return "", 0, false
	}
	switch {
	case !a.combined:
		ev.Class, ev.Certainty = ClassApacheCommon, CertaintyAccessCommon
	case a.nginxHint && !a.apacheHint:
		ev.Class, ev.Certainty = ClassNginx, CertaintyAccess
		if len(a.tail) == 0 || a.tail[0] == '"' && bytes.Count(a.tail, []byte{'"'}) == 2 {
			// one more quoted field: Apache can log that too
			alt, altCert = ClassApacheCombined, CertaintyAccessAmbiguous-0.1
		}
	case a.apacheHint && !a.nginxHint:
		ev.Class, ev.Certainty = ClassApacheCombined, CertaintyAccess
	default:
		// nginx's "combined" is Apache's: nothing tells them apart.
		ev.Class, ev.Certainty = ClassApacheCombined, CertaintyAccessAmbiguous
		alt, altCert = ClassNginx, CertaintyAccessAmbiguous-0.1
	}
	ev.Certainty -= float32(a.odd) * CertaintyAccessOddStep
	if ev.Certainty < CertaintyAccessMin {
		ev.Certainty = CertaintyAccessMin
	}
	if altCert > ev.Certainty {
		altCert = ev.Certainty
	}
	fillAccess(ev, &a, line)
	return alt, altCert, true
}

// parseAccess takes an access-log line apart:
//
//	[vhost[:port] ]client ident user [time] "request" status size[ "referer" "agent"[ extra]]
func parseAccess(b []byte, now time.Time) (a accessLine, ok bool) {
	// The words before "[time]": client ident user, perhaps behind a vhost.
	var words [5][]byte
	nw, p := 0, 0
	for p < len(b) && b[p] != '[' {
		if nw == len(words) {
			return a, false
		}
		j := bytes.IndexByte(b[p:], ' ')
		if j <= 0 {
			return a, false
		}
		words[nw] = b[p : p+j]
		nw++
		p += j + 1
	}
	if nw == 0 || p >= len(b) || !isAddrWord(words[0]) {
		return a, false
	}
	switch nw {
	case 3:
		a.client, a.ident, a.user = words[0], words[1], words[2]
	case 4:
		if h, port, ok := splitHostPort(words[0]); ok && isAddrWord(words[1]) {
			a.vhost, a.vhostPort = h, port
			a.client, a.ident, a.user = words[1], words[2], words[3]
			a.apacheHint = true // vhost_combined
		} else {
			// a space in the user name: "- fr ank"
			a.client, a.ident, a.user = words[0], words[1], b[len(words[0])+len(words[1])+2:p-1]
			a.odd++
		}
	default:
		// ident and user missing
		a.client = words[0]
		a.odd++
	}
	if len(a.ident) > 0 && !isDash(a.ident) {
		a.apacheHint = true // nginx writes "-" there
	}

	// [time]
	end := bytes.IndexByte(b[p:], ']')
	if end < 0 || end > 64 {
		return a, false
	}
	stamp := b[p+1 : p+end]
	p += end + 1
	switch t, ok := accessTime(stamp, now.Location()); {
	case ok:
		a.time, a.hasTime = t, true
	case isDash(stamp):
	default:
		a.odd++
	}
	if p >= len(b) || b[p] != ' ' {
		return a, false
	}
	p++

	// "request" status size: the request ends at the quote that is
	// followed by a status and a size, so that quotes the server did not
	// escape stay in the request.
	if p < len(b) && b[p] == '"' {
		q := p + 1
		found := false
		for ; q < len(b); q++ {
			if b[q] == '\\' {
				q++
				continue
			}
			if b[q] == '"' {
				if n := statusSize(b[q+1:]); n > 0 {
					found = true
					break
				}
			}
		}
		if !found {
			// unescaped quotes before an escaped one: look again without
			// honouring escapes
			for q = p + 1; q < len(b); q++ {
				if b[q] == '"' && statusSize(b[q+1:]) > 0 {
					found = true
					break
				}
			}
			if !found {
				return a, false
			}
		}
		a.request, a.quotedRequest = b[p+1:q], true
		if bytes.IndexByte(a.request, '"') >= 0 && !bytes.Contains(a.request, []byte(`\"`)) {
			a.odd++ // the server did not escape a quote
		}
		p = q + 1
	} else {
		// an unquoted "-"
		j := bytes.IndexByte(b[p:], ' ')
		if j < 0 || !isDash(b[p:p+j]) {
			return a, false
		}
		a.request = b[p : p+j]
		a.odd++
		p += j
	}
	n := statusSize(b[p:])
	if n == 0 {
		return a, false
	}
	fields := b[p+1 : p+n]
	sp := bytes.IndexByte(fields, ' ')
	a.status, a.size = fields[:sp], fields[sp+1:]
	if isDash(a.status) {
		a.odd++
	}
	if isDash(a.size) {
		a.apacheHint = true // %b; nginx writes 0
	}
	if a.quotedRequest && len(a.request) == 0 {
		a.nginxHint = true // Apache writes "-" for no request
	}
	if isDash(a.request) {
		a.apacheHint = true
	}
	p += n
	if p >= len(b) {
		return a, true // common
	}
	if b[p] != ' ' {
		return a, false
	}
	p++

	// "referer" "agent"
	a.combined = true
	if ref, n, ok := quoted(b[p:], false); ok && p+n < len(b) && b[p+n] == ' ' {
		a.referer = ref
		p += n + 1
		if agent, n, ok := quoted(b[p:], true); ok {
			a.agent = agent
			p += n
		} else if len(b) > p && b[p] == '"' {
			// truncated: no closing quote
			a.agent = b[p+1:]
			p = len(b)
			a.odd++
		} else {
			return a, false
		}
	} else if bytes.HasPrefix(b[p:], []byte("- -")) && (p+3 == len(b) || b[p+3] == ' ') {
		// referer and agent as bare dashes
		p += 3
		a.odd++
	} else if len(bytes.TrimRight(b[p:], " ")) == 0 {
		a.combined = false
		p = len(b)
		a.odd++
	} else {
		return a, false
	}
	if p < len(b) {
		a.tail = bytes.TrimLeft(b[p:], " ")
		if len(a.tail) > 0 {
			a.nginxHint = true
		}
	}
	return a, true
}

// statusSize matches " status size" (a three-digit status or "-", a size or
// "-") followed by the end or a space, and returns its length.
func statusSize(b []byte) int {
	if len(b) < 4 || b[0] != ' ' {
		return 0
	}
	i := 1
	switch {
	case len(b) >= 5 && isDigit(b[1]) && isDigit(b[2]) && isDigit(b[3]) && b[4] == ' ':
		i = 5
	case b[1] == '-' && b[2] == ' ':
		i = 3
	default:
		return 0
	}
	if i >= len(b) {
		return 0
	}
	if b[i] == '-' {
		i++
	} else {
		s := i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		if i == s {
			return 0
		}
	}
	if i < len(b) && b[i] != ' ' {
		return 0
	}
	return i
}

// quoted reads a double-quoted field at the start of b, honouring the
// backslash escapes Apache and nginx write. The field ends at a quote that
// is followed by the end, or by a space when last is false. n is the length
// including the quotes.
func quoted(b []byte, last bool) (v []byte, n int, ok bool) {
	if len(b) < 2 || b[0] != '"' {
		return nil, 0, false
	}
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			if i+1 == len(b) || b[i+1] == ' ' {
				return b[1:i], i + 1, true
			}
			if !last {
				return nil, 0, false
			}
		}
	}
	return nil, 0, false
}

func isDash(b []byte) bool { return len(b) == 1 && b[0] == '-' }

// isAddrWord reports whether b can be a client address or host name (or
// "-"): letters, digits, '.', ':', '-', '_', '%' and brackets.
func isAddrWord(b []byte) bool {
	if len(b) == 0 || len(b) > 255 {
		return false
	}
	for _, c := range b {
		if !(isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'z' || c == '.' || c == ':' || c == '-' || c == '_' || c == '%' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// splitHostPort splits "host:port" where port is all digits.
func splitHostPort(b []byte) (host, port []byte, ok bool) {
	i := bytes.LastIndexByte(b, ':')
	if i <= 0 || i == len(b)-1 {
		return nil, nil, false
	}
	for _, c := range b[i+1:] {
		if !isDigit(c) {
			return nil, nil, false
		}
	}
	return b[:i], b[i+1:], true
}

// accessTime reads "10/Oct/2000:13:55:36 -0700", or an RFC 3339 stamp.
func accessTime(b []byte, local *time.Location) (time.Time, bool) {
	if len(b) >= 19 && isDigit(b[0]) && b[4] == '-' {
		t, n, ok := isoStamp(b, local)
		return t, ok && n == len(b)
	}
	if len(b) != 26 || b[2] != '/' || b[6] != '/' || b[11] != ':' || b[20] != ' ' {
		return time.Time{}, false
	}
	day, ok1 := num(b, 0, 2)
	year, ok2 := num(b, 7, 4)
	mon := monthIndex(b[3:6])
	hh, mm, ss, _, end, ok3 := clock(b, 12)
	oh, ok4 := num(b, 22, 2)
	om, ok5 := num(b, 24, 2)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || mon == 0 || end != 20 || (b[21] != '+' && b[21] != '-') || oh > 23 || om > 59 {
		return time.Time{}, false
	}
	off := oh*3600 + om*60
	if b[21] == '-' {
		off = -off
	}
	t := time.Date(year, time.Month(mon), day, hh, mm, ss, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, false
	}
	return t.Add(-time.Duration(off) * time.Second), true
}

// monthIndex returns 1..12 for a month name's first three letters (any
// case), 0 otherwise.
func monthIndex(b []byte) int {
	if len(b) < 3 {
		return 0
	}
	for i, m := range months {
		if b[0]|0x20 == m[0] && b[1]|0x20 == m[1] && b[2]|0x20 == m[2] {
			return i + 1
		}
	}
	return 0
}

func fillAccess(ev *schemas.Event, a *accessLine, line []byte) {
	if a.hasTime {
		ev.TimeUnixNano = a.time.UnixNano()
	}
	ev.Host = validString(a.vhost)
	ev.Message = validString(line)
	f := newFieldWriter(16)
	defer f.done(ev)
	if len(a.vhost) > 0 {
		f.str(KeyVhost, a.vhost)
		f.intOrStr(KeyVhostPort, a.vhostPort)
	}
	f.dashStr(KeyClient, a.client)
	f.dashStr(KeyIdent, a.ident)
	f.dashStr(KeyUser, a.user)
	if a.quotedRequest || !isDash(a.request) {
		req := unescapeLogged(a.request)
		f.strS(KeyRequest, req)
		if method, path, proto, ok := splitRequest(req); ok {
			f.strS(KeyMethod, method)
			f.strS(KeyPath, path)
			f.strS(KeyProtocol, proto)
		}
	}
	if !isDash(a.status) {
		f.intOrStr(KeyStatus, a.status)
	}
	if !isDash(a.size) {
		f.intOrStr(KeySize, a.size)
	}
	if a.referer != nil {
		f.strS(KeyReferer, unescapeLogged(a.referer))
	}
	if a.agent != nil {
		f.strS(KeyAgent, unescapeLogged(a.agent))
	}
	if len(a.tail) > 0 {
		fillNginxTail(&f, a.tail)
	}
}

// fillNginxTail adds the fields nginx formats write after the agent:
// ingress-nginx's upstreaminfo, or a quoted "$http_x_forwarded_for" (or
// "$gzip_ratio" when it is a number); anything else goes to "extra".
func fillNginxTail(f *fieldWriter, tail []byte) {
	var tok [10][]byte
	n := 0
	for rest := tail; len(rest) > 0 && n < len(tok); {
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			j = len(rest)
		}
		tok[n] = rest[:j]
		n++
		rest = bytes.TrimLeft(rest[j:], " ")
		if n == len(tok) && len(rest) > 0 {
			n++
		}
	}
	if n == 9 && tok[2][0] == '[' && tok[3][0] == '[' && tok[2][len(tok[2])-1] == ']' && tok[3][len(tok[3])-1] == ']' {
		for i, k := range upstreamKeys {
			v := tok[i]
			if i == 2 || i == 3 {
				v = v[1 : len(v)-1]
			}
			if len(v) == 0 || isDash(v) {
				continue
			}
			switch i {
			case 0, 5, 7:
				f.intOrStr(k, v)
			case 1, 6:
				f.floatOrStr(k, v)
			default:
				f.str(k, v)
			}
		}
		return
	}
	if v, n, ok := quoted(tail, false); ok {
		if isRatio(v) {
			f.floatOrStr(KeyCompression, v)
		} else {
			f.strS(KeyForwardedFor, unescapeLogged(v))
		}
		tail = bytes.TrimLeft(tail[n:], " ")
	}
	if len(tail) > 0 {
		f.str(KeyExtra, tail)
	}
}

func isRatio(b []byte) bool {
	dot := bytes.IndexByte(b, '.')
	if dot <= 0 || dot == len(b)-1 {
		return false
	}
	for i, c := range b {
		if !isDigit(c) && i != dot {
			return false
		}
	}
	return true
}

// splitRequest splits "METHOD path PROTOCOL".
func splitRequest(r string) (method, path, proto string, ok bool) {
	i := 0
	for i < len(r) && r[i] >= 'A' && r[i] <= 'Z' {
		i++
	}
	if i == 0 || i >= len(r) || r[i] != ' ' {
		return "", "", "", false
	}
	j := len(r) - 1
	for j > i && r[j] != ' ' {
		j--
	}
	if j == i || len(r)-j < 6 || r[j+1:j+6] != "HTTP/" {
		return r[:i], r[i+1:], "", true
	}
	return r[:i], r[i+1 : j], r[j+1:], true
}

// unescapeLogged resolves the escapes Apache and nginx write into quoted
// fields (\" \\ \n \t \r and \xHH) when the result is valid UTF-8; binary
// junk (a TLS handshake sent to a plain port) stays as written.
func unescapeLogged(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return validString(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' || i+1 == len(b) {
			out = append(out, c)
			continue
		}
		i++
		switch b[i] {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'x':
			if i+2 < len(b) {
				if v, err := strconv.ParseUint(string(b[i+1:i+3]), 16, 8); err == nil {
					if v < 0x20 || v == 0x7f {
						return validString(b) // control bytes: binary junk
					}
					out = append(out, byte(v))
					i += 2
					continue
				}
			}
			out = append(out, '\\', 'x')
		default:
			out = append(out, b[i])
		}
	}
	if !utf8.Valid(out) {
		return validString(b)
	}
	return string(out)
}

// isNginxErrorStart reports whether b starts like an nginx error-log line:
// "yyyy/mm/dd hh:mm:ss [".
func isNginxErrorStart(b []byte) bool {
	return len(b) > 22 && b[4] == '/' && b[7] == '/' && b[10] == ' ' && b[13] == ':' && b[19] == ' ' && b[20] == '['
}

// classifyNginxError reads an nginx error-log line:
//
//	2025/01/03 16:41:26 [error] 31#31: *3 text, client: a, server: b, request: "GET / HTTP/1.1", host: "h"
func classifyNginxError(ev *schemas.Event, b []byte, now time.Time) bool {
	year, ok1 := num(b, 0, 4)
	mon, ok2 := num(b, 5, 2)
	day, ok3 := num(b, 8, 2)
	hh, mm, ss, _, _, ok4 := clock(b, 11)
	if !ok1 || !ok2 || !ok3 || !ok4 || mon < 1 || mon > 12 {
		return false
	}
	t := time.Date(year, time.Month(mon), day, hh, mm, ss, 0, now.Location())
	if t.Day() != day {
		return false
	}
	p := 21
	end := bytes.IndexByte(b[p:], ']')
	if end <= 0 || end > 8 {
		return false
	}
	level := b[p : p+end]
	p += end + 1
	// " pid#tid: "
	if p >= len(b) || b[p] != ' ' {
		return false
	}
	p++
	hash := bytes.IndexByte(b[p:], '#')
	colon := bytes.IndexByte(b[p:], ':')
	if hash <= 0 || colon <= hash {
		return false
	}
	pid, tid := b[p:p+hash], b[p+hash+1:p+colon]
	if !allDigits(pid) || !allDigits(tid) {
		return false
	}
	p += colon + 1
	msg := bytes.TrimLeft(b[p:], " ")
	var conn []byte
	if len(msg) > 1 && msg[0] == '*' {
		j := 1
		for j < len(msg) && isDigit(msg[j]) {
			j++
		}
		if j > 1 {
			conn, msg = msg[1:j], bytes.TrimLeft(msg[j:], " ")
		}
	}
	var ctx []byte
	if k := bytes.Index(msg, []byte(", client: ")); k >= 0 {
		msg, ctx = msg[:k], msg[k+2:]
	}
	ev.Class, ev.Certainty = ClassNginx, CertaintyNginxError
	ev.TimeUnixNano = t.UnixNano()
	ev.Message = validString(msg)
	f := newFieldWriter(10)
	defer f.done(ev)
	f.str(KeyLevel, level)
	f.str(KeyPid, pid)
	f.str(KeyTid, tid)
	if conn != nil {
		f.intOrStr(KeyConnection, conn)
	}
	// ", key: value" pairs; values may be quoted
	for len(ctx) > 0 {
		k := bytes.Index(ctx, []byte(": "))
		if k <= 0 || bytes.IndexByte(ctx[:k], ' ') >= 0 {
			break
		}
		key := ctx[:k]
		ctx = ctx[k+2:]
		var v []byte
		if q, n, ok := quotedUntilComma(ctx); ok {
			v, ctx = q, ctx[n:]
		} else {
			j := bytes.Index(ctx, []byte(", "))
			if j < 0 {
				j = len(ctx)
			}
			v, ctx = ctx[:j], ctx[j:]
		}
		ctx = bytes.TrimPrefix(ctx, []byte(", "))
		name := string(key)
		if name == "host" {
			name = "http_host" // the request's Host header, not the machine
		}
		f.strS(name, unescapeLogged(v))
	}
	return true
}

// quotedUntilComma reads a quoted value followed by ", " or the end.
func quotedUntilComma(b []byte) (v []byte, n int, ok bool) {
	if len(b) < 2 || b[0] != '"' {
		return nil, 0, false
	}
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			if i+1 == len(b) || b[i+1] == ',' {
				return b[1:i], i + 1, true
			}
		}
	}
	return nil, 0, false
}

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}
