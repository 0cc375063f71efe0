// Package e2e holds herald's end-to-end tests. They run the built binary
// (bin/herald, written by `make build`) as separate processes against real
// sockets and a real NATS JetStream server, and check the delivery promises
// of the design from the outside: every accepted event reaches the sink
// after a clean shutdown, nothing acknowledged is lost when herald is
// killed with SIGKILL and restarted, a stage scales across processes, and
// `herald check` reports every config problem with its position.
//
// Each test writes its config and data into t.TempDir(), binds only
// 127.0.0.1, kills every process it started when it ends, and prints the
// stderr of each herald process when it fails.
package e2e
