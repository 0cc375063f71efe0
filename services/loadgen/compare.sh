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
# Scale-out (issue 8; BENCH_SCALE=0 leaves them out), the same load and file sink:
#   herald-stages2       two processes per stage on one machine: the receiver's (with NATS;
#                        one TCP port, so one receiver) and two each of classifier, resolver,
#                        router and sink (9 processes; the file sink runs in the lease holder)
#   herald-cluster-r1    a 3-node NATS cluster, each node embedded in a herald process running
#                        every stage, streams with 1 replica
#   herald-cluster-r3    the same with R3 streams: the table's last lines give the cost of
#                        replication (R3 ÷ R1, and R3 ÷ herald-durable)
# The cases the Vector test harness made standard (BENCH_VECTOR=0 leaves them out), each for
# herald (durable, default config) and for rsyslog and syslog-ng (their defaults, in memory):
#   *-blackhole          TCP in, every line discarded: herald's file sink on /dev/null, counted
#                        by its committed-events counter; the peers write /dev/null and one more
#                        file gets only the run's last line, which ends their run (they keep no
#                        counter the script can read cheaply; lost is n/a for them)
#   *-file-tcp           the loadgen appends the lines to a file the server follows and forwards
#                        over TCP to the loadgen's counting listener
#   *-tcp-tcp            TCP in, forwarded over TCP to the loadgen's counting listener
#   *-apache             Apache combined access-log lines over TCP, parsed, a file of JSON objects
# The cases are interleaved (run 1 of every case, then run 2 ...), so a slow minute of a noisy
# host does not fall on one case only. The table gives the median and the range (min..max) of
# the runs: end-to-end events/s (first send -> last line in the file) and MiB/s (wire bytes),
# latency p50/p99 (send -> seen in the file; under a saturating load this is queueing), the
# server's peak RSS and CPU% (summed over a case's processes), lost and duplicated lines, and
# the rate of herald's case of the same scenario (herald-durable for tcp->file) as a ratio to
# each case. An Apache case also fails when an output line lacks the parsed user agent.
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
#   BENCH_CASES    space-separated subset of the cases above (default all, less what
#                  BENCH_SCALE=0 or BENCH_VECTOR=0 leave out)
#   BENCH_SCALE    0: leave out herald-stages2 and the cluster cases
#   BENCH_VECTOR   0: leave out the blackhole, file-tcp, tcp-tcp and apache cases
#   BENCH_TIMEOUT  loadgen's -timeout per run (default 300s)
#   BENCH_CACHE    where unpacked packages and the Benthos binary are kept
#                  (default ${XDG_CACHE_HOME:-$HOME/.cache}/herald-bench)
#   BENCH_PORT_OFFSET  added to every port the cases use (default 0: 15530-15533, 14232-14244,
#                  19474-19482)
#   BENCH_RESULTS  if set, a file to which each run's JSON summary is appended
#   BENCH_KEEP     if 1, keep the temp dir (configs, logs, outputs)
#   HERALD, LOADGEN  binaries (default bin/herald, bin/herald-loadgen)
# Exit status: 1 if a case failed to start (twice) or lost a line, else 0.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD

HERALD=${HERALD:-bin/herald}
LOADGEN=${LOADGEN:-bin/herald-loadgen}
N=${BENCH_N:-1000000}
RUNS=${BENCH_RUNS:-3}
SIZE=${BENCH_SIZE:-200}
TIMEOUT=${BENCH_TIMEOUT:-300s}
default_cases="rsyslog-memory rsyslog-disk syslog-ng-default syslog-ng-reliable benthos herald-durable herald-stages"
[[ ${BENCH_SCALE:-1} == 0 ]] || default_cases+=" herald-stages2 herald-cluster-r1 herald-cluster-r3"
for s in blackhole file-tcp tcp-tcp apache; do
	[[ ${BENCH_VECTOR:-1} == 0 ]] || default_cases+=" herald-$s rsyslog-$s syslog-ng-$s"
done
CASES=${BENCH_CASES:-$default_cases}
CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald-bench}
# Ports apart from bench.sh's and `make run`'s; BENCH_PORT_OFFSET moves them all.
off=${BENCH_PORT_OFFSET:-0}
PORT=$((15530 + off))    # the cluster's second and third nodes take the next two
SINK=$((15533 + off))    # the loadgen's counting listener (-tcp cases)
NATS=$((14232 + off))    # the cluster's nodes: the next two too, and routes NATS+10..12
METRICS=$((19474 + off)) # herald-stages uses the next four too, herald-stages2 the next eight

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
	herald-durable | herald-stages | herald-stages2 | herald-cluster-r1 | herald-cluster-r3) ;;
	herald-blackhole | herald-file-tcp | herald-tcp-tcp | herald-apache) ;;
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

stop_all() { # SIGTERM every server of the case at once (the run is over: a cluster that
	# loses its nodes one by one would wait for a quorum), SIGKILL what is left after 30 s
	local i p
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p=${pids[i]}
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

# fill SRC DST: the config with its placeholders replaced (the cluster's from node_*).
fill() {
	sed -e "s#@PORT@#${node_port:-$PORT}#g" -e "s#@NATS@#${node_nats:-$NATS}#g" -e "s#@METRICS@#${metrics_port:-$METRICS}#g" \
		-e "s#@OUT@#$out#g" -e "s#@WORK@#${node_work:-$work}#g" -e "s#@SINK@#$SINK#g" \
		-e "s#@IN@#$in#g" \
		-e "s#@LAST@#seq=$((N - 1)) ts=#g" -e "s#@BENCH@#$root/deploy/bench#g" \
		-e "s#@NAME@#${node_name:-}#g" -e "s#@ROUTE@#${node_route:-}#g" -e "s#@ROUTES@#${routes:-}#g" \
		-e "s#@REPLICAS@#${replicas:-1}#g" "$root/deploy/bench/$1" >"$2"
}

# case_kind CASE: sets scenario, input (tcp or file), format (syslog or apache),
# delivery (how the loadgen counts: out, last, metric or listen) and ref (the herald case
# of the same scenario, which the table compares the case with).
case_kind() {
	input=tcp format=syslog delivery=out scenario="tcp->file" ref=herald-durable
	case $1 in
	*-blackhole)
		scenario="tcp->blackhole" delivery=last ref=herald-blackhole
		if [[ $1 == herald-* ]]; then delivery=metric; fi
		;;
	*-file-tcp) scenario="file->tcp" input=file delivery=listen ref=herald-file-tcp ;;
	*-tcp-tcp) scenario="tcp->tcp" delivery=listen ref=herald-tcp-tcp ;;
	*-apache) scenario="apache->json" format=apache ref=herald-apache ;;
	esac
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
	rm -rf "$d" && mkdir -p "$d/work" "$d/out" "$d/in"
	work=$d/work out=$d/out/out.log in=$d/in/in.log
	: >"$in" # the file cases' input: the servers follow it from its start
	sync
	case $c in
	rsyslog-*)
		fill "$c.conf" "$d/rsyslog.conf"
		"${rsyslogd[@]}" -n -i "$work/rsyslog.pid" -f "$d/rsyslog.conf" >"$d/server.log" 2>&1 &
		pids+=($!)
		;;
	syslog-ng-*)
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
	herald-durable | herald-blackhole | herald-apache | herald-tcp-tcp | herald-file-tcp)
		out=$d/out/events.jsonl
		[[ $c == herald-blackhole ]] && out=/dev/null # counted by the sink's committed-events counter
		local conf=herald-durable.yaml
		[[ $c == herald-*-tcp ]] && conf=$c.yaml
		fill "$conf" "$d/herald.yaml"
		"$HERALD" run --config "$d/herald.yaml" >"$d/server.log" 2>&1 &
		pids+=($!)
		wait_ready "$METRICS" "${pids[-1]}" || return 1
		;;
	herald-stages | herald-stages2)
		out=$d/out/events.jsonl
		fill herald-stages.yaml "$d/herald-receiver.yaml"
		"$HERALD" run --config "$d/herald-receiver.yaml" --stages receiver >"$d/server-receiver.log" 2>&1 &
		pids+=($!)
		wait_ready "$METRICS" "${pids[-1]}" || return 1
		local i=1 s k copies=1
		[[ $c == herald-stages2 ]] && copies=2
		for s in classifier resolver router sink; do
			for k in $(seq "$copies"); do
				metrics_port=$((METRICS + i)) fill herald-stage.yaml "$d/herald-$s-$k.yaml"
				"$HERALD" run --config "$d/herald-$s-$k.yaml" --stages "$s" >"$d/server-$s-$k.log" 2>&1 &
				pids+=($!)
				wait_ready $((METRICS + i)) "${pids[-1]}" || return 1
				i=$((i + 1))
			done
		done
		;;
	herald-cluster-r1 | herald-cluster-r3)
		out=$d/out/events.jsonl
		local i replicas=${c#herald-cluster-r} routes=""
		for i in 0 1 2; do routes+="${routes:+, }nats-route://127.0.0.1:$((NATS + 10 + i))"; done
		for i in 0 1 2; do
			mkdir -p "$work/node$i"
			node_name=bench-$i node_port=$((PORT + i)) node_nats=$((NATS + i)) node_route=$((NATS + 10 + i)) \
				node_work=$work/node$i metrics_port=$((METRICS + i)) replicas=$replicas routes=$routes \
				fill herald-cluster.yaml "$d/herald-$i.yaml"
			"$HERALD" run --config "$d/herald-$i.yaml" >"$d/server-$i.log" 2>&1 &
			pids+=($!)
		done
		# Each waits for the cluster's meta leader before it declares the streams.
		for i in 0 1 2; do wait_ready $((METRICS + i)) "${pids[i]}" || return 1; done
		;;
	*)
		log "no such case: $c"
		return 1
		;;
	esac
	[[ $c == herald-file-tcp ]] || wait_port "$PORT" "${pids[0]}" # it has no TCP input: /readyz said enough
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
		for p in "$PORT" $((PORT + 1)) $((PORT + 2)) "$SINK" "$NATS" $((NATS + 1)) $((NATS + 2)) \
			$((NATS + 10)) $((NATS + 11)) $((NATS + 12)) $(seq "$METRICS" $((METRICS + 8))); do
			port_free "$p" || die "127.0.0.1:$p is in use: stop what holds it"
		done
		log "run $run/$RUNS: $c"
		case_kind "$c"
		d=$tmp/$c
		lg=("$LOADGEN" -n "$N" -size "$SIZE" -format "$format" -timeout "$TIMEOUT" -server "$c" -progress 0 -json)
		lg_rc=0 lg_pid=""
		if [[ $delivery == listen ]]; then
			# The counting listener must be up before the server dials it (syslog-ng would
			# wait a minute to retry): the loadgen starts first and sends once $d.go holds
			# the server's pids. Its input file is named here, before start_case makes it.
			rm -f "$d.go" "$d.summary"
			"${lg[@]}" -proto "$input" -addr "$([[ $input == file ]] && echo "$d/in/in.log" || echo "127.0.0.1:$PORT")" \
				-listen "127.0.0.1:$SINK" -start-after "$d.go" >"$d.summary" &
			lg_pid=$!
			wait_port "$SINK" "$lg_pid" || die "the loadgen's listener did not come up"
		fi
		started=0
		for try in 1 2; do
			if start_case "$c"; then
				started=1
				break
			fi
			# A cluster's three nodes declare their streams and buckets at once; on a
			# crowded machine that can time out and herald exits. Say so, and try again.
			log "$c did not start (try $try of 2); its log:"
			tail -n 20 "$tmp/$c"/server*.log >&2 || true
			stop_all
		done
		if ((!started)); then
			[[ -n $lg_pid ]] && { kill "$lg_pid" 2>/dev/null; wait "$lg_pid" 2>/dev/null || true; }
			failed=1
			continue
		fi
		pidlist=$(
			IFS=,
			echo "${pids[*]}"
		)
		if [[ -n $lg_pid ]]; then
			echo "$pidlist" >"$d.go.tmp" && mv "$d.go.tmp" "$d.go"
			wait "$lg_pid" || lg_rc=$?
			summary=$(cat "$d.summary")
		else
			case $input in
			file) lg+=(-proto file -addr "$in") ;;
			*) lg+=(-proto tcp -addr "127.0.0.1:$PORT") ;;
			esac
			case $delivery in
			out) lg+=(-out "$out") ;;
			last) lg+=(-out "$out" -last) ;;
			metric) lg+=(-metric "http://127.0.0.1:$METRICS/metrics") ;;
			esac
			summary=$("${lg[@]}" -pid "$pidlist") || lg_rc=$?
		fi
		stop_all
		if [[ $format == apache && -f $out ]]; then
			# The tokens survive in a line the parser gave up on (as the raw message), so
			# the count alone does not show that the lines were parsed: each line must have
			# the user agent as a field of its own.
			unparsed=$(grep -c -v -E '"agent": ?"Mozilla' "$out" || true)
			if ((unparsed > 0)); then
				log "$c run $run: $unparsed output lines without a parsed agent field, e.g.: $(grep -v -m 1 -E '"agent": ?"Mozilla' "$out" | cut -c 1-300)"
				failed=1
			fi
		fi
		json=$(tail -n 1 <<<"$summary")
		[[ -n ${BENCH_RESULTS:-} ]] && printf '{"case":"%s","run":%d,"summary":%s}\n' "$c" "$run" "$json" >>"$BENCH_RESULTS"
		if ((lg_rc != 0)); then
			log "$c run $run: incomplete delivery (loadgen status $lg_rc):"
			head -n -1 <<<"$summary" >&2
			failed=1
		fi
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" \
			"$(field "$json" events_per_s)" "$(field "$json" mib_per_s)" \
			"$(field "$json" latency_p50_ms)" "$(field "$json" latency_p99_ms)" \
			"$(field "$json" herald_peak_rss_mib)" "$(field "$json" herald_cpu_percent)" \
			"$(field "$json" delivered)" "$(field "$json" missing)" "$(field "$json" duplicates)" \
			"$(field "$json" sent)" "$scenario" "$delivery" "$ref" >>"$results"
		log "  $(sed -n 's/^  end to end *//p' <<<"$summary")"
	done
done

# ------------------------------------------------------------------------ table

read -r t1 st1 < <(cpu_times)
steal=$(awk -v a="$((t1 - t0))" -v b="$((st1 - st0))" 'BEGIN { printf "%.0f", (a > 0 ? 100 * b / a : 0) }')

echo
echo "herald vs peers: $N lines of $SIZE bytes over 1 TCP connection on 127.0.0.1 (file->tcp: appended to a file), $RUNS runs each, median (min..max)"
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
function ratio(a, b) { return (a in cnt && b in cnt && med(b, 2) > 0) ? sprintf("%.2f", med(a, 2) / med(b, 2)) : "–" }
{ c = $1; n = ++cnt[c]; for (k = 2; k <= 11; k++) v[c, k, n] = $k; scen[c] = $12; how[c] = $13; ref[c] = $14 }
END {
	split(cases, order, " ")
	printf "| %-14s | %-19s | %-28s | %6s | %-17s | %8s | %6s | %-13s | %8s |\n", "scenario", "case", "events/s median (min..max)", "MiB/s", "latency p50 / p99", "peak RSS", "CPU %", "lost / dups", "herald ÷"
	printf "|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", "---", "---", "---", "---:", "---", "---:", "---:", "---", "---:"
	for (i = 1; i in order; i++) {
		c = order[i]
		if (!(c in cnt)) continue
		r = ratio(ref[c], c)
		if (r != "–") r = r "×"
		lat = (how[c] == "out" || how[c] == "listen") ? sprintf("%8s / %-7s", ms(med(c, 4)), ms(med(c, 5))) : sprintf("%17s", "–")
		lost = how[c] == "last" ? sprintf("  n/a / n/a  ") : sprintf("%5d / %-5d", sum(c, 9), sum(c, 10))
		printf "| %-14s | %-19s | %-28s | %6.1f | %s | %4.0f MiB | %6.0f | %-13s | %8s |\n", scen[c], c,
			sprintf("%.0f (%.0f..%.0f)", med(c, 2), lo(c, 2), hi(c, 2)), med(c, 3), lat, med(c, 6), med(c, 7), lost, r
	}
	printf "\n"
	if ("herald-cluster-r3" in cnt && "herald-cluster-r1" in cnt)
		printf "cost of replication: herald-cluster-r3 runs at %s× herald-cluster-r1 (the same 3-node cluster, R1 streams)\n", ratio("herald-cluster-r3", "herald-cluster-r1")
	if ("herald-cluster-r3" in cnt && "herald-durable" in cnt)
		printf "                     herald-cluster-r3 runs at %s× herald-durable (one node, R1)\n", ratio("herald-cluster-r3", "herald-durable")
	if ("herald-stages2" in cnt && "herald-stages" in cnt)
		printf "scale-out on one machine: herald-stages2 (2 processes per stage) runs at %s× herald-stages (1 per stage)\n", ratio("herald-stages2", "herald-stages")
}' "$results"
echo
echo "events/s and MiB/s: end to end, first send -> last line out (MiB/s counts the wire bytes sent); herald ÷: herald's case of the"
echo "same scenario (herald-durable for tcp->file) ÷ the row. Output counted: tcp->file and apache->json in the file; *-tcp on the"
echo "loadgen's listener; herald-blackhole by herald_sink_committed_events_total; the peers' blackhole by its last line only (lost n/a)."
echo "latency: send -> seen, under a saturating load (queueing); – where only a counter or the last line is seen. lost/dups: summed over the runs."
echo "peak RSS / CPU %: the server's processes, summed for herald-stages, -stages2 and -cluster (of $(nproc)00 %; the load generator shares the cores)."
exit "$failed"
