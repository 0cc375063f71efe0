package tail

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/actors/receiver/tail/mbox"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

const bucketName = bus.KVFilePositions

// Register adds the file receiver to r.
func Register(r *receiver.Registry) {
	r.MustAdd("file", receiver.Kind{
		Options: func() any { return DefaultOptions() },
		New: func(env receiver.Env, o any) (receiver.Listener, error) {
			opts := *o.(*Options)
			if env.Config != nil {
				opts.Paths = resolve(env.Config.Dir, opts.Paths, false)
				opts.Exclude = resolve(env.Config.Dir, opts.Exclude, true)
			}
			return New(env.Name, opts, Deps{Bus: env.Bus, Batcher: env.Batcher, Metrics: env.Metrics, Log: env.Log}), nil
		},
	})
}

// resolve makes relative patterns relative to dir; with baseNames, a
// pattern without a slash is left alone (it matches base names).
func resolve(dir string, patterns []string, baseNames bool) []string {
	out := make([]string, len(patterns))
	for i, p := range patterns {
		out[i] = p
		if filepath.IsAbs(p) || baseNames && !strings.ContainsRune(p, '/') {
			continue
		}
		out[i] = filepath.Join(dir, p)
	}
	return out
}

// Deps are what a Tailer works with.
type Deps struct {
	Bus     *bus.Bus // the positions bucket takes its replicas and placement
	Batcher *receiver.Batcher
	Metrics *metrics.Stage
	Log     *slog.Logger
}

// Tailer follows the files of one file receiver.
type Tailer struct {
	name  string
	opts  Options
	start *regexp.Regexp
	deps  Deps
	log   *slog.Logger

	store  *store
	stored map[fileID]position // positions found at start-up, used once

	files     map[fileID]*file // owned by the read loop
	firstScan bool
	lastScan  time.Time
	stopped   bool // the batcher refused a record: shutting down

	mu     sync.Mutex
	states map[fileID]*ackState // shared with the committer and the callbacks

	inflight  sync.WaitGroup
	quit      chan struct{}
	quitOnce  sync.Once
	loopDone  chan struct{}
	commitEnd chan struct{}
}

// New returns a Tailer; Listen opens its positions bucket.
func New(name string, opts Options, deps Deps) *Tailer {
	return &Tailer{
		name: name, opts: opts, start: opts.startPattern(), deps: deps,
		log:       deps.Log.With("receiver", name),
		files:     map[fileID]*file{},
		states:    map[fileID]*ackState{},
		firstScan: true,
		quit:      make(chan struct{}),
		loopDone:  make(chan struct{}),
		commitEnd: make(chan struct{}),
	}
}

// Listen opens the positions bucket and reads the stored positions; a
// bucket that cannot be reached fails the start.
func (t *Tailer) Listen() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := openStore(ctx, t.deps.Bus, t.name)
	if err != nil {
		return fmt.Errorf("receiver %s: %w", t.name, err)
	}
	stored, err := s.load(ctx)
	if err != nil {
		return fmt.Errorf("receiver %s: %w", t.name, err)
	}
	t.store, t.stored = s, stored
	return nil
}

// Serve starts following the files and committing positions.
func (t *Tailer) Serve() {
	go t.loop()
	go t.commitLoop()
}

// Shutdown stops reading, waits (bounded by ctx) until every record read
// was acknowledged, writes the positions and closes the files. A record
// still being joined (multiline) or an unterminated line is left for the
// next start, which reads it again from the stored position.
func (t *Tailer) Shutdown(ctx context.Context) {
	t.quitOnce.Do(func() { close(t.quit) })
	for _, ch := range []chan struct{}{t.loopDone, t.commitEnd} {
		select {
		case <-ch:
		case <-ctx.Done():
			t.log.Warn("file receiver did not stop in time; positions not written", "err", ctx.Err())
			return
		}
	}
	acked := make(chan struct{})
	go func() { t.inflight.Wait(); close(acked) }()
	select {
	case <-acked:
	case <-ctx.Done():
		t.log.Warn("records still unacknowledged at shutdown; they will be read again", "err", ctx.Err())
	}
	if err := t.commit(ctx); err != nil {
		t.log.Warn("writing file positions at shutdown failed; some records will be read again", "err", err)
	}
	for _, f := range t.files {
		_ = f.fd.Close()
	}
}

func (t *Tailer) loop() {
	defer close(t.loopDone)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-t.quit:
			return
		case <-timer.C:
		}
		wait := t.opts.PollInterval.D()
		if t.cycle(time.Now()) {
			wait = 0 // more may be waiting: read on without pause
		}
		if t.stopped {
			<-t.quit
			return
		}
		timer.Reset(wait)
	}
}

// cycle matches the patterns (every poll_interval), reads what the files
// gained, and closes files that are gone. It reports whether it read data.
func (t *Tailer) cycle(now time.Time) bool {
	if t.firstScan || now.Sub(t.lastScan) >= t.opts.PollInterval.D() {
		t.scan(now)
		t.lastScan = now
	}
	busy := false
	ids := make([]fileID, 0, len(t.files))
	for id := range t.files {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return t.files[ids[i]].path < t.files[ids[j]].path })
	for _, id := range ids {
		f := t.files[id]
		if t.read(f, now) {
			busy = true
		}
		if t.stopped {
			return false
		}
		t.expire(f, now)
	}
	return busy
}

// match returns the regular files the patterns name, by identity.
func (t *Tailer) match() map[fileID]string {
	out := map[fileID]string{}
	for _, pat := range t.opts.Paths {
		paths, _ := filepath.Glob(pat) // the patterns were validated
		for _, p := range paths {
			if t.excluded(p) {
				continue
			}
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			if id, ok := idOf(fi); ok {
				if _, dup := out[id]; !dup {
					out[id] = p
				}
			}
		}
	}
	return out
}

func (t *Tailer) excluded(p string) bool {
	for _, x := range t.opts.Exclude {
		if ok, _ := filepath.Match(x, p); ok {
			return true
		}
		if ok, _ := filepath.Match(x, filepath.Base(p)); ok {
			return true
		}
	}
	return false
}

// scan opens the files that newly match and notes those that left.
func (t *Tailer) scan(now time.Time) {
	matched := t.match()
	for id, f := range t.files {
		if p, ok := matched[id]; ok {
			if p != f.path {
				t.log.Info("following file under its new name", "file", f.path, "now", p)
				f.path = p
				f.state.setPath(p)
			}
			f.leftAt = time.Time{}
			delete(matched, id)
		} else if f.leftAt.IsZero() {
			f.leftAt = now
		}
	}
	for id, p := range matched {
		t.open(id, p, now)
	}
	if t.firstScan {
		t.firstScan = false
		// Positions of files no pattern matches any more are of no use.
		for id := range t.stored {
			if _, open := t.files[id]; !open {
				t.forget(id)
			}
		}
		t.stored = nil
	}
}

// forget removes a stored position at the next commit.
func (t *Tailer) forget(id fileID) {
	t.mu.Lock()
	if _, ok := t.states[id]; !ok {
		t.states[id] = &ackState{id: id, gone: true}
	}
	t.mu.Unlock()
}

// open starts following the file at path.
func (t *Tailer) open(id fileID, path string, now time.Time) {
	fd, err := os.Open(path)
	if err != nil {
		t.log.Warn("cannot open file", "file", path, "err", err)
		return
	}
	fi, err := fd.Stat()
	if err != nil {
		_ = fd.Close()
		t.log.Warn("cannot stat file", "file", path, "err", err)
		return
	}
	if got, ok := idOf(fi); !ok || got != id {
		_ = fd.Close() // replaced between the match and the open: the next scan sees the new one
		return
	}
	f := &file{path: path, id: id, fd: fd, size: fi.Size(), mtime: fi.ModTime(), lastData: now}
	st := &ackState{id: id, path: path}
	var off int64
	switch p, ok := t.stored[id]; {
	case ok && p.validFor(fd, fi.Size()):
		off = p.Offset
		st.acked, st.mark, st.committed = p.Offset, p.Mark, p.Offset
		t.log.Info("resuming file", "file", path, "offset", off)
	case ok:
		t.log.Warn("file changed while herald was not reading it; reading it from the start", "file", path)
		st.dirty = true
	case t.firstScan && t.opts.StartAt == StartEnd:
		off = fi.Size()
		st.acked, st.dirty = off, true
		st.mark = markAt(fd, off)
	default:
		st.dirty = true
	}
	f.readOff = off
	f.head = headOf(fd)
	st.head = f.head
	f.state = st
	f.readMark()
	t.files[id] = f
	t.mu.Lock()
	t.states[id] = st
	t.mu.Unlock()
}

func headOf(fd *os.File) print {
	b := make([]byte, headLen)
	n, _ := fd.ReadAt(b, 0)
	return printOf(b[:n])
}

func markAt(fd *os.File, off int64) print {
	n := min(int64(markLen), off)
	b := make([]byte, n)
	if _, err := fd.ReadAt(b, off-n); err != nil {
		return print{}
	}
	return printOf(b)
}

// expire closes a file that left the patterns or was deleted once it has
// not grown for rotate_wait; what is left unterminated is then a record.
func (t *Tailer) expire(f *file, now time.Time) {
	gone := !f.leftAt.IsZero() || f.deleted
	if !gone {
		return
	}
	since := f.lastData
	if f.leftAt.After(since) {
		since = f.leftAt
	}
	if now.Sub(since) < t.opts.RotateWait.D() {
		return
	}
	if len(f.buf) > 0 {
		t.line(f, f.buf, f.readOff, false, now)
		f.buf = f.buf[:0]
	}
	t.flushRecord(f)
	_ = f.fd.Close()
	delete(t.files, f.id)
	t.log.Info("stopped following file", "file", f.path, "deleted", f.deleted)
	f.state.markGone()
}

// ackState is the acknowledged position of one file, shared by the read
// loop (which resets it on truncation), the publish callbacks (which move
// it) and the committer (which writes it).
type ackState struct {
	id fileID

	mu        sync.Mutex
	path      string
	head      print
	epoch     uint64 // bumps when the file is read again from its start
	acked     int64  // end of the last acknowledged record
	mark      print  // of the bytes before acked
	stuck     bool   // a record of this epoch failed: acked must not pass it
	dirty     bool
	committed int64
	gone      bool
}

func (s *ackState) setPath(p string) {
	s.mu.Lock()
	s.path, s.dirty = p, true
	s.mu.Unlock()
}

func (s *ackState) markGone() {
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
}

// reset starts a new epoch at offset 0 with head.
func (s *ackState) reset(head print) {
	s.mu.Lock()
	s.epoch++
	s.acked, s.mark, s.head, s.stuck, s.dirty = 0, print{}, head, false, true
	s.mu.Unlock()
}

func (s *ackState) currentEpoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// ack moves the position after a record of epoch once it is stored.
func (s *ackState) ack(epoch uint64, end int64, mark print, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch || s.stuck {
		return
	}
	if err != nil {
		s.stuck = true
		return
	}
	if end > s.acked {
		s.acked, s.mark, s.dirty = end, mark, true
	}
}

// emit publishes one record ending at end (exclusive; its newline, when
// nl, included).
func (t *Tailer) emit(f *file, rec []byte, end int64, nl bool) {
	if len(bytes.TrimSpace(rec)) == 0 {
		t.deps.Metrics.Rejected("empty", 1)
		return
	}
	ev := &schemas.Event{
		Raw:              bytes.Clone(rec),
		Source:           t.name,
		Peer:             f.path,
		ReceivedUnixNano: time.Now().UnixNano(),
		TargetMask:       t.opts.TargetMask,
		Host:             t.opts.Host,
		Service:          t.opts.Service,
	}
	if t.opts.Format == FormatMbox {
		msg := rec
		if nl { // the mail's last line keeps its newline
			msg = append(bytes.Clone(rec), '\n')
		}
		mbox.Parse(mbox.TrimSeparator(msg)).Apply(ev)
	}
	mark := markFor(rec, nl)
	st := f.state
	epoch := st.currentEpoch()
	t.deps.Metrics.Received.Inc()
	t.inflight.Add(1)
	ok := t.deps.Batcher.AddConfirmed(ev, func(err error) {
		defer t.inflight.Done()
		if err != nil {
			t.log.Error("record not stored; its file position stays before it", "file", f.path, "err", err)
		}
		st.ack(epoch, end, mark, err)
	})
	if !ok {
		t.inflight.Done()
		t.deps.Metrics.Rejected("shutting_down", 1)
		t.stopped = true
	}
}

// commitLoop writes the acknowledged positions every commit_interval.
func (t *Tailer) commitLoop() {
	defer close(t.commitEnd)
	tick := time.NewTicker(t.opts.CommitInterval.D())
	defer tick.Stop()
	for {
		select {
		case <-t.quit:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := t.commit(ctx); err != nil {
				t.log.Warn("writing file positions failed; will retry", "err", err)
			}
			cancel()
		}
	}
}

// commit writes the positions that moved and removes those of files that
// are gone.
func (t *Tailer) commit(ctx context.Context) error {
	t.mu.Lock()
	states := make([]*ackState, 0, len(t.states))
	for _, s := range t.states {
		states = append(states, s)
	}
	t.mu.Unlock()
	var firstErr error
	for _, s := range states {
		s.mu.Lock()
		gone, dirty := s.gone, s.dirty
		p := position{Path: s.path, Dev: s.id.dev, Ino: s.id.ino, Offset: s.acked, Head: s.head, Mark: s.mark}
		s.dirty = false
		s.mu.Unlock()
		var err error
		switch {
		case gone:
			if err = t.store.remove(ctx, s.id); err == nil {
				t.mu.Lock()
				if t.states[s.id] == s {
					delete(t.states, s.id)
				}
				t.mu.Unlock()
			}
		case dirty:
			if err = t.store.put(ctx, p); err != nil {
				s.mu.Lock()
				s.dirty = true
				s.mu.Unlock()
			} else {
				s.mu.Lock()
				s.committed = p.Offset
				s.mu.Unlock()
			}
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

var _ receiver.Listener = (*Tailer)(nil)
