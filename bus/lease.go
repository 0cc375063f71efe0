package bus

// KVLeases is the key-value bucket of sink leases: a sink that must have
// one writer at a time (a file, an XMPP account) is driven only by the
// process holding its key "sink.<name>"; the value names that process. The
// bucket's TTL (bus.lease_ttl) is how long a lease outlives a holder that
// stopped renewing it. See internal/lease.
const KVLeases = "HERALD_LEASES"
