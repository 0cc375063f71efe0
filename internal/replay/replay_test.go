package replay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/replay"
	"github.com/herald-router/herald/schemas"
)

func TestCheckSink(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sink  string
		wantE bool
	}{
		{"a sink of the chain is accepted", "b", false},
		{"a sink outside the chain is refused, naming the chain", "c", true},
		{"sink names are case-sensitive, as in the config", "B", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := replay.CheckSink("log", []string{"a", "b"}, tc.sink)
			if !tc.wantE {
				if err != nil {
					t.Fatalf("CheckSink: %v", err)
				}
				return
			}
			if !errors.Is(err, replay.ErrUnknownSink) {
				t.Fatalf("CheckSink = %v, want ErrUnknownSink", err)
			}
			if !strings.Contains(err.Error(), "[a, b]") {
				t.Errorf("%q does not list the chain's sinks", err)
			}
		})
	}
}

// archive stores n batches of two events each in the archive, as the
// resolver's mirror does.
func archive(t *testing.T, b *bus.Bus, n int) {
	t.Helper()
	if err := b.DeclareArchive(context.Background(), config.Archive{MaxAge: config.Duration(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		evs := []*schemas.Event{{Id: fmt.Sprintf("e%d.0", i), Message: fmt.Sprintf("m%d.0", i)},
			{Id: fmt.Sprintf("e%d.1", i), Message: fmt.Sprintf("m%d.1", i)}}
		msgs, err := bus.EncodeBatches(bus.SubjectArchive, fmt.Sprintf("b%d", i), evs, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(context.Background(), msgs[0]); err != nil {
			t.Fatal(err)
		}
	}
}

// targetMsgs returns what the target's subject holds, in order.
func targetMsgs(t *testing.T, b *bus.Bus) []*jetstream.RawStreamMsg {
	t.Helper()
	st, err := b.JS.Stream(context.Background(), bus.StreamTargets)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestReplayPinsEveryBatchToTheChosenSink(t *testing.T) {
	b := bustest.Open(t, "log")
	archive(t, b, 3)
	var progress []replay.Summary
	sum, err := replay.Run(context.Background(), b.JS, replay.Options{Target: "log", Sink: "b", FromSeq: 2,
		MaxBytes: 1 << 20, Progress: func(s replay.Summary) { progress = append(progress, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Batches != 2 || sum.Replayed != 4 || sum.LastSeq != 3 || sum.EndSeq != 3 {
		t.Errorf("summary %+v, want 2 batches and 4 events from sequence 2 to 3", sum)
	}
	if len(progress) == 0 || progress[len(progress)-1] != sum {
		t.Errorf("progress %+v, want it to end with the summary %+v", progress, sum)
	}
	msgs := targetMsgs(t, b)
	if len(msgs) != 2 {
		t.Fatalf("%d messages on the target's subject, want 2", len(msgs))
	}
	var got []string
	for _, m := range msgs {
		if m.Subject != bus.TargetSubject("log") {
			t.Errorf("published on %s", m.Subject)
		}
		if pin := m.Header.Get(bus.HeaderSink); pin != "b" {
			t.Errorf("%s = %q, want b", bus.HeaderSink, pin)
		}
		var batch schemas.Batch
		if err := proto.Unmarshal(m.Data, &batch); err != nil {
			t.Fatal(err)
		}
		for _, ev := range batch.Events {
			got = append(got, ev.Id)
		}
	}
	if strings.Join(got, ",") != "e1.0,e1.1,e2.0,e2.1" {
		t.Errorf("replayed %v, want the events of archived batches 2 and 3", got)
	}
}

func TestReplayWithoutASinkLeavesTheChainToChoose(t *testing.T) {
	b := bustest.Open(t, "log")
	archive(t, b, 1)
	if _, err := replay.Run(context.Background(), b.JS, replay.Options{Target: "log", FromSeq: 1, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	msgs := targetMsgs(t, b)
	if len(msgs) != 1 {
		t.Fatalf("%d messages on the target's subject, want 1", len(msgs))
	}
	if pin := msgs[0].Header.Get(bus.HeaderSink); pin != "" {
		t.Errorf("%s = %q on a replay without --sink", bus.HeaderSink, pin)
	}
}
