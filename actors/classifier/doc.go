// Package classifier recognises raw log records and extracts their envelope.
//
// Classify looks at an event's Raw bytes and fills its Class, Certainty, Host,
// Service, TimeUnixNano, Message and Fields. It is plain Go: the receiver's
// classifier actor calls it once per record; tests call it directly.
//
// # Classes
//
// Each class is also the last token of the subject its events go to,
// herald.events.<class>.
//
//   - "rfc5424": IETF syslog ("<PRI>VERSION TIMESTAMP HOST APP PROCID MSGID SD MSG"),
//     parsed with github.com/leodido/go-syslog/v4/rfc5424.
//   - "rfc3164": BSD syslog ("<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG"), also
//     without PRI as written to log files, parsed with
//     github.com/leodido/go-syslog/v4/rfc3164 (RFC 3339 timestamps, second
//     fractions and zero-padded days accepted).
//   - "apache_common", "apache_combined": Apache httpd access logs
//     ("client ident user [time] "request" status size" and the same with
//     "referer" "agent"), also behind a "vhost:port" (vhost_combined).
//   - "nginx": nginx access lines (combined plus nginx's extra fields:
//     "$http_x_forwarded_for", "$gzip_ratio", ingress-nginx upstreaminfo)
//     and nginx error-log lines ("yyyy/mm/dd hh:mm:ss [level] pid#tid: ...").
//     A plain combined line is written the same by both servers: it is
//     apache_combined with certainty 0.6 and nginx as runner-up.
//   - "json": a JSON object (or array) record, one line or pretty-printed.
//   - "logfmt": key=value pairs ("level=info msg="started" port=8080").
//   - "mail": an RFC 5322 header block and body, optionally behind an mbox
//     "From " line.
//   - "pgp": an OpenPGP armoured block ("-----BEGIN PGP ...-----"), also
//     after lines of junk.
//   - "unknown": anything else, with certainty 0 and Message set to the text
//     of the record.
//
// # Dispatch and the best class
//
// The syslog parsers come first and end the search when they take a record
// with PRI or an RFC 5424 record without, so syslog lines pay for no other
// parser. An RFC 3164 reading without PRI (certainty 0.7 or less) competes
// with the other formats. Cheap tests of the first bytes pick the parsers to try
// ('{' or '[' JSON; "-----BEGIN PGP " PGP; a multi-line record whose first
// line is a header or an mbox "From " line mail; "] \"" an access log; '='
// logfmt); each fills a scratch event, the most certain wins (on ties: the
// syslog reading, then the order above). When the second best class comes
// within 0.25 of the winner, the fields runner_up (Str, the class) and
// runner_up_certainty (Float) name it, after the class's own fields.
//
// The multi-line classifiers (mail, PGP) read the record through a Buffer,
// after gnucomo's message_buffer: line by line, stepping back when a line
// belongs to the next part, rewinding for the next classifier.
//
// # Certainty
//
//	1.0  rfc5424: go-syslog's strict parse succeeds; json: an object that
//	     parses completely; pgp: a complete armour (BEGIN, headers, body,
//	     END of the same type)
//	0.9  rfc3164 that go-syslog parses cleanly (PRI, Stamp or RFC 3339
//	     timestamp, HOSTNAME, MSG); apache_common; nginx error log; logfmt
//	     whose every word is a pair (at least two); mail with a blank line
//	     after two or more known headers
//	0.8  apache_combined with something only Apache writes (an ident, size
//	     "-", request "-", a vhost); nginx with something only nginx writes
//	     (fields after the agent, an empty request ""); json array
//	0.7  rfc5424 that go-syslog rejects part way (best effort: PRI and
//	     VERSION valid; a rejected header part such as a timestamp without
//	     zone is taken as written), or without PRI ("1 2020-05-22T...");
//	     rfc3164 without PRI (log-file lines) that go-syslog parses;
//	     logfmt with bare words (pairs are at least half the words); pgp
//	     with one flaw (no END line, junk after the armour line's dashes,
//	     control characters in an armour header)
//	0.6  rfc3164 with PRI whose header only the lenient reader gets:
//	     "AUG 10", "Mar 7 2008 19:06:53:", Cisco "<189>35: *Apr 29 ...",
//	     RFC 3339 stamps without zone or with long fractions;
//	     apache_combined that nginx could have written the same; mail
//	     whose body starts without a blank line
//	0.5  the same without PRI; rfc3164 with a valid PRI but no timestamp
//	     ("<13>last message repeated 5 times"); json object followed by more
//	     text; logfmt of a single pair; mail with one known header
//	0.4  rfc3164 behind an invalid PRI ("<999>Oct 11 ..."): the PRI is
//	     dropped and the rest read as a line without PRI
//	0.3  json that starts like an object but does not parse (no fields);
//	     logfmt with a syntax error (unterminated quote, "a==", a key of
//	     invalid UTF-8: the pairs read are kept)
//	0.0  unknown
//
// Access-log lines lose 0.2 for each deviation from the format (ident and
// user missing, a space in the user, an unparsable [time], status "-",
// a quote the server did not escape, an unquoted request, referer and agent
// as bare "-", an agent without closing quote), down to 0.2; pgp loses 0.3
// per flaw, down to 0.3.
//
// The TAG is the first word after HOSTNAME when it ends in ":" (or
// "[PID]:"); a word without colon is not taken as TAG ("host tag msg" keeps
// "tag msg" as message). A single word after the timestamp is HOSTNAME.
//
// # Fields
//
// Fields are appended in this order, each only when the record has it.
// Syslog:
//
//	pri       Int  the PRI value (0..191)
//	facility  Int  pri / 8
//	severity  Int  pri % 8
//	version   Int  RFC 5424 VERSION
//	pid       Str  RFC 5424 PROCID, or the RFC 3164 "[pid]" after the tag
//	msgid     Str  RFC 5424 MSGID
//	sd        Map  RFC 5424 STRUCTURED-DATA: SD-ID -> Map of PARAM-NAME -> Str,
//	               in the order of the record (escapes resolved)
//
// NILVALUE ("-") parts are absent. Host, Service (APP-NAME or TAG) and the
// timestamp go to the Event's own fields, not to Fields.
//
// Access logs: vhost (Str, also the event's Host), vhost_port (Int),
// client, ident, user, request, method, path, protocol (Str), status, size
// (Int), referer, agent (Str); nginx adds x_forwarded_for (Str) or
// compression (Float), the nine upstreaminfo fields (request_length,
// request_time, proxy_upstream_name, proxy_alternative_upstream_name,
// upstream_addr, upstream_response_length, upstream_response_time,
// upstream_status, req_id), or extra (Str, anything else after the agent).
// Unquoted "-" values are absent; quoted values are kept as written, with
// the servers' escapes (\" \\ \n \t \xHH) resolved when that gives text
// (binary junk stays as written). The time is [time]; the message is the
// line. nginx error lines give level, pid, tid (Str), connection (Int) and
// the context after the message (client, server, request, upstream,
// http_host for the request's Host header, referrer ...); the message is
// the text before the context, the time the line's (a local time).
//
// JSON: every member of the object, in order, typed: strings Str, integers
// Int (integers beyond int64 as Str of their digits, so nothing is
// rounded), other numbers Float, true/false Bool, null a Value without
// kind, arrays List, objects Map. An array record is one field "array".
// logfmt: every word in order, values Str (quoted values with Go/JSON
// escapes resolved), a bare key or "key=" null. Both take the envelope
// from common keys, the first in each list that the record has:
//
//	message  msg, message, MESSAGE, @message, short_message, log (Docker,
//	         without its LF); also inside logstash's "@fields" object
//	host     host, hostname, _HOSTNAME, host.name, HOSTNAME; an object under
//	         "host" gives its "name"
//	time     time, timestamp, @timestamp, ts, __REALTIME_TIMESTAMP,
//	         datetime, date: RFC 3339 text, or epoch seconds, milliseconds,
//	         microseconds or nanoseconds (a number or a string of digits)
//	service  app, service, service.name, application, app_name,
//	         SYSLOG_IDENTIFIER, program (values that start with a letter,
//	         so Heroku's "service=18ms" is not one); an object under
//	         "service" gives its "name"; a Bunyan record's "name" (with
//	         "hostname" and "pid")
//
// Without a message key the message is the record's text.
//
// Mail: mbox_from (the "From " line), from, to, cc, subject (RFC 2047
// words decoded), date, message_id (Str, unfolded, the first of each),
// received (List of every Received header, top first). The time is Date
// (the mbox line's date when there is no usable Date); the host is the
// sender named in the oldest (last) Received header: its "from" name, or
// its "by" name when "from" is missing or the local host. The message is
// the body.
//
// PGP: armor_type ("PGP MESSAGE", "PGP SIGNED MESSAGE" ...), armor_headers
// (Map: Version, Hash, Comment ...), signature_armor_type (clear-signed
// messages), checksum (the "=XXXX" line). The message is the signed text of
// a clear-signed message (dash-escapes resolved, each line ending in LF),
// else the armoured block.
//
// # Time
//
// TimeUnixNano is the record's own timestamp, 0 when it has none. RFC 3164
// timestamps without a year get the year that puts them closest to the
// arrival time passed to Classify (a "Dec 31 23:59:59" read on Jan 1 is last
// year's, a "Jan 1 00:00:01" read on Dec 31 is next year's); a Feb 29 that fits none of
// last, this and next year gets the last leap year. Timestamps without a
// zone are read in the arrival time's zone (time.Local in herald).
//
// # Text
//
// Raw is never modified. A trailing "\n" or "\r\n" (any run of CR/LF) is not
// part of the record. Every string set on the event is valid UTF-8: invalid
// sequences are replaced by U+FFFD, so that the event always marshals. A
// leading UTF-8 BOM of an RFC 5424 MSG is not part of Message.
package classifier
