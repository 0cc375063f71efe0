package receiver_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/actors/receiver"
	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/internal/metrics"
	"github.com/herald-router/herald/schemas"
)

// rawRecords reads every record published to the raw stream so far (by
// sequence: a work-queue stream allows no second consumer).
func rawRecords(t *testing.T, b *bus.Bus) [][]byte {
	t.Helper()
	ctx := context.Background()
	st, err := b.JS.Stream(ctx, bus.StreamRaw)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var bt schemas.Batch
		if err := proto.Unmarshal(m.Data, &bt); err != nil {
			t.Fatal(err)
		}
		for _, ev := range bt.Events {
			out = append(out, ev.Raw)
		}
	}
	return out
}

func TestBadClientsNeitherCrashNorStallOthers(t *testing.T) {
	b := bustest.Open(t)
	m := metrics.New()
	st := m.Stage("receiver.syslog")
	bt := receiver.NewBatcher(b, bus.RawSubject("syslog"), 100, 64<<10, 5*time.Millisecond, st, bustest.Logger(t))
	s := &receiver.Syslog{Name: "syslog", TCPAddr: "127.0.0.1:0", MaxMessageSize: 1024, MaxConnections: 8,
		TargetMask: 4, Batcher: bt, Metrics: st, Connections: m.Connections.WithLabelValues("syslog"), Log: bustest.Logger(t)}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Shutdown(context.Background()); _ = bt.Close(context.Background()) })
	addr := s.TCPAddress().String()

	// A client that connects and never sends anything.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// A client that sends half a line and stalls.
	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	_, _ = stalled.Write([]byte("<13>Nov 26 06:00:00 host app: never finish"))

	good, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var sent []string
	var buf bytes.Buffer
	for i := range 50 {
		line := fmt.Sprintf("<13>Nov 26 06:00:00 host app: good %d", i)
		sent = append(sent, line)
		buf.WriteString(line + "\n")
		switch i {
		case 10:
			buf.WriteString(strings.Repeat("A", 5000) + "\n") // over max_message_size
		case 20:
			buf.WriteString("\n\n") // empty lines
		case 30:
			garbage := "\xff\xfe\x00\x01binary\x00"
			sent = append(sent, garbage) // kept as bytes, classified later
			buf.WriteString(garbage + "\n")
		}
	}
	if _, err := good.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = good.Close()

	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := len(rawRecords(t, b)); got < len(sent) {
			return fmt.Errorf("%d of %d records stored", got, len(sent))
		}
		return nil
	})
	got := rawRecords(t, b)
	if len(got) != len(sent) {
		t.Fatalf("%d records stored, want %d", len(got), len(sent))
	}
	for i := range sent {
		if string(got[i]) != sent[i] {
			t.Errorf("record %d = %q, want %q", i, got[i], sent[i])
		}
	}
	if n := testutil.ToFloat64(m.Connections.WithLabelValues("syslog")); n != 2 {
		t.Errorf("open connections = %v, want the idle and the stalled one", n)
	}
	for reason, want := range map[string]float64{"too_long": 1, "empty": 2} {
		if n := testutil.ToFloat64(st.RejectedBy(reason)); n != want {
			t.Errorf("rejected %s = %v, want %v", reason, n, want)
		}
	}
}
