package tail

import (
	"bytes"
	"os"
	"syscall"
	"time"
)

// tailMarkLen is how many bytes before the read position the read loop
// keeps, to notice a file truncated and written past that position again
// between two looks.
const tailMarkLen = 32

// chunkSize and maxChunks bound one read of one file per cycle, so one busy
// file does not starve the others.
const (
	chunkSize = 256 << 10
	maxChunks = 8
)

// file is one followed file, owned by the read loop.
type file struct {
	path    string
	id      fileID
	fd      *os.File
	state   *ackState
	head    print
	size    int64
	mtime   time.Time
	readOff int64  // offset of the end of buf
	buf     []byte // unconsumed bytes (an unterminated line), ending at readOff
	mark    []byte // the file's bytes just before readOff, as read
	scratch []byte

	rec      []byte // the multiline record being joined
	hasRec   bool
	recEnd   int64 // offset after rec's last line
	recNL    bool  // rec's last line ended with a newline
	recLines int
	lastLine time.Time

	lastData time.Time // when data last arrived
	leftAt   time.Time // when the patterns stopped matching it
	deleted  bool
}

// readMark remembers the bytes before readOff.
func (f *file) readMark() {
	n := min(int64(tailMarkLen), f.readOff)
	f.mark = f.mark[:0]
	if n == 0 {
		return
	}
	b := make([]byte, n)
	if _, err := f.fd.ReadAt(b, f.readOff-n); err == nil {
		f.mark = b
	}
}

// markHolds reports whether the bytes before readOff are still those read.
func (f *file) markHolds() bool {
	if len(f.mark) == 0 {
		return true
	}
	if cap(f.scratch) < len(f.mark) {
		f.scratch = make([]byte, tailMarkLen)
	}
	b := f.scratch[:len(f.mark)]
	n, _ := f.fd.ReadAt(b, f.readOff-int64(len(b)))
	return n == len(b) && bytes.Equal(b, f.mark)
}

// markFor is the fingerprint of the bytes before end of a record (its last
// bytes and, when nl, its newline).
func markFor(rec []byte, nl bool) print {
	k := markLen
	if nl {
		k--
	}
	tail := rec[max(0, len(rec)-k):]
	if !nl {
		return printOf(tail)
	}
	b := make([]byte, 0, len(tail)+1)
	b = append(b, tail...)
	return printOf(append(b, '\n'))
}

// read takes in what f gained since the last cycle. It reports whether it
// read data.
func (t *Tailer) read(f *file, now time.Time) bool {
	fi, err := f.fd.Stat()
	if err != nil {
		t.log.Warn("cannot stat open file", "file", f.path, "err", err)
		return false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 && !f.deleted {
		f.deleted = true
		if f.leftAt.IsZero() {
			f.leftAt = now
		}
	}
	changed := fi.Size() != f.size || !fi.ModTime().Equal(f.mtime)
	f.size, f.mtime = fi.Size(), fi.ModTime()
	if f.size < f.readOff || changed && !f.markHolds() {
		t.log.Info("file truncated; reading it from the start", "file", f.path, "size", f.size, "position", f.readOff)
		t.restart(f)
	}
	got := false
	if cap(f.buf)-len(f.buf) < chunkSize {
		nb := make([]byte, len(f.buf), len(f.buf)+chunkSize)
		copy(nb, f.buf)
		f.buf = nb
	}
	for range maxChunks {
		space := f.buf[len(f.buf):cap(f.buf)]
		n, _ := f.fd.ReadAt(space[:min(len(space), chunkSize)], f.readOff)
		if n == 0 {
			break
		}
		got = true
		f.buf = f.buf[:len(f.buf)+n]
		f.readOff += int64(n)
		t.consume(f, now)
		if t.stopped {
			return false
		}
		if cap(f.buf)-len(f.buf) < chunkSize/2 {
			nb := make([]byte, len(f.buf), len(f.buf)+chunkSize)
			copy(nb, f.buf)
			f.buf = nb
		}
	}
	if got {
		f.lastData = now
		k := min(len(f.buf), tailMarkLen)
		if k == tailMarkLen || int64(k) == f.readOff {
			f.mark = append(f.mark[:0], f.buf[len(f.buf)-k:]...)
		} else {
			f.readMark()
		}
		if f.head.Len < headLen && f.readOff > int64(f.head.Len) {
			f.head = headOf(f.fd)
			f.state.mu.Lock()
			f.state.head = f.head
			f.state.mu.Unlock()
		}
	}
	if f.hasRec && now.Sub(f.lastLine) >= t.opts.Multiline.Timeout.D() {
		t.flushRecord(f)
	}
	return got
}

// restart reads f again from its start, in a new epoch.
func (t *Tailer) restart(f *file) {
	f.readOff, f.buf, f.hasRec, f.rec, f.mark = 0, f.buf[:0], false, f.rec[:0], f.mark[:0]
	f.head = headOf(f.fd)
	f.state.reset(f.head)
}

// consume hands the complete lines of f.buf to line, cutting lines longer
// than max_message_size, and keeps the unterminated rest.
func (t *Tailer) consume(f *file, now time.Time) {
	max := int(t.opts.MaxMessageSize)
	bufStart := f.readOff - int64(len(f.buf))
	pos := 0
	for {
		i := bytes.IndexByte(f.buf[pos:], '\n')
		if i < 0 {
			break
		}
		line := f.buf[pos : pos+i]
		lineStart := bufStart + int64(pos)
		for len(line) > max {
			t.piece(f, line[:max], lineStart+int64(max))
			line, lineStart = line[max:], lineStart+int64(max)
		}
		pos += i + 1
		t.line(f, line, bufStart+int64(pos), true, now)
	}
	rest := f.buf[pos:]
	restStart := bufStart + int64(pos)
	for len(rest) > max {
		t.piece(f, rest[:max], restStart+int64(max))
		rest, restStart = rest[max:], restStart+int64(max)
	}
	n := copy(f.buf, rest)
	f.buf = f.buf[:n]
}

// piece publishes part of an over-long line as a record of its own.
func (t *Tailer) piece(f *file, b []byte, end int64) {
	t.flushRecord(f)
	t.emit(f, b, end, false)
}

// line takes one line (without its newline) ending at end.
func (t *Tailer) line(f *file, line []byte, end int64, nl bool, now time.Time) {
	if t.start == nil {
		t.emit(f, line, end, nl)
		return
	}
	if f.hasRec && t.start.Match(line) {
		t.flushRecord(f)
	}
	if !f.hasRec {
		f.rec = append(f.rec[:0], line...)
		f.hasRec, f.recLines = true, 1
	} else {
		f.rec = append(f.rec, '\n')
		f.rec = append(f.rec, line...)
		f.recLines++
	}
	f.recEnd, f.recNL, f.lastLine = end, nl, now
	if f.recLines >= t.opts.Multiline.MaxLines || len(f.rec) >= int(t.opts.MaxMessageSize) {
		t.flushRecord(f)
	}
}

// flushRecord publishes the multiline record being joined.
func (t *Tailer) flushRecord(f *file) {
	if !f.hasRec {
		return
	}
	t.emit(f, f.rec, f.recEnd, f.recNL)
	f.hasRec, f.rec = false, f.rec[:0]
}
