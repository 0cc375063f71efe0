package receiver

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/herald-router/herald/bus"
	"github.com/herald-router/herald/config"
	"github.com/herald-router/herald/internal/kinds"
	"github.com/herald-router/herald/internal/metrics"
)

// Listener is one running receiver. Listen binds (so a taken port fails
// the start, naming the address); Serve starts accepting; Shutdown stops
// accepting, lets what is already in hand arrive, and returns once every
// record taken in has been handed to the Batcher. Each is called once, in
// that order, from the receiver's actor.
type Listener interface {
	Listen() error
	Serve()
	Shutdown(ctx context.Context)
}

// Env is what a receiver's constructor gets besides its options.
type Env struct {
	Name   string         // the receiver's name in the config
	Config *config.Config // the whole config, for resolving paths
	Bus    *bus.Bus
	// Batcher publishes records to herald.raw.<name>; AddConfirmed tells
	// when a record is durably stored, for receivers that acknowledge
	// their senders (RELP, HTTP) or commit a read position (files).
	Batcher     *Batcher
	Metrics     *metrics.Stage
	Connections interface{ Add(float64) }
	Log         *slog.Logger
}

// Kind is one receiver type: a constructor of its default options (which
// the config decodes into strictly) and of the listener.
type Kind struct {
	Options func() any
	New     func(env Env, options any) (Listener, error)
}

// Registry maps type names to receiver kinds. It is a value: a test builds
// one with exactly the kinds it needs.
type Registry struct{ kinds.Set[Kind] }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{kinds.NewSet[Kind]("receiver")} }

// ConfigKinds returns the option constructors for config.Kinds.Receivers.
func (r *Registry) ConfigKinds() map[string]func() any {
	return r.Options(func(k Kind) func() any { return k.Options })
}

// New builds the listener of a configured receiver.
func (r *Registry) New(env Env, rc *config.Receiver) (Listener, error) {
	k, ok := r.Get(rc.Type)
	if !ok {
		return nil, fmt.Errorf("receiver %s: unknown type %q", env.Name, rc.Type)
	}
	l, err := k.New(env, rc.Options)
	if err != nil {
		return nil, fmt.Errorf("receiver %s: %w", env.Name, err)
	}
	return l, nil
}

// RegisterSyslog adds the syslog receiver (TCP, TLS, UDP and unix
// sockets) to r.
func RegisterSyslog(r *Registry) {
	r.MustAdd("syslog", Kind{
		Options: func() any { return DefaultSyslogOptions() },
		New: func(env Env, o any) (Listener, error) {
			return NewSyslog(env, o.(*SyslogOptions))
		},
	})
}
