package natssink

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/sinktest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/testnet"
	"github.com/herald-router/herald/schemas"
)

// natsServer is a real NATS server with JetStream that a test can stop and
// start again on the same port and store, as an outage would.
type natsServer struct {
	t    *testing.T
	port int
	dir  string
	s    *server.Server
}

func startServer(t *testing.T) *natsServer {
	n := &natsServer{t: t, port: testnet.FreePort(t), dir: t.TempDir()}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir, NoLog: true, NoSigs: true})
	if err != nil {
		n.t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats server did not start")
	}
	n.s = s
}

func (n *natsServer) stop() {
	if n.s != nil {
		n.s.Shutdown()
		n.s.WaitForShutdown()
		n.s = nil
	}
}

func (n *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// stream makes a stream for subject and returns a reader of what it holds.
func (n *natsServer) stream(name, subject string) func(t *testing.T) []sinktest.Record {
	nc, err := nats.Connect(n.url())
	if err != nil {
		n.t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.CreateOrUpdateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{subject}, MaxMsgSize: 8 << 20}); err != nil {
		n.t.Fatal(err)
	}
	nc.Close()
	return func(t *testing.T) []sinktest.Record {
		nc, err := nats.Connect(n.url())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		st, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := st.Info(context.Background())
		var out []sinktest.Record
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(context.Background(), seq)
			if err != nil {
				t.Fatal(err)
			}
			var r struct{ ID, Message string }
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			if m.Header.Get(jetstream.MsgIDHeader) != r.ID {
				t.Errorf("Nats-Msg-Id %q, want the event id %q", m.Header.Get(jetstream.MsgIDHeader), r.ID)
			}
			out = append(out, sinktest.Record{ID: r.ID, Message: r.Message})
		}
		return out
	}
}

func TestConformanceOverJetStream(t *testing.T) {
	var srv *natsServer
	var read func(t *testing.T) []sinktest.Record
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) sink.Provider {
			srv = startServer(t)
			read = srv.stream("OUT", "out.>")
			o := DefaultOptions()
			o.Subject = "out.{class}"
			o.URLs = []string{srv.url()}
			o.Timeout = config.Duration(3 * time.Second)
			return New(*o, nil)
		},
		ReadBack: func(t *testing.T) []sinktest.Record { return read(t) },
		Break: func(t *testing.T) func() {
			srv.stop()
			return srv.start
		},
	})
}

func TestARedeliveredBatchIsStoredOnce(t *testing.T) {
	srv := startServer(t)
	read := srv.stream("OUT", "out")
	o := DefaultOptions()
	o.Subject = "out"
	o.URLs = []string{srv.url()}
	p := New(*o, nil)
	defer p.Close(context.Background())
	for range 2 {
		in := []*schemas.Event{sinktest.Event(1, "a"), sinktest.Event(2, "b")}
		if r := sink.Transact(context.Background(), p, in); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if got := read(t); len(got) != 2 {
		t.Fatalf("stream holds %d events after the same batch twice, want 2", len(got))
	}
}

func TestMissingStreamIsARetryableErrorThatSaysWhy(t *testing.T) {
	srv := startServer(t)
	o := DefaultOptions()
	o.Subject = "nowhere"
	o.URLs = []string{srv.url()}
	o.Timeout = config.Duration(2 * time.Second)
	p := New(*o, nil)
	defer p.Close(context.Background())
	r := sink.Transact(context.Background(), p, []*schemas.Event{sinktest.Event(1, "x")})
	if r.Err == nil {
		t.Fatal("publishing to a subject no stream holds must fail under jetstream: true")
	}
	if _, perm := sink.IsPermanent(r.Err); perm {
		t.Errorf("a missing stream is fixed by configuration, so it is retryable: %v", r.Err)
	}
	t.Log(fmt.Sprint(r.Err))
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		bad  bool
		name string
	}{
		{Options{Subject: "alerts.{class}"}, false, "a class placeholder is allowed"},
		{Options{}, true, "the subject is required"},
		{Options{Subject: "a.*"}, true, "wildcards cannot be published to"},
		{Options{Subject: "a..b"}, true, "empty tokens are refused"},
		{Options{Subject: "ok", URLs: []string{"localhost:4222"}}, true, "urls need a scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if errs := tc.o.Validate(); (len(errs) > 0) != tc.bad {
				t.Errorf("Validate(%+v) = %v", tc.o, errs)
			}
		})
	}
}
