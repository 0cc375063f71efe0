package config

import (
	"fmt"
	"net/url"
	"strings"
)

// The NATS topology herald's embedded server joins, and how herald
// authenticates to a NATS system. Secrets are never values in this file's
// types: a key names a file or an environment variable that holds the
// secret, so printing a Config (or an error about it) never shows one.
//
// Replicas (bus.replicas) per topology: 1 on a single server (the default);
// 3 in a cluster of three or more servers, so a stream survives the loss of
// one; in a supercluster each stream lives in one cluster (bus.placement's,
// or else the one of the herald that declared it first), so replicas count
// servers of that cluster; on a leafnode edge, 1 (the edge is one machine).

// Placement says where herald's streams and key-value buckets live: which
// cluster of a supercluster, and on which servers by their tags. One
// placement serves them all, because each stage's output is the next one's
// input: streams split over clusters would make every hop cross a gateway.
// Changing it on a running system moves the streams, which JetStream does
// while they stay in use.
type Placement struct {
	// Cluster is the name of the cluster (its cluster.name) the streams
	// live in. Default "" (the cluster of the server that received the
	// request creating a stream).
	Cluster string `yaml:"cluster"`
	// Tags are what every server holding the streams must have (its
	// bus.embedded.tags, or server_tags of a standalone nats-server); a tag
	// written !tag excludes the servers that have it. At least
	// bus.replicas servers must qualify. Default none.
	Tags []string `yaml:"tags"`
}

// Set reports whether the placement says anything.
func (p Placement) Set() bool { return p.Cluster != "" || len(p.Tags) > 0 }

// Cluster joins the embedded server to a NATS cluster of peers listed in
// routes. Every node lists every node (its own route is ignored). The
// cluster is on when name is set.
type Cluster struct {
	// Name of the cluster, the same on every node. Default "" (no cluster).
	Name string `yaml:"name"`
	// Listen is the address the cluster's routes connect to, host:port.
	// Required with name. Put it on a network only the peers reach.
	Listen string `yaml:"listen"`
	// Routes are the peers' cluster addresses, e.g.
	// nats-route://10.0.0.2:6222. Default none (the others dial in).
	Routes []string `yaml:"routes"`
}

// Gateway links the embedded server's cluster to other clusters, making a
// supercluster (one cluster per data centre). On when name is set.
type Gateway struct {
	// Name of this cluster in the supercluster; it must equal cluster.name
	// (the server refuses two names for one cluster). Default "" (no
	// gateway).
	Name string `yaml:"name"`
	// Listen is the address other clusters' gateways connect to,
	// host:port. Required with name.
	Listen string `yaml:"listen"`
	// Gateways are the other clusters, each with its name and the gateway
	// URLs of some of its servers. Default none.
	Gateways []RemoteGateway `yaml:"gateways"`
}

// RemoteGateway is another cluster of the supercluster.
type RemoteGateway struct {
	// Name of the other cluster (its cluster.name). Required.
	Name string `yaml:"name"`
	// URLs of its gateways, e.g. nats://10.1.0.1:7222. At least one.
	URLs []string `yaml:"urls"`
}

// Leafnode makes the embedded server a hub that leaf servers dial into
// (listen), or an edge that dials out to hubs (remotes), or both.
type Leafnode struct {
	// Listen is where leaf servers connect, host:port. Default "" (no
	// leafnode listener).
	Listen string `yaml:"listen"`
	// Remotes are the hubs this server dials; it keeps dialling while a
	// hub is unreachable. Default none.
	Remotes []LeafRemote `yaml:"remotes"`
	// Forward makes this server a store-and-forward edge: receivers store
	// into the local raw stream (in this server's jetstream_domain), and a
	// hub that lists the domain in bus.edge_domains takes the records over
	// whenever the link is up; they leave the edge only once the hub stored
	// them. herald's subjects then stay local to each side of the link, and
	// no classifier runs on the edge (run it with --stages receiver).
	// Requires jetstream_domain and remotes. Default false.
	Forward bool `yaml:"forward"`
}

// LeafRemote is one hub a leaf server dials.
type LeafRemote struct {
	// URLs of the hub's leafnode listeners, e.g. nats-leaf://hub:7422
	// (tls://… for TLS). At least one.
	URLs []string `yaml:"urls"`
	// Credentials is a NATS .creds file (JWT and seed) the hub requires,
	// relative to the config file. Default none.
	Credentials string `yaml:"credentials"`
}

// EmbeddedAuth is what clients of the embedded server's client listener
// must present: a user and password, or a token, or an nkey. herald's own
// in-process connection authenticates itself. Default: nothing (no auth;
// the listener is on loopback by default).
type EmbeddedAuth struct {
	// User name clients give with the password. Default "".
	User string `yaml:"user"`
	// PasswordFile is a file whose first line is the user's password,
	// relative to the config file. Default none.
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv names an environment variable holding the password
	// instead. Default none.
	PasswordEnv string `yaml:"password_env"`
	// TokenFile is a file whose first line is a token clients give instead
	// of a user. Default none.
	TokenFile string `yaml:"token_file"`
	// Nkeys are the public user nkeys (U…) allowed to connect; each client
	// signs with its seed (bus.nkey_seed_file for herald's own tools).
	// Default none.
	Nkeys []string `yaml:"nkeys"`
}

// ServerTLS is TLS on the embedded server's client listener.
type ServerTLS struct {
	// CertFile is the server's certificate chain (PEM). Setting it turns
	// TLS on and makes it required. Default none (no TLS).
	CertFile string `yaml:"cert_file"`
	// KeyFile is the certificate's private key (PEM). Required with
	// cert_file.
	KeyFile string `yaml:"key_file"`
	// CAFile holds the CAs client certificates are verified against (PEM),
	// and the CA herald's own tools verify this server with. Default none
	// (the system's roots).
	CAFile string `yaml:"ca_file"`
	// VerifyClients requires every client to present a certificate signed
	// by ca_file. Default false.
	VerifyClients bool `yaml:"verify_clients"`
}

// ClientTLS is TLS for herald's connections to NATS.
type ClientTLS struct {
	// CAFile holds the CAs the server's certificate is verified against
	// (PEM). Default none (the system's roots; for the embedded server,
	// bus.embedded.tls.ca_file).
	CAFile string `yaml:"ca_file"`
	// CertFile is herald's client certificate (PEM), for servers that
	// verify clients. Default none.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the client certificate's private key. Required with
	// cert_file.
	KeyFile string `yaml:"key_file"`
	// InsecureSkipVerify accepts any server certificate. Only for tests:
	// anyone on the path can then read and change the traffic. Default
	// false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// resolveBusPaths makes the bus's file names absolute.
func (c *Config) resolveBusPaths() {
	b := &c.Bus
	for _, p := range []*string{
		&b.Credentials, &b.NkeySeedFile, &b.PasswordFile, &b.TokenFile,
		&b.TLS.CAFile, &b.TLS.CertFile, &b.TLS.KeyFile,
		&b.Embedded.Auth.PasswordFile, &b.Embedded.Auth.TokenFile,
		&b.Embedded.TLS.CertFile, &b.Embedded.TLS.KeyFile, &b.Embedded.TLS.CAFile,
	} {
		*p = c.Abs(*p)
	}
	for i := range b.Embedded.Leafnode.Remotes {
		r := &b.Embedded.Leafnode.Remotes[i]
		r.Credentials = c.Abs(r.Credentials)
	}
}

// validateBusTopology checks the keys above. It reads no file: a missing
// secret is reported when herald connects, naming the key and the file but
// never the content.
func (d *decoder) validateBusTopology(c *Config) {
	b := c.Bus
	d.validateClientAuth(b)
	d.checkPlacement(b.Placement)
	for i, u := range b.URLs {
		if redactURL(u) != u {
			d.errorf(fmt.Sprintf("bus.urls[%d]", i), "a user, password or token in the URL would be shown in logs: give them in bus.user with bus.password_file, or bus.token_file")
		}
	}
	if len(b.URLs) > 0 {
		if b.Embedded.Leafnode.Forward {
			d.errorf("bus.embedded.leafnode.forward", "needs the embedded server; bus.urls is set")
		}
		return
	}
	e := b.Embedded
	if e.ServerName != "" && !nameOK(e.ServerName) {
		d.errorf("bus.embedded.server_name", "name %q: use letters, digits, _ and -", e.ServerName)
	}
	if e.JetStreamDomain != "" && !nameOK(e.JetStreamDomain) {
		d.errorf("bus.embedded.jetstream_domain", "name %q: use letters, digits, _ and -", e.JetStreamDomain)
	}
	clustered := e.Cluster.Name != "" || e.Cluster.Listen != "" || len(e.Cluster.Routes) > 0
	if clustered {
		switch {
		case e.Cluster.Name == "":
			d.errorf("bus.embedded.cluster.name", "required when the cluster is configured")
		case !nameOK(e.Cluster.Name):
			d.errorf("bus.embedded.cluster.name", "name %q: use letters, digits, _ and -", e.Cluster.Name)
		}
		if e.Cluster.Listen == "" {
			d.errorf("bus.embedded.cluster.listen", "required: the address the other nodes' routes connect to")
		} else {
			d.checkAddr("bus.embedded.cluster.listen", e.Cluster.Listen)
		}
		if e.ServerName == "" {
			d.errorf("bus.embedded.server_name", "required in a cluster: every node needs a name of its own")
		}
		if len(e.Cluster.Routes) == 0 {
			d.errorf("bus.embedded.cluster.routes", "at least one route is needed (JetStream refuses a cluster without): list every node's cluster address, this node's own included")
		}
		for i, r := range e.Cluster.Routes {
			d.checkURL(fmt.Sprintf("bus.embedded.cluster.routes[%d]", i), r, "nats-route", "nats")
		}
	}
	if g := e.Gateway; g.Name != "" || g.Listen != "" || len(g.Gateways) > 0 {
		switch {
		case g.Name == "":
			d.errorf("bus.embedded.gateway.name", "required when a gateway is configured (it must equal cluster.name)")
		case e.Cluster.Name == "":
			d.errorf("bus.embedded.cluster.name", "required with a gateway, equal to gateway.name %q", g.Name)
		case g.Name != e.Cluster.Name:
			d.errorf("bus.embedded.gateway.name", "must equal cluster.name %q, got %q: a gateway names its own cluster", e.Cluster.Name, g.Name)
		}
		if g.Listen == "" {
			d.errorf("bus.embedded.gateway.listen", "required: the address other clusters' gateways connect to")
		} else {
			d.checkAddr("bus.embedded.gateway.listen", g.Listen)
		}
		seen := map[string]bool{}
		for i, r := range g.Gateways {
			p := fmt.Sprintf("bus.embedded.gateway.gateways[%d]", i)
			switch {
			case r.Name == "":
				d.errorf(p+".name", "required: the other cluster's name")
			case r.Name == g.Name:
				d.errorf(p+".name", "%q is this cluster; list only the others", r.Name)
			case seen[r.Name]:
				d.errorf(p+".name", "cluster %q is listed twice", r.Name)
			}
			seen[r.Name] = true
			if len(r.URLs) == 0 {
				d.errorf(p+".urls", "at least one gateway URL of cluster %q is needed", r.Name)
			}
			for j, u := range r.URLs {
				d.checkURL(fmt.Sprintf("%s.urls[%d]", p, j), u, "nats", "tls")
			}
		}
	}
	l := e.Leafnode
	if l.Listen != "" {
		d.checkAddr("bus.embedded.leafnode.listen", l.Listen)
	}
	for i, r := range l.Remotes {
		p := fmt.Sprintf("bus.embedded.leafnode.remotes[%d]", i)
		if len(r.URLs) == 0 {
			d.errorf(p+".urls", "at least one hub URL is needed")
		}
		for j, u := range r.URLs {
			d.checkURL(fmt.Sprintf("%s.urls[%d]", p, j), u, "nats-leaf", "nats", "tls")
		}
	}
	if l.Forward {
		if len(l.Remotes) == 0 {
			d.errorf("bus.embedded.leafnode.forward", "needs leafnode.remotes: the hub to forward to")
		}
		if e.JetStreamDomain == "" {
			d.errorf("bus.embedded.leafnode.forward", "needs bus.embedded.jetstream_domain: the hub takes the records from that domain")
		}
	}
	for i, dom := range b.EdgeDomains {
		p := fmt.Sprintf("bus.edge_domains[%d]", i)
		if !nameOK(dom) {
			d.errorf(p, "name %q: use letters, digits, _ and -", dom)
		} else if dom == e.JetStreamDomain {
			d.errorf(p, "%q is this server's own jetstream_domain", dom)
		}
	}
	if b.Replicas > 1 && !clustered {
		d.errorf("bus.replicas", "%d replicas need a cluster of at least %d servers: configure bus.embedded.cluster or bus.urls, or set 1", b.Replicas, b.Replicas)
	}
	for i, tag := range e.Tags {
		d.checkTag(fmt.Sprintf("bus.embedded.tags[%d]", i), tag, false)
	}
	if p := b.Placement; p.Set() {
		switch {
		case !clustered:
			// A single server ignores placement: say so rather than
			// pretend it holds.
			d.errorf("bus.placement", "needs a cluster: configure bus.embedded.cluster or bus.urls, or remove it")
		case p.Cluster != "" && e.Gateway.Name == "" && e.Cluster.Name != "" && p.Cluster != e.Cluster.Name:
			d.errorf("bus.placement.cluster", "%q is not this server's cluster %q, and no gateway links it to others", p.Cluster, e.Cluster.Name)
		}
	}
	a := e.Auth
	switch {
	case a.PasswordFile != "" && a.PasswordEnv != "":
		d.errorf("bus.embedded.auth.password_env", "give password_file or password_env, not both")
	case a.User != "" && a.PasswordFile == "" && a.PasswordEnv == "":
		d.errorf("bus.embedded.auth.user", "needs password_file or password_env")
	case a.User == "" && (a.PasswordFile != "" || a.PasswordEnv != ""):
		d.errorf("bus.embedded.auth.user", "required with a password")
	}
	modes := 0
	for _, on := range []bool{a.User != "", a.TokenFile != "", len(a.Nkeys) > 0} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		d.errorf("bus.embedded.auth", "give one of user, token_file or nkeys")
	}
	for i, k := range a.Nkeys {
		if len(k) != 56 || k[0] != 'U' {
			d.errorf(fmt.Sprintf("bus.embedded.auth.nkeys[%d]", i), "want a public user nkey (56 characters starting with U); never put a seed (SU…) here")
		}
	}
	t := e.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		d.errorf("bus.embedded.tls", "give cert_file and key_file together")
	}
	if t.CertFile == "" && (t.CAFile != "" || t.VerifyClients) {
		d.errorf("bus.embedded.tls.cert_file", "required when tls is configured")
	}
	if t.VerifyClients && t.CAFile == "" {
		d.errorf("bus.embedded.tls.ca_file", "required with verify_clients: the CA client certificates are checked against")
	}
}

// checkPlacement checks the names in bus.placement; whether they fit the
// topology is checked with the embedded server's keys, or by the servers.
func (d *decoder) checkPlacement(p Placement) {
	if p.Cluster != "" && !nameOK(p.Cluster) {
		d.errorf("bus.placement.cluster", "name %q: use letters, digits, _ and -", p.Cluster)
	}
	seen := map[string]bool{}
	for i, tag := range p.Tags {
		path := fmt.Sprintf("bus.placement.tags[%d]", i)
		d.checkTag(path, tag, true)
		if k := strings.ToLower(strings.TrimPrefix(tag, "!")); seen[k] {
			d.errorf(path, "tag %q is given twice", tag)
		} else {
			seen[k] = true
		}
	}
}

// checkTag reports a server tag the servers would not match as written:
// empty, with spaces, or (outside placement) starting with "!".
func (d *decoder) checkTag(path, tag string, placement bool) {
	name := tag
	if placement {
		name = strings.TrimPrefix(tag, "!")
	}
	switch {
	case name == "":
		d.errorf(path, "empty tag")
	case strings.ContainsAny(name, " \t\r\n,"):
		d.errorf(path, "tag %q: no spaces or commas", tag)
	case !placement && strings.HasPrefix(tag, "!"):
		d.errorf(path, "tag %q: \"!\" excludes a tag in bus.placement.tags; a server's own tag cannot start with it", tag)
	}
}

// validateClientAuth checks bus's own credentials and TLS.
func (d *decoder) validateClientAuth(b Bus) {
	given := []string{}
	if b.Credentials != "" {
		given = append(given, "credentials")
	}
	if b.NkeySeedFile != "" {
		given = append(given, "nkey_seed_file")
	}
	if b.User != "" {
		given = append(given, "user")
	}
	if b.TokenFile != "" {
		given = append(given, "token_file")
	}
	if len(given) > 1 {
		d.errorf("bus."+given[1], "give one of credentials, nkey_seed_file, user or token_file, not %s", strings.Join(given, " and "))
	}
	switch {
	case b.PasswordFile != "" && b.PasswordEnv != "":
		d.errorf("bus.password_env", "give password_file or password_env, not both")
	case b.User != "" && b.PasswordFile == "" && b.PasswordEnv == "":
		d.errorf("bus.user", "needs password_file or password_env")
	case b.User == "" && (b.PasswordFile != "" || b.PasswordEnv != ""):
		d.errorf("bus.user", "required with a password")
	}
	if (b.TLS.CertFile == "") != (b.TLS.KeyFile == "") {
		d.errorf("bus.tls", "give cert_file and key_file together")
	}
	if b.TLS.InsecureSkipVerify && b.TLS.CAFile != "" {
		d.errorf("bus.tls.insecure_skip_verify", "contradicts ca_file: with it nothing is verified")
	}
}

// checkURL reports a URL that does not parse, has another scheme or no
// port. The URL is echoed only without its user information.
func (d *decoder) checkURL(path, raw string, schemes ...string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		d.errorf(path, "want a URL such as %s://host:port, got %q", schemes[0], redactURL(raw))
		return
	}
	if u.User != nil {
		d.errorf(path, "a user, password or token in the URL would be shown in logs: use credentials")
		return
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		d.errorf(path, "want scheme %s, got %q", strings.Join(schemes, " or "), u.Scheme)
	}
	if u.Port() == "" {
		d.errorf(path, "want a port in %q", redactURL(raw))
	}
}

// redactURL hides the user information of a URL ("user:secret@" or a
// token): everything between the scheme and the last "@", so that even a
// URL that does not parse loses it.
func redactURL(raw string) string {
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 && i < at {
		start = i + 3
	}
	return raw[:start] + "REDACTED" + raw[at:]
}

// RedactURL is redactURL for other packages: every URL herald prints goes
// through it.
func RedactURL(raw string) string { return redactURL(raw) }
