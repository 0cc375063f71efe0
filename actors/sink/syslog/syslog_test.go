package syslog_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/sinktest"
	"github.com/herald-router/herald/actors/sink/syslog"
	"github.com/herald-router/herald/actors/sink/syslog/rsyslogtest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/schemas"
)

// options returns the options of a sink writing to srv over transport.
// max_message_size is raised to what the test rsyslog takes (2 MiB), so the
// conformance suite's 1 MiB message goes through intact.
func options(srv *rsyslogtest.Server, transport, framing string) syslog.Options {
	o := *syslog.DefaultOptions()
	o.Transport = transport
	if framing != "" {
		o.Framing = framing
	}
	o.MaxMessageSize = 2 << 20
	o.DialTimeout = config.Duration(2 * time.Second)
	o.WriteTimeout = config.Duration(2 * time.Second)
	o.AckTimeout = config.Duration(2 * time.Second)
	switch transport {
	case syslog.TransportUDP:
		o.Address = rsyslogtest.Addr(srv.UDP)
	case syslog.TransportRELP:
		o.Address = rsyslogtest.Addr(srv.RELP)
	case syslog.TransportTLS:
		o.Address = rsyslogtest.Addr(srv.TLS)
		o.TLS.CAFile = srv.CAFile
	default:
		o.Address = rsyslogtest.Addr(srv.TCP)
	}
	return o
}

func newWriter(t *testing.T, o syslog.Options) *syslog.Writer {
	t.Helper()
	if errs := o.Validate(); len(errs) > 0 {
		t.Fatalf("options: %v", errs)
	}
	w, err := syslog.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// tracked wraps the provider and keeps the ids of what it committed, so
// ReadBack knows what the collector must hold before it answers.
type tracked struct {
	sink.Provider
	mu        sync.Mutex
	txn       []string
	committed []string
}

func (p *tracked) Begin(ctx context.Context) error {
	p.mu.Lock()
	p.txn = nil
	p.mu.Unlock()
	return p.Provider.Begin(ctx)
}

func (p *tracked) Do(ctx context.Context, ev *schemas.Event) (sink.Commit, error) {
	c, err := p.Provider.Do(ctx, ev)
	if err != nil {
		return c, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch c {
	case sink.Committed:
		p.committed = append(append(p.committed, p.txn...), ev.Id)
		p.txn = nil
	case sink.PreviousCommitted:
		p.committed = append(p.committed, p.txn...)
		p.txn = []string{ev.Id}
	default:
		p.txn = append(p.txn, ev.Id)
	}
	return c, nil
}

func (p *tracked) End(ctx context.Context) error {
	err := p.Provider.End(ctx)
	if err == nil {
		p.mu.Lock()
		p.committed = append(p.committed, p.txn...)
		p.txn = nil
		p.mu.Unlock()
	}
	return err
}

func (p *tracked) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.committed...)
}

// harness runs the conformance suite against a fresh rsyslog per provider.
// Break kills rsyslog with SIGKILL. Over tcp it first waits until rsyslog
// wrote what was committed: tcp has no acknowledgements, so what is in
// flight when a collector dies is lost, and that is not what the case is
// about. Over relp it kills at once: what rsyslog acknowledged is written.
func harness(transport, framing string, modify ...func(*syslog.Options)) sinktest.Harness {
	var (
		srv *rsyslogtest.Server
		cur *tracked
	)
	return sinktest.Harness{
		New: func(t *testing.T) sink.Provider {
			srv = rsyslogtest.Start(t, rsyslogtest.Options{TLS: transport == syslog.TransportTLS})
			o := options(srv, transport, framing)
			for _, m := range modify {
				m(&o)
			}
			cur = &tracked{Provider: newWriter(t, o)}
			return cur
		},
		ReadBack: func(t *testing.T) []sinktest.Record {
			var out []sinktest.Record
			for _, r := range srv.WaitFor(t, cur.ids(), 10*time.Second) {
				if r.ID != "" {
					out = append(out, sinktest.Record{ID: r.ID, Message: r.Message})
				}
			}
			return out
		},
		Break: func(t *testing.T) func() {
			if transport != syslog.TransportRELP {
				srv.WaitFor(t, cur.ids(), 10*time.Second)
			}
			srv.Kill()
			return srv.Start
		},
	}
}

func TestConformanceOverTCPWithOctetCounting(t *testing.T) {
	sinktest.Run(t, harness(syslog.TransportTCP, syslog.FramingOctet))
}

func TestConformanceOverTCPWithNewlineFraming(t *testing.T) {
	// Newlines become #012, rsyslog's own escape, which rsyslogtest undoes:
	// the messages come back intact, so the harness is not Lossy.
	sinktest.Run(t, harness(syslog.TransportTCP, syslog.FramingNewline))
}

func TestConformanceOverRELP(t *testing.T) {
	sinktest.Run(t, harness(syslog.TransportRELP, ""))
}

func TestConformanceOverRELPWithAWindowOfThree(t *testing.T) {
	// Every third message Do waits for the acknowledgements and answers
	// PreviousCommitted: the suite checks those commits are readable.
	sinktest.Run(t, harness(syslog.TransportRELP, "", func(o *syslog.Options) { o.Window = 3 }))
}

func TestConformanceOverTLS(t *testing.T) {
	sinktest.Run(t, harness(syslog.TransportTLS, syslog.FramingOctet))
}

func events(n int, prefix string) []*schemas.Event {
	out := make([]*schemas.Event, n)
	for i := range out {
		out[i] = sinktest.Event(i, fmt.Sprintf("%s %d", prefix, i))
		out[i].Id = fmt.Sprintf("%s-%06d", prefix, i)
	}
	return out
}

func ids(evs []*schemas.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Id
	}
	return out
}

func TestUDPSendsOneDatagramPerEventAndRefusesWhatCannotFit(t *testing.T) {
	srv := rsyslogtest.Start(t, rsyslogtest.Options{})
	o := options(srv, syslog.TransportUDP, "")
	w := newWriter(t, o)
	defer w.Close(context.Background())
	in := events(20, "udp")
	big := sinktest.Event(99, strings.Repeat("x", 70000))
	in = append(in, big)
	r := sink.Transact(t.Context(), w, in)
	if r.Err != nil || r.Committed != len(in) {
		t.Fatalf("Transact = %+v", r)
	}
	if code, ok := sink.IsPermanent(r.Failed[len(in)-1]); !ok || code != syslog.CodeTooLong || !errors.Is(r.Failed[len(in)-1], syslog.ErrTooLong) {
		t.Errorf("a 70000-byte event over udp (largest datagram 65507) must fail as %s, got %v", syslog.CodeTooLong, r.Failed)
	}
	if len(r.Failed) != 1 {
		t.Errorf("only the big event may fail, got %v", r.Failed)
	}
	// UDP may drop datagrams in principle; on the loopback it does not.
	srv.WaitFor(t, ids(in[:20]), 10*time.Second)
}

func TestTooLongLinesAreDeadLetteredOrTruncated(t *testing.T) {
	srv := rsyslogtest.Start(t, rsyslogtest.Options{})
	for _, tc := range []struct {
		name     string
		truncate bool
	}{
		{"without truncate a line over max_message_size is a permanent too_long error", false},
		{"with truncate the message text is cut to fit and the event is written", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options(srv, syslog.TransportTCP, syslog.FramingOctet)
			o.MaxMessageSize, o.Truncate = 1024, tc.truncate
			w := newWriter(t, o)
			defer w.Close(context.Background())
			ev := sinktest.Event(1, strings.Repeat("€", 1000))
			ev.Id = fmt.Sprintf("long-%v", tc.truncate)
			r := sink.Transact(t.Context(), w, []*schemas.Event{ev})
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			code, permanent := sink.IsPermanent(r.Failed[0])
			if tc.truncate {
				if permanent {
					t.Fatalf("truncate must write the event, got %v", r.Failed[0])
				}
				recs := srv.WaitFor(t, []string{ev.Id}, 10*time.Second)
				for _, rec := range recs {
					if rec.ID == ev.Id && (!strings.HasPrefix(ev.Message, rec.Message) || len(rec.Message) >= 1024) {
						t.Errorf("truncated message is %d bytes %.40q..., want a prefix of the original under 1024 bytes", len(rec.Message), rec.Message)
					}
				}
				return
			}
			if !permanent || code != syslog.CodeTooLong {
				t.Errorf("want a permanent %s error, got %v", syslog.CodeTooLong, r.Failed)
			}
		})
	}
}

func TestRFC3164LinesAreParsedByRsyslogAsSent(t *testing.T) {
	srv := rsyslogtest.Start(t, rsyslogtest.Options{})
	o := options(srv, syslog.TransportTCP, syslog.FramingNewline)
	o.Format = syslog.FormatRFC3164
	w := newWriter(t, o)
	defer w.Close(context.Background())
	ev := &schemas.Event{Id: "bsd-1", Host: "web7", Service: "nginx", Message: "GET / 200",
		TimeUnixNano: time.Now().UnixNano(), Fields: []*schemas.Field{
			{Key: "pid", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "812"}}},
			{Key: "facility", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 3}}},
			{Key: "severity", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 4}}},
		}}
	if r := sink.Transact(t.Context(), w, []*schemas.Event{ev}); r.Err != nil || len(r.Failed) > 0 {
		t.Fatalf("Transact = %+v", r)
	}
	var got rsyslogtest.Record
	deadline := time.Now().Add(10 * time.Second)
	for got.AppName == "" {
		recs, err := srv.Records()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > 0 {
			got = recs[0]
		} else if time.Now().After(deadline) {
			t.Fatal("rsyslog received nothing in 10s")
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// rsyslog's msg of an RFC 3164 line keeps the space after "TAG:".
	want := rsyslogtest.Record{PRI: 28, Hostname: "web7", AppName: "nginx", ProcID: "812", MsgID: "-", SD: "-", Message: " GET / 200"}
	if got != want {
		t.Errorf("rsyslog parsed\n%+v\nwant\n%+v", got, want)
	}
}

func TestRFC5424HeaderFieldsArriveAsSent(t *testing.T) {
	srv := rsyslogtest.Start(t, rsyslogtest.Options{})
	w := newWriter(t, options(srv, syslog.TransportRELP, ""))
	defer w.Close(context.Background())
	ev := &schemas.Event{Id: "ietf-1", Host: "db1", Service: "postgres", Message: "checkpoint",
		TimeUnixNano: time.Now().UnixNano(), Fields: []*schemas.Field{
			{Key: "pid", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 4711}}},
			{Key: "msgid", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: "CKPT"}}},
			{Key: "severity", Value: &schemas.Value{Kind: &schemas.Value_Int{Int: 6}}},
			{Key: "sd", Value: &schemas.Value{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: []*schemas.Field{
				{Key: "ex@1", Value: &schemas.Value{Kind: &schemas.Value_Map{Map: &schemas.Map{Fields: []*schemas.Field{
					{Key: "v", Value: &schemas.Value{Kind: &schemas.Value_Str{Str: `a"b\c]d`}}},
				}}}}},
			}}}}},
		}}
	if r := sink.Transact(t.Context(), w, []*schemas.Event{ev}); r.Err != nil || len(r.Failed) > 0 {
		t.Fatalf("Transact = %+v", r)
	}
	recs := srv.WaitFor(t, []string{ev.Id}, 10*time.Second)
	want := rsyslogtest.Record{PRI: 14, Hostname: "db1", AppName: "postgres", ProcID: "4711", MsgID: "CKPT",
		SD: `[herald@32473 id="ietf-1"][ex@1 v="a\"b\\c\]d"]`, ID: "ietf-1", Message: "checkpoint"}
	if recs[0] != want {
		t.Errorf("rsyslog parsed\n%+v\nwant\n%+v", recs[0], want)
	}
}

// A collector that hangs (SIGSTOP: its sockets stay open, nobody reads or
// answers) must make the transaction fail within the configured timeouts,
// never hang the sink.
func TestAHungCollectorIsARetryableErrorWithinTheTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport string
		events    int
		size      int
	}{
		{"relp waits for acknowledgements no longer than ack_timeout", syslog.TransportRELP, 5, 100},
		// Enough bytes to fill the socket buffers of both ends.
		{"tcp writes give up after write_timeout", syslog.TransportTCP, 64, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := rsyslogtest.Start(t, rsyslogtest.Options{})
			o := options(srv, tc.transport, syslog.FramingOctet)
			o.AckTimeout, o.WriteTimeout = config.Duration(300*time.Millisecond), config.Duration(300*time.Millisecond)
			w := newWriter(t, o)
			defer w.Close(context.Background())
			if r := sink.Transact(t.Context(), w, events(1, "warm")); r.Err != nil {
				t.Fatal(r.Err)
			}
			srv.Pause()
			defer srv.Resume()
			in := events(tc.events, "hung")
			for _, ev := range in {
				ev.Message = strings.Repeat("h", tc.size)
			}
			start := time.Now()
			r := sink.Transact(t.Context(), w, in)
			took := time.Since(start)
			if r.Err == nil {
				t.Fatal("a transaction into a hung collector must fail")
			}
			if _, permanent := sink.IsPermanent(r.Err); permanent {
				t.Errorf("a hung collector is retryable, got %v", r.Err)
			}
			if took > 5*time.Second {
				t.Errorf("the transaction took %s to fail; the timeouts are 300ms", took)
			}
			t.Logf("failed after %s: %v", took.Round(time.Millisecond), r.Err)
		})
	}
}

func TestACancelledContextEndsAWaitAtOnce(t *testing.T) {
	srv := rsyslogtest.Start(t, rsyslogtest.Options{})
	o := options(srv, syslog.TransportRELP, "")
	o.AckTimeout = config.Duration(time.Minute)
	w := newWriter(t, o)
	defer w.Close(context.Background())
	if r := sink.Transact(t.Context(), w, events(1, "warm")); r.Err != nil {
		t.Fatal(r.Err)
	}
	srv.Pause()
	defer srv.Resume()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := sink.Transact(ctx, w, events(3, "cancel"))
	if r.Err == nil || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Errorf("want the context's error, got %v", r.Err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the wait took %s after its context ended", took)
	}
}

func TestARELPTransactionLeftWithoutEndDoesNotUpsetTheNext(t *testing.T) {
	srv := rsyslogtest.Start(t, rsyslogtest.Options{})
	w := newWriter(t, options(srv, syslog.TransportRELP, ""))
	defer w.Close(context.Background())
	ctx := t.Context()
	if err := w.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ev := range events(3, "abandoned") {
		if _, err := w.Do(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	// No End: the driver gave up on this transaction; its responses are
	// still coming.
	in := events(5, "next")
	if r := sink.Transact(ctx, w, in); r.Err != nil || r.Committed != len(in) {
		t.Fatalf("the transaction after an abandoned one: %+v", r)
	}
	srv.WaitFor(t, ids(in), 10*time.Second)
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*syslog.Options)
		field  string
	}{
		{"the defaults with an address are valid", func(o *syslog.Options) {}, ""},
		{"an address is required", func(o *syslog.Options) { o.Address = "" }, "address"},
		{"an address needs a port", func(o *syslog.Options) { o.Address = "collector" }, "address"},
		{"an unknown transport is refused", func(o *syslog.Options) { o.Transport = "sctp" }, "transport"},
		{"an unknown framing is refused", func(o *syslog.Options) { o.Framing = "lf" }, "framing"},
		{"an unknown format is refused", func(o *syslog.Options) { o.Format = "json" }, "format"},
		{"a facility over 23 is refused", func(o *syslog.Options) { o.Facility = 24 }, "facility"},
		{"a severity over 7 is refused", func(o *syslog.Options) { o.Severity = 8 }, "severity"},
		{"a message size under RFC 5424's minimum is refused", func(o *syslog.Options) { o.MaxMessageSize = 100 }, "max_message_size"},
		{"a window under one is refused", func(o *syslog.Options) { o.Window = 0 }, "window"},
		{"an id element with a space is refused", func(o *syslog.Options) { o.IDElement = "a b" }, "id_element"},
		{"a client certificate needs its key", func(o *syslog.Options) { o.TLS.CertFile = "c.pem" }, "tls.cert_file"},
		{"a zero timeout is refused", func(o *syslog.Options) { o.AckTimeout = 0 }, "ack_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := syslog.DefaultOptions()
			o.Address = "127.0.0.1:514"
			tc.modify(o)
			errs := o.Validate()
			if tc.field == "" {
				if len(errs) != 0 {
					t.Errorf("want no errors, got %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Errorf("want one error on %s, got %v", tc.field, errs)
			}
		})
	}
}

func TestTheProviderIsRegisteredUnderSyslog(t *testing.T) {
	r := sink.NewRegistry()
	syslog.Register(r)
	if names := r.Names(); len(names) != 1 || names[0] != "syslog" {
		t.Errorf("registered %v", names)
	}
}

// BenchmarkTransact forwards batches of 100 events to a real rsyslog. Over
// relp a transaction ends when rsyslog acknowledged (and, with rsyslogtest's
// Direct queue, wrote) every event; over tcp when the kernel took them.
func BenchmarkTransact(b *testing.B) {
	for _, transport := range []string{syslog.TransportRELP, syslog.TransportTCP} {
		b.Run(transport, func(b *testing.B) {
			srv := rsyslogtest.Start(b, rsyslogtest.Options{})
			o := *syslog.DefaultOptions()
			o.Transport = transport
			o.Address = rsyslogtest.Addr(srv.TCP)
			if transport == syslog.TransportRELP {
				o.Address = rsyslogtest.Addr(srv.RELP)
			}
			w, err := syslog.New(o)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close(context.Background())
			in := events(100, "bench")
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if r := sink.Transact(b.Context(), w, in); r.Err != nil {
					b.Fatal(r.Err)
				}
			}
			b.ReportMetric(float64(b.N*len(in))/time.Since(start).Seconds(), "events/s")
		})
	}
}
