package bus

import "context"

// KVLeases is the key-value bucket of sink leases: a sink that must have
// one writer at a time (a file, an XMPP account) is driven only by the
// process holding its key "sink.<name>"; the value names that process. The
// bucket's TTL (bus.lease_ttl) is how long a lease outlives a holder that
// stopped renewing it. See internal/lease.
const KVLeases = "HERALD_LEASES"

// WhileClusterForms runs f, a request declaring something herald needs
// besides the streams (the lease bucket), the way Declare declares the
// streams: retried while the JetStream cluster forms or a request goes
// unanswered, which is what every process but one sees when several
// create the same bucket at once.
func (b *Bus) WhileClusterForms(ctx context.Context, f func(context.Context) error) error {
	return b.whileClusterForms(ctx, f)
}
