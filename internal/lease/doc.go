// Package lease lets exactly one herald process at a time drive a sink
// whose destination must have a single writer (a file, an XMPP account),
// while any number of processes run the sink stage.
//
// A lease is a key in the JetStream key-value bucket bus.KVLeases, whose
// TTL (bus.lease_ttl, default 5s) is the bucket's max age:
//
//   - Acquire creates the key (kv.Create fails while another holds it);
//     the value names the holder: host, pid and a random instance id.
//   - The holder renews it every TTL/3 with kv.Update on the revision it
//     holds (compare-and-set), so a holder whose key expired, or was taken
//     over, cannot renew it: it learns that it lost the lease.
//   - A holder that dies stops renewing; its key expires after the TTL and
//     a waiting process acquires it within a poll interval (TTL/10).
//   - Release deletes the key on the revision held, so a graceful stop
//     hands over at once.
//
// A holder that cannot renew (NATS unreachable) gives its work up on its
// own once 2/3 of the TTL passed since its last confirmed renewal, before
// the key can expire on the server, so the next holder never starts while
// the previous one still writes. What this cannot cover is a process
// frozen (SIGSTOP, a VM paused) longer than the TTL in the middle of a
// write: it finishes that one transaction when it wakes up, then finds the
// lease lost. Destinations that must exclude even that need fencing on
// their side.
//
// A Keeper holds a group of leases together and runs a piece of work (a
// target's chain) only while it holds every one of them; it keeps trying
// to acquire them, stops the work when one is lost, and releases them when
// closed.
package lease
