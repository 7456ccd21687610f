#!/usr/bin/env bash
# Where dnsgate's CPU goes per query: knotd on loopback, dnsgate in front of
# it, dnsperf at full load (10 clients, 100 queries in flight), and
# `perf record -e cpu-clock` (a software clock: works in VMs without
# hardware counters) on dnsgate's process for the middle of the run.
#
#   bench/profile.sh [DNSGATE_BIN] [MODE] [SECONDS]
#
# MODE: allowed (every query forwarded), denied (every query refused) or
# mixed (50/50, 10,000 literal entries). Defaults: build/dnsgate, allowed,
# 10 s. The same pinning as bench/run.sh: dnsperf and knotd on CPU 0,
# dnsgate on CPU 1. Prints the CPU per query, the split by thread, by
# binary/library and by function. Loopback only; every process started here
# is stopped by its PID on exit. Needs linux-perf (installed if missing).
# PROFILE_OUT=FILE keeps perf.data there for `perf report -i FILE`.
# PROFILE_TOOL=callgrind counts user-space instructions per query instead
# (exact, whatever else runs on the machine; needs valgrind).
# PROFILE_TOOL=none attaches nothing and prints one line: qps and CPU per
# query, for quick A/B runs of two builds.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/common.sh
source "$here/lib/common.sh"
repo=$(cd "$here/.." && pwd)
bin=$(readlink -f "${1:-$repo/build/dnsgate}")
mode=${2:-allowed}
seconds=${3:-10}
knot_port=${KNOT_PORT:-25600}
gate_port=${GATE_PORT:-25653}
case "$mode" in allowed | denied | mixed) ;; *) echo "mode: allowed, denied or mixed" >&2; exit 2 ;; esac
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $seconds" >&2; exit 2; }

if ! command -v perf >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends linux-perf >/dev/null
fi
for tool in /usr/sbin/knotd dnsperf kdig perf taskset "$bin"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (run 'make build')" >&2; exit 1; }
done

work=$(mktemp -d /tmp/dnsgate-profile.XXXXXX)
pids=()
cleanup() {
  local i
  if [ -n "${PROFILE_OUT:-}" ] && [ -f "$work/perf.data" ]; then cp "$work/perf.data" "$PROFILE_OUT"; fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do terminate_pid "${pids[i]}"; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ "$(nproc)" -ge 2 ]; then
  load_cpu=(taskset -c 0)
  proxy_cpu=(taskset -c 1)
else
  load_cpu=()
  proxy_cpu=()
fi

hosts=10000
knot_prepare "$work/knot" "$knot_port" bench.test h "$hosts"
awk -v n=$hosts 'BEGIN { for (i = 0; i < n; i++) printf "h%d.bench.test A\n", i }' >"$work/allowed.txt"
awk -v n=$hosts 'BEGIN { for (i = 0; i < n; i++) printf "h%d.denied.test A\n", i }' >"$work/denied.txt"
paste -d '\n' "$work/allowed.txt" "$work/denied.txt" >"$work/mixed.txt"

"${load_cpu[@]}" /usr/sbin/knotd -c "$work/knot/knot.conf" >/dev/null 2>&1 &
pids+=($!)

{
  echo "cell: profile"
  echo "listen:"
  echo "  udp: 127.0.0.1:$gate_port"
  echo "dnsAuthority:"
  echo "  hostnameAllowlist:"
  if [ "$mode" = mixed ]; then
    awk -v n=$hosts 'BEGIN { for (i = 0; i < n; i++) printf "    - h%d.bench.test\n", i }'
  else
    echo '    - "*.bench.test"'
  fi
  echo "  resolvers:"
  echo "    - protocol: do53-udp"
  echo "      address: 127.0.0.1:$knot_port"
  echo "events:"
  echo "  sink: file"
  echo "  path: $work/events.jsonl"
} >"$work/dnsgate.yaml"

wait_for_dns "$knot_port" h1.bench.test

if [ "${PROFILE_TOOL:-perf}" = callgrind ]; then
  # User-space instructions per query, exact and independent of the load on
  # the machine: dnsgate under callgrind, instrumentation switched on only
  # for two passes over the query file (20,000 queries; 40,000 mixed) at a
  # rate valgrind keeps up with.
  command -v valgrind >/dev/null || { echo "missing: valgrind" >&2; exit 1; }
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
    "$bin" run --config "$work/dnsgate.yaml" 2>"$work/valgrind.err" &
  gate_pid=$!
  pids+=("$gate_pid")
  wait_for_dns "$gate_port" h1.bench.test
  callgrind_control -i on "$gate_pid" >/dev/null
  dnsperf -s 127.0.0.1 -p "$gate_port" -d "$work/$mode.txt" -n 2 -Q 2000 -c 10 -q 100 \
    >"$work/dnsperf.out" 2>&1
  callgrind_control -i off "$gate_pid" >/dev/null
  kill -TERM "$gate_pid"
  wait "$gate_pid" || true
  queries=$(awk '/Queries completed:/ { print $3 }' "$work/dnsperf.out")
  echo "== callgrind ($mode): user-space instructions per query, inclusive, $queries queries"
  callgrind_annotate --inclusive=yes "$work/callgrind.out" 2>/dev/null | tee "$work/annotate.txt" |
    awk -v q="$queries" '/PROGRAM TOTALS/ { gsub(",", "", $1); printf "%8.0f  all threads\n", $1 / q }
      /^ *[0-9,]+ +\( *[0-9.]+%\) +[^ ]*:/ {
        n = $1; gsub(",", "", n); name = $0; sub(/^[^:]*:/, "", name)
        gsub(/\(anonymous namespace\)/, "{anon}", name); sub(/\(.*/, "", name)
        if (n / q >= 50 && !seen[name]++) printf "%8.0f  %s\n", n / q, substr(name, 1, 90) }' |
    head -45 || true
  exit 0
fi

"${proxy_cpu[@]}" "$bin" run --config "$work/dnsgate.yaml" 2>"$work/dnsgate.err" &
gate_pid=$!
pids+=("$gate_pid")
wait_for_dns "$gate_port" h1.bench.test

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

"${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "$gate_port" -d "$work/$mode.txt" -l "$seconds" \
  -c 10 -q 100 -t 2 >"$work/dnsperf.out" 2>&1 &
perf_load=$!
pids+=("$perf_load")
sleep 1
before=$(cpu_ticks "$gate_pid")
if [ "${PROFILE_TOOL:-perf}" = none ]; then
  # Throughput and CPU per query only, nothing attached to dnsgate: the
  # quick A/B of two builds (run them alternately, several times each).
  sleep $((seconds > 3 ? seconds - 2 : 1))
  after=$(cpu_ticks "$gate_pid")
  wait "$perf_load" || true
  qps=$(awk '/Queries per second:/ { print $4 }' "$work/dnsperf.out")
  lost=$(awk '/Queries lost:/ { print $3 }' "$work/dnsperf.out")
  awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v q="$qps" -v l="$lost" \
    -v w=$((seconds > 3 ? seconds - 2 : 1)) -v b="$bin" -v m="$mode" 'BEGIN {
    printf "%s %s: %.0f qps, %.1f us CPU per query, %s lost\n", b, m, q, t / hz * 1e6 / (q * w), l }'
  exit 0
fi
# System calls and context switches over the same window, per thread.
events=context-switches
for call in recvmmsg sendto sendmmsg recvmsg epoll_wait futex write; do
  events+=",syscalls:sys_enter_$call"
done
perf stat -x, --per-thread -e "$events" -p "$gate_pid" -o "$work/stat.csv" -- \
  sleep $((seconds > 3 ? seconds - 2 : 1)) >/dev/null 2>&1 &
stat_pid=$!
pids+=("$stat_pid")
perf record -q -e cpu-clock -F 2999 -p "$gate_pid" -o "$work/perf.data" -- \
  sleep $((seconds > 3 ? seconds - 2 : 1)) >/dev/null 2>&1
after=$(cpu_ticks "$gate_pid")
wait "$stat_pid" || true
wait "$perf_load" || true
echo "== dnsperf ($mode, ${seconds} s, through dnsgate)"
grep -E "Queries (sent|completed)|Queries per second|Response codes" "$work/dnsperf.out"
qps=$(awk '/Queries per second:/ { print $4 }' "$work/dnsperf.out")
window=$((seconds > 3 ? seconds - 2 : 1))
awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v q="$qps" -v w="$window" 'BEGIN {
  printf "dnsgate CPU during the profile: %.2f s of %d s, %.1f us per query at %.0f qps\n",
    t / hz, w, t / hz * 1e6 / (q * w), q }'
echo "== per query: system calls and context switches, by thread"
awk -F, -v q="$qps" -v w="$window" '
  NF >= 4 && $2 ~ /^[0-9]+$/ && $2 > 0 {
    thread = $1; sub(/-[0-9]+$/, "", thread)
    event = $4; sub(/^syscalls:sys_enter_/, "", event)
    printf "  %-16s %-18s %8.3f\n", thread, event, $2 / (q * w)
  }' "$work/stat.csv" | sort
echo "== by thread"
perf report -i "$work/perf.data" --stdio --sort comm 2>/dev/null | grep -E '^ +[0-9]' | head -5 || true
echo "== by binary or library"
perf report -i "$work/perf.data" --stdio --sort dso 2>/dev/null | grep -E '^ +[0-9]' | head -8 || true
perf report -i "$work/perf.data" --stdio --sort comm,dso,sym 2>/dev/null |
  grep -E '^ +[0-9]' >"$work/by-symbol.txt" || true
echo "== by function (self, % of all dnsgate samples), DNS loop thread"
awk '$2 == "dnsgate"' "$work/by-symbol.txt" | head -30 || true
echo "== by function (self, % of all dnsgate samples), event writer thread"
awk '$2 == "dnsgate-events"' "$work/by-symbol.txt" | head -20 || true
