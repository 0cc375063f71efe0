package sink_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/bus/bustest"
	"github.com/herald-router/herald/schemas"
)

// publishPinned publishes a batch pinned to one sink, as `herald replay
// --sink` does.
func (r *rig) publishPinned(t *testing.T, sinkName, batchID string, msgs ...string) {
	t.Helper()
	evs := make([]*schemas.Event, len(msgs))
	for i, m := range msgs {
		evs[i] = &schemas.Event{Id: batchID + "-" + strconv.Itoa(i), Message: m}
	}
	out, err := bus.EncodeBatches(bus.TargetSubject("log"), batchID, evs, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range out {
		m.Header.Set(bus.HeaderSink, sinkName)
		if err := r.bus.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

func TestABatchPinnedToTheSecondSinkGoesThereOnlyWhileTheFirstIsUp(t *testing.T) {
	a, b := &memory{}, &memory{}
	r := startChain(t, a, b)
	r.publishPinned(t, "s1", "pinned", numbered("p", 4)...)
	r.publish(t, "plain", numbered("n", 2)...)
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := strings.Join(a.snapshot(), ","); got != "n00,n01" {
			return fmt.Errorf("A holds %q, want the unpinned batch", got)
		}
		return nil
	})
	if got := strings.Join(b.snapshot(), ","); got != "p00,p01,p02,p03" {
		t.Errorf("B holds %q, want exactly the pinned batch", got)
	}
}

func TestAPinnedBatchWaitsForItsSinkAndItsTailStaysPinned(t *testing.T) {
	a, b := &memory{}, &memory{failOnce: map[string]bool{"p02": true}}
	b.down.Store(true)
	r := startChain(t, a, b)
	r.publishPinned(t, "s1", "pinned", numbered("p", 5)...)
	// B down, A up: the pinned batch must not fail over to A.
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := b.attempts.Load(); n < 3 {
			return fmt.Errorf("%d attempts against the down sink so far", n)
		}
		return nil
	})
	b.down.Store(false)
	// p02 fails once part-way: the unwritten tail is requeued, still for B.
	bustest.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if got := strings.Join(b.snapshot(), ","); got != "p00,p01,p02,p03,p04" {
			return fmt.Errorf("B holds %q", got)
		}
		return nil
	})
	if got := a.snapshot(); len(got) != 0 {
		t.Errorf("A wrote %v of a batch pinned to B", got)
	}
}

func TestABatchPinnedToASinkNotInTheChainIsDeadLetteredAndOthersFlow(t *testing.T) {
	a := &memory{}
	r := startChain(t, a)
	r.publishPinned(t, "gone", "stray", "x00")
	r.publish(t, "plain", numbered("n", 2)...)
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := strings.Join(a.snapshot(), ","); got != "n00,n01" {
			return fmt.Errorf("A holds %q", got)
		}
		return nil
	})
	dlq, err := r.bus.JS.Stream(context.Background(), bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		msg, err := dlq.GetLastMsgForSubject(context.Background(), bus.DLQSubject("target.log"))
		if err != nil {
			return err
		}
		if reason := msg.Header.Get(bus.HeaderDLQReason); reason != "unknown_sink" {
			return fmt.Errorf("dead-letter reason %q, want unknown_sink", reason)
		}
		return nil
	})
}
