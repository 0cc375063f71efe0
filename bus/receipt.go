package bus

import (
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/herald-router/herald/schemas"
)

// Tracked reports whether ev asked for receipts on a subject herald may
// publish them to.
func Tracked(ev *schemas.Event) bool {
	return strings.HasPrefix(ev.Track, SubjectReceiptsPrefix) && len(ev.Track) > len(SubjectReceiptsPrefix) &&
		!strings.ContainsAny(ev.Track, " \t\r\n*>")
}

// ReceiptMsg makes the message of a receipt for ev. Its Nats-Msg-Id is
// derived from the event, the kind and the target, so however often the
// same copy is reported (a redelivery), the stream keeps it once.
func ReceiptMsg(ev *schemas.Event, r *schemas.Receipt) *nats.Msg {
	r.EventId = ev.Id
	data, _ := proto.Marshal(r) // a Receipt always encodes: its strings come from valid events
	m := nats.NewMsg(ev.Track)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "rcpt."+ev.Id+"."+r.Kind.String()+"."+r.Target)
	m.Header.Set(HeaderEncoding, EncodingReceipt)
	return m
}
