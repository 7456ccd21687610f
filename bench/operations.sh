#!/usr/bin/env bash
# What operating dnsgate costs the workload (DESIGN.md §12, issue 13):
#
#  (a) scrape cost: dnsperf at QPS for SECONDS against `dnsgate run` with
#      `metrics:` on, three runs, a fresh dnsgate each:
#        none    nobody scrapes
#        paced   one scraper, GET /metrics SCRAPE_RATE times a second
#        storm   STORM_LOOPS curl loops scraping as fast as they go (each
#                curl fetches /metrics 10 times over one connection), for
#                the whole run
#      DNS latency (dnsperf's average; p50/p99 from `dnsperf -v`, one line
#      per answer), queries lost, events vs the stats' `received`, dnsgate's
#      CPU per query (utime+stime of all its threads from /proc/PID/stat,
#      and of the metrics server's thread alone), the scrapes' latency
#      (curl's %{time_total}) p50/p99; `promtool check metrics` on a scrape
#      taken under load.
#  (b) reload: dnsperf at QPS for SECONDS (at least RELOAD_SECONDS + 2)
#      while the config is rewritten (a new file renamed over it) and
#      SIGHUP'ed RELOADS times in RELOAD_SECONDS, starting 1 s in: odd
#      reloads put allowlist B in force (the 1,000 names dnsperf asks,
#      literally), even ones alternately A (`*.load.test`) and C (A plus
#      one extra entry), so every reload changes the policyVersion and all
#      of them allow every query. Queries lost, SERVFAILs, events vs
#      queries, the distinct policyVersions in the events, whether the
#      events in arrival order switch version exactly once per reload, and
#      the time from each SIGHUP to the `reload: ... accepted` log line and
#      to the arrival of the first query decided by the new allowlist
#      (events: data.policyVersion and time).
#
#   bench/operations.sh [DNSGATE_BIN] [SECONDS] [QPS]
#
# Defaults: build/dnsgate, 30 s, 10,000 queries/s. More knobs, as
# environment variables:
#   SCENARIOS="a b"    run some of them
#   SCRAPE_RATE=10     scrapes a second of the paced run
#   STORM_LOOPS=8      parallel scrapers of the storm run
#   RELOADS=100 RELOAD_SECONDS=10
#   ROUNDS=1           (a)'s three runs this many times, interleaved (one row each)
#   BENCH_PIN=1        0: no CPU pinning
#   KNOT_PORT=26500 GATE_PORT=26553 METRICS_PORT=26591
#   BENCH_KEEP=0       1: keep the work dir (raw outputs) at the end
# CPU pinning as in bench/run.sh: dnsperf, knotd and the scrapers on CPU 0,
# dnsgate (all its threads, the metrics server's included) on CPU 1; the
# storm's scrapers run at nice 19 so that they take CPU 0 only when dnsperf
# and knotd leave it idle. Needs knotd, dnsperf, kdig, curl, promtool
# (Debian's prometheus package), python3. Not part of `make test`.
# Loopback only. Loads are bounded in time; every process started here is
# stopped by its PID on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/common.sh
source "$here/lib/common.sh"
repo=$(cd "$here/.." && pwd)
bin=$(readlink -f "${1:-$repo/build/dnsgate}")
seconds=${2:-30}
qps=${3:-10000}
scenarios=${SCENARIOS:-a b}
scrape_rate=${SCRAPE_RATE:-10}
storm_loops=${STORM_LOOPS:-8}
reloads=${RELOADS:-100}
rounds=${ROUNDS:-1}
reload_seconds=${RELOAD_SECONDS:-10}
pin=${BENCH_PIN:-1}
knot_port=${KNOT_PORT:-26500}
gate_port=${GATE_PORT:-26553}
metrics_port=${METRICS_PORT:-26591}
python=/usr/bin/python3

for n in "$seconds" "$qps" "$rounds" "$scrape_rate" "$storm_loops" "$reloads" "$reload_seconds"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $n" >&2; exit 2; }
done
for tool in /usr/sbin/knotd dnsperf kdig curl promtool taskset "$python" "$bin"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (run 'make build')" >&2; exit 1; }
done

work=$(mktemp -d /tmp/dnsgate-operations.XXXXXX)
pids=()  # every process started here; stopped in reverse order on exit
cleanup() {
  set +e
  local list=("${pids[@]+"${pids[@]}"}") i
  for ((i = ${#list[@]} - 1; i >= 0; i--)); do terminate_pid "${list[i]}"; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "operations: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

stop_pid() {  # stop_pid PID: terminate_pid, then forget it
  local pid=$1 i kept=()
  terminate_pid "$pid"
  for i in "${pids[@]}"; do [ "$i" = "$pid" ] || kept+=("$i"); done
  pids=("${kept[@]+"${kept[@]}"}")
}

cpus=$(nproc)
if [ "$pin" = 1 ] && [ "$cpus" -ge 2 ]; then
  load_cpu=(taskset -c 0)
  proxy_cpu=(taskset -c 1)
  pinning="dnsperf, knotd and the scrapers on CPU 0, dnsgate (all its threads) on CPU 1"
else
  load_cpu=()
  proxy_cpu=()
  pinning="none"
fi
storm_cpu=(nice -n 19 "${load_cpu[@]+"${load_cpu[@]}"}")

load_before=$(cut -d ' ' -f 1 /proc/loadavg)
if awk -v l="$load_before" 'BEGIN { exit !(l > 0.5) }'; then
  echo "operations: WARNING: load average $load_before before the start; other work on this" \
    "machine will skew the figures" >&2
fi
echo "operations: work dir $work; $qps q/s for $seconds s per run; pinning: $pinning" >&2

ticks_per_second=$(getconf CLK_TCK)
cpu_ticks() {  # utime + stime of every thread of PID, in clock ticks
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
metrics_thread_ticks() {  # utime + stime of PID's metrics server thread (libmicrohttpd's, MHD-*)
  local task total=0
  for task in /proc/"$1"/task/*; do
    [[ "$(cat "$task/comm" 2>/dev/null)" == MHD* ]] || continue
    total=$((total + $(sed 's/.*) //' "$task/stat" | awk '{ print $12 + $13 }')))
  done
  echo "$total"
}
cpus_busy() {  # "busy0 total0 busy1 total1": jiffies of CPUs 0 and 1 from /proc/stat
  awk '$1 == "cpu0" || $1 == "cpu1" { t = 0; for (i = 2; i <= NF; i++) t += $i;
    printf "%d %d ", t - $5 - $6, t } END { print "" }' /proc/stat
}
busy_pct() {  # busy_pct "BEFORE" "AFTER" N: CPU N's busy share in between, in %
  awk -v b="$1" -v a="$2" -v n="$3" 'BEGIN { split(b, x, " "); split(a, y, " ");
    i = 2 * n + 1; d = y[i + 1] - x[i + 1]; printf "%.0f", (d > 0 ? 100 * (y[i] - x[i]) / d : 0) }'
}
udp_drops() {  # udp_drops PID: datagrams the kernel dropped on PID's UDP sockets (full receive buffer)
  local inodes
  inodes=$(find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n' | sort -u | tr '\n' ' ')
  cat /proc/net/udp /proc/net/udp6 2>/dev/null |
    awk -v list="$inodes" 'BEGIN { n = split(list, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
      NR > 1 && ($10 in want) { d += $NF } END { print d + 0 }'
}
perf_field() { awk -v k="$2" '$0 ~ k { print $3; exit }' "$1"; }
stat_field() {  # stat_field ERRFILE KEY: a field of the stats line dnsgate printed at exit
  grep '^{' "$1" | tail -n 1 | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}
# percentiles FILE: "p50 p99 n" of the numbers in FILE (one a line), in ms
percentiles() {
  sort -g "$1" | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- - 0"; exit }
    i50 = int(NR * 0.50 + 0.5); if (i50 < 1) i50 = 1
    i99 = int(NR * 0.99 + 0.5); if (i99 < 1) i99 = 1; if (i99 > NR) i99 = NR
    printf "%.3f %.3f %d\n", v[i50] * 1000, v[i99] * 1000, NR }'
}

# --- knotd, the queries, the configs ------------------------------------------
hosts=1000
knot_prepare "$work/knot" "$knot_port" load.test host "$hosts"
awk -v n=$hosts 'BEGIN { for (i = 0; i < n; i++) printf "host%d.load.test A\n", i }' >"$work/queries.txt"
"${load_cpu[@]+"${load_cpu[@]}"}" /usr/sbin/knotd -c "$work/knot/knot.conf" >/dev/null 2>&1 &
knot_pid=$!
pids+=("$knot_pid")
wait_for_dns "$knot_port" host1.load.test

gate_config() {  # gate_config A|B|C EVENTS: the config on stdout
  echo "cell: ops"
  echo "listen:"
  echo "  udp: 127.0.0.1:$gate_port"
  echo "metrics:"
  echo "  listen: 127.0.0.1:$metrics_port"
  echo "dnsAuthority:"
  echo "  hostnameAllowlist:"
  case "$1" in
    A) echo '    - "*.load.test"' ;;
    B) awk -v n=$hosts 'BEGIN { for (i = 0; i < n; i++) printf "    - host%d.load.test\n", i }' ;;
    C) echo '    - "*.load.test"'; echo '    - extra.elsewhere.test' ;;
  esac
  echo "  resolvers:"
  echo "    - protocol: do53-udp"
  echo "      address: 127.0.0.1:$knot_port"
  echo "upstreamTimeoutMs: 2000"
  echo "events:"
  echo "  sink: file"
  echo "  path: $2"
}

url="http://127.0.0.1:$metrics_port/metrics"

# start_gate DIR: dnsgate on DIR/dnsgate.yaml, events DIR/events.jsonl,
# stderr DIR/dnsgate.err; sets gate_pid once it answers DNS and is ready
start_gate() {
  local dir=$1
  : >"$dir/events.jsonl"
  "${proxy_cpu[@]+"${proxy_cpu[@]}"}" "$bin" run --config "$dir/dnsgate.yaml" 2>"$dir/dnsgate.err" &
  gate_pid=$!
  pids+=("$gate_pid")
  wait_for_dns "$gate_port" host1.load.test || { cat "$dir/dnsgate.err" >&2; exit 1; }
  for _ in $(seq 50); do
    curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$metrics_port/readyz" && return 0
    sleep 0.1
  done
  echo "metrics endpoint not ready on 127.0.0.1:$metrics_port" >&2
  cat "$dir/dnsgate.err" >&2
  exit 1
}

# run_dnsperf OUT SECONDS: in the background, one latency line per answer
# (-v); sets perf_pid
run_dnsperf() {
  "${load_cpu[@]+"${load_cpu[@]}"}" dnsperf -s 127.0.0.1 -p "$gate_port" -d "$work/queries.txt" \
    -l "$2" -Q "$qps" -c 10 -q 500 -t 5 -v >"$1" 2>&1 &
  perf_pid=$!
  pids+=("$perf_pid")
}
# answer_latencies OUT FILE: the latencies (s) of the answers dnsperf -v reported
answer_latencies() { awk '/^> / && $NF ~ /^[0-9.]+$/ && $2 != "T" { print $NF }' "$1" >"$2"; }
rcode_count() {  # rcode_count OUT RCODE: answers with RCODE in dnsperf's summary
  sed -n 's/^ *Response codes: *//p' "$1" | tr ',' '\n' | awk -v r="$2" '$1 == r { n = $2 } END { print n + 0 }'
}

# The scrapers: run under bash -c with these functions defined.
# scrape_paced OUT END_NS RATE URL: GET URL RATE times a second until END_NS
scrape_paced() {
  local out=$1 end=$2 period=$((1000000000 / $3)) url=$4 next now d
  next=$(date +%s%N)
  while [ "$(date +%s%N)" -lt "$end" ]; do
    curl -s -o /dev/null --max-time 5 -w '%{http_code} %{time_total}\n' "$url" >>"$out" ||
      echo "000 -1" >>"$out"
    next=$((next + period))
    now=$(date +%s%N)
    d=$((next - now))
    if [ "$d" -gt 0 ]; then sleep "$((d / 1000000000)).$(printf '%09d' $((d % 1000000000)))"; fi
  done
}
# scrape_storm OUT END_NS URL: as fast as it goes until END_NS, 10 GETs per curl (one connection)
scrape_storm() {
  local out=$1 end=$2 url=$3 urls=()
  for _ in 1 2 3 4 5 6 7 8 9 10; do urls+=(-o /dev/null "$url"); done
  while [ "$(date +%s%N)" -lt "$end" ]; do
    curl -s --max-time 5 -w '%{http_code} %{time_total}\n' "${urls[@]}" >>"$out" ||
      echo "000 -1" >>"$out"
  done
}

rows=()
row() { rows+=("| $1 | $2 |"); }

# --- (a) scrape cost ------------------------------------------------------------
if [[ " $scenarios " == *" a "* ]]; then
  a_rows=()
  promtool_result="not run"
  for round in $(seq "$rounds"); do for run in none paced storm; do
    dir="$work/a-$run-$round"
    mkdir -p "$dir"
    gate_config A "$dir/events.jsonl" >"$dir/dnsgate.yaml"
    start_gate "$dir"
    sleep 0.3
    echo "operations: (a) round $round/$rounds, $run: $qps q/s for $seconds s" >&2
    : >"$dir/scrapes.txt"
    before=$(cpu_ticks "$gate_pid")
    mbefore=$(metrics_thread_ticks "$gate_pid")
    busy_before=$(cpus_busy)
    gdrops=$(udp_drops "$gate_pid")
    kdrops=$(udp_drops "$knot_pid")
    run_dnsperf "$dir/dnsperf.out" "$seconds"
    end=$(($(date +%s%N) + seconds * 1000000000))
    scrapers=()
    case "$run" in
      paced)
        "${load_cpu[@]+"${load_cpu[@]}"}" bash -c "$(declare -f scrape_paced); scrape_paced '$dir/scrapes.txt' $end $scrape_rate '$url'" &
        scrapers+=("$!")
        pids+=("$!")
        ;;
      storm)
        for i in $(seq "$storm_loops"); do
          "${storm_cpu[@]}" bash -c "$(declare -f scrape_storm); scrape_storm '$dir/scrapes-$i.txt' $end '$url'" &
          scrapers+=("$!")
          pids+=("$!")
        done
        ;;
    esac
    # one scrape under load, for promtool
    if [ "$run" = paced ]; then
      sleep "$(awk -v s="$seconds" 'BEGIN { printf "%.1f", s / 2 }')"
      curl -s --max-time 5 "$url" >"$dir/scrape.txt" || true
    fi
    wait "$perf_pid" || true
    stop_pid "$perf_pid"
    after=$(cpu_ticks "$gate_pid")
    mafter=$(metrics_thread_ticks "$gate_pid")
    busy_after=$(cpus_busy)
    gdrops=$(($(udp_drops "$gate_pid") - gdrops))
    kdrops=$(($(udp_drops "$knot_pid") - kdrops))
    for p in "${scrapers[@]+"${scrapers[@]}"}"; do wait "$p" || true; stop_pid "$p"; done
    cat "$dir"/scrapes-*.txt >>"$dir/scrapes.txt" 2>/dev/null || true
    stop_pid "$gate_pid"
    if [ "$run" = paced ] && [ "$round" = 1 ]; then
      if [ ! -s "$dir/scrape.txt" ]; then
        promtool_result="FAILED: no scrape"
      elif promtool check metrics <"$dir/scrape.txt" >"$dir/promtool.out" 2>&1; then
        promtool_result="pass ($(grep -c '^dnsgate_' "$dir/scrape.txt") samples, $(wc -c <"$dir/scrape.txt") bytes)"
      else
        promtool_result="FAILED: $(head -n 3 "$dir/promtool.out" | tr '\n' ' ')"
      fi
    fi
    sent=$(perf_field "$dir/dnsperf.out" "Queries sent:")
    completed=$(perf_field "$dir/dnsperf.out" "Queries completed:")
    lost=$(perf_field "$dir/dnsperf.out" "Queries lost:")
    avg=$(awk '/Average Latency/ { printf "%.3f", $4 * 1000; exit }' "$dir/dnsperf.out")
    answer_latencies "$dir/dnsperf.out" "$dir/latencies.txt"
    read -r p50 p99 _ <<<"$(percentiles "$dir/latencies.txt")"
    servfail=$(rcode_count "$dir/dnsperf.out" SERVFAIL)
    events=$(wc -l <"$dir/events.jsonl")
    received=$(stat_field "$dir/dnsgate.err" received)
    ticks=$((after - before))
    mticks=$((mafter - mbefore))
    cpu_q=$(awk -v t="$ticks" -v hz="$ticks_per_second" -v n="$completed" \
      'BEGIN { printf "%.2f", (n > 0 ? t / hz / n * 1e6 : 0) }')
    # the DNS loop and the event writer: all threads but the metrics server's
    loop_q=$(awk -v t="$((ticks - mticks))" -v hz="$ticks_per_second" -v n="$completed" \
      'BEGIN { printf "%.2f", (n > 0 ? t / hz / n * 1e6 : 0) }')
    scrapes_ok=$(awk '$1 == 200' "$dir/scrapes.txt" | wc -l)
    scrapes_bad=$(awk '$1 != 200' "$dir/scrapes.txt" | wc -l)
    awk '$1 == 200 { print $2 }' "$dir/scrapes.txt" >"$dir/scrape_times.txt"
    read -r s50 s99 _ <<<"$(percentiles "$dir/scrape_times.txt")"
    if [ "$run" = none ]; then scrape_cell="-"; mcell="-"; else
      mcell=$(awk -v t="$mticks" -v hz="$ticks_per_second" -v n="$((scrapes_ok + scrapes_bad))" \
        'BEGIN { printf "%.2f s, %.0f µs a scrape", t / hz, (n > 0 ? t / hz / n * 1e6 : 0) }')
      scrape_cell="$scrapes_ok ($(awk -v n="$scrapes_ok" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')/s), p50 $s50 ms, p99 $s99 ms"
      [ "$scrapes_bad" -gt 0 ] && scrape_cell+=", $scrapes_bad failed"
    fi
    grep -E "Queries (sent|completed|lost)|Average Latency|Response codes" "$dir/dnsperf.out" >&2
    round_cell=""
    [ "$rounds" -gt 1 ] && round_cell=" ($round)"
    a_rows+=("| $run$round_cell | $lost of $sent | $servfail ($gdrops / $kdrops) | $avg / $p50 / $p99 | $events / ${received:-?} | $cpu_q / $loop_q µs | $mcell | $(busy_pct "$busy_before" "$busy_after" 0)% / $(busy_pct "$busy_before" "$busy_after" 1)% | $scrape_cell |")
  done; done
fi

# --- (b) 100 reloads under load ---------------------------------------------------
if [[ " $scenarios " == *" b "* ]]; then
  dir="$work/b"
  mkdir -p "$dir"
  for v in A B C; do
    gate_config "$v" "$dir/events.jsonl" >"$dir/dnsgate.$v.yaml"
    "$bin" check --config "$dir/dnsgate.$v.yaml" >"$dir/check.$v.out" 2>&1 ||
      { cat "$dir/check.$v.out" >&2; exit 1; }
  done
  cp "$dir/dnsgate.A.yaml" "$dir/dnsgate.yaml"
  start_gate "$dir"
  sleep 0.3
  bseconds=$seconds
  [ "$bseconds" -lt $((reload_seconds + 2)) ] && bseconds=$((reload_seconds + 2))
  echo "operations: (b) $reloads reloads in $reload_seconds s under $qps q/s for $bseconds s" >&2
  cat >"$dir/reloader.py" <<'PY'
# Rewrites the config (a new file renamed over it) and sends SIGHUP, RELOADS
# times in SECONDS: odd reloads put B in force, even ones A and C in turn.
# Prints "index variant sighup_time_ns" per reload.
import os, shutil, signal, sys, time
pid, cfg, reloads, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
period = seconds / reloads
start = time.monotonic()
for i in range(1, reloads + 1):
    variant = "B" if i % 2 else ("C" if i % 4 == 2 else "A")
    shutil.copyfile(f"{cfg[:-5]}.{variant}.yaml", cfg + ".new")
    os.rename(cfg + ".new", cfg)
    t = time.time_ns()
    os.kill(pid, signal.SIGHUP)
    print(i, variant, t, flush=True)
    delay = start + i * period - time.monotonic()
    if delay > 0:
        time.sleep(delay)
PY
  busy_before=$(cpus_busy)
  before=$(cpu_ticks "$gate_pid")
  gdrops=$(udp_drops "$gate_pid")
  kdrops=$(udp_drops "$knot_pid")
  run_dnsperf "$dir/dnsperf.out" "$bseconds"
  sleep 1
  "${load_cpu[@]+"${load_cpu[@]}"}" "$python" "$dir/reloader.py" "$gate_pid" "$dir/dnsgate.yaml" \
    "$reloads" "$reload_seconds" >"$dir/hups.txt"
  wait "$perf_pid" || true
  stop_pid "$perf_pid"
  after=$(cpu_ticks "$gate_pid")
  busy_after=$(cpus_busy)
  gdrops=$(($(udp_drops "$gate_pid") - gdrops))
  kdrops=$(($(udp_drops "$knot_pid") - kdrops))
  curl -s --max-time 5 "$url" >"$dir/scrape.txt" || true
  stop_pid "$gate_pid"
  sent=$(perf_field "$dir/dnsperf.out" "Queries sent:")
  completed=$(perf_field "$dir/dnsperf.out" "Queries completed:")
  lost=$(perf_field "$dir/dnsperf.out" "Queries lost:")
  servfail=$(rcode_count "$dir/dnsperf.out" SERVFAIL)
  noerror=$(rcode_count "$dir/dnsperf.out" NOERROR)
  avg=$(awk '/Average Latency/ { printf "%.3f", $4 * 1000; exit }' "$dir/dnsperf.out")
  answer_latencies "$dir/dnsperf.out" "$dir/latencies.txt"
  read -r p50 p99 _ <<<"$(percentiles "$dir/latencies.txt")"
  events=$(wc -l <"$dir/events.jsonl")
  received=$(stat_field "$dir/dnsgate.err" received)
  applied=$(sed -n 's/^dnsgate_config_reloads_total{.*result="applied".*} \([0-9]*\)$/\1/p' "$dir/scrape.txt")
  refused=$(sed -n 's/^dnsgate_config_reloads_total{.*result="refused".*} \([0-9]*\)$/\1/p' "$dir/scrape.txt")
  grep -E "Queries (sent|completed|lost)|Average Latency|Response codes" "$dir/dnsperf.out" >&2
  "$python" - "$dir" >"$dir/analysis.txt" <<'PY'
import bisect, datetime, json, re, sys
d = sys.argv[1]

def ns(stamp):  # RFC 3339 UTC with microseconds, or spdlog's %Y-%m-%dT%H:%M:%S.%e%z
    stamp = stamp.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", stamp):
        stamp = stamp[:-2] + ":" + stamp[-2:]
    t = datetime.datetime.fromisoformat(stamp)
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000

versions = {}
for v in "ABC":
    m = re.search(r"policyVersion[ :=]+([0-9a-f]{12})", open(f"{d}/check.{v}.out").read())
    versions[v] = m.group(1) if m else None
hups = [line.split() for line in open(f"{d}/hups.txt")]
accepted = []
refused_lines = []
for line in open(f"{d}/dnsgate.err"):
    m = re.match(r"(\S+) dnsgate \w+: reload: .* accepted: policyVersion ([0-9a-f]+)", line)
    if m:
        accepted.append((ns(m.group(1)), m.group(2)))
    elif "reload refused" in line:
        refused_lines.append(line.strip())
events = []  # (arrival ns, version, rcode)
bad = 0
for line in open(f"{d}/events.jsonl"):
    try:
        e = json.loads(line)
        events.append((ns(e["time"]), e["data"]["policyVersion"], e["data"].get("rcode"),
                       e["data"].get("reasonCode")))
    except (ValueError, KeyError):
        bad += 1
events.sort()
seen = {}
for _, v, *_ in events:
    seen[v] = seen.get(v, 0) + 1
# segments: runs of one version in arrival order
segments = []
for t, v, *_ in events:
    if not segments or segments[-1][1] != v:
        segments.append((t, v))
expected = [versions["A"]] + [versions[h[1]] for h in hups]
times_of = {}
for t, v, *_ in events:
    times_of.setdefault(v, []).append(t)
# per reload: SIGHUP -> accepted log line; SIGHUP -> arrival of the first
# query decided by the new version (after the previous reload took effect)
to_log, to_event, missing = [], [], 0
prev_effect = 0
acc_times = [a[0] for a in accepted]
for i, (_, variant, t_hup) in enumerate(hups):
    t_hup = int(t_hup)
    v = versions[variant]
    j = bisect.bisect_left(acc_times, t_hup - 1_000_000)  # log stamps are in ms
    if j < len(accepted) and accepted[j][1] == v:
        to_log.append((accepted[j][0] - t_hup) / 1e6)
    ts = times_of.get(v, [])
    k = bisect.bisect_left(ts, max(t_hup, prev_effect))
    if k < len(ts):
        prev_effect = ts[k]
        to_event.append((ts[k] - t_hup) / 1e6)
    else:
        missing += 1

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(len(xs) * p + 0.5) - 1))] if xs else float("nan")

names = {versions[v]: v for v in "ABC"}
print("versions", ", ".join(f"{names.get(v, '?')} {v}: {n}" for v, n in sorted(seen.items(), key=lambda x: names.get(x[0], "?"))))
print("distinct", len(seen))
print("accepted", len(accepted))
print("refused", len(refused_lines))
print("segments", len(segments), "expected", len(expected), "match", [s[1] for s in segments] == expected)
print("to_log", f"{pct(to_log, 0.5):.1f}", f"{max(to_log) if to_log else float('nan'):.1f}", len(to_log))
print("to_event", f"{pct(to_event, 0.5):.1f}", f"{max(to_event) if to_event else float('nan'):.1f}", len(to_event), missing)
print("servfail_events", sum(1 for e in events if e[2] == "SERVFAIL"))
print("bad_lines", bad)
# the SERVFAILs: why, and when they arrived relative to the last reload put in force before
fails = [e for e in events if e[2] == "SERVFAIL"]
reasons = {}
for e in fails:
    reasons[e[3]] = reasons.get(e[3], 0) + 1
bursts = sorted({e[0] // 1_000_000 for e in fails})  # arrival ms
after = []
for b in bursts:
    j = bisect.bisect_right(acc_times, b * 1_000_000) - 1
    after.append(f"+{(b * 1_000_000 - acc_times[j]) / 1e6:.0f} ms after reload {j + 1}" if j >= 0 else "before any reload")
detail = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
if fails:
    detail += f"; arrived in {len(bursts)} ms: " + ", ".join(after[:5]) + (" ..." if len(after) > 5 else "")
print("servfail_detail", detail or "none")
for line in refused_lines[:3]:
    print("refused_line", line)
PY
  cat "$dir/analysis.txt" >&2
  field() { awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "$dir/analysis.txt"; }
  read -r seg_n _ _ _ seg_match <<<"$(field segments)"
  read -r log50 logmax log_n <<<"$(field to_log)"
  read -r ev50 evmax ev_n ev_missing <<<"$(field to_event)"
  cpu_q=$(awk -v t="$((after - before))" -v hz="$ticks_per_second" -v n="$completed" \
    'BEGIN { printf "%.2f", (n > 0 ? t / hz / n * 1e6 : 0) }')
  sighups=$(wc -l <"$dir/hups.txt")
  row "(b) SIGHUPs sent / reloads accepted (log) / applied, refused (metrics)" "$sighups / $(field accepted) / ${applied:-?}, ${refused:-?}"
  row "(b) queries lost (dnsperf)" "$lost of $sent ($completed answered)"
  row "(b) SERVFAIL (dnsperf / events)" "$servfail / $(field servfail_events) (NOERROR $noerror; $(field servfail_detail))"
  row "(b) UDP datagrams the kernel dropped (full receive buffer): dnsgate's sockets / knotd's" "$gdrops / $kdrops"
  row "(b) events vs queries" "$events events, received ${received:-?} (dnsperf sent $sent)"
  row "(b) distinct policyVersions in the events" "$(field distinct): $(field versions)"
  row "(b) version switches in arrival order" "$((seg_n - 1)) for $sighups reloads (sequence as sent: $seg_match)"
  row "(b) SIGHUP -> 'accepted' log line (ms)" "p50 $log50, max $logmax (of $log_n)"
  row "(b) SIGHUP -> arrival of the first query decided by the new allowlist (ms)" "p50 $ev50, max $evmax (of $ev_n; $ev_missing never seen)"
  row "(b) DNS latency avg / p50 / p99 (ms)" "$avg / $p50 / $p99"
  row "(b) dnsgate CPU per query; CPU 0 / CPU 1 busy" "$cpu_q µs; $(busy_pct "$busy_before" "$busy_after" 0)% / $(busy_pct "$busy_before" "$busy_after" 1)%"
fi

load_after=$(cut -d ' ' -f 1 /proc/loadavg)
echo
echo "dnsgate operations: $bin ($("$bin" version 2>/dev/null | head -n 1)), commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M UTC'), $cpus CPUs, $qps q/s, $seconds s per run, pinning: $pinning, load average $load_before before, $load_after after"
if [[ " $scenarios " == *" a "* ]]; then
  echo
  echo "(a) scrape cost; promtool check metrics on a scrape under load: $promtool_result"
  echo
  echo "| scraping | queries lost | SERVFAIL (UDP drops dnsgate / knotd) | DNS latency avg / p50 / p99 (ms) | events / received | dnsgate CPU per query: all / without the metrics thread | metrics thread CPU | CPU 0 / CPU 1 busy | scrapes, latency |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${a_rows[@]}"
fi
if [[ " $scenarios " == *" b "* ]]; then
  echo
  echo "(b) $reloads reloads in $reload_seconds s under load"
  echo
  echo "| measurement | result |"
  echo "|---|---|"
  printf '%s\n' "${rows[@]}"
fi
