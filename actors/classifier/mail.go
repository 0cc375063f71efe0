package classifier

import (
	"bytes"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/herald-router/herald/schemas"
)

// Mail field keys, in the order in which they appear in Event.Fields.
const (
	KeyMboxFrom  = "mbox_from"
	KeyFrom      = "from"
	KeyTo        = "to"
	KeyCc        = "cc"
	KeySubject   = "subject"
	KeyDate      = "date"
	KeyMessageID = "message_id"
	KeyReceived  = "received"
)

// mailHeaders are the header fields that make a block of "Name: value"
// lines a mail header, and the field each one goes to ("" counts without
// becoming a field).
var mailHeaders = map[string]string{
	"from": KeyFrom, "to": KeyTo, "cc": KeyCc, "subject": KeySubject, "date": KeyDate,
	"message-id": KeyMessageID, "received": KeyReceived,
	"return-path": "", "delivered-to": "", "mime-version": "", "content-type": "",
	"reply-to": "", "sender": "", "x-original-to": "", "in-reply-to": "", "references": "",
	"x-mailer": "", "user-agent": "", "content-transfer-encoding": "",
}

// classifyMail reads an RFC 5322 header block (optionally behind an mbox
// "From " line) through buf: From, To, Cc, Subject, Date, Message-ID and
// every Received header become fields; Date gives the event time (the
// mbox line's date when there is no usable Date), the oldest Received
// header the sending host, the body the message.
func classifyMail(ev *schemas.Event, buf *Buffer, now time.Time) bool {
	buf.Rewind()
	first, ok := buf.Next()
	if !ok {
		return false
	}
	var mboxFrom []byte
	if bytes.HasPrefix(first, []byte("From ")) {
		mboxFrom = first
	} else {
		buf.Back()
	}

	type header struct {
		name       string // lower case
		start, end int    // the value as written, folded lines included
	}
	var hs [32]header
	headers := hs[:0]
	known, core := 0, 0
	blank := false
	for {
		at := buf.Offset()
		l, ok := buf.Next()
		if !ok {
			break
		}
		if len(l) == 0 {
			blank = true
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			if len(headers) == 0 {
				return false
			}
			headers[len(headers)-1].end = at + len(l) // a continuation line
			continue
		}
		name, value, ok := headerLine(l)
		if !ok {
			if len(headers) == 0 {
				return false
			}
			buf.Back() // the body starts without a blank line
			break
		}
		lname := strings.ToLower(string(name))
		if key, ok := mailHeaders[lname]; ok {
			known++
			if key != "" && key != KeyCc {
				core++
			}
		}
		headers = append(headers, header{lname, at + len(l) - len(value), at + len(l)})
	}
	if len(headers) < 2 && mboxFrom == nil || known == 0 || core == 0 {
		return false
	}
	ev.Class = ClassMail
	switch {
	case known >= 2 && (blank || buf.Rest() == nil):
		ev.Certainty = CertaintyMail
	case known >= 2:
		ev.Certainty = CertaintyMailNoBlank
	default:
		ev.Certainty = CertaintyMailThin
	}
	ev.Message = validString(buf.Rest())

	f := newFieldWriter(9)
	defer f.done(ev)
	if mboxFrom != nil {
		f.str(KeyMboxFrom, mboxFrom)
	}
	var received []*schemas.Value
	var date []byte
	for _, h := range headers {
		value := buf.Slice(h.start, h.end)
		key := mailHeaders[h.name]
		if key == "" || key == KeyReceived {
			if key == KeyReceived {
				received = append(received, &schemas.Value{Kind: &schemas.Value_Str{Str: unfold(value)}})
			}
			continue
		}
		if hasKey(f.ptrs, key) {
			continue // the first one counts (a forwarded message's come later)
		}
		v := unfold(value)
		switch key {
		case KeyDate:
			date = value
		case KeyFrom, KeyTo, KeyCc, KeySubject:
			v = decodeHeader(v)
		}
		f.strS(key, v)
	}
	if len(received) > 0 {
		f.add(KeyReceived, &schemas.Value_List{List: &schemas.List{Values: received}})
		ev.Host = receivedHost(received[len(received)-1].GetStr())
	}
	if date != nil {
		if t, err := mail.ParseDate(unfold(date)); err == nil {
			ev.TimeUnixNano = t.UnixNano()
		}
	}
	if ev.TimeUnixNano == 0 && mboxFrom != nil {
		if t, ok := mboxDate(mboxFrom, now.Location()); ok {
			ev.TimeUnixNano = t.UnixNano()
		}
	}
	return true
}

// headerLine splits "Name: value": Name is printable ASCII without ':'.
func headerLine(l []byte) (name, value []byte, ok bool) {
	i := 0
	for i < len(l) && l[i] > ' ' && l[i] < 0x7f && l[i] != ':' {
		i++
	}
	if i == 0 || i >= len(l) || l[i] != ':' || i > 76 {
		return nil, nil, false
	}
	return l[:i], bytes.TrimLeft(l[i+1:], " \t"), true
}

// unfold joins a folded header value: the line breaks go, the white space
// that starts a continuation line stays (RFC 5322 §2.2.3).
func unfold(v []byte) string {
	if bytes.IndexByte(v, '\n') < 0 {
		return validString(trimCR(v))
	}
	var b strings.Builder
	b.Grow(len(v))
	for len(v) > 0 {
		j := bytes.IndexByte(v, '\n')
		if j < 0 {
			b.Write(v)
			break
		}
		b.Write(trimCR(v[:j]))
		v = v[j+1:]
	}
	return valid(b.String())
}

var wordDecoder = mime.WordDecoder{}

// decodeHeader resolves RFC 2047 encoded words ("=?utf-8?q?...?="); a value
// it cannot decode stays as written.
func decodeHeader(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return valid(d)
	}
	return v
}

// receivedHost returns the host a Received header names as the sender:
// the name after "from", or after "by" when there is no "from" or it is
// the local host (a message handed in on the machine itself). Comments in
// parentheses ("(Postfix, from userid 889)") are not read.
func receivedHost(r string) string {
	if i := strings.LastIndexByte(r, ';'); i >= 0 {
		r = r[:i] // the date
	}
	var words []string
	depth, start := 0, -1
	for i := 0; i <= len(r); i++ {
		c := byte(' ')
		if i < len(r) {
			c = r[i]
		}
		switch {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			if start >= 0 {
				words = append(words, r[start:i])
				start = -1
			}
			continue
		default:
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			words = append(words, r[start:i])
			start = -1
		}
	}
	after := func(kw string) string {
		for i := 0; i+1 < len(words); i++ {
			if strings.EqualFold(words[i], kw) {
				return strings.Trim(words[i+1], "[]<>")
			}
		}
		return ""
	}
	if h := after("from"); h != "" && !isLocalHost(h) {
		return h
	}
	return after("by")
}

func isLocalHost(h string) bool {
	switch strings.ToLower(h) {
	case "localhost", "localhost.localdomain", "127.0.0.1", "::1":
		return true
	}
	return false
}

// mboxDate reads the ctime date of an mbox "From sender Sun Aug  7 11:40:37 2022" line.
func mboxDate(l []byte, local *time.Location) (time.Time, bool) {
	fields := strings.Fields(string(l))
	// From, sender, weekday, month, day, time, year
	if len(fields) < 7 {
		return time.Time{}, false
	}
	t, err := time.ParseInLocation("Mon Jan 2 15:04:05 2006", strings.Join(fields[2:7], " "), local)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}
