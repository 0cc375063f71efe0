package bus

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/config"
)

// Connect is how herald's command-line tools reach the NATS system a
// running herald uses: the configured urls, or else the embedded server's
// listen address. It presents the same credentials and TLS as herald: the
// bus's own, or, for the embedded server, its user or token and its CA.
func Connect(cfg config.Bus, name string) (*nats.Conn, jetstream.JetStream, error) {
	urls := cfg.URLs
	if len(urls) == 0 {
		if cfg.Embedded.Listen == "" {
			return nil, nil, errors.New("the config's embedded NATS server does not listen (bus.embedded.listen is empty) and bus.urls is empty: nothing to connect to")
		}
		urls = []string{"nats://" + cfg.Embedded.Listen}
	}
	auth, err := clientOptions(cfg, isLocal(cfg))
	if err != nil {
		return nil, nil, err
	}
	opts := append([]nats.Option{nats.Name(name), nats.Timeout(5 * time.Second)}, auth...)
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to herald's NATS at %s (is herald running?): %w", redactedURLs(urls), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
