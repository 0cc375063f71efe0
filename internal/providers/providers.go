// Package providers is the one explicit list of what herald is built with:
// its sink providers and receiver kinds. The binary, the schema generator
// and tests all take the list from here.
package providers

import (
	"github.com/herald-router/herald/actors/receiver"
	httpreceiver "github.com/herald-router/herald/actors/receiver/http"
	"github.com/herald-router/herald/actors/receiver/relp"
	"github.com/herald-router/herald/actors/receiver/tail"
	"github.com/herald-router/herald/actors/sink"
	"github.com/herald-router/herald/actors/sink/file"
	"github.com/herald-router/herald/actors/sink/natssink"
	"github.com/herald-router/herald/actors/sink/postgres"
	"github.com/herald-router/herald/actors/sink/stdout"
	"github.com/herald-router/herald/actors/sink/syslog"
	"github.com/herald-router/herald/actors/xmpp"
	"github.com/herald-router/herald/config"
)

// Registry returns a registry holding every sink provider.
func Registry() *sink.Registry {
	r := sink.NewRegistry()
	file.Register(r)
	natssink.Register(r)
	stdout.Register(r)
	postgres.Register(r)
	syslog.Register(r)
	xmpp.Register(r)
	return r
}

// Receivers returns a registry holding every receiver kind.
func Receivers() *receiver.Registry {
	r := receiver.NewRegistry()
	receiver.RegisterSyslog(r)
	relp.Register(r)
	tail.Register(r)
	httpreceiver.Register(r)
	return r
}

// Kinds returns the config kinds for every receiver and for r's sinks.
func Kinds(r *sink.Registry) config.Kinds {
	return config.Kinds{
		Receivers: Receivers().ConfigKinds(),
		Sinks:     r.ConfigKinds(),
	}
}
