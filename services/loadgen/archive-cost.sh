#!/usr/bin/env bash
# What the archive (the config's `archive:` section, kept for `herald replay`) costs: the same
# load as bench.sh's file run, once per case, each on a fresh NATS store, and per case
# herald's events/s, peak RSS (VmHWM, over the whole run), RSS once the load is over and
# after COST_SETTLE seconds of idling (VmRSS) with the Go heap in use then (the embedded NATS
# server's included: RSS above it is memory freed but not yet returned), CPU%, and the disk of the archive stream and
# of the whole NATS store once delivery finished. Then, with an archive, `herald replay` of
# the whole archive into the same target (its file sink gets every event again): the replay's
# events/s (command start to the target's commit of the last replayed event) and herald's peak RSS while replaying
# (the peak is reset first through /proc/PID/clear_refs).
#
# Cases are lines of `name|archive section` (flow YAML, empty for no archive); the default:
#   off|
#   24h|{max_age: 24h}
#   24h, 256MiB|{max_age: 24h, max_bytes: 256MiB}
# Each case is herald's default-like config with that archive section: syslog TCP in, one
# target, one JSON-lines file sink, every hop durable.
#
# Ports differ from bench.sh's and `make run`'s: syslog 127.0.0.1:16514, NATS 127.0.0.1:16222,
# metrics 127.0.0.1:19474.
#
# Environment:
#   COST_N       lines per case (default 1000000)
#   COST_SIZE    bytes per line (default 200)
#   COST_CASES   the cases, one per line (see above)
#   COST_SETTLE  seconds of idling before the settled RSS is read (default 20)
#   COST_EXTRA   YAML lines added to every case's config, e.g. 'memory_limit: 0'
#   COST_REPLAY  0: skip the replay runs (default 1)
#   COST_KEEP    if 1, keep the temp dir
#   HERALD       herald binary (default bin/herald; copied first, so a rebuild meanwhile is
#                harmless); LOADGEN likewise (bin/herald-loadgen)
# Exit status: 1 if a case did not deliver every line or herald failed to start.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

N=${COST_N:-1000000}
SIZE=${COST_SIZE:-200}
SETTLE=${COST_SETTLE:-20}
CASES=${COST_CASES:-'off|
24h|{max_age: 24h}
24h, 256MiB|{max_age: 24h, max_bytes: 256MiB}'}
SYSLOG=127.0.0.1:16514
NATS=127.0.0.1:16222
METRICS=127.0.0.1:19474

log() { echo "archive-cost: $*" >&2; }

for b in "${HERALD:-bin/herald}" "${LOADGEN:-bin/herald-loadgen}"; do
	[[ -x $b ]] || { log "$b not found: run make build first"; exit 1; }
done
if curl -fsS -o /dev/null --max-time 1 "http://$METRICS/readyz" 2>/dev/null; then
	log "something already answers http://$METRICS/readyz: stop it first"
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-archive-cost.XXXXXX")
cp "${HERALD:-bin/herald}" "$tmp/herald"
cp "${LOADGEN:-bin/herald-loadgen}" "$tmp/loadgen"
herald_pid=""

stop_herald() {
	[[ -n $herald_pid ]] || return 0
	kill -TERM "$herald_pid" 2>/dev/null || true
	for _ in $(seq 300); do
		kill -0 "$herald_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$herald_pid" 2>/dev/null || true
	wait "$herald_pid" 2>/dev/null || true
	herald_pid=""
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_herald
	if [[ ${COST_KEEP:-0} == 1 ]]; then log "kept $tmp"; else rm -rf "$tmp"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
du_mib() { if [[ -e $1 ]]; then du -sk "$1" | awk '{ printf "%.1f", $1 / 1024 }'; else echo 0; fi; }
json_field() { grep -o "\"$2\":[0-9.e+-]*" "$1" | head -n 1 | cut -d: -f2; }
committed() { curl -fsS --max-time 2 "http://$METRICS/metrics" 2>/dev/null |
	awk '/^herald_stage_published_events_total\{stage="target.log"\}/ { printf "%d", $2; found = 1 } END { if (!found) print 0 }'; }

rows=()
i=0
while IFS= read -r line; do
	[[ -n $line ]] || continue
	name=${line%%|*}
	archive=${line#*|}
	i=$((i + 1))
	dir=$tmp/case$i
	mkdir -p "$dir"
	{
		cat <<EOF
log: {level: info, format: text}
bus:
  embedded: {listen: $NATS, data_dir: nats}
metrics: {listen: $METRICS}
receivers:
  syslog: {type: syslog, tcp: $SYSLOG}
targets:
  log: {bit: 4, sinks: [events]}
sinks:
  events: {type: file, path: out/events.jsonl, format: json}
EOF
		[[ -z $archive ]] || echo "archive: $archive"
		[[ -z ${COST_EXTRA:-} ]] || echo "$COST_EXTRA"
	} >"$dir/herald.yaml"
	"$tmp/herald" run --config "$dir/herald.yaml" >"$dir/herald.log" 2>&1 &
	herald_pid=$!
	ready=""
	for _ in $(seq 300); do
		kill -0 "$herald_pid" 2>/dev/null || { log "case $name: herald exited before it was ready:"; tail -n 20 "$dir/herald.log" >&2; exit 1; }
		if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$METRICS/readyz" 2>/dev/null) == 200 ]]; then
			ready=1
			break
		fi
		sleep 0.1
	done
	[[ -n $ready ]] || { log "case $name: herald not ready after 30 s"; exit 1; }
	log "case $name: sending $N lines (archive: ${archive:-off})"
	"$tmp/loadgen" -addr "$SYSLOG" -proto tcp -n "$N" -size "$SIZE" -out "$dir/out/events.jsonl" \
		-timeout 600s -pid "$herald_pid" -json -progress 0 >"$dir/summary.txt" ||
		{ log "case $name: delivery incomplete"; cat "$dir/summary.txt" >&2; exit 1; }
	tail -n 1 "$dir/summary.txt" >"$dir/summary.json"
	rss_end=$(rss_mib "$herald_pid")
	sleep "$SETTLE" # idle on purpose: what the server keeps once the load is over
	rss_idle=$(rss_mib "$herald_pid")
	heap=$(curl -fsS --max-time 2 "http://$METRICS/metrics" 2>/dev/null |
		awk '/^go_memstats_heap_inuse_bytes / { printf "%.1f", $2 / 1048576 }')
	peak=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$herald_pid/status")
	arch=$(du_mib "$(find "$dir/nats" -type d -name HERALD_ARCHIVE -print -quit)")
	store=$(du_mib "$dir/nats")
	replay_eps=-
	replay_peak=-
	if [[ -n $archive && ${COST_REPLAY:-1} == 1 ]]; then
		echo 5 >"/proc/$herald_pid/clear_refs" # resets VmHWM: the replay's own peak
		log "case $name: replaying the archive"
		t0=$(date +%s.%N)
		"$tmp/herald" replay --config "$dir/herald.yaml" --target log --since 24h >"$dir/replay.txt" 2>&1 ||
			{ log "case $name: replay failed"; cat "$dir/replay.txt" >&2; exit 1; }
		replayed=$(grep -o '^replayed [0-9]*' "$dir/replay.txt" | cut -d' ' -f2)
		for _ in $(seq 6000); do # 600 s
			(($(committed) >= N + replayed)) && break
			sleep 0.1
		done
		(($(committed) >= N + replayed)) || { log "case $name: the replay was not delivered within 600 s"; exit 1; }
		t1=$(date +%s.%N)
		replay_eps=$(awk -v a="$t0" -v b="$t1" -v n="$replayed" 'BEGIN { printf "%.0f", n / (b - a) }')
		replay_peak=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$herald_pid/status")
	fi
	stop_herald
	rows+=("$(printf '  %-16s %10.0f %10.0f%% %9s %9s %9s %9s %11s %11s %10s %9s' "$name" \
		"$(json_field "$dir/summary.json" events_per_s)" "$(json_field "$dir/summary.json" herald_cpu_percent)" \
		"$peak" "$rss_end" "$rss_idle" "${heap:--}" "$arch" "$store" "$replay_eps" "$replay_peak")")
	rm -rf "$dir/out"
done <<<"$CASES"

echo
echo "  $N lines of $SIZE bytes per case; RSS and disk in MiB; settled = after ${SETTLE}s idle${COST_EXTRA:+; with $COST_EXTRA}"
printf '  %-16s %10s %11s %9s %9s %9s %9s %11s %11s %10s %9s\n' archive events/s "CPU" "peak RSS" "RSS end" settled "Go heap" "archive" "NATS store" \
	"replay/s" "replay RSS"
printf '%s\n' "${rows[@]}"
