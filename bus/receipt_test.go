package bus

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/schemas"
)

// receiptsOf collects a committed receipt for each of ids, in that order,
// all tracked on track.
func receiptsOf(track string, ids ...string) *Receipts {
	var rs Receipts
	for _, id := range ids {
		rs.Add(&schemas.Event{Id: id, Track: track}, &schemas.Receipt{Kind: schemas.Receipt_COMMITTED, Target: "log", Sink: "file"})
	}
	return &rs
}

func TestReceiptIDsNameTheSetOfCopiesReported(t *testing.T) {
	id := func(rs *Receipts) string {
		t.Helper()
		msgs := rs.Msgs("batch1", "target.log")
		if len(msgs) != 1 {
			t.Fatalf("%d messages for one subject", len(msgs))
		}
		return msgs[0].Header.Get(jetstream.MsgIDHeader)
	}
	base := id(receiptsOf("herald.receipts.a", "E1", "E2", "E3"))
	for _, c := range []struct {
		name string
		rs   *Receipts
		same bool
	}{
		{"the same copies reported again keep the id", receiptsOf("herald.receipts.a", "E1", "E2", "E3"), true},
		{"the same copies in another order keep the id", receiptsOf("herald.receipts.a", "E3", "E1", "E2"), true},
		{"fewer copies get another id", receiptsOf("herald.receipts.a", "E1", "E2"), false},
		{"other copies get another id", receiptsOf("herald.receipts.a", "E1", "E2", "E4"), false},
		{"another subject gets another id", receiptsOf("herald.receipts.b", "E1", "E2", "E3"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := id(c.rs); (got == base) != c.same {
				t.Errorf("id %q, first %q: same %v, want %v", got, base, got == base, c.same)
			}
		})
	}
	t.Run("another kind of report gets another id", func(t *testing.T) {
		var rs Receipts
		for _, e := range []string{"E1", "E2", "E3"} {
			rs.Add(&schemas.Event{Id: e, Track: "herald.receipts.a"}, &schemas.Receipt{Kind: schemas.Receipt_FAILED, Target: "log"})
		}
		if got := id(&rs); got == base {
			t.Errorf("failed copies share the id %q of committed ones", got)
		}
	})
	t.Run("the id derives from the batch and the stage", func(t *testing.T) {
		msgs := receiptsOf("herald.receipts.a", "E1").Msgs("batch1", "router")
		if got := msgs[0].Header.Get(jetstream.MsgIDHeader); !strings.HasPrefix(got, "rcpt.batch1.router.herald.receipts.a.") {
			t.Errorf("id %q", got)
		}
		other := receiptsOf("herald.receipts.a", "E1").Msgs("batch2", "router")
		if msgs[0].Header.Get(jetstream.MsgIDHeader) == other[0].Header.Get(jetstream.MsgIDHeader) {
			t.Error("two batches share an id")
		}
	})
}

func TestReceiptsOfOneSubjectSplitOnlyWhenTooLarge(t *testing.T) {
	var ids []string
	for i := range 20000 { // ~40 bytes each: about three messages' worth
		ids = append(ids, fmt.Sprintf("01J0000000000000000000%04d", i))
	}
	msgs := receiptsOf("herald.receipts.a", ids...).Msgs("b", "router")
	if len(msgs) < 2 {
		t.Fatalf("%d message(s) for %d receipts", len(msgs), len(ids))
	}
	seen := map[string]bool{}
	n := 0
	for _, m := range msgs {
		if len(m.Data) > maxReceiptBytes {
			t.Errorf("a message of %d bytes, over %d", len(m.Data), maxReceiptBytes)
		}
		if m.Header.Get(HeaderEncoding) != EncodingReceipts || m.Subject != "herald.receipts.a" {
			t.Errorf("message on %s encoded %q", m.Subject, m.Header.Get(HeaderEncoding))
		}
		id := m.Header.Get(jetstream.MsgIDHeader)
		if seen[id] {
			t.Errorf("id %s twice", id)
		}
		seen[id] = true
		var rb schemas.ReceiptBatch
		if err := proto.Unmarshal(m.Data, &rb); err != nil {
			t.Fatal(err)
		}
		for _, r := range rb.Receipts {
			if r.EventId != ids[n] {
				t.Fatalf("receipt %d is %s, want %s", n, r.EventId, ids[n])
			}
			n++
		}
	}
	if n != len(ids) {
		t.Errorf("%d receipts out of %d", n, len(ids))
	}
	if small := receiptsOf("herald.receipts.a", ids[:1000]...).Msgs("b", "router"); len(small) != 1 {
		t.Errorf("a batch of 1000 receipts in %d messages, want 1", len(small))
	}
}
