package sink

import (
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/kinds"
)

// Env is what a provider's constructor gets besides its options.
type Env struct {
	Name   string         // the sink's name in the config
	Config *config.Config // the whole config, for resolving paths
	Log    *slog.Logger
	// NATS is herald's own bus connection, for providers that publish to
	// the same NATS system by default. Nil in tests that need none.
	NATS *nats.Conn
}

// Kind is one provider: a constructor of its default options (which the
// config decodes into strictly) and a constructor of the provider.
type Kind struct {
	Options func() any
	New     func(env Env, options any) (Provider, error)
}

// Registry maps type names to providers. It is a value: a test builds one
// with exactly the providers it needs.
type Registry struct{ kinds.Set[Kind] }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{kinds.NewSet[Kind]("sink")} }

// ConfigKinds returns the option constructors for config.Kinds.Sinks.
func (r *Registry) ConfigKinds() map[string]func() any {
	return r.Options(func(k Kind) func() any { return k.Options })
}

// New builds the provider of a configured sink.
func (r *Registry) New(env Env, s *config.Sink) (Provider, error) {
	k, ok := r.Get(s.Type)
	if !ok {
		return nil, fmt.Errorf("sink %s: unknown type %q", env.Name, s.Type)
	}
	p, err := k.New(env, s.Options)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", env.Name, err)
	}
	return p, nil
}
