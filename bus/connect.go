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
// listen address.
func Connect(cfg config.Bus, name string) (*nats.Conn, jetstream.JetStream, error) {
	url := strings.Join(cfg.URLs, ",")
	if url == "" {
		if cfg.Embedded.Listen == "" {
			return nil, nil, errors.New("the config's embedded NATS server does not listen (bus.embedded.listen is empty) and bus.urls is empty: nothing to connect to")
		}
		url = "nats://" + cfg.Embedded.Listen
	}
	nc, err := nats.Connect(url, nats.Name(name), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to herald's NATS at %s (is herald running?): %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}
