#!/usr/bin/env bash
# herald side by side with rsyslog, syslog-ng and Benthos (`make bench` runs it at the end of
# services/loadgen/bench.sh). Same machine, same run, same load generator (bin/herald-loadgen):
# syslog over one TCP connection on 127.0.0.1 in, a file out; every line carries a run id and a
# sequence number, and the generator follows the output file until every one has arrived.
#
# Cases (configs in deploy/bench/, placeholders filled in here):
#   rsyslog-memory       rsyslog imtcp -> omfile, in-memory queues
#   rsyslog-disk         rsyslog with a pure Disk action queue
#   syslog-ng-default    syslog-ng network() -> file()
#   syslog-ng-reliable   syslog-ng with disk-buffer(reliable(yes))
#   benthos              Benthos socket_server -> parse_log (RFC 3164) -> file (JSON lines)
#   herald-durable       herald's default config: every hop in JetStream, file sink
#   herald-stages        the same with each stage in its own process (5 processes)
# The cases are interleaved (run 1 of every case, then run 2 ...), so a slow minute of a noisy
# host does not fall on one case only. The table gives the median and the range (min..max) of
# the runs: end-to-end events/s (first send -> last line in the file) and MiB/s (wire bytes),
# latency p50/p99 (send -> seen in the file; under a saturating load this is queueing), the
# server's peak RSS and CPU% (summed over herald-stages' processes), lost and duplicated lines,
# and herald-durable's rate as a ratio to each case.
#
# rsyslog and syslog-ng conflict as Debian packages (both provide system-log-daemon). Whichever
# is not installed is fetched with `apt-get download` and unpacked with `dpkg -x` into a cache
# folder; deploy/ci/deps.sh installs rsyslog and syslog-ng's libraries. Benthos is built from
# services/benchpeers/benthos (its own Go module) into the same cache.
#
# Environment:
#   BENCH_N        lines per run (default 1000000)
#   BENCH_RUNS     runs per case (default 3)
#   BENCH_SIZE     bytes per line (default 200)
#   BENCH_CASES    space-separated subset of the cases above (default all)
#   BENCH_TIMEOUT  loadgen's -timeout per run (default 300s)
#   BENCH_CACHE    where unpacked packages and the Benthos binary are kept
#                  (default ${XDG_CACHE_HOME:-$HOME/.cache}/herald-bench)
#   BENCH_RESULTS  if set, a file to which each run's JSON summary is appended
#   BENCH_KEEP     if 1, keep the temp dir (configs, logs, outputs)
#   HERALD, LOADGEN  binaries (default bin/herald, bin/herald-loadgen)
# Exit status: 1 if a case failed to start or lost a line, else 0.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD

HERALD=${HERALD:-bin/herald}
LOADGEN=${LOADGEN:-bin/herald-loadgen}
N=${BENCH_N:-1000000}
RUNS=${BENCH_RUNS:-3}
SIZE=${BENCH_SIZE:-200}
TIMEOUT=${BENCH_TIMEOUT:-300s}
CASES=${BENCH_CASES:-rsyslog-memory rsyslog-disk syslog-ng-default syslog-ng-reliable benthos herald-durable herald-stages}
CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald-bench}
# Ports apart from bench.sh's and `make run`'s.
PORT=15530
NATS=14232
METRICS=19474 # herald-stages uses the next four too

log() { echo "compare: $*" >&2; }
die() { log "$*"; exit 1; }

HERALD=$(realpath "$HERALD")
LOADGEN=$(realpath "$LOADGEN")
for b in "$HERALD" "$LOADGEN"; do
	[[ -x $b ]] || die "$b not found: run make build first"
done
command -v curl >/dev/null || die "curl is needed"
mkdir -p "$CACHE"

# ------------------------------------------------------------------ peers' binaries

# unpack PKG: apt-get download + dpkg -x into $CACHE/PKG-root (once); prints the root.
unpack() {
	local pkg=$1 dir=$CACHE/$1-root
	if [[ ! -d $dir/usr ]]; then
		log "unpacking Debian's $pkg into $dir (it conflicts with the other syslog daemon)"
		local dl
		dl=$(mktemp -d "$CACHE/dl.XXXXXX")
		# _apt cannot write into a root-owned private dir: let it.
		chmod 777 "$dl"
		(cd "$dl" && apt-get download -qq "$pkg" >/dev/null 2>&1) ||
			{ (apt-get update -qq && cd "$dl" && apt-get download -qq "$pkg" >/dev/null 2>&1) ||
				{ rm -rf "$dl"; die "apt-get download $pkg failed"; }; }
		rm -rf "$dir.tmp" && dpkg -x "$dl"/"$pkg"_*.deb "$dir.tmp" && mv "$dir.tmp" "$dir"
		rm -rf "$dl"
	fi
	echo "$dir"
}

need_rsyslog=0 need_sng=0 need_benthos=0
for c in $CASES; do
	case $c in
	rsyslog-*) need_rsyslog=1 ;;
	syslog-ng-*) need_sng=1 ;;
	benthos) need_benthos=1 ;;
	herald-durable | herald-stages) ;;
	*) die "unknown case $c" ;;
	esac
done

rsyslogd=() rsyslog_version=""
if ((need_rsyslog)); then
	if command -v rsyslogd >/dev/null; then
		rsyslogd=(rsyslogd)
	else
		r=$(unpack rsyslog)
		rsyslogd=("$r/usr/sbin/rsyslogd" -M "$r/usr/lib/x86_64-linux-gnu/rsyslog")
	fi
	rsyslog_version=$("${rsyslogd[@]}" -v 2>/dev/null | head -n 1 | awk '{print $2}' | tr -d ',')
fi
syslogng=() sng_env=() sng_version=""
if ((need_sng)); then
	if command -v syslog-ng >/dev/null; then
		syslogng=(syslog-ng)
	else
		r=$(unpack syslog-ng-core)
		syslogng=("$r/usr/sbin/syslog-ng" --module-path "$r/usr/lib/syslog-ng/3.38")
		sng_env=(LD_LIBRARY_PATH="$r/usr/lib/syslog-ng")
	fi
	sng_version=$(env "${sng_env[@]}" "${syslogng[@]}" --version 2>&1 | sed -n 's/^Revision: //p')
	[[ -n $sng_version ]] || die "syslog-ng does not run: $(env "${sng_env[@]}" "${syslogng[@]}" --version 2>&1 | head -n 3) (deploy/ci/deps.sh installs its libraries)"
fi
benthos="" benthos_version=""
if ((need_benthos)); then
	benthos=$CACHE/benthos-bench
	log "building Benthos (services/benchpeers/benthos)"
	(cd services/benchpeers/benthos && go build -o "$benthos" .) || die "building Benthos failed"
	benthos_version=$("$benthos" --version | sed -n 's/^Version: //p')
fi
herald_version=$("$HERALD" version 2>/dev/null | head -n 1 | sed 's/^herald //')

# ---------------------------------------------------------------------- servers

tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-compare.XXXXXX")
results=$tmp/results.tsv
: >"$results"
pids=()

stop_all() { # SIGTERM every server of the case (last started first), SIGKILL after 30 s
	local i p
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p=${pids[i]}
		kill -TERM "$p" 2>/dev/null || true
		for _ in $(seq 300); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$p" 2>/dev/null && { log "pid $p ignored SIGTERM for 30 s: SIGKILL"; kill -KILL "$p" 2>/dev/null || true; }
		wait "$p" 2>/dev/null || true
	done
	pids=()
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_all
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

# fill SRC DST: the config with its placeholders replaced.
fill() {
	sed -e "s#@PORT@#$PORT#g" -e "s#@NATS@#$NATS#g" -e "s#@METRICS@#${metrics_port:-$METRICS}#g" \
		-e "s#@OUT@#$out#g" -e "s#@WORK@#$work#g" "$root/deploy/bench/$1" >"$2"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # PORT PID
	for _ in $(seq 300); do
		kill -0 "$2" 2>/dev/null || return 1
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

wait_ready() { # METRICS-PORT PID
	for _ in $(seq 300); do
		kill -0 "$2" 2>/dev/null || return 1
		[[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$1/readyz" 2>/dev/null) == 200 ]] && return 0
		sleep 0.1
	done
	return 1
}

# start CASE: starts its servers (pids), sets out; returns 1 if one did not come up.
start_case() {
	local c=$1 d=$tmp/$1
	rm -rf "$d" && mkdir -p "$d/work" "$d/out"
	work=$d/work out=$d/out/out.log
	sync
	case $c in
	rsyslog-memory | rsyslog-disk)
		fill "$c.conf" "$d/rsyslog.conf"
		"${rsyslogd[@]}" -n -i "$work/rsyslog.pid" -f "$d/rsyslog.conf" >"$d/server.log" 2>&1 &
		pids+=($!)
		;;
	syslog-ng-default | syslog-ng-reliable)
		fill "$c.conf" "$d/syslog-ng.conf"
		env "${sng_env[@]}" "${syslogng[@]}" -F --no-caps -R "$work/persist" -c "$work/ctl" -p "$work/pid" \
			-f "$d/syslog-ng.conf" >"$d/server.log" 2>&1 &
		pids+=($!)
		;;
	benthos)
		fill benthos.yaml "$d/benthos.yaml"
		"$benthos" -c "$d/benthos.yaml" >"$d/server.log" 2>&1 &
		pids+=($!)
		;;
	herald-durable)
		out=$d/out/events.jsonl
		fill herald-durable.yaml "$d/herald.yaml"
		"$HERALD" run --config "$d/herald.yaml" >"$d/server.log" 2>&1 &
		pids+=($!)
		wait_ready "$METRICS" "${pids[-1]}" || return 1
		;;
	herald-stages)
		out=$d/out/events.jsonl
		fill herald-stages.yaml "$d/herald-receiver.yaml"
		"$HERALD" run --config "$d/herald-receiver.yaml" --stages receiver >"$d/server-receiver.log" 2>&1 &
		pids+=($!)
		wait_ready "$METRICS" "${pids[-1]}" || return 1
		local i=1 s
		for s in classifier resolver router sink; do
			metrics_port=$((METRICS + i)) fill herald-stage.yaml "$d/herald-$s.yaml"
			"$HERALD" run --config "$d/herald-$s.yaml" --stages "$s" >"$d/server-$s.log" 2>&1 &
			pids+=($!)
			wait_ready $((METRICS + i)) "${pids[-1]}" || return 1
			i=$((i + 1))
		done
		;;
	esac
	wait_port "$PORT" "${pids[0]}"
}

# field JSON NAME: a number from the loadgen's one-line JSON summary.
field() { sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" <<<"$1" | head -n 1; }

# cpu_times: "total steal" jiffies of the whole machine, for the steal % of the run.
cpu_times() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9 }' /proc/stat; }
read -r t0 st0 < <(cpu_times)
start_s=$SECONDS

failed=0
for run in $(seq "$RUNS"); do
	for c in $CASES; do
		for p in "$PORT" "$NATS" "$METRICS"; do
			port_free "$p" || die "127.0.0.1:$p is in use: stop what holds it"
		done
		log "run $run/$RUNS: $c"
		if ! start_case "$c"; then
			log "$c did not start; its log:"
			tail -n 20 "$tmp/$c"/server*.log >&2 || true
			stop_all
			failed=1
			continue
		fi
		lg_rc=0
		summary=$("$LOADGEN" -addr "127.0.0.1:$PORT" -proto tcp -n "$N" -size "$SIZE" -out "$out" \
			-timeout "$TIMEOUT" -pid "$(
				IFS=,
				echo "${pids[*]}"
			)" -server "$c" -progress 0 -json) || lg_rc=$?
		stop_all
		json=$(tail -n 1 <<<"$summary")
		[[ -n ${BENCH_RESULTS:-} ]] && printf '{"case":"%s","run":%d,"summary":%s}\n' "$c" "$run" "$json" >>"$BENCH_RESULTS"
		if ((lg_rc != 0)); then
			log "$c run $run: incomplete delivery (loadgen status $lg_rc):"
			head -n -1 <<<"$summary" >&2
			failed=1
		fi
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" \
			"$(field "$json" events_per_s)" "$(field "$json" mib_per_s)" \
			"$(field "$json" latency_p50_ms)" "$(field "$json" latency_p99_ms)" \
			"$(field "$json" herald_peak_rss_mib)" "$(field "$json" herald_cpu_percent)" \
			"$(field "$json" delivered)" "$(field "$json" missing)" "$(field "$json" duplicates)" \
			"$(field "$json" sent)" >>"$results"
		log "  $(sed -n 's/^  end to end *//p' <<<"$summary")"
	done
done

# ------------------------------------------------------------------------ table

read -r t1 st1 < <(cpu_times)
steal=$(awk -v a="$((t1 - t0))" -v b="$((st1 - st0))" 'BEGIN { printf "%.0f", (a > 0 ? 100 * b / a : 0) }')

echo
echo "herald vs peers: $N lines of $SIZE bytes over 1 TCP connection on 127.0.0.1 -> a file; $RUNS runs each, median (min..max)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
echo "suite: $((SECONDS - start_s)) s; host steal over the suite: $steal %; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: herald $herald_version${rsyslog_version:+, rsyslog $rsyslog_version}${sng_version:+, syslog-ng $sng_version}${benthos_version:+, Benthos $benthos_version}"
echo
awk -F'\t' -v cases="$CASES" '
function sortn(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t } }
function med(c, k,   a, i, n) { n = cnt[c]; for (i = 1; i <= n; i++) a[i] = v[c, k, i] + 0; sortn(a, n); return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
function lo(c, k,   i, m) { m = v[c, k, 1] + 0; for (i = 2; i <= cnt[c]; i++) if (v[c, k, i] + 0 < m) m = v[c, k, i] + 0; return m }
function hi(c, k,   i, m) { m = v[c, k, 1] + 0; for (i = 2; i <= cnt[c]; i++) if (v[c, k, i] + 0 > m) m = v[c, k, i] + 0; return m }
function sum(c, k,   i, s) { s = 0; for (i = 1; i <= cnt[c]; i++) s += v[c, k, i]; return s }
function ms(x) { return x >= 10000 ? sprintf("%.1fs", x / 1000) : (x >= 100 ? sprintf("%.0fms", x) : sprintf("%.1fms", x)) }
{ c = $1; n = ++cnt[c]; for (k = 2; k <= 11; k++) v[c, k, n] = $k }
END {
	split(cases, order, " ")
	h = "herald-durable"
	printf "| %-18s | %-28s | %6s | %-17s | %8s | %6s | %-13s | %-17s |\n", "case", "events/s median (min..max)", "MiB/s", "latency p50 / p99", "peak RSS", "CPU %", "lost / dups", "herald-durable ÷"
	printf "|%s|%s|%s|%s|%s|%s|%s|%s|\n", "---", "---", "---:", "---", "---:", "---:", "---", "---:"
	for (i = 1; i in order; i++) {
		c = order[i]
		if (!(c in cnt)) continue
		ratio = (h in cnt && med(c, 2) > 0) ? sprintf("%.2f×", med(h, 2) / med(c, 2)) : "–"
		if (c == h) ratio = "1.00×"
		printf "| %-18s | %-28s | %6.1f | %8s / %-7s | %4.0f MiB | %6.0f | %5d / %-5d | %17s |\n", c,
			sprintf("%.0f (%.0f..%.0f)", med(c, 2), lo(c, 2), hi(c, 2)), med(c, 3), ms(med(c, 4)), ms(med(c, 5)), med(c, 6), med(c, 7),
			sum(c, 9), sum(c, 10), ratio
	}
}' "$results"
echo
echo "events/s and MiB/s: end to end, first send -> last line in the output file (MiB/s counts the wire bytes)."
echo "latency: send -> seen in the file, under a saturating load (queueing). lost/dups: summed over the runs."
echo "peak RSS / CPU %: the server's processes, summed for herald-stages (of $(nproc)00 %; the load generator shares the cores)."
exit "$failed"
