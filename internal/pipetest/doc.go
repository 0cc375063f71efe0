// Package pipetest runs pipeline unit tests, as `vector test` does for
// Vector: a YAML file names a herald config and lists cases, each an input
// record and what must become of it. A case runs the pipeline's plain Go
// logic in-process, with no NATS, no actor and no sink written:
// classifier.Classify, the resolver, router.Match and the file formatter
// of each sink asked about. `herald test FILE` is its command.
//
// A test file:
//
//	config: ../herald.yaml            # the config under test, relative to this file
//	received: 2026-03-01T12:00:00Z    # arrival time of every input (default 2026-01-01T00:00:00Z)
//	tests:
//	  - name: a BSD line from the syslog receiver goes to the log target
//	    input:
//	      receiver: syslog            # default: the config's only receiver
//	      line: "<13>Mar  1 11:59:58 web1 nginx[42]: GET /"
//	      peer: 192.0.2.7:514         # optional
//	      received: 2026-03-01T12:00:00Z   # optional, overrides the file's
//	    expect:
//	      class: rfc3164
//	      host: web1
//	      service: nginx
//	      message: GET /
//	      fields: {severity: 5, pid: "42", R_time__: 1772366398}
//	      no_fields: [msgid]
//	      targets: [log]
//	      outputs:
//	        events: '{"id":"...","host":"web1",...}'
//
// An input is either a raw record (line, as a receiver reads it; the
// event's source is the receiver's name and its mask the receiver's
// target_mask) or an application's JSON event (event: a JSON text or a
// YAML mapping, read as herald reads herald.events.<class>; class: its
// subject's class, default app), which skips the classifier as it does in
// herald.
//
// Every expect key is optional; only what is given is checked. fields
// checks the named fields only (values compared as JSON, so 5 and "5"
// differ; times are RFC 3339 text); no_fields names fields that must be
// absent; targets is the exact set of targets chosen (in any order; []
// for none); dead_lettered is the set of targets whose filter cannot judge
// the event, so that the router dead-letters their copy (["*"]: a rule
// cannot judge it, and the whole event is dead-lettered). A dead letter
// nobody expected always fails the case. outputs holds the exact record each named sink would
// write (file and stdout formats), its trailing newlines ignored; the sink
// must be in the chain of a chosen target.
//
// The event id is derived from the arrival time alone (as if every case
// were the first event of a batch named "herald-test"), so it is stable
// from run to run. Times without a zone are read in the arrival time's
// zone (UTC for ...Z); R_stamp__ and R_loco__ follow the config's
// resolver.zone, so set it when a test checks them.
package pipetest
