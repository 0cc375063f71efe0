package classifier

import (
	"bytes"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/rfc3164"
	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/herald-router/herald/schemas"
)

// Class names set by Classify. Each is the last token of the subject
// herald.events.<class> its events go to.
const (
	ClassRFC5424        = "rfc5424"
	ClassRFC3164        = "rfc3164"
	ClassApacheCommon   = "apache_common"
	ClassApacheCombined = "apache_combined"
	ClassNginx          = "nginx"
	ClassJSON           = "json"
	ClassLogfmt         = "logfmt"
	ClassMail           = "mail"
	ClassPGP            = "pgp"
	ClassUnknown        = "unknown"
)

// Certainties set by Classify; see the package documentation.
const (
	CertaintyRFC5424             float32 = 1.0
	CertaintyRFC3164             float32 = 0.9
	CertaintyRFC5424Partial      float32 = 0.7
	CertaintyRFC3164NoPRI        float32 = 0.7
	CertaintyRFC3164Partial      float32 = 0.5
	CertaintyRFC3164Lenient      float32 = 0.6
	CertaintyRFC3164LenientNoPRI float32 = 0.5
	CertaintyRFC3164BadPRI       float32 = 0.4

	CertaintyAccessCommon    float32 = 0.9
	CertaintyAccess          float32 = 0.8
	CertaintyAccessAmbiguous float32 = 0.6
	CertaintyAccessOddStep   float32 = 0.2
	CertaintyAccessMin       float32 = 0.2
	CertaintyNginxError      float32 = 0.9

	CertaintyJSON         float32 = 1.0
	CertaintyJSONArray    float32 = 0.8
	CertaintyJSONTrailing float32 = 0.5
	CertaintyJSONBroken   float32 = 0.3

	CertaintyLogfmt          float32 = 0.9
	CertaintyLogfmtBareWords float32 = 0.7
	CertaintyLogfmtOnePair   float32 = 0.5
	CertaintyLogfmtBroken    float32 = 0.3

	CertaintyMail        float32 = 0.9
	CertaintyMailNoBlank float32 = 0.6
	CertaintyMailThin    float32 = 0.5

	CertaintyPGP        float32 = 1.0
	CertaintyPGPOddStep float32 = 0.3
	CertaintyPGPMin     float32 = 0.3

	CertaintyUnknown float32 = 0
)

// RunnerUpWindow is how close (in certainty) the best other class must come
// to the winner to be named in the runner_up fields.
const RunnerUpWindow float32 = 0.25

// Field keys, in the order in which they appear in Event.Fields.
const (
	KeyPri      = "pri"
	KeyFacility = "facility"
	KeySeverity = "severity"
	KeyVersion  = "version"
	KeyPid      = "pid"
	KeyMsgID    = "msgid"
	KeySD       = "sd"

	// KeyRunnerUp names the class that came second when its certainty is
	// within RunnerUpWindow of the winner's; KeyRunnerUpCertainty is its
	// certainty (Float). Both come after the class's own fields.
	KeyRunnerUp          = "runner_up"
	KeyRunnerUpCertainty = "runner_up_certainty"
)

// The go-syslog machines are not safe for concurrent use: keep one per
// goroutine in a pool.
var (
	pool5424 = sync.Pool{New: func() any {
		return rfc5424.NewMachine(rfc5424.WithBestEffort())
	}}
	pool5424NoPRI = sync.Pool{New: func() any {
		return rfc5424.NewMachine(rfc5424.WithBestEffort(), rfc5424.WithOptionalPriority())
	}}
	pool3164 = sync.Pool{New: func() any {
		return rfc3164.NewMachine(
			rfc3164.WithBestEffort(),
			rfc3164.WithOptionalPriority(),
			rfc3164.WithRFC3339(),
			rfc3164.WithSecondFractions(),
			rfc3164.WithLenientDay(),
			rfc3164.WithEmbeddedNewlines(),
		)
	}}
)

// Classify recognises ev.Raw and fills ev's Class, Certainty, Host, Service,
// TimeUnixNano, Message and Fields. ev.Raw is never modified. now is the arrival
// time, used for year inference of RFC 3164 timestamps without a year; a
// timestamp without zone is read in now's location (time.Local for herald's
// receivers), so callers choose the zone without touching time.Local.
//
// Fields already present on ev are kept; the parsed ones are appended.
func Classify(ev *schemas.Event, now time.Time) {
	// Host, service and time pre-set by the intake (herald ingest -h/-s/-d,
	// a file receiver's host/service, a mail's headers) stand when the
	// record carries none of its own.
	preHost, preService, preTime := ev.Host, ev.Service, ev.TimeUnixNano
	defer func() {
		if ev.Host == "" {
			ev.Host = preHost
		}
		if ev.Service == "" {
			ev.Service = preService
		}
		if ev.TimeUnixNano == 0 {
			ev.TimeUnixNano = preTime
		}
	}()
	line := trimEOL(ev.Raw)
	nf0 := len(ev.Fields)
	ev.Class, ev.Certainty = ClassUnknown, CertaintyUnknown
	ev.Host, ev.Service, ev.Message, ev.TimeUnixNano = "", "", "", 0

	// A record may start with blank space (a pretty-printed datagram): look
	// past it for a PRI, but keep the record as is otherwise.
	body := line
	if len(body) > 0 && isSpace(body[0]) {
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '<' {
			body = bytes.TrimRight(t, " \t\r\n")
		}
	}

	_, n := parsePRI(body)
	switch {
	case n > 0:
		if looksLikeVersion(body[n:]) && classify5424(ev, body, false, now.Location()) {
			return
		}
		if classify3164(ev, body, now, CertaintyRFC3164, CertaintyRFC3164Partial) {
			return
		}
	case n < 0:
		// Something like a PRI that is not valid ("<999>", "<002>"): read
		// the rest as a line without PRI.
		if rest := body[-n:]; len(rest) > 0 && rest[0] != '<' {
			if classify3164(ev, rest, now, CertaintyRFC3164BadPRI, 0) {
				return
			}
		}
	default:
		if len(body) > 2 && body[0] == '1' && body[1] == ' ' && (body[2] == '-' || isDigit(body[2])) &&
			classify5424(ev, body, true, now.Location()) {
			return
		}
		if classify3164(ev, body, now, CertaintyRFC3164NoPRI, 0) {
			if ev.Certainty <= CertaintyRFC3164NoPRI {
				// a timestamp and words: let the other formats compete
				classifyOther(ev, line, now, nf0, true)
			}
			return
		}
		if classifyOther(ev, line, now, nf0, false) {
			return
		}
	}
	ev.Class, ev.Certainty = ClassUnknown, CertaintyUnknown
	ev.Host, ev.Service, ev.TimeUnixNano = "", "", 0
	ev.Message = validString(line)
}

// trimEOL strips trailing CR and LF bytes.
func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parsePRI reads "<PRIVAL>" at the start of b. It returns the value and the
// length of the PRI part; n is 0 when b does not start with something like a
// PRI, and negative (minus the length) when it does but PRIVAL is invalid
// (out of range, leading zero, empty or more than three digits).
func parsePRI(b []byte) (pri uint8, n int) {
	if len(b) < 3 || b[0] != '<' {
		return 0, 0
	}
	i := 1
	v := 0
	for i < len(b) && i <= 6 && isDigit(b[i]) {
		v = v*10 + int(b[i]-'0')
		i++
	}
	if i == 1 || i >= len(b) || b[i] != '>' {
		return 0, 0
	}
	digits := i - 1
	if digits > 3 || v > 191 || (digits > 1 && b[1] == '0') {
		return 0, -(i + 1)
	}
	return uint8(v), i + 1
}

// looksLikeVersion reports whether b starts with an RFC 5424 VERSION and SP
// (or ends right after the VERSION).
func looksLikeVersion(b []byte) bool {
	if len(b) == 0 || b[0] < '1' || b[0] > '9' {
		return false
	}
	for i := 1; i < len(b) && i <= 3; i++ {
		if b[i] == ' ' {
			return true
		}
		if !isDigit(b[i]) {
			return false
		}
	}
	return false
}

// validString converts b to a valid UTF-8 string.
func validString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// valid makes s valid UTF-8.
func valid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// fieldBlock holds the storage of the header fields of one event, so that
// they cost one allocation instead of three each.
type fieldBlock struct {
	fields [7]schemas.Field
	values [7]schemas.Value
	ints   [4]schemas.Value_Int
	strs   [2]schemas.Value_Str
	nf     int
	ni     int
	ns     int
}

func (b *fieldBlock) addInt(ev *schemas.Event, key string, v int64) {
	iv := &b.ints[b.ni]
	b.ni++
	iv.Int = v
	b.add(ev, key, iv)
}

func (b *fieldBlock) addStr(ev *schemas.Event, key, v string) {
	sv := &b.strs[b.ns]
	b.ns++
	sv.Str = valid(v)
	b.add(ev, key, sv)
}

func (b *fieldBlock) add(ev *schemas.Event, key string, kind any) {
	f, v := &b.fields[b.nf], &b.values[b.nf]
	b.nf++
	switch k := kind.(type) {
	case *schemas.Value_Int:
		v.Kind = k
	case *schemas.Value_Str:
		v.Kind = k
	case *schemas.Value_Map:
		v.Kind = k
	}
	f.Key, f.Value = key, v
	ev.Fields = append(ev.Fields, f)
}

// growFields makes room for n more fields in one allocation.
func growFields(ev *schemas.Event, n int) {
	if cap(ev.Fields)-len(ev.Fields) < n {
		fs := make([]*schemas.Field, len(ev.Fields), len(ev.Fields)+n)
		copy(fs, ev.Fields)
		ev.Fields = fs
	}
}

func addPRI(ev *schemas.Event, b *fieldBlock, m *syslog.Base) {
	if m.Priority == nil {
		return
	}
	p := int64(*m.Priority)
	b.addInt(ev, KeyPri, p)
	b.addInt(ev, KeyFacility, p/8)
	b.addInt(ev, KeySeverity, p%8)
}

// classify5424 parses an RFC 5424 record. body starts with a valid PRI
// followed by what looks like a VERSION, or (noPRI) with "1 ".
//
// When go-syslog rejects a header part (a timestamp without zone or with
// more than six fraction digits, an APP-NAME longer than 48 octets ...), the
// part is replaced by NILVALUE and the record parsed again; the part is then
// taken as written (a timestamp read leniently). Such records, records that
// go-syslog parses only part way and records without PRI get
// CertaintyRFC5424Partial.
func classify5424(ev *schemas.Event, body []byte, noPRI bool, local *time.Location) bool {
	pool := &pool5424
	if noPRI {
		pool = &pool5424NoPRI
	}
	m := pool.Get().(syslog.Machine)
	defer pool.Put(m)
	res, err := m.Parse(body)
	sm, _ := res.(*rfc5424.SyslogMessage)
	if sm == nil || !sm.Valid() || (sm.Priority == nil) != noPRI {
		return false
	}

	// Replace rejected header parts by "-" and parse again.
	var over [6][]byte // over[k]: header part k as written, when rejected
	overridden := false
	for tries := 0; err != nil && tries < 5; tries++ {
		k := headerPart(err.Error())
		if k == 0 || over[k] != nil {
			break
		}
		start, end, ok := partBounds(body, k)
		if !ok || end == start {
			break
		}
		over[k] = body[start:end]
		nb := make([]byte, 0, len(body)-(end-start)+1)
		nb = append(nb, body[:start]...)
		nb = append(nb, '-')
		nb = append(nb, body[end:]...)
		res2, err2 := m.Parse(nb)
		sm2, _ := res2.(*rfc5424.SyslogMessage)
		if sm2 == nil || !sm2.Valid() {
			over[k] = nil
			break
		}
		body, sm, err, overridden = nb, sm2, err2, true
	}

	ev.Class = ClassRFC5424
	ev.Certainty = CertaintyRFC5424
	if err != nil || overridden || noPRI {
		ev.Certainty = CertaintyRFC5424Partial
	}
	ev.Host = valid(deref(sm.Hostname))
	if over[2] != nil {
		ev.Host = validString(over[2])
	}
	ev.Service = valid(deref(sm.Appname))
	if over[3] != nil {
		ev.Service = validString(over[3])
	}
	if sm.Timestamp != nil {
		ev.TimeUnixNano = sm.Timestamp.UnixNano()
	} else if over[1] != nil {
		if t, n, ok := isoStamp(over[1], local); ok && n == len(over[1]) {
			ev.TimeUnixNano = t.UnixNano()
		}
	}
	switch {
	case sm.Message != nil:
		msg := *sm.Message
		msg = strings.TrimPrefix(msg, "\uFEFF")
		ev.Message = valid(msg)
	case err != nil:
		// The parser stopped in STRUCTURED-DATA or MSG: MSG is what
		// follows something that looks like STRUCTURED-DATA.
		ev.Message = validString(bytes.TrimPrefix(skipSD(sdStart(body)), []byte("\uFEFF")))
	}

	pid, msgid := sm.ProcID, sm.MsgID
	if over[4] != nil {
		s := string(over[4])
		pid = &s
	}
	if over[5] != nil {
		s := string(over[5])
		msgid = &s
	}
	n := 4
	if pid != nil {
		n++
	}
	if msgid != nil {
		n++
	}
	if sm.StructuredData != nil {
		n++
	}
	growFields(ev, n)
	b := &fieldBlock{}
	addPRI(ev, b, &sm.Base)
	b.addInt(ev, KeyVersion, int64(sm.Version))
	if pid != nil {
		b.addStr(ev, KeyPid, *pid)
	}
	if msgid != nil {
		b.addStr(ev, KeyMsgID, *msgid)
	}
	if sm.StructuredData != nil {
		b.add(ev, KeySD, &schemas.Value_Map{Map: sdMap(body, *sm.StructuredData)})
	}
	return true
}

// headerPart maps a go-syslog RFC 5424 error to the header part it is about:
// 1 TIMESTAMP, 2 HOSTNAME, 3 APP-NAME, 4 PROCID, 5 MSGID; 0 for others.
func headerPart(e string) int {
	switch {
	case strings.HasPrefix(e, rfc5424.ErrTimestamp), strings.HasPrefix(e, "parsing time"):
		return 1
	case strings.HasPrefix(e, rfc5424.ErrHostname):
		return 2
	case strings.HasPrefix(e, rfc5424.ErrAppname):
		return 3
	case strings.HasPrefix(e, rfc5424.ErrProcID):
		return 4
	case strings.HasPrefix(e, rfc5424.ErrMsgID):
		return 5
	}
	return 0
}

// partBounds finds header part k (0 is "<PRI>VERSION") of an RFC 5424
// record: parts are separated by single spaces.
func partBounds(body []byte, k int) (start, end int, ok bool) {
	for i := 0; i < k; i++ {
		j := bytes.IndexByte(body[start:], ' ')
		if j < 0 {
			return 0, 0, false
		}
		start += j + 1
	}
	end = start
	for end < len(body) && body[end] != ' ' {
		end++
	}
	return start, end, true
}

// skipSD returns what follows STRUCTURED-DATA (NILVALUE or SD-ELEMENTs,
// read loosely: quoted values may hold ']') and the SP after it. If b does
// not start with something like STRUCTURED-DATA, b is returned.
func skipSD(b []byte) []byte {
	if len(b) > 0 && b[0] == '-' && (len(b) == 1 || b[1] == ' ') {
		return b[min(2, len(b)):]
	}
	if len(b) == 0 || b[0] != '[' {
		return b
	}
	inQuote := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == ']' && !inQuote:
			if i+1 == len(b) {
				return nil
			}
			if b[i+1] == ' ' {
				return b[i+2:]
			}
		}
	}
	return b
}

// sdMap converts go-syslog's structured data into a Map in the order of the
// record. go-syslog gives a Go map (no order) with the escapes resolved; the
// order comes from a scan of the record, the values from go-syslog. Anything
// the scan misses is appended in sorted order. All Fields and Values come
// from a few slabs.
func sdMap(body []byte, sd map[string]map[string]string) *schemas.Map {
	total := 0
	for _, p := range sd {
		total += len(p)
	}
	s := sdSlab{
		fields: make([]schemas.Field, len(sd)+total),
		values: make([]schemas.Value, len(sd)+total),
		strs:   make([]schemas.Value_Str, total),
		maps:   make([]schemas.Map, len(sd)),
		mapVal: make([]schemas.Value_Map, len(sd)),
		ptrs:   make([]*schemas.Field, len(sd)+total),
	}
	out := &schemas.Map{Fields: s.ptrs[:0:len(sd)]}
	s.ptrs = s.ptrs[len(sd):]

	// One string of the STRUCTURED-DATA part gives the keys without an
	// allocation each (SD-IDs and PARAM-NAMEs have no escapes).
	start := sdStart(body)
	sds := string(start[:len(start)-len(skipSD(start))])
	var cur *schemas.Map
	var curParams map[string]string
	scanSD(sds, func(id string) {
		cur, curParams = nil, nil
		if p, ok := sd[id]; ok && !hasKey(out.Fields, id) {
			cur, curParams = s.elem(out, id, len(p)), p
		}
	}, func(name string) {
		if cur == nil {
			return
		}
		if v, ok := curParams[name]; ok && !hasKey(cur.Fields, name) {
			s.param(cur, name, v)
		}
	}, func() {
		if cur != nil && len(cur.Fields) < len(curParams) {
			for _, k := range sortedKeys(curParams) {
				if !hasKey(cur.Fields, k) {
					s.param(cur, k, curParams[k])
				}
			}
		}
		cur = nil
	})
	if len(out.Fields) < len(sd) {
		for _, id := range sortedKeys(sd) {
			if !hasKey(out.Fields, id) {
				p := sd[id]
				m := s.elem(out, id, len(p))
				for _, k := range sortedKeys(p) {
					s.param(m, k, p[k])
				}
			}
		}
	}
	return out
}

// sdSlab is the storage of the SD fields of one event.
type sdSlab struct {
	fields []schemas.Field
	values []schemas.Value
	strs   []schemas.Value_Str
	maps   []schemas.Map
	mapVal []schemas.Value_Map
	ptrs   []*schemas.Field
	nf     int
}

func (s *sdSlab) field(key string) (*schemas.Field, *schemas.Value) {
	f, v := &s.fields[s.nf], &s.values[s.nf]
	s.nf++
	f.Key, f.Value = valid(key), v
	return f, v
}

// elem adds SD-ELEMENT id with room for n params to out.
func (s *sdSlab) elem(out *schemas.Map, id string, n int) *schemas.Map {
	f, v := s.field(id)
	m, mv := &s.maps[0], &s.mapVal[0]
	s.maps, s.mapVal = s.maps[1:], s.mapVal[1:]
	m.Fields = s.ptrs[:0:n]
	s.ptrs = s.ptrs[n:]
	mv.Map = m
	v.Kind = mv
	out.Fields = append(out.Fields, f)
	return m
}

func (s *sdSlab) param(m *schemas.Map, name, value string) {
	f, v := s.field(name)
	sv := &s.strs[0]
	s.strs = s.strs[1:]
	sv.Str = valid(value)
	v.Kind = sv
	m.Fields = append(m.Fields, f)
}

func hasKey(fs []*schemas.Field, k string) bool {
	for _, f := range fs {
		if f.Key == k {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// sdStart returns body from STRUCTURED-DATA on: after six SP-separated
// header parts.
func sdStart(body []byte) []byte {
	for i := 0; i < 6; i++ {
		j := bytes.IndexByte(body, ' ')
		if j < 0 {
			return nil
		}
		body = body[j+1:]
	}
	return body
}

// scanSD walks the SD-ELEMENTs at the start of b: elem is called with each
// SD-ID, param with each PARAM-NAME, end after each element. It stops at the
// first thing it does not expect.
func scanSD(b string, elem func(id string), param func(name string), end func()) {
	for len(b) > 0 && b[0] == '[' {
		b = b[1:]
		i := 0
		for i < len(b) && b[i] != ' ' && b[i] != ']' {
			i++
		}
		if i == 0 || i == len(b) {
			return
		}
		elem(b[:i])
		b = b[i:]
		for len(b) > 0 && b[0] == ' ' {
			b = b[1:]
			k := strings.IndexByte(b, '=')
			if k <= 0 || k+1 >= len(b) || b[k+1] != '"' {
				return
			}
			param(b[:k])
			b = b[k+2:]
			// the value ends at the first '"' not escaped by '\'
			j := 0
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(b) {
				return
			}
			b = b[j+1:]
		}
		if len(b) == 0 || b[0] != ']' {
			return
		}
		b = b[1:]
		end()
	}
}

// classify3164 parses an RFC 3164 record, with or without PRI. cert is the
// certainty of a clean parse; partialCert that of a record whose PRI is valid
// but whose header is not (0: such a record is not rfc3164).
//
// go-syslog decides whether the header is clean and gives PRI, timestamp and
// hostname; TAG, PID and MSG are split off the text after the header here,
// because go-syslog's TAG is only reliable with "TAG: " and its MSG keeps the
// tag otherwise. Headers that go-syslog rejects (upper-case months, a year
// in the stamp, a colon after the time, Cisco counters, RFC 3339 stamps
// without zone or with long fractions ...) are read by a lenient parser with
// a lower certainty.
func classify3164(ev *schemas.Event, body []byte, now time.Time, cert, partialCert float32) bool {
	if len(body) == 0 || body[0] != '<' && !stampStart(body[skipSpaces(body):]) {
		return false // without PRI a timestamp must come first
	}
	// go-syslog rejects control characters in MSG (except TAB, CR, LF):
	// parse up to the first one; the message is taken from body anyway.
	cut := len(body)
	for i, c := range body {
		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f {
			cut = i
			break
		}
	}
	m := pool3164.Get().(syslog.Machine)
	res, err := m.Parse(body[:cut])
	pool3164.Put(m)
	sm, _ := res.(*rfc3164.SyslogMessage)

	_, n := parsePRI(body)
	if n < 0 {
		n = 0
	}
	hdr := body[n:]
	if sm != nil && sm.Timestamp != nil && (err == nil || sm.Priority != nil) {
		sp := skipSpaces(hdr)
		if t, n, ok := lenientStamp(hdr[sp:], now); ok {
			ev.Class, ev.Certainty = ClassRFC3164, cert
			if err != nil && partialCert != 0 {
				ev.Certainty = partialCert
			}
			fill3164(ev, sm, t, deref(sm.Hostname), "", hdr[sp+n:])
			return true
		}
	}
	// go-syslog did not get the header: try the lenient reading.
	if ts, rest, ciscoHost, ok := lenientHeader(hdr, now); ok {
		ev.Class, ev.Certainty = ClassRFC3164, CertaintyRFC3164Lenient
		if n == 0 {
			ev.Certainty = CertaintyRFC3164LenientNoPRI
		}
		if cert == CertaintyRFC3164BadPRI {
			ev.Certainty = CertaintyRFC3164BadPRI
		}
		var pm *rfc3164.SyslogMessage
		if n > 0 {
			pm = sm
		}
		fill3164(ev, pm, ts, "", ciscoHost, rest)
		return true
	}
	if n == 0 || partialCert == 0 {
		return false
	}
	// Only the PRI is good: "<13>last message repeated 5 times".
	ev.Class, ev.Certainty = ClassRFC3164, partialCert
	tag, pid, msg := splitTag(bytes.TrimLeft(hdr, " "))
	ev.Service = validString(tag)
	ev.Message = validString(msg)
	p, _ := parsePRI(body)
	fill3164Fields(ev, int(p), pid)
	return true
}

// fill3164 sets host, service, time, message and fields of an RFC 3164
// record. host is go-syslog's HOSTNAME (or a Cisco origin host) if any; rest
// is the text after the timestamp.
func fill3164(ev *schemas.Event, sm *rfc3164.SyslogMessage, t time.Time, sysHost, ciscoHost string, rest []byte) {
	rest = bytes.TrimLeft(rest, " ")
	var hostB []byte
	switch {
	case sysHost != "" && len(rest) >= len(sysHost) && string(rest[:len(sysHost)]) == sysHost &&
		(len(rest) == len(sysHost) || rest[len(sysHost)] == ' '):
		hostB, rest = rest[:len(sysHost)], rest[len(sysHost):]
	default:
		hostB, rest = splitHost(rest)
	}
	if hostB != nil {
		rest = bytes.TrimLeft(rest, " ")
		// "host : %FTD-6-305012: ..."
		if len(rest) > 0 && rest[0] == ':' && (len(rest) == 1 || rest[1] == ' ') {
			rest = bytes.TrimLeft(rest[1:], " ")
		}
	}
	if hostB == nil && ciscoHost != "" {
		hostB = []byte(ciscoHost)
	}
	tag, pid, msg := splitTag(rest)
	ev.Host = validString(hostB)
	ev.Service = validString(tag)
	ev.Message = validString(msg)
	ev.TimeUnixNano = t.UnixNano()
	pri := -1
	if sm != nil && sm.Priority != nil {
		pri = int(*sm.Priority)
	}
	fill3164Fields(ev, pri, pid)
}

// splitHost takes the HOSTNAME off the text after an RFC 3164 timestamp:
// the first word, unless that word is a TAG ("su:", "sshd[12]:") or the
// whole text is empty. A single word is a hostname without message.
func splitHost(b []byte) (host, rest []byte) {
	if len(b) == 0 {
		return nil, b
	}
	if tag, _, _ := splitTag(b); tag != nil && !isIPv6(b) {
		return nil, b
	}
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		i = len(b)
	}
	if i == 0 {
		return nil, b
	}
	alnum := false
	for _, c := range b[:i] {
		if c < 0x21 || c == 0x7f {
			return nil, b
		}
		if isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'z' || c >= 0x80 {
			alnum = true
		}
	}
	if !alnum { // "---", "-- MARK --"
		return nil, b
	}
	return b[:i], b[i:]
}

// isIPv6 reports whether b starts with a word that looks like an IPv6
// address (hex digits and at least two colons).
func isIPv6(b []byte) bool {
	colons := 0
	for _, c := range b {
		switch {
		case c == ' ':
			return colons >= 2
		case c == ':':
			colons++
		case isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f'), c == '.':
		default:
			return false
		}
	}
	return colons >= 2
}

func fill3164Fields(ev *schemas.Event, pri int, pid []byte) {
	n := 0
	if pri >= 0 {
		n += 3
	}
	if pid != nil {
		n++
	}
	if n == 0 {
		return
	}
	growFields(ev, n)
	b := &fieldBlock{}
	if pri >= 0 {
		b.addInt(ev, KeyPri, int64(pri))
		b.addInt(ev, KeyFacility, int64(pri/8))
		b.addInt(ev, KeySeverity, int64(pri%8))
	}
	if pid != nil {
		b.addStr(ev, KeyPid, string(pid))
	}
}

// splitTag splits "TAG[PID]: MSG" or "TAG: MSG" (a single space after the
// colon is dropped; the colon may also be followed directly by the message).
// tag is nil when msg does not start with a tag and a colon.
func splitTag(b []byte) (tag, pid, msg []byte) {
	i := 0
	for i < len(b) && i < 48 && b[i] != ' ' && b[i] != ':' && b[i] != '[' && b[i] != ']' && b[i] >= 0x21 && b[i] < 0x7f {
		i++
	}
	if i == 0 || i >= len(b) {
		return nil, nil, b
	}
	tag = b[:i]
	j := i
	if b[j] == '[' {
		k := bytes.IndexByte(b[j:], ']')
		if k < 0 {
			return nil, nil, b
		}
		pid = b[j+1 : j+k]
		j += k + 1
	}
	if j >= len(b) || b[j] != ':' {
		return nil, nil, b
	}
	j++
	if j+1 < len(b) && b[j] == '/' && b[j+1] == '/' { // "http://..."
		return nil, nil, b
	}
	if j < len(b) && b[j] == ' ' {
		j++
	}
	return tag, pid, b[j:]
}

func skipSpaces(b []byte) int {
	i := 0
	for i < len(b) && b[i] == ' ' {
		i++
	}
	return i
}

// lenientHeader reads an RFC 3164 header that go-syslog rejects: Cisco
// message counters, sequence numbers and origin hosts before the stamp
// ("<189>35: foo: *Apr 29 14:00:16.059: ..."), then anything lenientStamp
// reads. rest is the text after the stamp; host is a Cisco origin host.
func lenientHeader(b []byte, now time.Time) (t time.Time, rest []byte, host string, ok bool) {
	p := skipSpaces(b)
	for tries := 0; tries < 4 && p < len(b); tries++ {
		q := p
		if b[q] == '*' || b[q] == '.' {
			q++
		}
		if t, n, ok := lenientStamp(b[q:], now); ok {
			return t, b[q+n:], host, true
		}
		lim := min(len(b), p+64)
		k := bytes.IndexByte(b[p:lim], ':')
		if k <= 0 {
			break
		}
		prefix := b[p : p+k]
		digits := true
		for _, c := range prefix {
			if !isDigit(c) {
				digits = false
			}
			if c == ' ' || c == '/' || c < 0x21 || c >= 0x7f {
				digits = false
				prefix = nil
				break
			}
		}
		if !digits && prefix != nil {
			host = string(prefix)
		}
		p += k + 1
		p += skipSpaces(b[p:])
	}
	return time.Time{}, nil, "", false
}

// stampStart reports whether b starts like a timestamp: a month name or
// "yyyy-".
func stampStart(b []byte) bool {
	if len(b) >= 5 && isDigit(b[0]) && isDigit(b[1]) && isDigit(b[2]) && isDigit(b[3]) && b[4] == '-' {
		return true
	}
	if len(b) < 4 || b[3] != ' ' {
		return false
	}
	for _, m := range months {
		if b[0]|0x20 == m[0] && b[1]|0x20 == m[1] && b[2]|0x20 == m[2] {
			return true
		}
	}
	return false
}

var months = [12]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// num reads exactly n digits at b[i:].
func num(b []byte, i, n int) (int, bool) {
	if i+n > len(b) {
		return 0, false
	}
	v := 0
	for _, c := range b[i : i+n] {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// clock reads "hh:mm:ss[.fraction]" at b[i:] and returns the index after it.
func clock(b []byte, i int) (hh, mm, ss, ns, end int, ok bool) {
	var ok1, ok2, ok3 bool
	hh, ok1 = num(b, i, 2)
	mm, ok2 = num(b, i+3, 2)
	ss, ok3 = num(b, i+6, 2)
	if !ok1 || !ok2 || !ok3 || b[i+2] != ':' || b[i+5] != ':' || hh > 23 || mm > 59 || ss > 60 {
		return 0, 0, 0, 0, 0, false
	}
	if ss == 60 { // leap second: keep it in the minute
		ss = 59
	}
	i += 8
	if i+1 < len(b) && (b[i] == '.' || b[i] == ',') && isDigit(b[i+1]) {
		i++
		scale := 100000000
		for i < len(b) && isDigit(b[i]) {
			ns += int(b[i]-'0') * scale
			scale /= 10
			i++
		}
	}
	return hh, mm, ss, ns, i, true
}

// endsWord reports whether b[i:] is at the end of a word (end, SP or ':').
func endsWord(b []byte, i int) bool {
	return i >= len(b) || b[i] == ' ' || b[i] == ':'
}

// lenientStamp reads a timestamp at the start of b: "Mmm dd hh:mm:ss[.f]"
// (any case, one or two spaces, day with or without padding, a year before
// or after the time, a zone name and a colon after it), or an ISO 8601 /
// RFC 3339 stamp "yyyy-mm-dd[T ]hh:mm:ss[.f][Z|+hh:mm]" with any number of
// fraction digits. n is the length read. Stamps without year get the year
// closest to now; stamps without zone are in now's location.
func lenientStamp(b []byte, now time.Time) (t time.Time, n int, ok bool) {
	if len(b) >= 19 && isDigit(b[0]) && b[4] == '-' {
		return isoStamp(b, now.Location())
	}
	if len(b) < 14 {
		return time.Time{}, 0, false
	}
	mon := 0
	for i, m := range months {
		if b[0]|0x20 == m[0] && b[1]|0x20 == m[1] && b[2]|0x20 == m[2] {
			mon = i + 1
			break
		}
	}
	if mon == 0 || b[3] != ' ' {
		return time.Time{}, 0, false
	}
	i := 4
	if b[i] == ' ' {
		i++
	}
	day := 0
	for j := 0; j < 2 && i < len(b) && isDigit(b[i]); j++ {
		day = day*10 + int(b[i]-'0')
		i++
	}
	if day < 1 || day > 31 || i >= len(b) || b[i] != ' ' {
		return time.Time{}, 0, false
	}
	i++
	year := 0
	if y, ok := num(b, i, 4); ok && y >= 1970 && i+4 < len(b) && b[i+4] == ' ' {
		year = y
		i += 5
	}
	hh, mm, ss, ns, i, ok := clock(b, i)
	if !ok {
		return time.Time{}, 0, false
	}
	if year == 0 && i+5 <= len(b) && b[i] == ' ' {
		if y, ok := num(b, i+1, 4); ok && y >= 1970 && (i+5 == len(b) || b[i+5] == ' ') {
			year = y
			i += 5
		}
	}
	loc := now.Location()
	// a zone name before a colon: "21:03:22.631 GMT: ..."
	if i+4 < len(b) && b[i] == ' ' {
		j := i + 1
		for j < len(b) && j-i <= 5 && b[j] >= 'A' && b[j] <= 'Z' {
			j++
		}
		if j-i >= 4 && j < len(b) && b[j] == ':' {
			switch string(b[i+1 : j]) {
			case "UTC", "GMT", "UT", "Z":
				loc = time.UTC
			}
			i = j
		}
	}
	if !endsWord(b, i) {
		return time.Time{}, 0, false
	}
	if i < len(b) && b[i] == ':' {
		i++
	}
	if year != 0 {
		t = time.Date(year, time.Month(mon), day, hh, mm, ss, ns, loc)
		if t.Day() != day {
			return time.Time{}, 0, false
		}
		return t, i, true
	}
	t, ok = nearestYear(time.Month(mon), day, hh, mm, ss, ns, loc, now)
	return t, i, ok
}

// isoStamp reads "yyyy-mm-dd[T ]hh:mm:ss[.f][Z|+hh:mm|+hhmm]".
func isoStamp(b []byte, local *time.Location) (time.Time, int, bool) {
	if len(b) < 19 {
		return time.Time{}, 0, false
	}
	year, ok1 := num(b, 0, 4)
	mon, ok2 := num(b, 5, 2)
	day, ok3 := num(b, 8, 2)
	if !ok1 || !ok2 || !ok3 || b[7] != '-' || (b[10] != 'T' && b[10] != 't' && b[10] != ' ') ||
		mon < 1 || mon > 12 || day < 1 || day > 31 {
		return time.Time{}, 0, false
	}
	hh, mm, ss, ns, i, ok := clock(b, 11)
	if !ok {
		return time.Time{}, 0, false
	}
	loc, off := local, 0
	switch {
	case i < len(b) && (b[i] == 'Z' || b[i] == 'z'):
		loc = time.UTC
		i++
	case i < len(b) && (b[i] == '+' || b[i] == '-'):
		oh, ok1 := num(b, i+1, 2)
		j := i + 3
		if j < len(b) && b[j] == ':' {
			j++
		}
		om, ok2 := num(b, j, 2)
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, 0, false
		}
		off = oh*3600 + om*60
		if b[i] == '-' {
			off = -off
		}
		loc = time.UTC
		i = j + 2
	}
	if !endsWord(b, i) {
		return time.Time{}, 0, false
	}
	t := time.Date(year, time.Month(mon), day, hh, mm, ss, ns, loc)
	if t.Day() != day {
		return time.Time{}, 0, false
	}
	return t.Add(-time.Duration(off) * time.Second), i, true
}

// nearestYear gives a stamp without year the year that puts it closest to
// now (of last, this and next year); a Feb 29 that none of them has gets
// the last leap year.
func nearestYear(mon time.Month, day, hh, mm, ss, ns int, loc *time.Location, now time.Time) (time.Time, bool) {
	y := now.In(loc).Year()
	var best time.Time
	var bestD time.Duration
	found := false
	try := func(from, to int) {
		for c := from; c <= to; c++ {
			cand := time.Date(c, mon, day, hh, mm, ss, ns, loc)
			if cand.Day() != day {
				continue // Feb 29 in a common year, Apr 31 ...
			}
			d := cand.Sub(now)
			if d < 0 {
				d = -d
			}
			if !found || d < bestD {
				best, bestD, found = cand, d, true
			}
		}
	}
	try(y-1, y+1)
	if !found && mon == time.February && day == 29 {
		try(y-4, y-2) // the last leap year: records come from the past
	}
	return best, found
}
