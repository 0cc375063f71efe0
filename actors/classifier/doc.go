// Package classifier recognises raw log records and extracts their envelope.
//
// Classify looks at an event's Raw bytes and fills its Class, Certainty, Host,
// Service, TimeUnixNano, Message and Fields. It is plain Go: the receiver's
// classifier actor calls it once per record; tests call it directly.
//
// # Classes
//
//   - "rfc5424": IETF syslog ("<PRI>VERSION TIMESTAMP HOST APP PROCID MSGID SD MSG"),
//     parsed with github.com/leodido/go-syslog/v4/rfc5424.
//   - "rfc3164": BSD syslog ("<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG"), also
//     without PRI as written to log files, parsed with
//     github.com/leodido/go-syslog/v4/rfc3164 (RFC 3339 timestamps, second
//     fractions and zero-padded days accepted).
//   - "unknown": anything else, with certainty 0 and Message set to the text
//     of the record.
//
// # Certainty
//
//	1.0  rfc5424: go-syslog's strict parse succeeds
//	0.9  rfc3164 that go-syslog parses cleanly (PRI, Stamp or RFC 3339
//	     timestamp, HOSTNAME, MSG)
//	0.7  rfc5424 that go-syslog rejects part way (best effort: PRI and
//	     VERSION valid; a rejected header part such as a timestamp without
//	     zone is taken as written), or without PRI ("1 2020-05-22T...");
//	     rfc3164 without PRI (log-file lines) that go-syslog parses
//	0.6  rfc3164 with PRI whose header only the lenient reader gets:
//	     "AUG 10", "Mar 7 2008 19:06:53:", Cisco "<189>35: *Apr 29 ...",
//	     RFC 3339 stamps without zone or with long fractions
//	0.5  the same without PRI; or rfc3164 with a valid PRI but no
//	     timestamp ("<13>last message repeated 5 times")
//	0.4  rfc3164 behind an invalid PRI ("<999>Oct 11 ..."): the PRI is
//	     dropped and the rest read as a line without PRI
//	0.0  unknown
//
// The TAG is the first word after HOSTNAME when it ends in ":" (or
// "[PID]:"); a word without colon is not taken as TAG ("host tag msg" keeps
// "tag msg" as message). A single word after the timestamp is HOSTNAME.
//
// # Fields
//
// Fields are appended in this order, each only when the record has it:
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
