#!/usr/bin/env bash
# `make bench`: dnsgate side by side with knotd queried directly (the
# ceiling), dnsdist (no packet cache) and dnsmasq (cache-size 0), all doing
# the same job on loopback in front of the same knotd, measured with the
# same dnsperf query files for the same time, interleaved, in rounds.
#
#   bench/run.sh [DNSGATE_BIN] [SECONDS_PER_RUN] [ROUNDS]
#
# Defaults: build/dnsgate, 10 s, 3 rounds (about 13 minutes in all). More
# knobs, as environment variables:
#   LATENCY_SECONDS=5   length of each 2,000 queries/s latency run
#   LATENCY_QPS=2000    the rate of the latency runs
#   BENCH_PIN=1         0: no CPU pinning (see docs/performance.md)
#   BENCH_WRITE_DOC=1   0: print the tables, leave docs/performance.md alone
#   MICRO_BENCH=<dir of DNSGATE_BIN>/bench/parse_match_bench        ("" to skip it)
#   ALLOC_TEST=<dir of DNSGATE_BIN>/tests/alloc/dnsgate_alloc_test  ("" to skip it)
#   KNOT_PORT=25500 GATE_PORT=25553 DNSDIST_PORT=25554 DNSMASQ_PORT=25555
#   BENCH_KEEP=0        1: keep the work dir (raw dnsperf outputs) at the end
#   BENCH_COMMIT=       the commit DNSGATE_BIN was built from, when not the
#                       repository's HEAD (the report names HEAD otherwise)
#
# Three modes, each with its own allowlist, the same for every proxy:
#   allowed  every query is on the allowlist (`*.bench.test`): forwarded
#   denied   no query is (hN.denied.test): refused by the proxy itself
#   mixed    50/50, against 10,000 literal entries (hN.bench.test)
# For each round, mode and target (in an order that rotates every round):
#   throughput  dnsperf, 10 clients, 100 queries in flight, SECONDS_PER_RUN;
#               proxy CPU = utime+stime of every thread of the proxy from
#               /proc/PID/stat before and after, divided by the queries
#               completed;
#   latency     dnsperf -Q LATENCY_QPS -v, one latency per answer.
# Loopback only. Every process started here is stopped by its PID on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/common.sh
source "$here/lib/common.sh"
repo=$(cd "$here/.." && pwd)
bin=$(readlink -f "${1:-$repo/build/dnsgate}")
seconds=${2:-10}
rounds=${3:-3}
latency_seconds=${LATENCY_SECONDS:-5}
latency_qps=${LATENCY_QPS:-2000}
pin=${BENCH_PIN:-1}
write_doc=${BENCH_WRITE_DOC:-1}
build_dir=$(dirname "$bin")  # the micro-benchmark and the allocation test sit beside it
micro_bench=${MICRO_BENCH-$build_dir/bench/parse_match_bench}
alloc_test=${ALLOC_TEST-$build_dir/tests/alloc/dnsgate_alloc_test}
knot_port=${KNOT_PORT:-25500}
gate_port=${GATE_PORT:-25553}
dnsdist_port=${DNSDIST_PORT:-25554}
dnsmasq_port=${DNSMASQ_PORT:-25555}
command_line="bench/run.sh $*"
started=$(date -u '+%Y-%m-%d %H:%M UTC')

for n in "$seconds" "$rounds" "$latency_seconds" "$latency_qps"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $n" >&2; exit 2; }
done

bash "$here/lib/install-peers.sh"
for tool in /usr/sbin/knotd /usr/sbin/dnsmasq /usr/bin/dnsdist dnsperf kdig taskset "$bin"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (run 'make build')" >&2; exit 1; }
done

work=$(mktemp -d /tmp/dnsgate-bench.XXXXXX)
pids=()  # every process started here; stopped in reverse order on exit
cleanup() {
  local list=("${pids[@]+"${pids[@]}"}") i
  for ((i = ${#list[@]} - 1; i >= 0; i--)); do stop_pid "${list[i]}"; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

stop_pid() {  # stop_pid PID: terminate_pid, then forget it
  local pid=$1 i kept=()
  terminate_pid "$pid"
  for i in "${pids[@]}"; do [ "$i" = "$pid" ] || kept+=("$i"); done
  pids=("${kept[@]+"${kept[@]}"}")
}

# CPU pinning: dnsperf and knotd share one CPU, the proxy has the other one to
# itself, the same for every proxy and for knotd direct. Without it, on two
# CPUs the three processes and the proxy's threads fight for both and the
# figures swing with the scheduler.
cpus=$(nproc)
if [ "$pin" = 1 ] && [ "$cpus" -ge 2 ]; then
  load_cpu=(taskset -c 0)
  proxy_cpu=(taskset -c 1)
  pinning="dnsperf and knotd on CPU 0, the proxy (all its threads) on CPU 1"
else
  load_cpu=()
  proxy_cpu=()
  pinning="none"
fi

# Anything else busy on the machine skews every figure: say so in the report.
load_before=$(cut -d ' ' -f 1 /proc/loadavg)
if awk -v l="$load_before" 'BEGIN { exit !(l > 0.5) }'; then
  echo "bench: WARNING: load average $load_before before the start; other work on this" \
    "machine will skew the figures" >&2
fi

echo "bench: work dir $work; $rounds rounds, ${seconds} s per throughput run," \
  "${latency_seconds} s per ${latency_qps} qps latency run; pinning: $pinning" >&2

# --- the zone, the query files, the allowlists --------------------------------
hosts=10000
knot_prepare "$work/knot" "$knot_port" bench.test h "$hosts"
awk -v n=$hosts 'BEGIN { for (i = 0; i < n; i++) printf "h%d.bench.test A\n", i }' \
  >"$work/allowed.txt"
awk -v n=$hosts 'BEGIN { for (i = 0; i < n; i++) printf "h%d.denied.test A\n", i }' \
  >"$work/denied.txt"
paste -d '\n' "$work/allowed.txt" "$work/denied.txt" >"$work/mixed.txt"
awk -v n=$hosts 'BEGIN { for (i = 0; i < n; i++) printf "h%d.bench.test\n", i }' \
  >"$work/list10k.txt"

modes=(allowed denied mixed)
targets=(knotd dnsgate dnsdist dnsmasq)

# --- knotd: the upstream, and the ceiling -------------------------------------
"${load_cpu[@]}" /usr/sbin/knotd -c "$work/knot/knot.conf" >/dev/null 2>&1 &
knot_pid=$!
pids+=("$knot_pid")

wait_for_dns "$knot_port" h1.bench.test

# --- the proxies' configurations, one per mode --------------------------------
write_configs() {  # write_configs MODE
  local mode=$1 dir="$work/$1"
  mkdir -p "$dir"
  {
    echo "cell: bench"
    echo "listen:"
    echo "  udp: 127.0.0.1:$gate_port"
    echo "dnsAuthority:"
    echo "  hostnameAllowlist:"
    if [ "$mode" = mixed ]; then
      sed 's/^/    - /' "$work/list10k.txt"
    else
      echo '    - "*.bench.test"'
    fi
    echo "  resolvers:"
    echo "    - protocol: do53-udp"
    echo "      address: 127.0.0.1:$knot_port"
    echo "upstreamTimeoutMs: 2000"
    echo "events:"
    echo "  sink: file"
    echo "  path: $dir/events.jsonl"
  } >"$dir/dnsgate.yaml"

  # dnsdist: no packet cache (none is created), backend forced up (no health
  # checks), no console, web server or carbon (none is configured), no
  # security polling (it would query the system resolver). Queries off the
  # allowlist get REFUSED from dnsdist itself.
  {
    echo 'setSecurityPollSuffix("")'
    echo "setLocal(\"127.0.0.1:$dnsdist_port\")"
    echo "newServer({address=\"127.0.0.1:$knot_port\", name=\"knotd\"})"
    echo 'getServer(0):setUp()'
    if [ "$mode" = mixed ]; then
      echo 'allowed = newDNSNameSet()'
      sed 's/.*/allowed:add(newDNSName("&."))/' "$work/list10k.txt"
      echo 'addAction(NotRule(QNameSetRule(allowed)), RCodeAction(DNSRCode.REFUSED))'
    else
      # SuffixMatchNodeRule also matches bench.test itself, which `*.bench.test`
      # does not; no query here asks for it.
      echo 'allowed = newSuffixMatchNode()'
      echo 'allowed:add("bench.test.")'
      echo 'addAction(NotRule(SuffixMatchNodeRule(allowed, true)), RCodeAction(DNSRCode.REFUSED))'
    fi
  } >"$dir/dnsdist.conf"

  # dnsmasq: a name is forwarded only when a server= line covers it; with
  # no-resolv there is no default server, so every other name gets REFUSED
  # from dnsmasq itself. server=/name/ also covers the name's subdomains;
  # no query here asks for one.
  {
    echo "port=$dnsmasq_port"
    echo "listen-address=127.0.0.1"
    echo "bind-interfaces"
    echo "no-resolv"
    echo "no-hosts"
    echo "no-poll"
    echo "cache-size=0"
    echo "dns-forward-max=10000"
    echo "pid-file=$dir/dnsmasq.pid"
    echo "log-facility=$dir/dnsmasq.log"
    if [ "$mode" = mixed ]; then
      sed "s|.*|server=/&/127.0.0.1#$knot_port|" "$work/list10k.txt"
    else
      echo "server=/bench.test/127.0.0.1#$knot_port"
    fi
  } >"$dir/dnsmasq.conf"
}

cpu_ticks() {  # utime + stime of every thread of PID, in clock ticks
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
thread_ticks() {  # thread_ticks PID COMM: utime + stime of PID's threads named COMM
  local task total=0
  for task in /proc/"$1"/task/*; do
    [ "$(cat "$task/comm" 2>/dev/null)" = "$2" ] || continue
    total=$((total + $(sed 's/.*) //' "$task/stat" | awk '{ print $12 + $13 }')))
  done
  echo "$total"
}
vm_kib() {  # vm_kib PID FIELD (VmRSS, VmHWM)
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
ticks_per_second=$(getconf CLK_TCK)

results="$work/throughput.tsv"
printf 'round\tmode\ttarget\tqps\tcompleted\tlost\tcpu_ticks\twriter_ticks\trcodes\n' >"$results"
memory="$work/memory.tsv"
printf 'round\tmode\ttarget\trss_kib\thwm_kib\n' >"$memory"
gate_runs="$work/dnsgate.tsv"
printf 'round\tmode\treceived\tevents\teventsDropped\tstats\n' >"$gate_runs"

declare -A port_of=([knotd]=$knot_port [dnsgate]=$gate_port [dnsdist]=$dnsdist_port
  [dnsmasq]=$dnsmasq_port)
declare -A pid_of=([knotd]=$knot_pid)

start_proxies() {  # start_proxies MODE
  local dir="$work/$1"
  : >"$dir/events.jsonl"
  "${proxy_cpu[@]}" "$bin" run --config "$dir/dnsgate.yaml" 2>"$dir/dnsgate.err" &
  pid_of[dnsgate]=$!
  pids+=("${pid_of[dnsgate]}")
  "${proxy_cpu[@]}" /usr/bin/dnsdist --supervised --disable-syslog -C "$dir/dnsdist.conf" \
    >"$dir/dnsdist.log" 2>&1 &
  pid_of[dnsdist]=$!
  pids+=("${pid_of[dnsdist]}")
  "${proxy_cpu[@]}" /usr/sbin/dnsmasq -k --conf-file="$dir/dnsmasq.conf" >/dev/null 2>&1 &
  pid_of[dnsmasq]=$!
  pids+=("${pid_of[dnsmasq]}")
  wait_for_dns "$gate_port" h1.bench.test
  wait_for_dns "$dnsdist_port" h1.bench.test
  wait_for_dns "$dnsmasq_port" h1.bench.test
}

stop_proxies() {  # stop_proxies ROUND MODE
  local round=$1 mode=$2 dir="$work/$2" t
  for t in dnsgate dnsdist dnsmasq; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$t" "$(vm_kib "${pid_of[$t]}" VmRSS)" \
      "$(vm_kib "${pid_of[$t]}" VmHWM)" >>"$memory"
  done
  for t in dnsgate dnsdist dnsmasq; do stop_pid "${pid_of[$t]}"; done
  local stats received dropped events
  stats=$(tail -n 1 "$dir/dnsgate.err")
  received=$(sed -n 's/.*"received":\([0-9]*\).*/\1/p' <<<"$stats")
  dropped=$(sed -n 's/.*"eventsDropped":\([0-9]*\).*/\1/p' <<<"$stats")
  events=$(wc -l <"$dir/events.jsonl")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "${received:-?}" "$events" \
    "${dropped:-?}" "$stats" >>"$gate_runs"
  rm -f "$dir/events.jsonl"
}

throughput_run() {  # throughput_run ROUND MODE TARGET
  local round=$1 mode=$2 target=$3 out="$work/$2/tp-$3-$1.out" before after
  local writer_before=0 writer_after=0
  # One pass over the query file first: not measured.
  "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "${port_of[$target]}" -d "$work/$mode.txt" -n 1 \
    -c 10 -q 100 -t 2 >/dev/null 2>&1 || true
  before=$(cpu_ticks "${pid_of[$target]}")
  # dnsgate's event writer thread, to tell its share from the DNS loop's.
  [ "$target" = dnsgate ] && writer_before=$(thread_ticks "${pid_of[$target]}" dnsgate-events)
  "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "${port_of[$target]}" -d "$work/$mode.txt" \
    -l "$seconds" -c 10 -q 100 -t 2 >"$out" 2>&1 || true
  after=$(cpu_ticks "${pid_of[$target]}")
  [ "$target" = dnsgate ] && writer_after=$(thread_ticks "${pid_of[$target]}" dnsgate-events)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$target" \
    "$(awk '/Queries per second:/ { print $4 }' "$out")" \
    "$(awk '/Queries completed:/ { print $3 }' "$out")" \
    "$(awk '/Queries lost:/ { print $3 }' "$out")" \
    "$((after - before))" "$((writer_after - writer_before))" \
    "$(sed -n 's/^ *Response codes: *//p' "$out")" >>"$results"
}

latency_run() {  # latency_run ROUND MODE TARGET
  local round=$1 mode=$2 target=$3
  "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "${port_of[$target]}" -d "$work/$mode.txt" \
    -l "$latency_seconds" -Q "$latency_qps" -c 1 -q 100 -t 2 -v 2>&1 |
    awk '/^> / { print $2, $NF }' >"$work/$mode/lat-$target-$round.txt" || true
}

for mode in "${modes[@]}"; do write_configs "$mode"; done

for round in $(seq "$rounds"); do
  for mode in "${modes[@]}"; do
    start_proxies "$mode"
    # Rotate the order every round so no target always runs first.
    order=("${targets[@]:$(((round - 1) % 4))}" "${targets[@]:0:$(((round - 1) % 4))}")
    for target in "${order[@]}"; do
      echo "bench: round $round/$rounds, $mode, $target" >&2
      throughput_run "$round" "$mode" "$target"
      latency_run "$round" "$mode" "$target"
    done
    stop_proxies "$round" "$mode"
  done
done

# --- the micro-benchmark and the allocation test, when built -----------------
micro_json=""
if [ -n "$micro_bench" ] && [ -x "$micro_bench" ]; then
  echo "bench: micro-benchmark $micro_bench" >&2
  micro_json="$work/micro.json"
  "${proxy_cpu[@]}" "$micro_bench" --benchmark_repetitions=5 \
    --benchmark_report_aggregates_only=true \
    --benchmark_out="$micro_json" --benchmark_out_format=json \
    >"$work/micro.out" 2>&1 || micro_json=""
fi
alloc_line=""
if [ -n "$alloc_test" ] && [ -x "$alloc_test" ]; then
  echo "bench: allocation test $alloc_test" >&2
  if "$alloc_test" >"$work/alloc.out" 2>&1; then
    alloc_line="passed: $(grep "^\[hot path" "$work/alloc.out" | tr "\n" " " || true)"
  else
    alloc_line="FAILED: $(grep "^\[hot path" "$work/alloc.out" | tr "\n" " " || true)"
  fi
fi

load_after=$(cut -d ' ' -f 1 /proc/loadavg)
/usr/bin/python3 "$here/lib/report.py" \
  --load "$load_before $load_after" --started "$started" --commit "${BENCH_COMMIT:-}" \
  --work "$work" --rounds "$rounds" --seconds "$seconds" \
  --latency-seconds "$latency_seconds" --latency-qps "$latency_qps" \
  --ticks-per-second "$ticks_per_second" --pinning "$pinning" \
  --command "$command_line" --dnsgate "$bin" \
  --micro "$micro_json" --alloc "$alloc_line" \
  --doc "$repo/docs/performance.md" --write-doc "$write_doc"
