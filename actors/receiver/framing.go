package receiver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Framing of syslog over a stream (RFC 6587). A sender either counts
// octets, each frame being "MSG-LEN SP MSG" with MSG-LEN a decimal without
// leading zero, or ends each record with LF (non-transparent framing; some
// senders use NUL). ReadFrames tells them apart on the connection's first
// frame: a digit 1-9, more digits, then a space means octet counting. A
// sender does not switch within a connection; deciding once keeps a
// newline-framed line such as "3 apples" from being misread later.

// Rejection reasons ReadFrames reports.
const (
	RejectTooLong   = "too_long"  // a record over the maximum size, dropped whole
	RejectEmpty     = "empty"     // an empty line
	RejectBadFrame  = "bad_frame" // an octet-counted frame whose length is not a number
	RejectTruncated = "truncated" // the stream ended inside an octet-counted frame
)

// ErrBadFrame is returned when an octet-counted stream has lost its frame
// boundaries (a wrong octet count or garbage where a length belongs): what
// follows cannot be split reliably, so the connection should be closed.
// Every record before it has been delivered.
var ErrBadFrame = errors.New("bad octet-counted frame")

// FrameOptions tune ReadFrames.
type FrameOptions struct {
	// Max is the largest record; longer ones are dropped and reported.
	Max int
	// NUL lets a NUL byte end a record in newline framing.
	NUL bool
}

// Framing modes of a connection.
const (
	modeUnknown = iota
	modeNewline
	modeOctet
)

// maxLenDigits bounds MSG-LEN: 9 digits are beyond any sane maximum.
const maxLenDigits = 9

// frameReader holds a growable buffer over r: buf[start:end] is read and
// not yet consumed.
type frameReader struct {
	r          io.Reader
	buf        []byte
	start, end int
	err        error // the read error, returned once the buffer is used up
}

// fill reads more, making room first; it grows the buffer up to limit
// bytes when the unconsumed part fills it. It returns false when nothing
// more can be read (fr.err is then set).
func (fr *frameReader) fill(limit int) bool {
	if fr.err != nil {
		return false
	}
	if fr.start > 0 && (fr.end == len(fr.buf) || fr.start == fr.end) {
		n := copy(fr.buf, fr.buf[fr.start:fr.end])
		fr.start, fr.end = 0, n
	}
	if fr.end == len(fr.buf) {
		if len(fr.buf) >= limit {
			return false
		}
		nb := make([]byte, min(max(2*len(fr.buf), 4096), limit))
		copy(nb, fr.buf[fr.start:fr.end])
		fr.buf, fr.end, fr.start = nb, fr.end-fr.start, 0
	}
	for range 100 {
		n, err := fr.r.Read(fr.buf[fr.end:])
		fr.end += n
		if err != nil {
			fr.err = err
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	fr.err = io.ErrNoProgress
	return false
}

// ReadFrames calls emit for each record of r (framing detected as described
// above) until r ends, and returns nil at a clean end of stream, ErrBadFrame
// (wrapped) when an octet-counted stream lost its framing, or r's error.
// Records longer than opts.Max are dropped whole and reported to reject,
// as are empty lines and a frame cut short by the end of the stream; in
// newline framing an unterminated last line counts as a record. The slice
// given to emit is only valid during the call.
func ReadFrames(r io.Reader, opts FrameOptions, emit func([]byte), reject func(reason string)) error {
	fr := &frameReader{r: r, buf: make([]byte, min(64<<10, opts.Max+16))}
	// The buffer may grow to hold one whole record plus its framing.
	limit := opts.Max + maxLenDigits + 2
	mode := modeUnknown
	for {
		switch mode {
		case modeUnknown:
			m, ok := detect(fr)
			if !ok {
				return endErr(fr.err)
			}
			mode = m
		case modeNewline:
			return readLines(fr, opts, limit, emit, reject)
		case modeOctet:
			return readOctets(fr, opts, limit, emit, reject)
		}
	}
}

func endErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// detect looks at the first bytes of the stream. It reports false only
// when the stream ended (or failed) before deciding.
func detect(fr *frameReader) (int, bool) {
	for {
		b := fr.buf[fr.start:fr.end]
		if len(b) > 0 {
			if b[0] < '1' || b[0] > '9' {
				return modeNewline, true
			}
			for i := 1; i < len(b); i++ {
				switch {
				case b[i] == ' ':
					return modeOctet, true
				case b[i] < '0' || b[i] > '9' || i > maxLenDigits:
					return modeNewline, true
				}
			}
		}
		if !fr.fill(len(fr.buf)) {
			if fr.end > fr.start {
				return modeNewline, true // a short last line of digits
			}
			return 0, false
		}
	}
}

// readLines is non-transparent framing: LF (or NUL) ends each record.
func readLines(fr *frameReader, opts FrameOptions, limit int, emit func([]byte), reject func(string)) error {
	discarding := false // inside a record already rejected as too long
	scanned := 0        // bytes of buf[start:] known to hold no terminator
	for {
		b := fr.buf[fr.start+scanned : fr.end]
		i := indexTerminator(b, opts.NUL)
		if i < 0 {
			scanned += len(b)
			if !discarding && scanned > opts.Max {
				discarding = true
				reject(RejectTooLong)
			}
			if discarding {
				fr.start += scanned // drop what was scanned: it is all part of the long record
				scanned = 0
			}
			if !fr.fill(limit) {
				if fr.err == nil {
					// Buffer at its limit without a terminator: only
					// possible past Max, which discarding handles.
					return fmt.Errorf("framing: buffer full: %w", ErrBadFrame)
				}
				if !discarding && fr.end > fr.start {
					emitLine(fr.buf[fr.start:fr.end], opts.Max, emit, reject)
				}
				fr.start = fr.end
				return endErr(fr.err)
			}
			continue
		}
		end := fr.start + scanned + i
		line := fr.buf[fr.start:end]
		fr.start, scanned = end+1, 0
		if discarding {
			discarding = false // the end of a line already rejected
			continue
		}
		emitLine(line, opts.Max, emit, reject)
	}
}

func emitLine(line []byte, max int, emit func([]byte), reject func(string)) {
	switch {
	case len(line) == 0 || len(line) == 1 && line[0] == '\r':
		reject(RejectEmpty)
	case len(line) > max:
		reject(RejectTooLong)
	default:
		emit(line)
	}
}

// indexTerminator finds the first LF (or NUL when nul) in b.
func indexTerminator(b []byte, nul bool) int {
	i := bytes.IndexByte(b, '\n')
	if nul {
		before := b
		if i >= 0 {
			before = b[:i]
		}
		if j := bytes.IndexByte(before, 0); j >= 0 {
			return j
		}
	}
	return i
}

// readOctets is octet counting: "MSG-LEN SP MSG", repeated. LF, CR and NUL
// between frames are skipped: some senders end octet-counted frames with a
// newline all the same.
func readOctets(fr *frameReader, opts FrameOptions, limit int, emit func([]byte), reject func(string)) error {
	for {
		// The length, up to the space.
		n, hdr := 0, 0
		for {
			b := fr.buf[fr.start:fr.end]
			for len(b) > 0 && (b[0] == '\n' || b[0] == '\r' || b[0] == 0) {
				fr.start++
				b = b[1:]
			}
			n, hdr = 0, 0
			ok := false
			for i, c := range b {
				if c == ' ' && i > 0 {
					hdr, ok = i+1, true
					break
				}
				if c < '0' || c > '9' || i == 0 && c == '0' || i >= maxLenDigits {
					reject(RejectBadFrame)
					return fmt.Errorf("octet count: got %q: %w", clip(b, 16), ErrBadFrame)
				}
				n = n*10 + int(c-'0')
			}
			if ok {
				break
			}
			if !fr.fill(limit) {
				if fr.end > fr.start && fr.err != nil {
					reject(RejectTruncated)
					return fmt.Errorf("stream ended in an octet count: %w", ErrBadFrame)
				}
				return endErr(fr.err)
			}
		}
		fr.start += hdr
		if n > opts.Max {
			reject(RejectTooLong)
			// The count keeps the framing: skip the record and go on.
			for skip := n; skip > 0; {
				k := min(skip, fr.end-fr.start)
				fr.start += k
				skip -= k
				if skip > 0 && !fr.fill(limit) {
					return endErr(fr.err)
				}
			}
			continue
		}
		for fr.end-fr.start < n {
			if !fr.fill(limit) {
				reject(RejectTruncated)
				if fr.err == nil || errors.Is(fr.err, io.EOF) {
					return fmt.Errorf("stream ended %d bytes into a %d-byte frame: %w", fr.end-fr.start, n, ErrBadFrame)
				}
				return fr.err
			}
		}
		msg := fr.buf[fr.start : fr.start+n]
		fr.start += n
		emit(msg)
	}
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
