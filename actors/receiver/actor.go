package receiver

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Actor is the thin shell of one listener: it starts serving when the actor
// starts and shuts the listener down, bounded by Grace, when it stops.
type Actor struct {
	L     Listener
	Grace time.Duration
}

// Receive implements actor.Actor.
func (a *Actor) Receive(c actor.Context) {
	switch c.Message().(type) {
	case *actor.Started:
		a.L.Serve()
	case *actor.Stopping:
		ctx, cancel := context.WithTimeout(context.Background(), a.Grace)
		a.L.Shutdown(ctx)
		cancel()
	}
}
