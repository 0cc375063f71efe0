// Package bus is everything herald does with NATS: the embedded server (the
// default) or a connection to an external system, the one declaration of
// streams, subjects and consumers (subjects.go), publishing batches with
// de-duplication ids, and decoding what stages receive.
package bus
