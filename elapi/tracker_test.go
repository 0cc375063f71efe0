package elapi_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/elapi"
	"github.com/herald-router/herald/schemas"
)

// receipts publishes receipts as one ReceiptBatch, the way herald does
// (bus.Receipts), under the id msgID.
func (b *bareServer) receipts(t testing.TB, subject, msgID string, rs ...*schemas.Receipt) {
	t.Helper()
	data, _ := proto.Marshal(&schemas.ReceiptBatch{Receipts: rs})
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set(bus.HeaderEncoding, bus.EncodingReceipts)
	if _, err := b.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatalf("publish receipts: %v", err)
	}
}

// During a rolling upgrade an older herald process sends a receipt per
// message and a newer one a batch per subject; the dispatcher counts both,
// each (event, kind, target) once.
func TestReceiptBatchesAndSingleReceiptsFromOlderHeraldsCountAlike(t *testing.T) {
	b := startBare(t)
	d := dial(t, b.URL)
	var mu sync.Mutex
	done := map[string][]string{}
	cb := func(n elapi.Notice) {
		if n.Moment != elapi.OnDone {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, r := range n.Result.Targets {
			got = append(got, r.String())
		}
		done[n.ID] = append(done[n.ID], strings.Join(got, "; "))
	}
	var ids []string
	for range 3 {
		id, err := d.LogAsync(nil, elapi.MaskAudit|elapi.MaskLog, cb, elapi.OnDone)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	subj := d.ReceiptSubject()
	routed := func(id string) *schemas.Receipt {
		return &schemas.Receipt{EventId: id, Kind: schemas.Receipt_ROUTED, Targets: []string{"audit", "log"}}
	}
	committed := func(id, target string) *schemas.Receipt {
		return &schemas.Receipt{EventId: id, Kind: schemas.Receipt_COMMITTED, Target: target, Sink: target + "file"}
	}
	// The new router reports the batch; an old audit process reports
	// event 0 on its own, a new one the three (event 0 again, ignored); a
	// new log process reports all three, one failed, with an unknown
	// event's receipt in the batch.
	b.receipts(t, subj, "router-1", routed(ids[0]), routed(ids[1]), routed(ids[2]))
	b.receipt(t, subj, committed(ids[0], "audit"), "")
	b.receipts(t, subj, "audit-1", committed(ids[0], "audit"), committed(ids[1], "audit"), committed(ids[2], "audit"))
	b.receipts(t, subj, "log-1", committed(ids[0], "log"),
		&schemas.Receipt{EventId: "NOT-MINE", Kind: schemas.Receipt_COMMITTED, Target: "log"},
		&schemas.Receipt{EventId: ids[1], Kind: schemas.Receipt_FAILED, Target: "log", Sink: "logfile", Reason: "too_long"},
		committed(ids[2], "log"))
	eventually(t, 10*time.Second, func() error {
		if d.InFlight() != 0 {
			return fmt.Errorf("%d in flight", d.InFlight())
		}
		return nil
	})
	// A batch stored again under another id (after the de-duplication
	// window) changes nothing.
	b.receipts(t, subj, "log-1-again", committed(ids[1], "log"))
	if err := d.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for i, id := range ids {
		got = append(got, fmt.Sprintf("%d: %s", i, strings.Join(done[id], " | ")))
	}
	sort.Strings(got)
	want := []string{
		"0: audit: committed by auditfile; log: committed by logfile",
		"1: audit: committed by auditfile; log: failed in logfile (too_long)",
		"2: audit: committed by auditfile; log: committed by logfile",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("done notices\n got %q\nwant %q", got, want)
	}
}
