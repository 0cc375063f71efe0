package bus

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The streams and subjects of the pipeline. This is the only place they are
// named; the README's table is written from it.
//
//	receiver   → herald.raw.<receiver>    HERALD_RAW       consumer "classifier"
//	classifier → herald.events.<class>    HERALD_EVENTS    consumer "resolver"  (applications publish JSON here too)
//	resolver   → herald.resolved          HERALD_RESOLVED  consumer "router"
//	router     → herald.target.<target>   HERALD_TARGETS   consumer "sink-<target>", one per target
//	any stage  → herald.dlq.<stage>       HERALD_DLQ       (limits retention, kept for inspection and redrive)
//	router, targets → herald.receipts.<…> HERALD_RECEIPTS  (receipts of tracked events, kept an hour)
const (
	StreamRaw      = "HERALD_RAW"
	StreamEvents   = "HERALD_EVENTS"
	StreamResolved = "HERALD_RESOLVED"
	StreamTargets  = "HERALD_TARGETS"
	StreamDLQ      = "HERALD_DLQ"
	// StreamReceipts holds delivery receipts of tracked events for an hour,
	// so a client that reconnects still finds them.
	StreamReceipts = "HERALD_RECEIPTS"

	SubjectRawPrefix    = "herald.raw."
	SubjectEventsPrefix = "herald.events."
	SubjectResolved     = "herald.resolved"
	SubjectTargetPrefix = "herald.target."
	SubjectDLQPrefix    = "herald.dlq."
	// SubjectReceiptsPrefix starts every subject a tracked event may name
	// for its receipts.
	SubjectReceiptsPrefix = "herald.receipts."
	// SubjectTapPrefix starts the plain NATS (not stored) copies that a
	// hop running several stages publishes of what it hands from one stage
	// to the next in memory, while a `herald tap` asks for them on
	// SubjectTapControl: herald.tap.<the subject it stands for>.
	SubjectTapPrefix  = "herald.tap."
	SubjectTapControl = "herald.tapctl"

	ConsumerClassifier = "classifier"
	ConsumerResolver   = "resolver"
	ConsumerRouter     = "router"
	consumerSinkPrefix = "sink-"
)

// KVFilePositions is the key-value bucket where file receivers keep the
// read position of each file they follow, committed only once the records
// before it were acknowledged; keys are "<receiver>.<device>.<inode>".
const KVFilePositions = "HERALD_FILE_POSITIONS"

// Headers herald sets on its messages.
const (
	// HeaderEncoding marks a message whose body is a protobuf Batch. A
	// message on herald.events.* without it is an application's JSON event.
	HeaderEncoding  = "Herald-Encoding"
	EncodingBatch   = "batch"
	EncodingReceipt = "receipt"
	// Dead-letter headers: a stable reason code, a human-readable detail,
	// the stage that gave up and the subject the message came from.
	HeaderDLQReason  = "Herald-Dlq-Reason"
	HeaderDLQDetail  = "Herald-Dlq-Detail"
	HeaderDLQStage   = "Herald-Dlq-Stage"
	HeaderDLQSubject = "Herald-Dlq-Subject"
)

// RawSubject is where receiver name publishes.
func RawSubject(receiver string) string { return SubjectRawPrefix + receiver }

// EventsSubject is where events of a class go.
func EventsSubject(class string) string { return SubjectEventsPrefix + class }

// TargetSubject is where a target's copies go.
func TargetSubject(target string) string { return SubjectTargetPrefix + target }

// SinkConsumer is the durable consumer name of a target.
func SinkConsumer(target string) string { return consumerSinkPrefix + target }

// DLQSubject is where a stage dead-letters.
func DLQSubject(stage string) string { return SubjectDLQPrefix + stage }

// streamSpec declares one stream.
type streamSpec struct {
	name      string
	subjects  []string
	retention jetstream.RetentionPolicy
	maxAge    time.Duration
}

// pipelineStreams are the streams Declare creates. Work streams use
// WorkQueue retention: an acked message is deleted at once, which keeps the
// server's memory flat (limits retention on a hot stream held gigabytes).
var pipelineStreams = []streamSpec{
	{StreamRaw, []string{SubjectRawPrefix + ">"}, jetstream.WorkQueuePolicy, 0},
	{StreamEvents, []string{SubjectEventsPrefix + ">"}, jetstream.WorkQueuePolicy, 0},
	{StreamResolved, []string{SubjectResolved}, jetstream.WorkQueuePolicy, 0},
	{StreamTargets, []string{SubjectTargetPrefix + ">"}, jetstream.WorkQueuePolicy, 0},
	{StreamDLQ, []string{SubjectDLQPrefix + ">"}, jetstream.LimitsPolicy, 14 * 24 * time.Hour},
	{StreamReceipts, []string{SubjectReceiptsPrefix + ">"}, jetstream.LimitsPolicy, time.Hour},
}

// consumerSpec declares one durable pull consumer.
type consumerSpec struct {
	stream, durable, filter string
}

func pipelineConsumers(targets []string) []consumerSpec {
	cs := []consumerSpec{
		{StreamRaw, ConsumerClassifier, SubjectRawPrefix + ">"},
		{StreamEvents, ConsumerResolver, SubjectEventsPrefix + ">"},
		{StreamResolved, ConsumerRouter, SubjectResolved},
	}
	for _, t := range targets {
		cs = append(cs, consumerSpec{StreamTargets, SinkConsumer(t), TargetSubject(t)})
	}
	return cs
}
