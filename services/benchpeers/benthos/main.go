// Command benthos-bench is Benthos (the Go stream processor) built with only
// its pure and io components, as the Go peer in herald's benchmark
// (services/loadgen/compare.sh builds and runs it with
// deploy/bench/benthos.yaml: socket_server -> parse_log -> file).
//
// It lives in a module of its own so that herald's go.mod never pulls in
// Benthos and its dependencies.
package main

import (
	"context"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
)

func main() {
	service.RunCLI(context.Background())
}
