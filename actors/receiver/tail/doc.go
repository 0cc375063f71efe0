// Package tail is the file receiver (type "file"): it follows files named by
// glob patterns, as tail -F does, and publishes each line, or each
// multiline record, to herald.raw.<receiver>.
//
// # Positions
//
// A file is known by its identity (device and inode), not by its name, so a
// file renamed by log rotation is the same file. The read position of each
// file is kept in the JetStream key-value bucket bus.KVFilePositions under
// "<receiver>.<device>.<inode>", with the path it was last seen under and two
// fingerprints (a hash of the file's first bytes and of the bytes just
// before the position). A position moves past a record only after
// JetStream acknowledged that record (Batcher.AddConfirmed), and is written
// to the bucket every commit_interval and at shutdown. After a restart each
// file resumes exactly after the last position written: records
// acknowledged after it are read again (at least once: a record may repeat
// after a crash, never be skipped). A stored position whose fingerprints no
// longer match (the file was truncated or replaced while herald was down,
// or an inode was reused) is not trusted: the file is read from its start.
//
// # Rotation and truncation
//
//   - rename and create (logrotate's default): the path now names a new
//     file, which is read from its start; the renamed file is read to its
//     end and closed once it has not grown for rotate_wait. If the glob
//     also matches the rotated name (app.log*), the renamed file simply
//     keeps being followed under its new name.
//   - copytruncate, or any truncation: the file shrank below the read
//     position, or the bytes before the position changed: it is read again
//     from its start. What the writer appended between logrotate's copy and
//     its truncation and herald had not read yet is lost; that is in the
//     nature of copytruncate, not of herald.
//   - a deleted file is read to its end and closed, and its position
//     removed from the bucket.
//
// Lines written while herald was down to a file that was then renamed out
// of the glob are not seen; include the rotated names in the glob (and
// exclude compressed ones) to read them too.
//
// # Records
//
// Without multiline.start each line is a record (the newline is not part
// of it; a CR before it is). With multiline.start a line matching the
// regular expression starts a record and the lines that do not match are
// joined to it with their newlines, as stack traces are; a record ends at
// the next start line, after multiline.timeout without a new line, or at
// multiline.max_lines or max_message_size. A line longer than
// max_message_size is cut into pieces of that size. Empty records are skipped and counted
// (herald_stage_rejected_total{reason="empty"}). An unterminated last line
// is read only when the writer finishes it, or when its file is closed for
// good.
//
// With format mbox each record is one mail (multiline records starting at
// From_ lines): the From_ line and the mboxrd quoting are removed, and its
// sending host, date and arrival become the event's host, time and
// reception time (see package mbox); the classifier's mail class makes
// fields of its headers.
//
// Do not run the same file receiver in two herald processes at once: each
// would read every file.
package tail
