package bus

import (
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/schemas"
)

// EncodingReceipts marks (HeaderEncoding) a message whose body is a
// schemas.ReceiptBatch; EncodingReceipt, or no header, a single
// schemas.Receipt, as herald sent before receipts were batched.
const EncodingReceipts = "receipts"

// maxReceiptBytes bounds one receipts message, well under the smallest
// max_payload (1MiB), whatever the size of the input batch.
const maxReceiptBytes = 256 << 10

// Tracked reports whether ev asked for receipts on a subject herald may
// publish them to.
func Tracked(ev *schemas.Event) bool {
	return strings.HasPrefix(ev.Track, SubjectReceiptsPrefix) && len(ev.Track) > len(SubjectReceiptsPrefix) &&
		!strings.ContainsAny(ev.Track, " \t\r\n*>")
}

// Receipts collects the receipts one stage (the router, or one target's
// chain) makes of one input batch, by track subject, so that they cost one
// JetStream message per subject rather than one per receipt. The zero
// value is empty and ready.
type Receipts struct {
	by    map[string]*trackReceipts
	order []string // track subjects in the order first seen
	n     int
}

type trackReceipts struct {
	list  []*schemas.Receipt
	bytes int // encoded, with each receipt's tag and length
}

// Add records r for the tracked event ev.
func (rs *Receipts) Add(ev *schemas.Event, r *schemas.Receipt) {
	r.EventId = ev.Id
	if rs.by == nil {
		rs.by = map[string]*trackReceipts{}
	}
	t := rs.by[ev.Track]
	if t == nil {
		t = &trackReceipts{}
		rs.by[ev.Track] = t
		rs.order = append(rs.order, ev.Track)
	}
	t.list = append(t.list, r)
	t.bytes += r.SizeVT() + 4 // + its tag and length
	rs.n++
}

// Len is the number of receipts added.
func (rs *Receipts) Len() int { return rs.n }

// Msgs makes the messages of the receipts that stage made of the input
// batch batchID: one ReceiptBatch per track subject (more when one would
// exceed maxReceiptBytes). Each message's Nats-Msg-Id derives from the
// batch id, stage, subject and the (event, kind, target) keys it reports,
// so a redelivered input that reports the same copies again republishes
// the same id and the stream keeps one. A retry that reports other copies
// (a sink wrote more of the batch the second time) gets another id and is
// stored too: the client counts each (event, kind, target) once, and no
// receipt is lost to the de-duplication of an earlier, smaller report.
func (rs *Receipts) Msgs(batchID, stage string) []*nats.Msg {
	var msgs []*nats.Msg
	for _, track := range rs.order {
		t := rs.by[track]
		list := t.list
		if t.bytes <= maxReceiptBytes {
			msgs = append(msgs, receiptBatchMsg(batchID, stage, track, list))
			continue
		}
		for len(list) > 0 {
			n, size := 0, 0
			for n < len(list) && (n == 0 || size+list[n].SizeVT()+4 <= maxReceiptBytes) {
				size += list[n].SizeVT() + 4
				n++
			}
			msgs = append(msgs, receiptBatchMsg(batchID, stage, track, list[:n]))
			list = list[n:]
		}
	}
	return msgs
}

func receiptBatchMsg(batchID, stage, track string, list []*schemas.Receipt) *nats.Msg {
	data, _ := (&schemas.ReceiptBatch{Receipts: list}).MarshalVT() // receipts always encode: their strings come from valid events
	m := nats.NewMsg(track)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "rcpt."+batchID+"."+stage+"."+track+"."+receiptsDigest(list))
	m.Header.Set(HeaderEncoding, EncodingReceipts)
	return m
}

// receiptsDigest identifies the set of (event, kind, target) keys of list,
// whatever their order (a sink reports failed copies in map order): the
// count, and the sum of each key's 64-bit FNV-1a.
func receiptsDigest(list []*schemas.Receipt) string {
	var sum uint64
	for _, r := range list {
		h := fnvAdd(fnvOffset, r.EventId)
		h = (h ^ 0) * fnvPrime // a separator: ids have no NUL
		h = (h ^ uint64(r.Kind)) * fnvPrime
		sum += fnvAdd(h, r.Target)
	}
	return strconv.Itoa(len(list)) + "-" + strconv.FormatUint(sum, 36)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}
