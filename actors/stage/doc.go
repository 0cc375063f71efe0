// Package stage is the machinery every pipeline stage shares: a Runner that
// pulls from durable JetStream consumers into a supervised protoactor actor
// (restarted on panic, with its unfinished message handed back to JetStream),
// and a Hop, the handler of the stages that turn one batch into batches on
// the next stream (classifier, resolver, router).
package stage
