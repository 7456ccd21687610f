#!/usr/bin/env bash
# What an idle dnsgate costs: its CPU and its threads' wake-ups while no
# query comes (issue 14: "Idle: < 0.1% of a core over 60 s with no
# queries"), and optionally the latency at a light, steady load.
#
#   bench/idle.sh [DNSGATE_BIN]
#
# Default build/dnsgate. knotd on loopback is the upstream (bench/lib/common.sh),
# and dnsgate runs once per configuration:
#   file     events to a file
#   metrics  events to a file, and metrics: {listen: 127.0.0.1:METRICS_PORT}
#   http     events to an http sink (a small Python collector on loopback
#            that answers 200), through a spool in the work dir
# Each time: a few queries first (kdig), so that every thread has started
# and done its first work, a pause of SETTLE_SECONDS, then IDLE_SECONDS with
# no query at all. Per thread (/proc/PID/task/*): its name, its wake-ups
# (voluntary + involuntary context switches) per second, and its CPU as %
# of one core, from the scheduler's run time (schedstat, in ns) and from
# utime+stime (clock ticks); the process's total CPU from /proc/PID/stat
# (every thread, the ones that ended included).
#
# With LIGHT_QPS set (e.g. 2000), a second part: for the file configuration,
# LIGHT_ROUNDS runs of dnsperf -Q LIGHT_QPS -l LIGHT_SECONDS -v against a
# fresh dnsgate, and per run the p50/p99 of the latencies (the first 100
# answers dropped, as bench/lib/report.py does) and each thread's wake-ups
# per second during the run.
#
# Knobs, as environment variables:
#   IDLE_SECONDS=60 SETTLE_SECONDS=2 CONFIGS="file metrics http"
#   LIGHT_QPS= LIGHT_SECONDS=5 LIGHT_ROUNDS=3
#   LIGHT_PIN=1     1: dnsperf and knotd on CPU 0, dnsgate on CPU 1, as
#                   bench/run.sh does; 0: no pinning
#   KNOT_PORT=25700 GATE_PORT=25753 HTTP_PORT=25780 METRICS_PORT=25790
# Loopback only. Every process started here is stopped by its PID on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/common.sh
source "$here/lib/common.sh"
repo=$(cd "$here/.." && pwd)
bin=$(readlink -f "${1:-$repo/build/dnsgate}")
idle_seconds=${IDLE_SECONDS:-60}
settle_seconds=${SETTLE_SECONDS:-2}
read -r -a configs <<<"${CONFIGS-file metrics http}"
light_qps=${LIGHT_QPS:-}
light_seconds=${LIGHT_SECONDS:-5}
light_rounds=${LIGHT_ROUNDS:-3}
light_pin=${LIGHT_PIN:-1}
knot_port=${KNOT_PORT:-25700}
gate_port=${GATE_PORT:-25753}
http_port=${HTTP_PORT:-25780}
metrics_port=${METRICS_PORT:-25790}

for n in "$idle_seconds" "$light_seconds" "$light_rounds" ${light_qps:+"$light_qps"}; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $n" >&2; exit 2; }
done
[[ "$settle_seconds" =~ ^[0-9]+$ ]] || { echo "not an integer: $settle_seconds" >&2; exit 2; }
for c in "${configs[@]+"${configs[@]}"}"; do
  case "$c" in file | metrics | http) ;; *) echo "CONFIGS: file, metrics, http" >&2; exit 2 ;; esac
done
tools=(/usr/sbin/knotd kdig /usr/bin/python3 "$bin")
[ -n "$light_qps" ] && tools+=(dnsperf taskset)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

work=$(mktemp -d /tmp/dnsgate-idle.XXXXXX)
pids=()  # every process started here; stopped in reverse order on exit
cleanup() {
  local list=("${pids[@]+"${pids[@]}"}") i
  for ((i = ${#list[@]} - 1; i >= 0; i--)); do terminate_pid "${list[i]}"; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "idle: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
stop_pid() {  # stop_pid PID: terminate_pid, then forget it
  local pid=$1 i kept=()
  terminate_pid "$pid"
  for i in "${pids[@]}"; do [ "$i" = "$pid" ] || kept+=("$i"); done
  pids=("${kept[@]+"${kept[@]}"}")
}

echo "idle: work dir $work; $idle_seconds s idle per configuration; load average" \
  "$(cut -d ' ' -f 1-3 /proc/loadavg) before" >&2

knot_prepare "$work/knot" "$knot_port" idle.test h 1000
/usr/sbin/knotd -c "$work/knot/knot.conf" >/dev/null 2>&1 &
knot_pid=$!
pids+=("$knot_pid")
wait_for_dns "$knot_port" h1.idle.test

if [[ " ${configs[*]+"${configs[*]}"} " == *" http "* ]]; then
  # A CloudEvents collector that takes every batch (HTTP/1.1, keep-alive).
  cat >"$work/collector.py" <<'PY'
import http.server, sys
class Collector(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Collector).serve_forever()
PY
  /usr/bin/python3 "$work/collector.py" "$http_port" &
  pids+=("$!")
fi

write_config() {  # write_config NAME: $work/NAME/dnsgate.yaml
  local name=$1 dir="$work/$1"
  mkdir -p "$dir"
  {
    echo "cell: idle"
    echo "listen:"
    echo "  udp: 127.0.0.1:$gate_port"
    echo "dnsAuthority:"
    echo "  hostnameAllowlist:"
    echo '    - "*.idle.test"'
    echo "  resolvers:"
    echo "    - protocol: do53-udp"
    echo "      address: 127.0.0.1:$knot_port"
    echo "events:"
    case "$name" in
      http)
        echo "  sink: http"
        echo "  http:"
        echo "    url: http://127.0.0.1:$http_port/events"
        echo "  spool:"
        echo "    dir: $dir/spool"
        ;;
      *)
        echo "  sink: file"
        echo "  path: $dir/events.jsonl"
        ;;
    esac
    if [ "$name" = metrics ]; then
      echo "metrics:"
      echo "  listen: 127.0.0.1:$metrics_port"
    fi
  } >"$dir/dnsgate.yaml"
  "$bin" check --config "$dir/dnsgate.yaml" >/dev/null
}

# snapshot PID: one line per live thread: tid, run ns, ticks, switches, name.
snapshot() {
  local task tid ns ticks switches
  for task in /proc/"$1"/task/*; do
    tid=${task##*/}
    ns=$(cut -d ' ' -f 1 "$task/schedstat" 2>/dev/null) || continue
    ticks=$(sed 's/.*) //' "$task/stat" 2>/dev/null | awk '{ print $12 + $13 }') || continue
    switches=$(awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s }' \
      "$task/status" 2>/dev/null) || continue
    printf '%s %s %s %s %s\n' "$tid" "$ns" "$ticks" "$switches" "$(cat "$task/comm" 2>/dev/null)"
  done
}
process_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
ticks_per_second=$(getconf CLK_TCK)

# report PID BEFORE AFTER SECONDS TICKS_BEFORE TICKS_AFTER: the table.
report() {
  awk -v pid="$1" -v secs="$4" -v hz="$ticks_per_second" -v t0="$5" -v t1="$6" '
    FNR == NR { ns[$1] = $2; tk[$1] = $3; sw[$1] = $4; next }
    {
      name = $5; for (i = 6; i <= NF; i++) name = name " " $i
      if ($1 == pid) name = name " (main)"
      new = !($1 in ns)
      dns = $2 - (new ? 0 : ns[$1]); dtk = $3 - (new ? 0 : tk[$1]); dsw = $4 - (new ? 0 : sw[$1])
      total_ns += dns; total_sw += dsw
      printf "| %s%s | %d | %.2f | %.4f | %d |\n", name, new ? " (new)" : "", dsw, dsw / secs,
        100 * dns / 1e9 / secs, dtk
    }
    END {
      printf "| all threads | %d | %.2f | %.4f | %d |\n", total_sw, total_sw / secs,
        100 * total_ns / 1e9 / secs, t1 - t0
      printf "\nprocess CPU (/proc/PID/stat utime+stime): %d ticks in %d s = %.3f%% of a core\n",
        t1 - t0, secs, 100 * (t1 - t0) / hz / secs
    }' "$2" "$3"
}

start_gate() {  # start_gate NAME [PIN...]: sets gate_pid
  local dir="$work/$1"
  shift
  "$@" "$bin" run --config "$dir/dnsgate.yaml" >>"$dir/dnsgate.out" 2>>"$dir/dnsgate.err" &
  gate_pid=$!
  pids+=("$gate_pid")
  wait_for_dns "$gate_port" h1.idle.test
}

for name in "${configs[@]+"${configs[@]}"}"; do
  write_config "$name"
  start_gate "$name"
  # Warm up: every thread started and through its first work.
  for i in $(seq 20); do
    kdig @127.0.0.1 -p "$gate_port" +time=1 +retry=0 "h$i.idle.test" A >/dev/null 2>&1 || true
  done
  sleep "$settle_seconds"
  snapshot "$gate_pid" >"$work/$name/before"
  t0=$(process_ticks "$gate_pid")
  sleep "$idle_seconds"
  snapshot "$gate_pid" >"$work/$name/after"
  t1=$(process_ticks "$gate_pid")
  echo
  echo "### $name: $idle_seconds s idle"
  echo
  echo "| thread | wake-ups | wake-ups/s | CPU % of a core (run time) | ticks |"
  echo "|---|---|---|---|---|"
  report "$gate_pid" "$work/$name/before" "$work/$name/after" "$idle_seconds" "$t0" "$t1"
  stop_pid "$gate_pid"
done

[ -n "$light_qps" ] || exit 0

# --- light load: latency at LIGHT_QPS -----------------------------------------
if [ "$light_pin" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  load_cpu=(taskset -c 0)
  proxy_cpu=(taskset -c 1)
else
  load_cpu=()
  proxy_cpu=()
fi
awk 'BEGIN { for (i = 0; i < 1000; i++) printf "h%d.idle.test A\n", i }' >"$work/queries.txt"
write_config light
echo
echo "### light load: $light_qps queries/s for $light_seconds s, pinning $light_pin"
echo
echo "| run | answers | p50 µs | p99 µs | p99.9 µs | loop (main) wake-ups/s | writer wake-ups/s | CPU % |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq "$light_rounds"); do
  start_gate light "${proxy_cpu[@]+"${proxy_cpu[@]}"}"
  sleep 1
  snapshot "$gate_pid" >"$work/light/before"
  t0=$(process_ticks "$gate_pid")
  "${load_cpu[@]+"${load_cpu[@]}"}" dnsperf -s 127.0.0.1 -p "$gate_port" -d "$work/queries.txt" \
    -l "$light_seconds" -Q "$light_qps" -c 1 -q 100 -t 2 -v 2>&1 |
    awk '/^> / { print $NF }' >"$work/light/lat-$round.txt" || true
  snapshot "$gate_pid" >"$work/light/after"
  t1=$(process_ticks "$gate_pid")
  stop_pid "$gate_pid"
  /usr/bin/python3 - "$work/light/lat-$round.txt" "$work/light/before" "$work/light/after" \
    "$light_seconds" "$round" "$((t1 - t0))" "$ticks_per_second" "$gate_pid" <<'PY'
import sys
path, before, after, secs, rnd, ticks, hz, pid = sys.argv[1:9]
secs = float(secs)
lat = sorted(float(x) * 1e6 for x in open(path).read().split()[100:])
def pct(f):
    if not lat:
        return float("nan")
    rank = max(1, int(round(f * len(lat) + 0.5)))
    return lat[min(rank, len(lat)) - 1]
def threads(p):
    out = {}
    for line in open(p):
        f = line.split(maxsplit=4)
        out[f[0]] = (int(f[3]), f[4].strip())
    return out
b, a = threads(before), threads(after)
wakes = {}
for tid, (sw, name) in a.items():
    name = "main" if tid == pid else name
    wakes[name] = wakes.get(name, 0) + sw - b.get(tid, (0, name))[0]
loop = wakes.get("main", 0) / secs
writer = wakes.get("dnsgate-events", 0) / secs
print(f"| {rnd} | {len(lat)} | {pct(0.5):.0f} | {pct(0.99):.0f} | {pct(0.999):.0f} "
      f"| {loop:.0f} | {writer:.0f} | {100 * int(ticks) / int(hz) / secs:.1f} |")
PY
done
