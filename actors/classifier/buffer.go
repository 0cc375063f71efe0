package classifier

import "bytes"

// Buffer is a re-readable view of a message as lines, after gnucomo's
// message_buffer: a classifier reads a line, looks at it, and steps back
// when the line belongs to the next part ("this is not a header any more"),
// or rewinds to let another classifier read the same message from the top.
//
// Lines end at LF; a CR before the LF is not part of the line. One final LF
// does not start another line, so "a\nb\n" has the lines "a" and "b", and
// an empty message has none. Next and Back neither copy nor allocate: a
// line is a slice of the message. Lines and Line build an index of the line
// starts on first use.
type Buffer struct {
	data  []byte // the message without one final LF
	empty bool   // the message had no bytes at all
	off   int    // start of the line Next returns; len(data)+1 at the end
	n     int    // number of the line Next returns
	index []int  // line starts, built by Lines or Line
}

// NewBuffer returns a Buffer over msg, positioned at the first line. msg is
// not copied and must not change while the Buffer is used.
func NewBuffer(msg []byte) *Buffer {
	b := &Buffer{}
	b.Reset(msg)
	return b
}

// Reset makes b a Buffer over msg, positioned at the first line.
func (b *Buffer) Reset(msg []byte) {
	b.empty = len(msg) == 0
	if len(msg) > 0 && msg[len(msg)-1] == '\n' {
		msg = msg[:len(msg)-1]
	}
	b.data, b.off, b.n, b.index = msg, 0, 0, b.index[:0]
	if b.empty {
		b.off = 1
	}
}

// Rewind goes back to the first line.
func (b *Buffer) Rewind() {
	b.off, b.n = 0, 0
	if b.empty {
		b.off = 1
	}
}

// Next returns the line at the read position and moves past it; ok is false
// at the end of the message.
func (b *Buffer) Next() (line []byte, ok bool) {
	if b.off > len(b.data) {
		return nil, false
	}
	rest := b.data[b.off:]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		line = rest[:j]
		b.off += j + 1
	} else {
		line = rest
		b.off = len(b.data) + 1
	}
	b.n++
	return trimCR(line), true
}

// Back steps back one line, so that Next returns the line it returned last;
// it reports false at the first line.
func (b *Buffer) Back() bool {
	if b.n == 0 {
		return false
	}
	// b.off-1 is the LF that ended the previous line (or the end).
	end := b.off - 1
	b.off = bytes.LastIndexByte(b.data[:end], '\n') + 1
	b.n--
	return true
}

// Pos returns the number of the line Next returns (0 is the first line).
func (b *Buffer) Pos() int { return b.n }

// Offset returns the byte offset in the message of the line Next returns
// (the message's length at the end), to cut spans of several lines with
// Slice.
func (b *Buffer) Offset() int { return min(b.off, len(b.data)) }

// Slice returns the message's bytes from offset i to j.
func (b *Buffer) Slice(i, j int) []byte { return b.data[i:j] }

// Rest returns the message from the read position on (without the final
// LF): what follows the lines read so far.
func (b *Buffer) Rest() []byte {
	if b.off > len(b.data) {
		return nil
	}
	return b.data[b.off:]
}

// Lines returns the number of lines.
func (b *Buffer) Lines() int {
	b.buildIndex()
	return len(b.index)
}

// Line returns line i (0 is the first); nil when there is no such line.
// It does not move the read position.
func (b *Buffer) Line(i int) []byte {
	b.buildIndex()
	if i < 0 || i >= len(b.index) {
		return nil
	}
	start, end := b.index[i], len(b.data)
	if i+1 < len(b.index) {
		end = b.index[i+1] - 1
	}
	return trimCR(b.data[start:end])
}

func (b *Buffer) buildIndex() {
	if len(b.index) > 0 || b.empty {
		return
	}
	b.index = append(b.index, 0)
	for i, c := range b.data {
		if c == '\n' {
			b.index = append(b.index, i+1)
		}
	}
}

func trimCR(line []byte) []byte {
	if len(line) > 0 && line[len(line)-1] == '\r' {
		return line[:len(line)-1]
	}
	return line
}
