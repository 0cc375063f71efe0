#!/usr/bin/env bash
# End-to-end benchmark of the built herald (`make bench` runs it after `make build`).
#
# Starts bin/herald on a throw-away config in a temp dir (syslog tcp+udp in, one target,
# one JSON-lines file sink out), waits for /readyz, drives it with bin/herald-loadgen over
# TCP and prints the loadgen's summary: delivered/missing/duplicates, end-to-end events/s and
# MiB/s, latency p50/p99/max, herald's peak RSS and CPU%. Then it stops herald with SIGTERM.
#
# Then, when PostgreSQL is installed (or BENCH_PG=1), a second run with a postgres sink: a
# throw-away PostgreSQL server (services/loadgen/pgserver, built with go), herald on a fresh
# NATS store writing to its table, the same load sent by the loadgen, and pgserver counting
# the table's rows until all N are there. The last lines compare the two runs: events/s end
# to end into the file and into the table, and the postgres run's rate as a share of the
# file run's (the file sink costs little, so the file run is close to herald's own ceiling).
#
# Ports differ from `make run`'s so both can run at once: syslog 127.0.0.1:15514 (tcp+udp),
# NATS 127.0.0.1:14222, metrics/health 127.0.0.1:19464, PostgreSQL 127.0.0.1:15432.
#
# Environment:
#   BENCH_N        lines to send (default 1000000)
#   BENCH_CONNS    TCP connections (default 1)
#   BENCH_SIZE     bytes per line (default 200)
#   BENCH_RATE     lines/s, 0 = as fast as possible (default 0)
#   BENCH_TIMEOUT  loadgen's -timeout, counted from the first send (default 300s)
#   BENCH_JSON     if set, a file to which the summary is written as one JSON object
#   BENCH_KEEP     if 1, keep the temp dir (config, herald.log, output, NATS data)
#   BENCH_PG       1: run the postgres bench too (fail without PostgreSQL); 0: skip it;
#                  unset: run it when PostgreSQL's server programs are installed
#   BENCH_PG_N     rows for the postgres run (default BENCH_N)
#   BENCH_PG_SET   server settings for it, space-separated name=value (default none:
#                  PostgreSQL's defaults, fsync and synchronous_commit on)
#   BENCH_COMPARE  0: skip services/loadgen/compare.sh (the side-by-side table, last)
#   BENCH_SCALE, BENCH_VECTOR, BENCH_RUNS, BENCH_CASES: compare.sh's (see there)
#   HERALD         herald binary (default bin/herald); LOADGEN likewise (bin/herald-loadgen)
#   GO             go command that builds pgserver (default go)
# Exit status: the loadgen's (1 if delivery was incomplete), or 1 if herald failed to start,
# or pgserver's (1 if the table did not get every row).
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
PG_PORT=15432
GO=${GO:-go}

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
pg_pid=""
herald_log=herald.log # the log cleanup shows when the run fails

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

stop_pg() { # pgserver stops its PostgreSQL with a fast shutdown on SIGTERM
	[[ -n $pg_pid ]] || return 0
	kill -TERM "$pg_pid" 2>/dev/null || true
	wait "$pg_pid" 2>/dev/null || true
	pg_pid=""
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_herald
	stop_pg
	if ((rc != 0)) && [[ -s $tmp/$herald_log ]]; then
		log "$herald_log (last 30 lines):"
		tail -n 30 "$tmp/$herald_log" >&2
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

# write_config FILE NATS_DIR SINK_YAML: herald's config, with the sink "events" given as
# indented YAML lines.
write_config() {
	cat >"$1" <<EOF
log:
  level: info
  format: text
bus:
  embedded:
    listen: $NATS
    data_dir: $2
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
$3
EOF
}

# start_herald CONFIG LOG: starts herald in the background and waits for /readyz.
start_herald() {
	herald_log=$2
	"$HERALD" run --config "$1" >"$tmp/$herald_log" 2>&1 &
	herald_pid=$!
	local ready=""
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
}

# json_field FILE KEY: a number from a one-line JSON object.
json_field() { grep -o "\"$2\":[0-9.e+-]*" "$1" | head -n 1 | cut -d: -f2; }

# ------------------------------------------------------------------ file sink
herald_log=herald.log
write_config "$tmp/herald.yaml" nats "    type: file
    path: out/events.jsonl
    format: json"

log "herald $("$HERALD" version 2>/dev/null | head -n 1 || true) in $tmp"
start_herald "$tmp/herald.yaml" herald.log

log "herald ready (pid $herald_pid); sending $N lines over $CONNS TCP connection(s)"
lg_rc=0
"$LOADGEN" -addr "$SYSLOG" -proto tcp -n "$N" -conns "$CONNS" -size "$SIZE" -rate "$RATE" \
	-out "$tmp/out/events.jsonl" -timeout "$TIMEOUT" -pid "$herald_pid" -json \
	>"$tmp/summary.txt" || lg_rc=$?

t0=$(date +%s.%N)
stop_herald
t1=$(date +%s.%N)

echo
head -n -1 "$tmp/summary.txt"
tail -n 1 "$tmp/summary.txt" >"$tmp/file.json"
[[ -n ${BENCH_JSON:-} ]] && cp "$tmp/file.json" "$BENCH_JSON"
printf '  shutdown    herald exited with status %s after SIGTERM in %.1fs\n' "$herald_rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
if [[ -f $tmp/out/events.jsonl ]]; then
	printf '  output      %s lines, %s bytes in the file sink\n' "$(wc -l <"$tmp/out/events.jsonl")" "$(stat -c %s "$tmp/out/events.jsonl")"
	rm -f "$tmp/out/events.jsonl" # room for the postgres run
fi
if ((lg_rc != 0)); then
	log "loadgen exited with status $lg_rc"
	exit "$lg_rc"
fi
if [[ $herald_rc != 0 ]]; then
	log "herald exited with status $herald_rc"
fi

# ------------------------------------------------------------------ postgres sink
pg_installed() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || command -v postgres >/dev/null; }
run_pg=0
case ${BENCH_PG:-} in
0) ;;
1)
	pg_installed || { log "BENCH_PG=1 but no PostgreSQL server is installed: run deploy/ci/deps.sh"; exit 1; }
	run_pg=1
	;;
*)
	if pg_installed; then
		run_pg=1
	else
		log "no PostgreSQL server installed: postgres bench skipped (deploy/ci/deps.sh installs it)"
	fi
	;;
esac

# pg_bench: the postgres run and the table comparing it with the file run. Any failure
# ends the script (with cleanup); the compare step below runs only after it succeeded.
pg_bench() {
	PG_N=${BENCH_PG_N:-$N}
	pg_set=()
	for kv in ${BENCH_PG_SET:-}; do pg_set+=(-set "$kv"); done

	"$GO" build -o "$tmp/pgserver" ./services/loadgen/pgserver
	"$tmp/pgserver" serve -dir "$tmp/pg" -port "$PG_PORT" "${pg_set[@]}" >"$tmp/pgserver.log" 2>&1 &
	pg_pid=$!
	for _ in $(seq 600); do # 60 s
		[[ -s $tmp/pg/dsn ]] && break
		if ! kill -0 "$pg_pid" 2>/dev/null; then
			pg_pid=""
			log "pgserver failed:"
			cat "$tmp/pgserver.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	[[ -s $tmp/pg/dsn ]] || { log "PostgreSQL not ready after 60 s"; exit 1; }
	dsn=$(cat "$tmp/pg/dsn")

	write_config "$tmp/herald-pg.yaml" nats-pg "$(printf '    %s\n' "type: postgres" "dsn: $dsn" \
		"password_file: pg/password" "table: herald_events")"
	start_herald "$tmp/herald-pg.yaml" herald-pg.log
	log "PostgreSQL ${BENCH_PG_SET:+($BENCH_PG_SET) }and herald ready (pid $herald_pid); sending $PG_N lines over $CONNS TCP connection(s)"

	# The counter starts first: its clock is the run's (first send -> N-th row committed).
	"$tmp/pgserver" count -dsn "$dsn" -password-file "$tmp/pg/password" -n "$PG_N" \
		-metrics "http://$METRICS/metrics" -sink events -pid "$herald_pid" -timeout "$TIMEOUT" -json \
		>"$tmp/pgsummary.txt" 2>&1 &
	count_pid=$!
	lg_rc=0
	"$LOADGEN" -addr "$SYSLOG" -proto tcp -n "$PG_N" -conns "$CONNS" -size "$SIZE" -rate "$RATE" \
		-timeout "$TIMEOUT" -progress 0 >"$tmp/pg-send.txt" || lg_rc=$?
	count_rc=0
	wait "$count_pid" || count_rc=$?
	stop_herald
	stop_pg

	echo
	head -n 2 "$tmp/pg-send.txt"
	head -n -1 "$tmp/pgsummary.txt"
	tail -n 1 "$tmp/pgsummary.txt" >"$tmp/pg.json"
	if ((lg_rc != 0)); then
		log "loadgen exited with status $lg_rc"
		exit "$lg_rc"
	fi
	if ((count_rc != 0)); then
		log "pgserver count exited with status $count_rc"
		exit "$count_rc"
	fi

	file_eps=$(json_field "$tmp/file.json" events_per_s)
	pg_eps=$(json_field "$tmp/pg.json" events_per_s)
	echo
	printf '  %-10s %14s %12s %12s %14s\n' sink "events/s" seconds "herald CPU" "herald RSS"
	printf '  %-10s %14.0f %12.2f %11.0f%% %10.1f MiB\n' file "$file_eps" "$(json_field "$tmp/file.json" seconds)" \
		"$(json_field "$tmp/file.json" herald_cpu_percent)" "$(json_field "$tmp/file.json" herald_peak_rss_mib)"
	printf '  %-10s %14.0f %12.2f %11.0f%% %10.1f MiB\n' postgres "$pg_eps" "$(json_field "$tmp/pg.json" seconds)" \
		"$(json_field "$tmp/pg.json" herald_cpu_percent)" "$(json_field "$tmp/pg.json" herald_peak_rss_mib)"
	awk -v f="$file_eps" -v p="$pg_eps" 'BEGIN { printf "  postgres end to end = %.0f%% of the file run'"'"'s rate\n", 100 * p / f }'
}
((run_pg == 0)) || pg_bench
# herald vs rsyslog, syslog-ng, Benthos, plus the scale-out cases (BENCH_SCALE=0 leaves them
# out) and the Vector harness's cases (BENCH_VECTOR=0): its table ends the output
# (BENCH_COMPARE=0 skips it; BENCH_N, BENCH_SIZE, BENCH_TIMEOUT and BENCH_KEEP apply to it too).
if [[ ${BENCH_COMPARE:-1} != 0 ]]; then bash services/loadgen/compare.sh; fi
