// Package mbox splits mail folders into messages and reads the envelope
// herald wants from each: the sending host, the arrival time and the
// message's own date (and, for callers that want them, subject, sender and
// message id). herald ingest --mbox/--message and the file receiver's mbox
// format use it; the classifier's mail class then makes fields of the
// headers.
//
// Splitting follows mboxrd: a message starts at a line beginning with
// "From " (the From_ line) at the start of the input or after an empty line;
// body lines that begin with ">From ", ">>From " ... had one '>' added when
// they were stored, which Parse removes. Input that does not start with a
// From_ line is one message up to the first From_ line (a message piped
// from an MTA).
package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/herald-router/herald/schemas"
)

// Split calls fn with every message of r, each with its From_ line (if
// any) and without the empty line that separates it from the next. The
// slice is only valid during the call. An error of fn stops the split and
// is returned.
func Split(r io.Reader, fn func(msg []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var msg []byte
	prevEmpty, first := true, true
	flush := func() error {
		if len(msg) == 0 {
			return nil
		}
		err := fn(TrimSeparator(msg))
		msg = msg[:0]
		return err
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			msg = append(msg, line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				msg = append(msg, line...)
			}
			prevEmpty, first = false, false
		} else if len(line) > 0 {
			if IsFromLine(line) && (prevEmpty || first) {
				if ferr := flush(); ferr != nil {
					return ferr
				}
			}
			msg = append(msg, line...)
			prevEmpty = len(bytes.TrimRight(line, "\r\n")) == 0
			first = false
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return flush()
			}
			return fmt.Errorf("read mbox: %w", err)
		}
	}
}

// FromLinePattern matches a From_ line: "From ", the envelope sender and
// an asctime date ("From root@db1 Tue Mar 12 10:00:00 2024"). Requiring the
// date keeps a body line "From the start" of a folder written without
// quoting from splitting a message.
const FromLinePattern = `^From \S+ +[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9]?[0-9] [0-9]{2}:[0-9]{2}(:[0-9]{2})? `

var fromLine = regexp.MustCompile(FromLinePattern)

// IsFromLine reports whether line is a From_ line.
func IsFromLine(line []byte) bool {
	return bytes.HasPrefix(line, []byte("From ")) && fromLine.Match(line)
}

// TrimSeparator removes one trailing empty line (the separator before the
// next From_ line) from a message that ends in two line ends.
func TrimSeparator(msg []byte) []byte {
	for _, sep := range []string{"\r\n\r\n", "\n\n"} {
		if bytes.HasSuffix(msg, []byte(sep)) {
			return msg[:len(msg)-len(sep)/2]
		}
	}
	return msg
}

// Message is one mail with what herald takes from its headers.
type Message struct {
	// Raw is the message as delivered: without the From_ line, mboxrd
	// quoting removed.
	Raw []byte
	// Host is the sending host: the "from" host of the oldest Received
	// header, or its "by" host when the message was submitted locally
	// (no "from", or from localhost). Empty when no Received header says.
	Host string
	// Arrival is when the message arrived: the date of the From_ line, else
	// of the newest Received header. Zero when unknown.
	Arrival time.Time
	// Date is the message's own Date header. Zero when missing or bad.
	Date time.Time
	// Subject, From and MessageID are the decoded headers (RFC 2047 words
	// decoded), empty when missing.
	Subject, From, MessageID string
	// HeaderErr is set when the headers could not be parsed; Raw is still
	// the message.
	HeaderErr error
}

// Parse reads one message as Split gives it.
func Parse(msg []byte) Message {
	var m Message
	body := msg
	if IsFromLine(body) {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		m.Arrival = fromLineDate(string(bytes.TrimRight(line, "\r")))
	}
	m.Raw = unquote(body)
	mm, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		m.HeaderErr = err
		return m
	}
	h := mm.Header
	dec := new(mime.WordDecoder)
	decode := func(s string) string {
		if d, err := dec.DecodeHeader(s); err == nil {
			return d
		}
		return s
	}
	m.Subject = decode(h.Get("Subject"))
	m.From = decode(h.Get("From"))
	m.MessageID = strings.Trim(strings.TrimSpace(h.Get("Message-Id")), "<>")
	if d, err := h.Date(); err == nil {
		m.Date = d
	}
	received := h["Received"]
	if len(received) > 0 {
		m.Host = sendingHost(received[len(received)-1])
		if m.Arrival.IsZero() {
			top := received[0]
			if i := strings.LastIndexByte(top, ';'); i >= 0 {
				if d, err := mail.ParseDate(strings.TrimSpace(top[i+1:])); err == nil {
					m.Arrival = d
				}
			}
		}
	}
	return m
}

// unquote removes one '>' from every ">From ", ">>From " ... line. The
// input is copied only when a line needs it.
func unquote(b []byte) []byte {
	if !bytes.Contains(b, []byte(">From ")) {
		return b
	}
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i+1], b[i+1:]
		} else {
			b = nil
		}
		q := 0
		for q < len(line) && line[q] == '>' {
			q++
		}
		if q > 0 && bytes.HasPrefix(line[q:], []byte("From ")) {
			line = line[1:]
		}
		out = append(out, line...)
	}
	return out
}

// fromLineDate reads the date of "From sender Tue Mar 12 10:00:00 2024"
// (asctime, as mbox writers put it; some add a zone).
func fromLineDate(line string) time.Time {
	f := strings.Fields(line)
	if len(f) < 3 {
		return time.Time{}
	}
	rest := strings.Join(f[2:], " ")
	for _, layout := range []string{time.ANSIC, "Mon Jan _2 15:04:05 MST 2006", "Mon Jan _2 15:04:05 -0700 2006", "Mon Jan _2 15:04:05 2006 -0700"} {
		if t, err := time.ParseInLocation(layout, rest, time.Local); err == nil {
			return t
		}
	}
	return time.Time{}
}

// sendingHost reads the oldest Received header: "from HOST (...) by
// RELAY ..." gives HOST; a local submission ("by HOST (Postfix, from
// userid 0) ...", or from localhost) gives the host that accepted it.
func sendingHost(rcv string) string {
	words := strings.Fields(stripComments(rcv))
	from, by := "", ""
	for i := 0; i+1 < len(words); i++ {
		switch strings.ToLower(words[i]) {
		case "from":
			if from == "" && by == "" {
				from = words[i+1]
			}
		case "by":
			if by == "" {
				by = strings.TrimSuffix(words[i+1], ";")
			}
		}
	}
	from = strings.Trim(from, "[];")
	switch strings.ToLower(from) {
	case "", "localhost", "localhost.localdomain", "127.0.0.1", "::1":
		return by
	}
	return from
}

// stripComments removes parenthesised comments, which may nest.
func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
			if depth == 0 {
				b.WriteByte(' ')
			}
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Apply puts the message on ev: Raw, the sending host (when known), the
// time (the Date header, else the arrival) and the arrival as the event's
// reception time (when known). Values ev already holds stay where the mail
// says nothing. Subject, sender and message id are not set as fields here:
// the classifier's mail class makes fields of the headers from Raw, and
// setting them twice would give an event two fields of one name.
func (m Message) Apply(ev *schemas.Event) {
	ev.Raw = bytes.Clone(m.Raw)
	if m.Host != "" {
		ev.Host = m.Host
	}
	switch {
	case !m.Date.IsZero():
		ev.TimeUnixNano = m.Date.UnixNano()
	case !m.Arrival.IsZero():
		ev.TimeUnixNano = m.Arrival.UnixNano()
	}
	if !m.Arrival.IsZero() {
		ev.ReceivedUnixNano = m.Arrival.UnixNano()
	}
}
