// Command herald-loadgen is a syslog load generator and end-to-end meter for
// herald (built by `make build` as bin/herald-loadgen, driven by `make bench`
// through services/loadgen/bench.sh).
//
// What it measures: how many syslog lines sent to herald's syslog receiver come
// out of a herald file sink, how fast, and how late. It sends -n RFC 3164 lines
// over -conns TCP connections (newline framed, 256 KiB write buffers) or as UDP
// datagrams, as fast as possible or at -rate lines/s in total. Every line carries
// a run id, a sequence number and its send time in Unix nanoseconds:
//
//	<13>Nov 26 06:10:00 benchhost loadgen[123]: run=3f9c0e1d2a4b5c6d seq=42 ts=1795673400123456789 abcdef...
//
// How: while it sends, it follows the sink's output file (-out: JSON lines as
// written by herald's file sink with format json, or any other line-oriented
// file that keeps the message text, such as rsyslog's, syslog-ng's or
// Benthos's output, so that one meter serves every peer) from its current end,
// polling every 25 ms and tolerating a file that does not exist yet, a partial
// last line, and a file that is truncated or replaced. A line counts only when
// it contains "run=<run id> seq=" (a byte search, no JSON decoding: the tokens
// hold no character that JSON escapes). For each such line it records the
// sequence number (distinct seqs in a bitmap; a seq seen again is a duplicate)
// and the latency, i.e. the time the poll read the line minus the ts in it, in
// a log-linear histogram (about 1.6% resolution; the maximum is exact). In
// plain text the tokens appear as sent; in JSON they appear verbatim too,
// because they hold no character that JSON escapes, so no -format flag is
// needed. The
// latency thus includes the loadgen's own write buffering and up to one poll
// interval; with -rate the buffers are flushed whenever the sender is ahead of
// its schedule, so paced runs measure herald rather than the buffer.
//
// It stops when every seq has been seen; when -idle passes with no new line
// after sending finished (by default 3 s for UDP, where loss is expected; TCP
// waits for every line); or when -timeout (counted from the first send) runs
// out. With -pid it reads the server's peak RSS (VmHWM in /proc/PID/status) and
// its CPU time (utime+stime in /proc/PID/stat) between the first send and the
// last delivery; -pid takes a comma-separated list for a server run as several
// processes (herald with each stage in its own process): CPU is summed, and so
// is peak RSS (each process's own peak, so the sum is an upper bound).
//
// The summary gives sent, delivered, missing and duplicate lines; the elapsed
// time from the first send to the last delivery, and events/s and MiB/s end to
// end over that time (MiB/s counts the wire bytes of the delivered lines); the
// send rate; p50/p99/max latency; and herald's peak RSS and CPU%. With -json
// the same figures follow as one JSON object on the last line of stdout.
//
// Other ways in and out, for the cases the Vector test harness made standard:
// -proto file appends the lines to a file that the server under test follows
// (file -> ...); -format apache sends Apache combined access-log lines with
// the tokens in the user agent; -listen counts delivery on a TCP server the
// server under test forwards to (... -> tcp, newline framing), with the same
// tracking as -out; -metric counts it by a Prometheus counter of a server that
// keeps nothing (herald's file sink on /dev/null: ... -> blackhole), without
// latency; -last follows an -out that gets only the run's last line (a peer
// that discards the rest), so the run ends when it arrives and loss is not
// checked. -start-after makes the loadgen wait for a file before it sends, so
// that a script can start the -listen server first, then the server under
// test, and then let the sending begin.
//
// Exit status: 0 on success; 1 when TCP or file delivery is incomplete (or,
// without -out, -listen or -metric, when sending failed); 2 for bad flags.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	writeBufSize = 256 << 10 // per TCP connection
	readBufSize  = 1 << 20   // output file reads
	pollEvery    = 25 * time.Millisecond
	maxLineSize  = 64 << 10        // -size cap (well below writeBufSize)
	mib          = 1024.0 * 1024.0 // bytes per MiB
)

type options struct {
	addr     string
	proto    string
	n        int64
	conns    int
	rate     float64
	size     int
	out      string
	timeout  time.Duration
	idle     time.Duration
	runID    string
	pids     []int
	name     string
	json     bool
	host     string
	progress time.Duration

	format     string // syslog or apache
	listen     string // counting TCP server instead of -out
	metric     string // Prometheus URL whose counter says how many were delivered
	series     string // the counter's series in -metric
	last       bool   // -out gets only the last line
	startAfter string // wait for this file before sending
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res, err := execute(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "herald-loadgen: %v\n", err)
		return 1
	}
	printSummary(stdout, o, res)
	if o.json {
		b, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	if res.SendError != "" && (!o.measured() || o.proto != "udp") {
		return 1
	}
	if o.measured() && o.proto != "udp" && res.Delivered < o.n {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("herald-loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:5514", "herald syslog receiver `host:port`")
	fs.StringVar(&o.proto, "proto", "tcp", "tcp, udp, or file: append the lines to the file -addr names (for a server that follows it)")
	fs.Int64Var(&o.n, "n", 1000000, "number of lines to send")
	fs.IntVar(&o.conns, "conns", 1, "number of connections (sockets for udp)")
	fs.Float64Var(&o.rate, "rate", 0, "total lines/s over all connections, 0 = as fast as possible")
	fs.IntVar(&o.size, "size", 200, "approximate bytes per line on the wire (tcp: including the newline)")
	fs.StringVar(&o.out, "out", "", "output file to follow: herald's file sink (JSON lines) or a peer's plain-text log; empty = only send")
	fs.DurationVar(&o.timeout, "timeout", 120*time.Second, "give up this long after the first send")
	fs.DurationVar(&o.idle, "idle", 0, "after sending, stop when no new line arrived for this long; 0 = 3s for udp, off for tcp")
	fs.StringVar(&o.runID, "run-id", "", "run id written into every line (default random)")
	var pids string
	fs.StringVar(&pids, "pid", "", "server `PID[,PID...]`: report its peak RSS and CPU% from /proc, summed over the list")
	fs.StringVar(&o.name, "server", "herald", "name of the server in the summary")
	fs.BoolVar(&o.json, "json", false, "also print the summary as one JSON object (last line)")
	fs.StringVar(&o.host, "host", "benchhost", "HOSTNAME field of the syslog lines")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "progress line on stderr this often, 0 = none")
	fs.StringVar(&o.format, "format", "syslog", "lines to send: syslog (RFC 3164) or apache (an Apache combined access-log line, the tokens in its user agent)")
	fs.StringVar(&o.listen, "listen", "", "count delivery on a TCP server at `host:port` that the server under test forwards to (newline framing) instead of following -out")
	fs.StringVar(&o.metric, "metric", "", "count delivery by a counter at this Prometheus `URL` (a server that keeps nothing, like a blackhole sink) instead of following -out")
	fs.StringVar(&o.series, "series", `herald_sink_committed_events_total{sink="events"}`, "the counter's series in -metric")
	fs.BoolVar(&o.last, "last", false, "-out receives only the run's last line (a server that discards the others): stop when it arrives; loss is not checked")
	fs.StringVar(&o.startAfter, "start-after", "", "wait until this `file` exists before sending (the -listen server is already up meanwhile); the server's process ids in it, comma-separated, stand for -pid")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: herald-loadgen [flags]\n\nSends RFC 3164 syslog lines to herald and measures their delivery into a file sink.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) (*options, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintf(stderr, "herald-loadgen: %v\n", err)
		return nil, err
	}
	if fs.NArg() > 0 {
		return bad("unexpected arguments: %q", fs.Args())
	}
	if pids != "" {
		var err error
		if o.pids, err = parsePIDs(pids); err != nil || len(o.pids) == 0 {
			return bad("-pid takes process ids separated by commas, not %q", pids)
		}
	}
	o.proto = strings.ToLower(o.proto)
	if o.proto != "tcp" && o.proto != "udp" && o.proto != "file" {
		return bad("-proto must be tcp, udp or file, not %q", o.proto)
	}
	if o.proto == "file" && o.conns != 1 {
		return bad("-proto file writes one file: -conns must be 1")
	}
	if o.format != "syslog" && o.format != "apache" {
		return bad("-format must be syslog or apache, not %q", o.format)
	}
	ways := 0
	for _, v := range []string{o.out, o.listen, o.metric} {
		if v != "" {
			ways++
		}
	}
	if ways > 1 {
		return bad("-out, -listen and -metric are exclusive: give one way to count delivery")
	}
	if o.last && o.out == "" {
		return bad("-last needs -out")
	}
	if o.n < 1 {
		return bad("-n must be at least 1")
	}
	if o.conns < 1 {
		return bad("-conns must be at least 1")
	}
	if o.rate < 0 || math.IsNaN(o.rate) || math.IsInf(o.rate, 0) {
		return bad("-rate must be 0 or a positive number")
	}
	if o.size < 1 || o.size > maxLineSize {
		return bad("-size must be between 1 and %d", maxLineSize)
	}
	if o.timeout <= 0 {
		return bad("-timeout must be positive")
	}
	if o.runID == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return bad("run id: %v", err)
		}
		o.runID = hex.EncodeToString(b[:])
	}
	for _, c := range []byte(o.runID) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return bad("-run-id may hold only letters, digits, '-', '_' and '.'")
		}
	}
	if o.host == "" || strings.ContainsAny(o.host, " \t\r\n") {
		return bad("-host must be one non-empty word")
	}
	if o.idle == 0 && o.proto == "udp" {
		o.idle = 3 * time.Second
	}
	return o, nil
}

// measured reports whether delivery is counted (else the loadgen only sends).
func (o *options) measured() bool { return o.out != "" || o.listen != "" || o.metric != "" }

// ---------------------------------------------------------------- line format

// lineFormat builds the syslog lines. Not safe for concurrent use: each sender
// has its own.
type lineFormat struct {
	head    []byte // "benchhost loadgen[123]: run=<id> seq="
	size    int    // wanted line length, without the newline
	pad     []byte
	stampAt int64  // Unix second that stamp shows
	stamp   []byte // "<13>Nov 26 06:10:00 "
	apache  bool
}

func newLineFormat(host, runID string, pid, size int) *lineFormat {
	f := &lineFormat{
		head:    []byte(fmt.Sprintf("%s loadgen[%d]: run=%s seq=", host, pid, runID)),
		size:    size,
		stampAt: math.MinInt64,
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	f.pad = make([]byte, size)
	for i := range f.pad {
		f.pad[i] = alphabet[i%len(alphabet)]
	}
	return f
}

// newApacheFormat makes Apache combined access-log lines; the run's tokens and
// the padding are the user agent, the last quoted field, which parsers take
// as free text:
//
//	10.1.2.3 - - [26/Nov/2026:06:10:00 +0000] "GET /index.html HTTP/1.1" 200 2326 "http://www.example.com/start.html" "Mozilla/5.0 (loadgen) run=<id> seq=42 ts=... abc..."
func newApacheFormat(runID string, size int) *lineFormat {
	f := newLineFormat("", runID, 0, size)
	f.head = []byte("run=" + runID + " seq=")
	f.apache = true
	return f
}

// appendLine appends one line, without framing, to dst: PRI 13 (user.notice),
// a BSD timestamp, host, tag, then "run=<id> seq=<seq> ts=<ts>" and padding up
// to the wanted size.
func (f *lineFormat) appendLine(dst []byte, now time.Time, seq int64) []byte {
	if sec := now.Unix(); sec != f.stampAt {
		f.stampAt = sec
		if f.apache {
			f.stamp = append(f.stamp[:0], "10.1.2.3 - - ["...)
			f.stamp = now.AppendFormat(f.stamp, "02/Jan/2006:15:04:05 -0700")
			f.stamp = append(f.stamp, `] "GET /index.html HTTP/1.1" 200 2326 "http://www.example.com/start.html" "Mozilla/5.0 (loadgen) `...)
		} else {
			f.stamp = append(f.stamp[:0], "<13>"...)
			f.stamp = now.AppendFormat(f.stamp, time.Stamp)
			f.stamp = append(f.stamp, ' ')
		}
	}
	start := len(dst)
	dst = append(dst, f.stamp...)
	dst = append(dst, f.head...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, " ts="...)
	dst = strconv.AppendInt(dst, now.UnixNano(), 10)
	end := 0
	if f.apache {
		end = 1 // the user agent's closing quote
	}
	if pad := f.size - (len(dst) - start) - 1 - end; pad > 0 {
		dst = append(dst, ' ')
		dst = append(dst, f.pad[:pad]...)
	}
	if f.apache {
		dst = append(dst, '"')
	}
	return dst
}

// runToken is what identifies this run's lines in the output.
func runToken(runID string) []byte { return []byte("run=" + runID + " seq=") }

type parseResult int

const (
	notOurs parseResult = iota
	parsed
	malformed
)

// parseLine finds "run=<id> seq=<seq> ts=<ts>" in an output line. The line may
// be JSON: the tokens contain nothing that JSON escapes, so they appear verbatim.
func parseLine(line, token []byte) (seq, ts int64, r parseResult) {
	i := bytes.Index(line, token)
	if i < 0 {
		return 0, 0, notOurs
	}
	rest := line[i+len(token):]
	seq, rest, ok := leadingInt(rest)
	if !ok || !bytes.HasPrefix(rest, []byte(" ts=")) {
		return 0, 0, malformed
	}
	ts, _, ok = leadingInt(rest[len(" ts="):])
	if !ok {
		return 0, 0, malformed
	}
	return seq, ts, parsed
}

// leadingInt parses the decimal digits at the start of b.
func leadingInt(b []byte) (v int64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := int64(b[i] - '0')
		if v > (math.MaxInt64-d)/10 {
			return 0, b, false // overflows int64
		}
		v = v*10 + d
	}
	return v, b[i:], i > 0
}

// ------------------------------------------------------------------ histogram

// Log-linear histogram of non-negative int64 values (nanoseconds here): values
// below histSub are exact; above, each power of two is split into histSub
// buckets, so a bucket is at most 1/histSub (1.6%) of its value wide.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits) * histSub
)

type histogram struct {
	counts [histBuckets]uint64
	total  uint64
	max    int64
	min    int64
}

func histIndex(v int64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1 // v>>e in [histSub, 2*histSub)
	return (e+1)*histSub + int(uint64(v)>>e) - histSub
}

// histBounds returns the smallest and largest value of bucket i.
func histBounds(i int) (lo, hi int64) {
	if i < histSub {
		return int64(i), int64(i)
	}
	e := i/histSub - 1
	m := int64(i%histSub + histSub)
	return m << e, (m+1)<<e - 1
}

func (h *histogram) add(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(v)]++
	if h.total == 0 || v > h.max {
		h.max = v
	}
	if h.total == 0 || v < h.min {
		h.min = v
	}
	h.total++
}

// quantile returns the value at quantile q (0..1) by nearest rank: the middle
// of the bucket holding the ceil(q*total)-th smallest value, clamped to the
// observed min and max. q >= 1 gives the exact maximum.
func (h *histogram) quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			lo, hi := histBounds(i)
			v := lo + (hi-lo)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// -------------------------------------------------------------------- tracker

// tracker counts this run's lines in the output. One goroutine at a time
// calls line (the follower, or the -listen connections under a lock); the
// counters are also read by the main loop's progress line.
type tracker struct {
	token     []byte
	n         int64
	seen      []uint64
	delivered atomic.Int64
	lastNew   atomic.Int64 // Unix nanos of the read that brought the last new seq
	dups      atomic.Int64
	malformed atomic.Int64
	hist      histogram
	lastOnly  bool // the output holds only seq n-1: seeing it completes the run
}

func newTracker(runID string, n int64) *tracker {
	return &tracker{token: runToken(runID), n: n, seen: make([]uint64, (n+63)/64)}
}

// line handles one output line read at time now (Unix nanos). It reports
// whether the line brought a seq not seen before.
func (t *tracker) line(b []byte, now int64) bool {
	seq, ts, r := parseLine(b, t.token)
	switch r {
	case notOurs:
		return false
	case malformed:
		t.malformed.Add(1)
		return false
	}
	if seq < 0 || seq >= t.n {
		t.malformed.Add(1)
		return false
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if t.seen[w]&bit != 0 {
		t.dups.Add(1)
		return false
	}
	t.seen[w] |= bit
	if t.lastOnly && seq == t.n-1 {
		t.delivered.Store(t.n)
	} else {
		t.delivered.Add(1)
	}
	t.lastNew.Store(now)
	t.hist.add(now - ts)
	return true
}

// ------------------------------------------------------------------- follower

// follower reads lines appended to a file, from where the file ended when it
// was created. It survives the file's absence, truncation and replacement.
type follower struct {
	path  string
	f     *os.File
	fi    os.FileInfo
	off   int64 // offset of the next read
	start int64 // where to start in the next file opened
	buf   []byte
	keep  int // bytes of an unfinished line at buf[:keep]
}

func newFollower(path string) *follower {
	fl := &follower{path: path, buf: make([]byte, readBufSize)}
	if fi, err := os.Stat(path); err == nil {
		fl.start = fi.Size() // this run's lines cannot be in it yet
	}
	return fl
}

// poll reads everything appended since the last call and hands each complete
// line to fn with the time it was read. It reports whether fn said any line
// was new. A file found truncated or replaced at the end is read again from
// its start in the same call.
func (fl *follower) poll(fn func(line []byte, now int64) bool) (bool, error) {
	progress := false
	for range 2 {
		again, err := fl.pollOnce(fn, &progress)
		if err != nil || !again {
			return progress, err
		}
	}
	return progress, nil
}

func (fl *follower) pollOnce(fn func(line []byte, now int64) bool, progress *bool) (again bool, err error) {
	if fl.f == nil {
		f, err := os.Open(fl.path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return false, nil
			}
			return false, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return false, err
		}
		if fl.start > fi.Size() {
			fl.start = 0
		}
		if _, err := f.Seek(fl.start, io.SeekStart); err != nil {
			f.Close()
			return false, err
		}
		fl.f, fl.fi, fl.off, fl.keep = f, fi, fl.start, 0
	}
	for {
		n, err := fl.f.Read(fl.buf[fl.keep:])
		if n > 0 {
			now := time.Now().UnixNano()
			fl.off += int64(n)
			data := fl.buf[:fl.keep+n]
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				if fn(data[:i], now) {
					*progress = true
				}
				data = data[i+1:]
			}
			fl.keep = copy(fl.buf, data)
			if fl.keep == len(fl.buf) { // a line longer than the buffer
				nb := make([]byte, 2*len(fl.buf))
				copy(nb, fl.buf)
				fl.buf = nb
			}
		}
		if err == io.EOF || (n == 0 && err == nil) {
			break
		}
		if err != nil {
			return false, err
		}
	}
	// At the end: has the file been truncated, replaced or removed?
	fi, err := os.Stat(fl.path)
	switch {
	case err != nil || !os.SameFile(fi, fl.fi):
		fl.f.Close()
		fl.f, fl.start = nil, 0
		return err == nil, nil
	case fi.Size() < fl.off:
		if _, err := fl.f.Seek(0, io.SeekStart); err != nil {
			return false, err
		}
		fl.off, fl.keep = 0, 0
		return true, nil
	}
	return false, nil
}

func (fl *follower) close() {
	if fl.f != nil {
		fl.f.Close()
		fl.f = nil
	}
}

// --------------------------------------------------------------------- sender

type sendStats struct {
	lines  atomic.Int64
	bytes  atomic.Int64
	errors atomic.Int64 // udp datagrams that failed
}

// sendTCP writes the lines seq = first, first+step, ... < n through a 256 KiB
// buffer. Lines count as sent once the buffer holding them was written.
func sendTCP(ctx context.Context, conn io.Writer, lf *lineFormat, first, step, n int64, rate float64, st *sendStats) error {
	w := bufio.NewWriterSize(conn, writeBufSize)
	var pendLines, pendBytes int64
	flush := func() error {
		if err := w.Flush(); err != nil {
			return err
		}
		st.lines.Add(pendLines)
		st.bytes.Add(pendBytes)
		pendLines, pendBytes = 0, 0
		return nil
	}
	line := make([]byte, 0, lf.size+64)
	pace := newPacer(rate)
	for seq, i := first, 0; seq < n; seq, i = seq+step, i+1 {
		if i&1023 == 0 && ctx.Err() != nil {
			break
		}
		if d := pace.wait(); d > 0 && !sleepCtx(ctx, d) {
			break // the buffer is empty here: see below
		}
		line = lf.appendLine(line[:0], time.Now(), seq)
		line = append(line, '\n')
		if w.Available() < len(line) {
			if err := flush(); err != nil {
				return err
			}
		}
		w.Write(line) // fits in the buffer; a write error shows in the next flush
		pendLines++
		pendBytes += int64(len(line))
		if pace.next() > 0 { // paced and ahead: do not hold the line in the buffer
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// sendUDP sends each line as one datagram, without a newline.
func sendUDP(ctx context.Context, conn io.Writer, lf *lineFormat, first, step, n int64, rate float64, st *sendStats) error {
	line := make([]byte, 0, lf.size+64)
	pace := newPacer(rate)
	var lastErr error
	for seq, i := first, 0; seq < n; seq, i = seq+step, i+1 {
		if i&1023 == 0 && ctx.Err() != nil {
			break
		}
		if d := pace.wait(); d > 0 && !sleepCtx(ctx, d) {
			break
		}
		line = lf.appendLine(line[:0], time.Now(), seq)
		pace.next()
		if _, err := conn.Write(line); err != nil {
			// ECONNREFUSED from an earlier ICMP, ENOBUFS: count it and go on.
			st.errors.Add(1)
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		st.lines.Add(1)
		st.bytes.Add(int64(len(line)))
	}
	if lastErr != nil {
		return fmt.Errorf("%d datagrams failed, last: %w", st.errors.Load(), lastErr)
	}
	return nil
}

// pacer spaces lines at a fixed rate; a zero rate never waits.
type pacer struct {
	rate  float64
	start time.Time
	i     int64
}

func newPacer(rate float64) *pacer { return &pacer{rate: rate, start: time.Now()} }

// wait returns how long to wait before sending the current line when the
// sender is more than a millisecond ahead of schedule, else 0.
func (p *pacer) wait() time.Duration {
	if p.rate <= 0 {
		return 0
	}
	due := p.start.Add(time.Duration(float64(p.i) / p.rate * 1e9))
	if d := time.Until(due); d > time.Millisecond {
		return d
	}
	return 0
}

// next counts the current line as sent and returns wait() for the next one.
func (p *pacer) next() time.Duration {
	p.i++
	return p.wait()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ----------------------------------------------------------------------- proc

// procCPUTicks returns utime+stime of a process in clock ticks.
func procCPUTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

func parseStatCPU(b []byte) (uint64, error) {
	// "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return u + s, nil
}

// procsCPUTicks returns utime+stime summed over processes.
func procsCPUTicks(pids []int) (uint64, error) {
	var sum uint64
	for _, pid := range pids {
		t, err := procCPUTicks(pid)
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		sum += t
	}
	return sum, nil
}

// procsPeakRSS returns VmHWM summed over processes, in bytes.
func procsPeakRSS(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		v, err := procPeakRSS(pid)
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		sum += v
	}
	return sum, nil
}

// procPeakRSS returns VmHWM of a process in bytes.
func procPeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmHWM")
}

// clockTicks returns the kernel's USER_HZ from the auxiliary vector (AT_CLKTCK),
// or 100, its value on every common Linux build.
func clockTicks() float64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err == nil {
		for i := 0; i+16 <= len(b); i += 16 {
			k := binary.NativeEndian.Uint64(b[i:])
			v := binary.NativeEndian.Uint64(b[i+8:])
			if k == 17 && v > 0 { // AT_CLKTCK
				return float64(v)
			}
			if k == 0 {
				break
			}
		}
	}
	return 100
}

// ---------------------------------------------------------------------- run

// result is the summary; its JSON form is what -json prints.
type result struct {
	RunID        string  `json:"run_id"`
	Proto        string  `json:"proto"`
	Addr         string  `json:"addr"`
	Conns        int     `json:"conns"`
	Size         int     `json:"size"`
	Rate         float64 `json:"rate"`
	N            int64   `json:"n"`
	Sent         int64   `json:"sent"`
	SentBytes    int64   `json:"sent_bytes"`
	SendSeconds  float64 `json:"send_seconds"`
	SendRate     float64 `json:"send_lines_per_s"`
	SendMiBs     float64 `json:"send_mib_per_s"`
	SendError    string  `json:"send_error,omitempty"`
	Followed     bool    `json:"followed"`
	Delivery     string  `json:"delivery,omitempty"` // how delivery was counted: file, tcp, metric, last-line
	Delivered    int64   `json:"delivered"`
	Missing      int64   `json:"missing"`
	Duplicates   int64   `json:"duplicates"`
	Malformed    int64   `json:"malformed"`
	Seconds      float64 `json:"seconds"` // first send to last delivery
	EventsPerSec float64 `json:"events_per_s"`
	MiBPerSec    float64 `json:"mib_per_s"`
	P50Ms        float64 `json:"latency_p50_ms"`
	P99Ms        float64 `json:"latency_p99_ms"`
	MaxMs        float64 `json:"latency_max_ms"`
	StopReason   string  `json:"stop_reason"`
	PID          int     `json:"pid,omitempty"`  // the first of PIDs
	PIDs         []int   `json:"pids,omitempty"` // -pid
	Server       string  `json:"server"`
	PeakRSSMiB   float64 `json:"herald_peak_rss_mib,omitempty"`
	CPUPercent   float64 `json:"herald_cpu_percent,omitempty"`
	Cores        int     `json:"cores"`
	ProcError    string  `json:"proc_error,omitempty"`
}

func execute(ctx context.Context, o *options, stderr io.Writer) (*result, error) {
	res := &result{RunID: o.runID, Proto: o.proto, Addr: o.addr, Conns: o.conns, Size: o.size,
		Rate: o.rate, N: o.n, PIDs: o.pids, Server: o.name, Cores: runtime.NumCPU(), Followed: o.measured()}

	var src source
	var tr *tracker
	if o.measured() {
		tr = newTracker(o.runID, o.n)
		switch {
		case o.out != "":
			tr.lastOnly = o.last
			fl := newFollower(o.out)
			src, res.Delivery = &fileSource{fl: fl, tr: tr}, "file"
			if o.last {
				res.Delivery = "last-line"
			}
		case o.listen != "":
			ls, err := newListenSource(o.listen, tr)
			if err != nil {
				return nil, err
			}
			src, res.Delivery = ls, "tcp"
		default:
			src, res.Delivery = &metricSource{url: o.metric, series: o.series, tr: tr,
				client: &http.Client{Timeout: 5 * time.Second}}, "metric"
		}
		defer src.close()
	}

	if o.startAfter != "" {
		pids, err := waitForFile(ctx, o.startAfter, o.timeout)
		if err != nil {
			return nil, err
		}
		if len(o.pids) == 0 {
			o.pids, res.PIDs = pids, pids
		}
	}

	conns := make([]io.WriteCloser, 0, o.conns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range o.conns {
		if o.proto == "file" {
			f, err := os.OpenFile(o.addr, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return nil, err
			}
			conns = append(conns, f)
			continue
		}
		c, err := net.DialTimeout(o.proto, o.addr, 5*time.Second)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
	}

	// CPU baseline, then the clock starts.
	var cpu0 uint64
	var cpuAt0 time.Time
	clk := clockTicks()
	if len(o.pids) > 0 {
		res.PID = o.pids[0]
		t, err := procsCPUTicks(o.pids)
		if err != nil {
			return nil, fmt.Errorf("-pid: %w", err)
		}
		cpu0, cpuAt0 = t, time.Now()
	}
	cpuLast, cpuAtLast := cpu0, cpuAt0

	runCtx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	stats := &sendStats{}
	var sendEnd atomic.Int64
	var sendErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		stopWrites := func() bool { return true }
		if d, ok := c.(interface{ SetWriteDeadline(time.Time) error }); ok && o.proto != "file" {
			stopWrites = context.AfterFunc(runCtx, func() { d.SetWriteDeadline(time.Now()) })
		}
		size := o.size
		if o.proto != "udp" {
			size-- // the newline
		}
		lf := newLineFormat(o.host, o.runID, os.Getpid(), size)
		if o.format == "apache" {
			lf = newApacheFormat(o.runID, size)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stopWrites()
			send := sendTCP // a stream: tcp, or lines appended to a file
			if o.proto == "udp" {
				send = sendUDP
			}
			if err := send(runCtx, c, lf, int64(i), int64(len(conns)), o.n, o.rate/float64(len(conns)), stats); err != nil {
				errOnce.Do(func() { sendErr = err })
			}
		}()
	}
	sendDone := make(chan struct{})
	go func() {
		wg.Wait()
		sendEnd.Store(time.Now().UnixNano())
		close(sendDone)
	}()

	// Count deliveries until done.
	var nextProgress time.Time
	if o.progress > 0 {
		nextProgress = start.Add(o.progress)
	}
	reason := "sent"
	if src == nil {
		select {
		case <-sendDone:
		case <-runCtx.Done():
		}
	}
	for src != nil {
		newLines, err := src.poll()
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		now := time.Now()
		if newLines {
			if len(o.pids) > 0 {
				if t, err := procsCPUTicks(o.pids); err == nil {
					cpuLast, cpuAtLast = t, now
				}
			}
		}
		if tr.delivered.Load() == o.n {
			reason = "complete"
			break
		}
		sent := false
		select {
		case <-sendDone:
			sent = true
		default:
		}
		if sent && o.idle > 0 {
			last := max(sendEnd.Load(), tr.lastNew.Load())
			if now.Sub(time.Unix(0, last)) >= o.idle {
				reason = fmt.Sprintf("idle %v", o.idle)
				break
			}
		}
		if runCtx.Err() != nil {
			reason = "timeout"
			if ctx.Err() != nil {
				reason = "interrupted"
			}
			break
		}
		if !nextProgress.IsZero() && now.After(nextProgress) {
			nextProgress = now.Add(o.progress)
			fmt.Fprintf(stderr, "herald-loadgen: %5.1fs sent %d delivered %d duplicates %d malformed %d\n",
				now.Sub(start).Seconds(), stats.lines.Load(), tr.delivered.Load(), tr.dups.Load(), tr.malformed.Load())
		}
		if !newLines {
			time.Sleep(src.every())
		}
	}
	if src == nil && runCtx.Err() != nil {
		reason = "timeout"
		if ctx.Err() != nil {
			reason = "interrupted"
		}
	}
	cancel()
	wg.Wait()
	<-sendDone
	if src != nil {
		src.close() // the -listen connections stop writing the tracker
	}

	res.StopReason = reason
	res.Sent = stats.lines.Load()
	res.SentBytes = stats.bytes.Load()
	if sendErr != nil {
		res.SendError = sendErr.Error()
	}
	sendSecs := time.Unix(0, sendEnd.Load()).Sub(start).Seconds()
	res.SendSeconds = sendSecs
	if sendSecs > 0 {
		res.SendRate = float64(res.Sent) / sendSecs
		res.SendMiBs = float64(res.SentBytes) / mib / sendSecs
	}
	if tr != nil {
		res.Delivered = tr.delivered.Load()
		res.Missing = o.n - res.Delivered
		res.Duplicates = tr.dups.Load()
		res.Malformed = tr.malformed.Load()
		if last := tr.lastNew.Load(); last > 0 {
			res.Seconds = time.Unix(0, last).Sub(start).Seconds()
		}
		if res.Seconds > 0 {
			res.EventsPerSec = float64(res.Delivered) / res.Seconds
			if res.Sent > 0 {
				bytesPerLine := float64(res.SentBytes) / float64(res.Sent)
				res.MiBPerSec = float64(res.Delivered) * bytesPerLine / mib / res.Seconds
			}
		}
		if res.Delivery == "file" || res.Delivery == "tcp" { // the others see at most one line's latency
			res.P50Ms = float64(tr.hist.quantile(0.50)) / 1e6
			res.P99Ms = float64(tr.hist.quantile(0.99)) / 1e6
			res.MaxMs = float64(tr.hist.quantile(1)) / 1e6
		}
	}
	if len(o.pids) > 0 {
		if tr == nil || tr.delivered.Load() == 0 { // no deliveries to time: measure until now
			if t, err := procsCPUTicks(o.pids); err == nil {
				cpuLast, cpuAtLast = t, time.Now()
			}
		}
		if secs := cpuAtLast.Sub(cpuAt0).Seconds(); secs > 0 {
			res.CPUPercent = float64(cpuLast-cpu0) / clk / secs * 100
		}
		if rss, err := procsPeakRSS(o.pids); err == nil {
			res.PeakRSSMiB = float64(rss) / mib
		} else {
			res.ProcError = err.Error()
		}
	}
	return res, nil
}

// waitForFile waits until path exists, for at most d, and returns the
// process ids it holds (comma-separated; none if it is empty): a script that
// starts the server after the loadgen gives them this way.
func waitForFile(ctx context.Context, path string, d time.Duration) ([]int, error) {
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			pids, err := parsePIDs(strings.TrimSpace(string(b)))
			if err != nil {
				return nil, fmt.Errorf("-start-after %s: %w", path, err)
			}
			return pids, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("-start-after: %s did not appear within %v", path, d)
		}
		if !sleepCtx(ctx, 10*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

// parsePIDs reads "PID[,PID...]"; "" is none.
func parsePIDs(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var pids []int
	for _, f := range strings.Split(s, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || pid < 1 {
			return nil, fmt.Errorf("process ids separated by commas, not %q", s)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// ------------------------------------------------------------------- sources

// source counts deliveries into a tracker: poll reports whether new lines
// arrived since the last call; every is how long to wait after a poll that
// brought none.
type source interface {
	poll() (bool, error)
	every() time.Duration
	close()
}

// fileSource follows an output file (-out).
type fileSource struct {
	fl *follower
	tr *tracker
}

func (s *fileSource) poll() (bool, error) {
	ok, err := s.fl.poll(s.tr.line)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", s.fl.path, err)
	}
	return ok, nil
}
func (s *fileSource) every() time.Duration { return pollEvery }
func (s *fileSource) close()               { s.fl.close() }

// listenSource is a TCP server the server under test forwards to (-listen):
// newline-framed lines on any number of connections, each counted like a
// line of an output file. Frames in octet counting ("LEN SP MSG") hold the
// tokens too, but their boundaries are not newlines: configure newline framing.
type listenSource struct {
	ln    net.Listener
	tr    *tracker
	mu    sync.Mutex // one connection at a time in tr.line
	seen  int64      // tr.delivered at the last poll
	wg    sync.WaitGroup
	cmu   sync.Mutex
	conns map[net.Conn]bool
	done  bool
}

func newListenSource(addr string, tr *tracker) (*listenSource, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-listen: %w", err)
	}
	s := &listenSource{ln: ln, tr: tr, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *listenSource) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.cmu.Lock()
		if s.done {
			s.cmu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.cmu.Unlock()
		go s.read(c)
	}
}

func (s *listenSource) read(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.cmu.Lock()
		delete(s.conns, c)
		s.cmu.Unlock()
		c.Close()
	}()
	buf := make([]byte, readBufSize)
	keep := 0
	for {
		n, err := c.Read(buf[keep:])
		if n > 0 {
			now := time.Now().UnixNano()
			data := buf[:keep+n]
			s.mu.Lock()
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				s.tr.line(data[:i], now)
				data = data[i+1:]
			}
			s.mu.Unlock()
			keep = copy(buf, data)
			if keep == len(buf) { // a line longer than the buffer
				nb := make([]byte, 2*len(buf))
				copy(nb, buf)
				buf = nb
			}
		}
		if err != nil {
			return
		}
	}
}

func (s *listenSource) poll() (bool, error) {
	d := s.tr.delivered.Load()
	progress := d != s.seen
	s.seen = d
	return progress, nil
}
func (s *listenSource) every() time.Duration { return pollEvery }

func (s *listenSource) close() {
	s.cmu.Lock()
	if s.done {
		s.cmu.Unlock()
		return
	}
	s.done = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.cmu.Unlock()
	s.wg.Wait()
}

// metricSource reads how many events were delivered from a Prometheus
// counter (-metric): for a server whose output keeps nothing to count. Every
// event counts once however often it was committed, so a count above -n is
// reported as duplicates; there is no latency.
type metricSource struct {
	client *http.Client
	url    string
	series string
	tr     *tracker
	last   int64
}

func (s *metricSource) poll() (bool, error) {
	v, err := promCounter(s.client, s.url, s.series)
	if err != nil {
		return false, nil // not up yet, or busy: try again at the next poll
	}
	if v <= s.last {
		return false, nil
	}
	s.last = v
	s.tr.delivered.Store(min(v, s.tr.n))
	s.tr.dups.Store(max(v-s.tr.n, 0))
	s.tr.lastNew.Store(time.Now().UnixNano())
	return true, nil
}

// every is longer than a file's poll: each poll makes the server render all
// its metrics.
func (s *metricSource) every() time.Duration { return 50 * time.Millisecond }
func (s *metricSource) close()               {}

// promCounter reads one series' value from a Prometheus text exposition.
func promCounter(client *http.Client, url, series string) (int64, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return parseCounter(resp.Body, series)
}

func parseCounter(r io.Reader, series string) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return 0, fmt.Errorf("series %s: %w", series, err)
			}
			return int64(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, nil // a counter not created yet is zero
}

func printSummary(w io.Writer, o *options, r *result) {
	rate := "max"
	if o.rate > 0 {
		rate = strconv.FormatFloat(o.rate, 'f', -1, 64) + "/s"
	}
	fmt.Fprintf(w, "herald-loadgen run=%s %s %s conns=%d size=%d rate=%s n=%d\n",
		r.RunID, r.Proto, r.Addr, r.Conns, r.Size, rate, r.N)
	fmt.Fprintf(w, "  sent        %d lines, %.1f MiB in %.2fs: %.0f lines/s, %.1f MiB/s\n",
		r.Sent, float64(r.SentBytes)/mib, r.SendSeconds, r.SendRate, r.SendMiBs)
	if r.SendError != "" {
		fmt.Fprintf(w, "  send error  %s\n", r.SendError)
	}
	if r.Followed {
		fmt.Fprintf(w, "  delivered   %d   missing %d   duplicates %d", r.Delivered, r.Missing, r.Duplicates)
		if r.Malformed > 0 {
			fmt.Fprintf(w, "   malformed %d", r.Malformed)
		}
		fmt.Fprintf(w, "   (stop: %s)\n", r.StopReason)
		switch r.Delivery {
		case "metric":
			fmt.Fprintf(w, "  counted     by the server's counter (%s): no latency\n", o.series)
		case "last-line":
			fmt.Fprintf(w, "  counted     by the last line only (the server discards the others): loss not checked, no latency\n")
		}
		fmt.Fprintf(w, "  end to end  %.2fs first send -> last delivery: %.0f events/s, %.1f MiB/s\n",
			r.Seconds, r.EventsPerSec, r.MiBPerSec)
		if r.Delivery == "file" || r.Delivery == "tcp" {
			fmt.Fprintf(w, "  latency     p50 %s   p99 %s   max %s\n", fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs))
		}
	} else {
		fmt.Fprintf(w, "  (no -out: delivery not measured; stop: %s)\n", r.StopReason)
	}
	if r.PID > 0 {
		pids := make([]string, len(r.PIDs))
		for i, p := range r.PIDs {
			pids[i] = strconv.Itoa(p)
		}
		fmt.Fprintf(w, "  %-11s pid %s: peak RSS %.1f MiB, CPU %.0f%% (of %d00%%)", r.Server, strings.Join(pids, ","), r.PeakRSSMiB, r.CPUPercent, r.Cores)
		if r.ProcError != "" {
			fmt.Fprintf(w, " [%s]", r.ProcError)
		}
		fmt.Fprintln(w)
	}
}

func fmtMs(ms float64) string {
	switch {
	case ms >= 10000:
		return fmt.Sprintf("%.1fs", ms/1000)
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	default:
		return fmt.Sprintf("%.2fms", ms)
	}
}
