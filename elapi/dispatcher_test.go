package elapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/elapi"
	"github.com/herald-router/herald/schemas"
)

// bareServer is a NATS server with herald's event and receipt streams but
// no herald: events stay in the stream and the test plays the router and
// sinks by publishing receipts itself.
type bareServer struct {
	URL string
	JS  jetstream.JetStream
}

func startBare(t testing.TB) *bareServer {
	t.Helper()
	s, err := newBare(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.nc.Close()
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	})
	return &bareServer{URL: s.URL, JS: s.JS}
}

type bare struct {
	URL string
	JS  jetstream.JetStream
	nc  *nats.Conn
	srv *server.Server
}

func newBare(dir string) (*bare, error) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: filepath.Join(dir, "nats"), NoLog: true, NoSigs: true, MaxPayload: 8 << 20, JetStreamMaxMemory: 64 << 20})
	if err != nil {
		return nil, err
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("nats server not ready within 10s")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, sc := range []jetstream.StreamConfig{
		{Name: "HERALD_EVENTS", Subjects: []string{"herald.events.>"}, Retention: jetstream.WorkQueuePolicy, Duplicates: 2 * time.Minute},
		{Name: "HERALD_RECEIPTS", Subjects: []string{"herald.receipts.>"}, MaxAge: time.Hour, Duplicates: 2 * time.Minute},
	} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			nc.Close()
			srv.Shutdown()
			return nil, err
		}
	}
	return &bare{URL: srv.ClientURL(), JS: js, nc: nc, srv: srv}, nil
}

// receipt publishes a single receipt the way herald did before receipt
// batches (older processes still do, during a rolling upgrade), under
// the id msgID ("" : herald's own id for it).
func (b *bareServer) receipt(t testing.TB, subject string, r *schemas.Receipt, msgID string) {
	t.Helper()
	data, _ := proto.Marshal(r)
	m := nats.NewMsg(subject)
	m.Data = data
	if msgID == "" {
		msgID = "rcpt." + r.EventId + "." + r.Kind.String() + "." + r.Target
	}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set(bus.HeaderEncoding, bus.EncodingReceipt)
	if _, err := b.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatalf("publish receipt: %v", err)
	}
}

func dial(t testing.TB, url string, opts ...elapi.Option) *elapi.Dispatcher {
	t.Helper()
	d, err := elapi.Dial(t.Context(), []string{url}, append([]elapi.Option{elapi.WithApplication("test")}, opts...)...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		// Some tests leave events open on purpose: bounded.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

func TestLogWithAllTargetsReturnsOnceEveryTargetCommittedAndTheFileHasIt(t *testing.T) {
	h := startHerald(t, fileTargets)
	d := dial(t, h.URL)
	ev, err := elapi.NewEvent(elapi.Message("user logged in"), elapi.String("user", "bob"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := d.Log(ctx, elapi.MaskAudit|elapi.MaskLog, ev, elapi.WaitAllTargets())
	if err != nil {
		t.Fatal(err)
	}
	want := []elapi.TargetResult{{Target: "audit", Outcome: elapi.Committed, Sink: "auditfile"}, {Target: "log", Outcome: elapi.Committed, Sink: "logfile"}}
	if !res.Tracked || !res.Accepted || fmt.Sprint(res.Targets) != fmt.Sprint(want) || res.Err() != nil {
		t.Fatalf("result %+v, want tracked, accepted, %v", res, want)
	}
	// Committed means written: read it back at once, no waiting.
	for _, f := range []string{"out/audit.jsonl", "out/log.jsonl"} {
		got := readIDs(t, filepath.Join(h.Dir, f))
		if got[res.ID] != 1 {
			t.Errorf("%s holds event %s %d times, want once (ids %v)", f, res.ID, got[res.ID], got)
		}
	}
}

func TestLogWithoutOptionReturnsWhenStoredAndTheEventArrives(t *testing.T) {
	h := startHerald(t, fileTargets)
	d := dial(t, h.URL)
	ev, _ := elapi.NewEvent(elapi.Message("hello"))
	res, err := d.Log(t.Context(), elapi.MaskLog, ev)
	if err != nil || !res.Accepted || res.Tracked || len(res.Targets) != 0 {
		t.Fatalf("Log: %+v, %v", res, err)
	}
	path := filepath.Join(h.Dir, "out/log.jsonl")
	eventually(t, 20*time.Second, func() error {
		if readIDs(t, path)[res.ID] != 1 {
			return fmt.Errorf("event %s not in %s yet", res.ID, path)
		}
		return nil
	})
}

func TestTheCallbackHearsAcceptedThenEachTargetThenDone(t *testing.T) {
	h := startHerald(t, fileTargets)
	d := dial(t, h.URL)
	var mu sync.Mutex
	var moments []string
	done := make(chan *elapi.Result, 1)
	ev, _ := elapi.NewEvent(elapi.Message("x"))
	_, err := d.LogAsync(ev, elapi.MaskAudit|elapi.MaskLog, func(n elapi.Notice) {
		mu.Lock()
		defer mu.Unlock()
		switch n.Moment {
		case elapi.OnTargetDone:
			moments = append(moments, "target "+n.Target.Target)
		default:
			moments = append(moments, n.Moment.String())
		}
		if n.Moment == elapi.OnDone {
			done <- n.Result
		}
	}, elapi.OnAccepted|elapi.OnTargetDone|elapi.OnDone)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if len(r.Targets) != 2 {
			t.Errorf("result %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no done within 30s")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(moments) != 4 || moments[0] != "accepted" || moments[3] != "done" {
		t.Errorf("moments %v, want accepted, two targets, done", moments)
	}
}

func TestAnEventRoutedToNoTargetIsDoneAtOnce(t *testing.T) {
	h := startHerald(t, fileTargets)
	d := dial(t, h.URL)
	res, err := d.Log(t.Context(), elapi.Mask(64), nil, elapi.WaitAllTargets())
	if err != nil || !res.Tracked || len(res.Targets) != 0 {
		t.Fatalf("got %+v, %v; want done with no target", res, err)
	}
}

func TestReceiptsCountOnceEachWhateverTheirOrderAndRepeats(t *testing.T) {
	b := startBare(t)
	d := dial(t, b.URL)
	var mu sync.Mutex
	var notices []elapi.Notice
	id, err := d.LogAsync(nil, elapi.MaskAudit|elapi.MaskLog, func(n elapi.Notice) {
		mu.Lock()
		notices = append(notices, n)
		mu.Unlock()
	}, elapi.OnTargetDone|elapi.OnDone)
	if err != nil {
		t.Fatal(err)
	}
	subj := d.ReceiptSubject()
	// A target's receipt overtakes the router's, one is stored twice
	// under different ids (as after the de-duplication window), and an
	// unknown event's receipt is ignored.
	b.receipt(t, subj, &schemas.Receipt{EventId: id, Kind: schemas.Receipt_COMMITTED, Target: "log", Sink: "logfile"}, "")
	b.receipt(t, subj, &schemas.Receipt{EventId: id, Kind: schemas.Receipt_COMMITTED, Target: "log", Sink: "logfile"}, "again-1")
	b.receipt(t, subj, &schemas.Receipt{EventId: "NOT-MINE", Kind: schemas.Receipt_ROUTED}, "")
	b.receipt(t, subj, &schemas.Receipt{EventId: id, Kind: schemas.Receipt_ROUTED, Targets: []string{"audit", "log"}}, "")
	b.receipt(t, subj, &schemas.Receipt{EventId: id, Kind: schemas.Receipt_ROUTED, Targets: []string{"audit", "log"}}, "again-2")
	b.receipt(t, subj, &schemas.Receipt{EventId: id, Kind: schemas.Receipt_FAILED, Target: "audit", Sink: "remote", Reason: "too_long"}, "")
	b.receipt(t, subj, &schemas.Receipt{EventId: id, Kind: schemas.Receipt_COMMITTED, Target: "audit", Sink: "other"}, "again-3")
	eventually(t, 10*time.Second, func() error {
		if d.InFlight() != 0 {
			return fmt.Errorf("%d in flight", d.InFlight())
		}
		return nil
	})
	// What came after done must not count; give the consumer a receipt
	// after them to be sure it read them all.
	b.receipt(t, subj, &schemas.Receipt{EventId: id, Kind: schemas.Receipt_COMMITTED, Target: "audit", Sink: "late"}, "again-4")
	if err := d.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for _, n := range notices {
		switch n.Moment {
		case elapi.OnTargetDone:
			got = append(got, n.Target.String())
		case elapi.OnDone:
			got = append(got, fmt.Sprintf("done %v err=%v", n.Result.Targets, n.Result.Err() != nil))
		}
	}
	want := []string{"log: committed by logfile", "audit: failed in remote (too_long)", "done [audit: failed in remote (too_long) log: committed by logfile] err=true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("notices\n got %q\nwant %q", got, want)
	}
}

func TestWhenFullLogAsyncFailsOrWaitsAsConfigured(t *testing.T) {
	b := startBare(t) // no herald: a tracked event is never done
	t.Run("fail when full returns ErrFull", func(t *testing.T) {
		d := dial(t, b.URL, elapi.WithMaxInFlight(1), elapi.WithBackpressure(elapi.FailWhenFull))
		if _, err := d.LogAsync(nil, elapi.MaskLog, nil, elapi.OnDone); err != nil {
			t.Fatal(err)
		}
		if _, err := d.LogAsync(nil, elapi.MaskLog, nil, 0); !errors.Is(err, elapi.ErrFull) {
			t.Fatalf("got %v, want ErrFull", err)
		}
	})
	t.Run("block when full waits until close", func(t *testing.T) {
		d := dial(t, b.URL, elapi.WithMaxInFlight(1))
		if _, err := d.LogAsync(nil, elapi.MaskLog, nil, elapi.OnDone); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { _, err := d.LogAsync(nil, elapi.MaskLog, nil, 0); errc <- err }()
		select {
		case err := <-errc:
			t.Fatalf("LogAsync returned %v while the dispatcher was full", err)
		case <-time.After(100 * time.Millisecond): // it should still be blocked
		}
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_ = d.Close(ctx)
		if err := <-errc; !errors.Is(err, elapi.ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	})
}

func TestCloseReportsWhatIsStillOpenAndTellsItsCallbacks(t *testing.T) {
	b := startBare(t)
	d := dial(t, b.URL)
	var got elapi.Notice
	gotc := make(chan struct{})
	routed := make(chan struct{})
	id, err := d.LogAsync(nil, elapi.MaskAudit|elapi.MaskLog, func(n elapi.Notice) {
		switch n.Moment {
		case elapi.OnTargetDone:
			close(routed)
		case elapi.OnDone:
			got = n
			close(gotc)
		}
	}, elapi.OnTargetDone|elapi.OnDone)
	if err != nil {
		t.Fatal(err)
	}
	// Routed to audit and log; log is done. The consumer is ordered, so
	// once log's outcome is heard the routing was too.
	b.receipt(t, d.ReceiptSubject(), &schemas.Receipt{EventId: id, Kind: schemas.Receipt_ROUTED, Targets: []string{"audit", "log"}}, "")
	b.receipt(t, d.ReceiptSubject(), &schemas.Receipt{EventId: id, Kind: schemas.Receipt_COMMITTED, Target: "log", Sink: "logfile"}, "")
	select {
	case <-routed:
	case <-time.After(10 * time.Second):
		t.Fatal("log's receipt not heard within 10s")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	err = d.Close(ctx)
	var oe *elapi.OpenError
	if !errors.As(err, &oe) || len(oe.Events) != 1 {
		t.Fatalf("close: %v, want an *OpenError with the event", err)
	}
	if ev := oe.Events[0]; ev.ID != id || !ev.Accepted || !ev.Routed || fmt.Sprint(ev.Waiting) != "[audit]" {
		t.Fatalf("open event %+v, want accepted, routed, waiting for audit", ev)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("close error %v must wrap the deadline", err)
	}
	<-gotc
	if !errors.Is(got.Err, elapi.ErrClosed) {
		t.Errorf("callback got %+v, want ErrClosed", got)
	}
	if _, err := d.LogAsync(nil, elapi.MaskLog, nil, 0); !errors.Is(err, elapi.ErrClosed) {
		t.Errorf("after close: %v, want ErrClosed", err)
	}
}

func TestDialRefusesBadOptionsAndAServerWithoutHerald(t *testing.T) {
	b := startBare(t)
	for _, opt := range []elapi.Option{elapi.WithApplication("a.b"), elapi.WithClass(""), elapi.WithMaxInFlight(0), elapi.WithBatching(0, 1<<20, 0)} {
		if _, err := elapi.Dial(t.Context(), []string{b.URL}, opt); !errors.Is(err, elapi.ErrInvalidOption) {
			t.Errorf("got %v, want ErrInvalidOption", err)
		}
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	if _, err := elapi.Dial(t.Context(), []string{srv.ClientURL()}); !errors.Is(err, elapi.ErrNoHerald) {
		t.Errorf("got %v, want ErrNoHerald", err)
	}
}

// readIDs counts the ids of a JSON-lines file sink's output.
func readIDs(t testing.TB, path string) map[string]int {
	t.Helper()
	out := map[string]int{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%s: %v: %s", path, err, sc.Bytes())
		}
		out[rec.ID]++
	}
	return out
}

// eventually calls f until it returns nil, failing with its last error
// after timeout.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
