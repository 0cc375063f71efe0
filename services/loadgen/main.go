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
// Exit status: 0 on success; 1 when TCP delivery is incomplete (or, without
// -out, when sending failed); 2 for bad flags.
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
	if res.SendError != "" && (o.out == "" || o.proto == "tcp") {
		return 1
	}
	if o.out != "" && o.proto == "tcp" && res.Delivered < o.n {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("herald-loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:5514", "herald syslog receiver `host:port`")
	fs.StringVar(&o.proto, "proto", "tcp", "tcp or udp")
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
		for _, f := range strings.Split(pids, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid < 1 {
				return bad("-pid takes process ids separated by commas, not %q", pids)
			}
			o.pids = append(o.pids, pid)
		}
	}
	o.proto = strings.ToLower(o.proto)
	if o.proto != "tcp" && o.proto != "udp" {
		return bad("-proto must be tcp or udp, not %q", o.proto)
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

// ---------------------------------------------------------------- line format

// lineFormat builds the syslog lines. Not safe for concurrent use: each sender
// has its own.
type lineFormat struct {
	head    []byte // "benchhost loadgen[123]: run=<id> seq="
	size    int    // wanted line length, without the newline
	pad     []byte
	stampAt int64  // Unix second that stamp shows
	stamp   []byte // "<13>Nov 26 06:10:00 "
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

// appendLine appends one line, without framing, to dst: PRI 13 (user.notice),
// a BSD timestamp, host, tag, then "run=<id> seq=<seq> ts=<ts>" and padding up
// to the wanted size.
func (f *lineFormat) appendLine(dst []byte, now time.Time, seq int64) []byte {
	if sec := now.Unix(); sec != f.stampAt {
		f.stampAt = sec
		f.stamp = append(f.stamp[:0], "<13>"...)
		f.stamp = now.AppendFormat(f.stamp, time.Stamp)
		f.stamp = append(f.stamp, ' ')
	}
	start := len(dst)
	dst = append(dst, f.stamp...)
	dst = append(dst, f.head...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, " ts="...)
	dst = strconv.AppendInt(dst, now.UnixNano(), 10)
	if pad := f.size - (len(dst) - start) - 1; pad > 0 {
		dst = append(dst, ' ')
		dst = append(dst, f.pad[:pad]...)
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

// tracker counts this run's lines in the output. Only the follower goroutine
// writes it; delivered and lastNew are also read by the main loop's progress line.
type tracker struct {
	token     []byte
	n         int64
	seen      []uint64
	delivered atomic.Int64
	lastNew   atomic.Int64 // Unix nanos of the read that brought the last new seq
	dups      int64
	malformed int64
	hist      histogram
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
		t.malformed++
		return false
	}
	if seq < 0 || seq >= t.n {
		t.malformed++
		return false
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if t.seen[w]&bit != 0 {
		t.dups++
		return false
	}
	t.seen[w] |= bit
	t.delivered.Add(1)
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
func sendTCP(ctx context.Context, conn net.Conn, lf *lineFormat, first, step, n int64, rate float64, st *sendStats) error {
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
func sendUDP(ctx context.Context, conn net.Conn, lf *lineFormat, first, step, n int64, rate float64, st *sendStats) error {
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
		Rate: o.rate, N: o.n, PIDs: o.pids, Server: o.name, Cores: runtime.NumCPU(), Followed: o.out != ""}

	var fl *follower
	var tr *tracker
	if o.out != "" {
		fl = newFollower(o.out)
		defer fl.close()
		tr = newTracker(o.runID, o.n)
	}

	conns := make([]net.Conn, 0, o.conns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range o.conns {
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
		stopWrites := context.AfterFunc(runCtx, func() { c.SetWriteDeadline(time.Now()) })
		size := o.size
		if o.proto == "tcp" {
			size-- // the newline
		}
		lf := newLineFormat(o.host, o.runID, os.Getpid(), size)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stopWrites()
			send := sendTCP
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

	// Follow the output until done.
	var nextProgress time.Time
	if o.progress > 0 {
		nextProgress = start.Add(o.progress)
	}
	reason := "sent"
	if fl == nil {
		select {
		case <-sendDone:
		case <-runCtx.Done():
		}
	}
	for fl != nil {
		newLines, err := fl.poll(tr.line)
		if err != nil {
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("reading %s: %w", o.out, err)
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
				now.Sub(start).Seconds(), stats.lines.Load(), tr.delivered.Load(), tr.dups, tr.malformed)
		}
		if !newLines {
			time.Sleep(pollEvery)
		}
	}
	if fl == nil && runCtx.Err() != nil {
		reason = "timeout"
		if ctx.Err() != nil {
			reason = "interrupted"
		}
	}
	cancel()
	wg.Wait()
	<-sendDone

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
		res.Duplicates = tr.dups
		res.Malformed = tr.malformed
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
		res.P50Ms = float64(tr.hist.quantile(0.50)) / 1e6
		res.P99Ms = float64(tr.hist.quantile(0.99)) / 1e6
		res.MaxMs = float64(tr.hist.quantile(1)) / 1e6
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
		fmt.Fprintf(w, "  end to end  %.2fs first send -> last delivery: %.0f events/s, %.1f MiB/s\n",
			r.Seconds, r.EventsPerSec, r.MiBPerSec)
		fmt.Fprintf(w, "  latency     p50 %s   p99 %s   max %s\n", fmtMs(r.P50Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs))
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
