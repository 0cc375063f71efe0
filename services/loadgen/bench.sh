#!/usr/bin/env bash
# End-to-end benchmark of the built herald (`make bench` runs it after `make build`).
#
# Starts bin/herald on a throw-away config in a temp dir (syslog tcp+udp in, one target,
# one JSON-lines file sink out), waits for /readyz, drives it with bin/herald-loadgen over
# TCP and prints the loadgen's summary: delivered/missing/duplicates, end-to-end events/s and
# MiB/s, latency p50/p99/max, herald's peak RSS and CPU%. Then it stops herald with SIGTERM.
#
# Ports differ from `make run`'s so both can run at once: syslog 127.0.0.1:15514 (tcp+udp),
# NATS 127.0.0.1:14222, metrics/health 127.0.0.1:19464.
#
# Environment:
#   BENCH_N        lines to send (default 1000000)
#   BENCH_CONNS    TCP connections (default 1)
#   BENCH_SIZE     bytes per line (default 200)
#   BENCH_RATE     lines/s, 0 = as fast as possible (default 0)
#   BENCH_TIMEOUT  loadgen's -timeout, counted from the first send (default 300s)
#   BENCH_JSON     if set, a file to which the summary is written as one JSON object
#   BENCH_KEEP     if 1, keep the temp dir (config, herald.log, output, NATS data)
#   HERALD         herald binary (default bin/herald); LOADGEN likewise (bin/herald-loadgen)
# Exit status: the loadgen's (1 if delivery was incomplete), or 1 if herald failed to start.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

HERALD=${HERALD:-bin/herald}
LOADGEN=${LOADGEN:-bin/herald-loadgen}
N=${BENCH_N:-1000000}
CONNS=${BENCH_CONNS:-1}
SIZE=${BENCH_SIZE:-200}
RATE=${BENCH_RATE:-0}
TIMEOUT=${BENCH_TIMEOUT:-300s}
SYSLOG=127.0.0.1:15514
NATS=127.0.0.1:14222
METRICS=127.0.0.1:19464

log() { echo "bench: $*" >&2; }

for b in "$HERALD" "$LOADGEN"; do
	[[ -x $b ]] || { log "$b not found: run make build first"; exit 1; }
done
command -v curl >/dev/null || { log "curl is needed"; exit 1; }

# A herald left over from an earlier run would answer /readyz and take the load.
if curl -fsS -o /dev/null --max-time 1 "http://$METRICS/readyz" 2>/dev/null; then
	log "something already answers http://$METRICS/readyz: stop it first"
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-bench.XXXXXX")
herald_pid=""

stop_herald() { # SIGTERM, then SIGKILL after 30 s; sets herald_rc
	herald_rc=""
	[[ -n $herald_pid ]] || return 0
	if kill -0 "$herald_pid" 2>/dev/null; then
		kill -TERM "$herald_pid" 2>/dev/null || true
		for _ in $(seq 300); do
			kill -0 "$herald_pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$herald_pid" 2>/dev/null; then
			log "herald (pid $herald_pid) ignored SIGTERM for 30 s: SIGKILL"
			kill -KILL "$herald_pid" 2>/dev/null || true
		fi
	fi
	herald_rc=0
	wait "$herald_pid" 2>/dev/null || herald_rc=$?
	herald_pid=""
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_herald
	if ((rc != 0)) && [[ -s $tmp/herald.log ]]; then
		log "herald.log (last 30 lines):"
		tail -n 30 "$tmp/herald.log" >&2
	fi
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$tmp/herald.yaml" <<EOF
log:
  level: info
  format: text
bus:
  embedded:
    listen: $NATS
    data_dir: nats
metrics:
  listen: $METRICS
receivers:
  syslog:
    type: syslog
    tcp: $SYSLOG
    udp: $SYSLOG
targets:
  log:
    bit: 4
    sinks: [events]
sinks:
  events:
    type: file
    path: out/events.jsonl
    format: json
EOF

log "herald $("$HERALD" version 2>/dev/null | head -n 1 || true) in $tmp"
"$HERALD" run --config "$tmp/herald.yaml" >"$tmp/herald.log" 2>&1 &
herald_pid=$!

ready=""
for _ in $(seq 300); do # 30 s
	if ! kill -0 "$herald_pid" 2>/dev/null; then
		herald_rc=0
		wait "$herald_pid" || herald_rc=$?
		herald_pid=""
		log "herald exited with status $herald_rc before it was ready"
		exit 1
	fi
	if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$METRICS/readyz" 2>/dev/null) == 200 ]]; then
		ready=1
		break
	fi
	sleep 0.1
done
[[ -n $ready ]] || { log "herald not ready after 30 s (http://$METRICS/readyz)"; exit 1; }

log "herald ready (pid $herald_pid); sending $N lines over $CONNS TCP connection(s)"
json=()
[[ -n ${BENCH_JSON:-} ]] && json=(-json)
lg_rc=0
"$LOADGEN" -addr "$SYSLOG" -proto tcp -n "$N" -conns "$CONNS" -size "$SIZE" -rate "$RATE" \
	-out "$tmp/out/events.jsonl" -timeout "$TIMEOUT" -pid "$herald_pid" "${json[@]}" \
	>"$tmp/summary.txt" || lg_rc=$?

t0=$(date +%s.%N)
stop_herald
t1=$(date +%s.%N)

echo
if [[ -n ${BENCH_JSON:-} ]]; then
	head -n -1 "$tmp/summary.txt"
	tail -n 1 "$tmp/summary.txt" >"$BENCH_JSON"
else
	cat "$tmp/summary.txt"
fi
printf '  shutdown    herald exited with status %s after SIGTERM in %.1fs\n' "$herald_rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
if [[ -f $tmp/out/events.jsonl ]]; then
	printf '  output      %s lines, %s bytes in the file sink\n' "$(wc -l <"$tmp/out/events.jsonl")" "$(stat -c %s "$tmp/out/events.jsonl")"
fi
if ((lg_rc != 0)); then
	log "loadgen exited with status $lg_rc"
	exit "$lg_rc"
fi
if [[ $herald_rc != 0 ]]; then
	log "herald exited with status $herald_rc"
fi
