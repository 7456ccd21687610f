#!/usr/bin/env bash
# `make bench`: dnsgate side by side with knotd queried directly (the
# ceiling), the floor relay (bench/floor_relay.cpp: recvmmsg/sendmmsg and an
# id map, nothing else; the floor of the forward path), dnsdist (no packet
# cache) and dnsmasq (cache-size 0), all doing the same job on loopback in
# front of the same knotd, measured with the same dnsperf query files for
# the same time, interleaved, in rounds; dnsgate once per I/O backend
# (`io: epoll`, `io: uring`); every proxy's CPU per query is shown as a
# ratio to the floor relay's and to dnsdist's. Then the same for encrypted
# upstreams (dnsgate and dnsdist forwarding over DoT and DoH to one TLS
# server, dnsgate alone over DoQ), and a steady-load run per upstream
# protocol (bench/upstream_soak.sh: connections opened, RSS).
#
#   bench/run.sh [DNSGATE_BIN] [SECONDS_PER_RUN] [ROUNDS]
#
# Defaults: build/dnsgate, 10 s, 3 rounds (about 26 minutes in all). More
# knobs, as environment variables:
#   LATENCY_SECONDS=5   length of each 2,000 queries/s latency run
#   LATENCY_QPS=2000    the rate of the latency runs
#   BENCH_PIN=1         0: no CPU pinning (see docs/performance.md)
#   BENCH_WRITE_DOC=1   0: print the tables, leave docs/performance.md alone
#   MICRO_BENCH=<dir of DNSGATE_BIN>/bench/parse_match_bench        ("" to skip it)
#   FLOOR_RELAY=<dir of DNSGATE_BIN>/bench/floor_relay              ("" to skip it)
#   GATE_BACKENDS="epoll uring"  dnsgate's I/O backends in the Do53 modes, one
#                       target each ("dnsgate (epoll)", ...) with `io: <backend>`
#                       in its config (epoll, uring, auto); "": one dnsgate
#                       without the `io` key. The encrypted modes run one
#                       dnsgate without it.
#   ALLOC_TEST=<dir of DNSGATE_BIN>/tests/alloc/dnsgate_alloc_test  ("" to skip it)
#   KNOT_PORT=25500 GATE_PORT=25553 DNSDIST_PORT=25554 DNSMASQ_PORT=25555
#   FLOOR_PORT=25556 GATE_URING_PORT=25557 GATE_AUTO_PORT=25558
#                       (dnsgate (epoll), and dnsgate without the `io` key,
#                       listen on GATE_PORT)
#   ENCRYPTED_MODES="dot doh doq"   the encrypted modes ("" for none)
#   TLS_UPSTREAM=unbound            the DoT/DoH server behind both proxies:
#                                   unbound (1.17, cache on) or dnsdist (1.7,
#                                   addTLSLocal/addDOHLocal, no cache)
#   DOT_PORT=25853 DOH_PORT=25443 DOQ_PORT=25854 UPSTREAM_DO53_PORT=25510
#   UNBOUND_NODELAY=1               preload a TCP_NODELAY shim into unbound
#                                   (bench/lib/tls_upstream.sh says why); 0: not
#   LATENCY_INFLIGHT_TLS=1000       dnsperf -q of the encrypted modes' latency
#                                   runs (dnsdist's DoH needs ~45 ms a query)
#   UPSTREAM_SOAK=1                 0: skip bench/upstream_soak.sh
#   SOAK_SECONDS=60 SOAK_QPS=5000 SOAK_PROTOCOLS="do53-udp dot doh doq"
#   BENCH_KEEP=0        1: keep the work dir (raw dnsperf outputs) at the end
#   BENCH_COMMIT=       the commit DNSGATE_BIN was built from, when not the
#                       repository's HEAD (the report names HEAD otherwise)
#
# Three Do53 modes, each with its own allowlist, the same for every proxy:
#   allowed  every query is on the allowlist (`*.bench.test`): forwarded
#   denied   no query is (hN.denied.test): refused by the proxy itself
#   mixed    50/50, against 10,000 literal entries (hN.bench.test)
# The floor relay has no allowlist: it forwards every query in every mode
# (knotd refuses the denied names), so only its allowed figures are a floor
# for the same work; the report shows the ratios of the other modes too.
# and the encrypted ones, every query allowed (`*.bench.test`), dnsperf over
# UDP to the proxy as in the others:
#   dot      dnsgate and dnsdist forward over DNS over TLS to TLS_UPSTREAM
#   doh      the same over DNS over HTTPS (HTTP/2, POST /dns-query)
#   doq      dnsgate alone (no peer speaks DoQ) to the DoQ test server
#            (tests/doq_server), which forwards to knotd
# A mode that dnsgate refuses (`dnsgate check`) or that cannot be set up is
# skipped with the reason in the report, not fatal; so is a dnsgate backend
# whose config `dnsgate check` refuses or that does not answer (a dnsgate
# without the `io` key, or with one it does not take; with every backend
# refused, one dnsgate runs without the key), and a floor relay that is not
# built or does not answer.
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
# shellcheck source=bench/lib/tls_upstream.sh
source "$here/lib/tls_upstream.sh"
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
floor_relay=${FLOOR_RELAY-$build_dir/bench/floor_relay}
read -r -a gate_backends <<<"${GATE_BACKENDS-epoll uring}"
alloc_test=${ALLOC_TEST-$build_dir/tests/alloc/dnsgate_alloc_test}
knot_port=${KNOT_PORT:-25500}
gate_port=${GATE_PORT:-25553}
dnsdist_port=${DNSDIST_PORT:-25554}
dnsmasq_port=${DNSMASQ_PORT:-25555}
floor_port=${FLOOR_PORT:-25556}
dot_port=${DOT_PORT:-25853}
doh_port=${DOH_PORT:-25443}
doq_port=${DOQ_PORT:-25854}
upstream_do53_port=${UPSTREAM_DO53_PORT:-25510}
read -r -a encrypted_modes <<<"${ENCRYPTED_MODES-dot doh doq}"
tls_upstream=${TLS_UPSTREAM:-unbound}
latency_inflight_tls=${LATENCY_INFLIGHT_TLS:-1000}
unbound_nodelay=${UNBOUND_NODELAY:-1}
upstream_soak=${UPSTREAM_SOAK:-1}
soak_seconds=${SOAK_SECONDS:-60}
soak_qps=${SOAK_QPS:-5000}
command_line="bench/run.sh $*"
started=$(date -u '+%Y-%m-%d %H:%M UTC')

for n in "$seconds" "$rounds" "$latency_seconds" "$latency_qps" "$latency_inflight_tls"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $n" >&2; exit 2; }
done

case "$tls_upstream" in unbound | dnsdist) ;; *) echo "TLS_UPSTREAM: unbound or dnsdist" >&2; exit 2 ;; esac
for m in "${encrypted_modes[@]+"${encrypted_modes[@]}"}"; do
  case "$m" in dot | doh | doq) ;; *) echo "ENCRYPTED_MODES: dot, doh, doq" >&2; exit 2 ;; esac
done
for b in "${gate_backends[@]+"${gate_backends[@]}"}"; do
  case "$b" in epoll | uring | auto) ;; *) echo "GATE_BACKENDS: epoll, uring, auto" >&2; exit 2 ;; esac
done

bash "$here/lib/install-peers.sh"
tools=(/usr/sbin/knotd /usr/sbin/dnsmasq /usr/bin/dnsdist dnsperf kdig taskset "$bin")
[ ${#encrypted_modes[@]} -gt 0 ] && tools+=(certtool /usr/sbin/unbound /usr/bin/python3)
for tool in "${tools[@]}"; do
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

do53_modes=(allowed denied mixed)
modes=("${do53_modes[@]}" "${encrypted_modes[@]+"${encrypted_modes[@]}"}")
# dnsgate's targets in the Do53 modes: one per I/O backend (dnsgate-epoll,
# dnsgate-uring, ...), or one without the `io` key (dnsgate); the encrypted
# modes run the latter.
declare -A port_of=([knotd]=$knot_port [floor]=$floor_port [dnsgate]=$gate_port
  [dnsdist]=$dnsdist_port [dnsmasq]=$dnsmasq_port [dnsgate-epoll]=$gate_port
  [dnsgate-uring]=${GATE_URING_PORT:-25557} [dnsgate-auto]=${GATE_AUTO_PORT:-25558})
gate_targets=()
for b in "${gate_backends[@]+"${gate_backends[@]}"}"; do gate_targets+=("dnsgate-$b"); done
[ ${#gate_targets[@]} -gt 0 ] || gate_targets=(dnsgate)
floor_target=()
[ -n "$floor_relay" ] && floor_target=(floor)
do53_targets="knotd ${floor_target[*]+"${floor_target[*]}"} ${gate_targets[*]} dnsdist dnsmasq"
declare -A targets_of=(
  [allowed]=$do53_targets [denied]=$do53_targets [mixed]=$do53_targets
  [dot]="dnsgate dnsdist" [doh]="dnsgate dnsdist" [doq]="dnsgate")
# Without these the Do53 figures mean nothing: one that does not answer
# stops the bench. Any other target is skipped with the reason.
baseline_targets=" dnsgate dnsgate-epoll dnsdist dnsmasq "
declare -A query_file=([allowed]=allowed [denied]=denied [mixed]=mixed [dot]=allowed [doh]=allowed
  [doq]=allowed)
# Why a mode or a target was not measured: "mode<TAB>target<TAB>reason" lines,
# printed loudly by the report.
skipped="$work/skipped.tsv"
: >"$skipped"
skip() {  # skip MODE TARGET REASON
  echo "bench: SKIPPED $1 ${2:-(whole mode)}: $3" >&2
  printf '%s\t%s\t%s\n' "$1" "$2" "$(tr '\t\n' '  ' <<<"$3")" >>"$skipped"
}
mode_skipped() { awk -F '\t' -v m="$1" '$1 == m && $2 == "" { f = 1 } END { exit !f }' "$skipped"; }
drop_target() {  # drop_target MODE TARGET REASON: skip it in every round
  skip "$@"
  targets_of[$1]=$(tr ' ' '\n' <<<"${targets_of[$1]}" | grep -vx -- "$2" | tr '\n' ' ')
}
if [ -n "$floor_relay" ] && [ ! -x "$floor_relay" ]; then
  for m in "${do53_modes[@]}"; do
    drop_target "$m" floor "no floor relay at $floor_relay (make build builds it)"
  done
fi

# --- knotd: the upstream, and the ceiling -------------------------------------
"${load_cpu[@]}" /usr/sbin/knotd -c "$work/knot/knot.conf" >/dev/null 2>&1 &
knot_pid=$!
pids+=("$knot_pid")

wait_for_dns "$knot_port" h1.bench.test

# --- the encrypted upstreams: one TLS server for DoT and DoH, the DoQ server --
# On CPU 0 with dnsperf and knotd, as knotd is in the Do53 modes: the proxy
# keeps CPU 1 to itself. Their CPU is not the proxy's; the report shows it.
declare -A upstream_pid=()
has_mode() { case " ${modes[*]} " in *" $1 "*) return 0 ;; esac; return 1; }
if [ ${#encrypted_modes[@]} -gt 0 ]; then
  tls_certs "$work/certs"
fi
ca="$work/certs/ca.pem"
if has_mode dot || has_mode doh; then
  if [ "$tls_upstream" = unbound ]; then
    unbound_prepare "$work/unbound" "$work/certs" "$dot_port" "$doh_port" "$knot_port"
    preload=()
    if [ "$unbound_nodelay" = 1 ]; then
      shim=$(nodelay_shim "$work/shim")
      if [ -n "$shim" ]; then preload=(env "LD_PRELOAD=$shim"); else unbound_nodelay=0; fi
    fi
    "${load_cpu[@]}" "${preload[@]}" /usr/sbin/unbound -d -c "$work/unbound/unbound.conf" \
      >"$work/unbound.out" 2>&1 &
  else
    dnsdist_upstream_prepare "$work/tls-dnsdist" "$work/certs" "$dot_port" "$doh_port" \
      "$upstream_do53_port" "$knot_port"
    "${load_cpu[@]}" /usr/bin/dnsdist --supervised --disable-syslog \
      -C "$work/tls-dnsdist/dnsdist-upstream.conf" >"$work/tls-dnsdist.out" 2>&1 &
  fi
  pids+=("$!")
  upstream_pid[dot]=$!
  upstream_pid[doh]=$!
  for m in dot doh; do
    has_mode "$m" || continue
    port=$dot_port
    [ "$m" = doh ] && port=$doh_port
    "wait_for_$m" "$port" h1.bench.test "$ca" ||
      skip "$m" "" "the $tls_upstream $m server did not answer on 127.0.0.1:$port"
  done
fi
if has_mode doq; then
  doq_bin=$(doq_server_bin "$bin")
  if [ -z "$doq_bin" ]; then
    skip doq "" "no DoQ test server beside $bin (tests/doq_server, target dnsgate_doq_test_server)"
  else
    "${load_cpu[@]}" "$doq_bin" --listen "127.0.0.1:$doq_port" --cert "$work/certs/server.pem" \
      --key "$work/certs/server.key" --upstream "127.0.0.1:$knot_port" \
      >"$work/doq.out" 2>"$work/doq.err" &
    upstream_pid[doq]=$!
    pids+=("$!")
    for _ in $(seq 50); do grep -q '^ready' "$work/doq.out" 2>/dev/null && break; sleep 0.1; done
    grep -q '^ready' "$work/doq.out" ||
      skip doq "" "the DoQ test server did not start: $(tail -n 2 "$work/doq.err" | tr '\n' ' ')"
  fi
fi
for m in "${do53_modes[@]}"; do upstream_pid[$m]=$knot_pid; done

# --- the proxies' configurations, one per mode --------------------------------
gate_config() {  # gate_config MODE TARGET [IO]: DIR/TARGET.yaml, with `io: IO` if given
  local mode=$1 target=$2 io=${3:-} dir="$work/$1"
  {
    echo "cell: bench"
    [ -z "$io" ] || echo "io: $io"
    echo "listen:"
    echo "  udp: 127.0.0.1:${port_of[$target]}"
    echo "dnsAuthority:"
    echo "  hostnameAllowlist:"
    if [ "$mode" = mixed ]; then
      sed 's/^/    - /' "$work/list10k.txt"
    else
      echo '    - "*.bench.test"'
    fi
    echo "  resolvers:"
    case "$mode" in
      dot) gate_resolver dot "$dot_port" "$ca" ;;
      doh) gate_resolver doh "$doh_port" "$ca" ;;
      doq) gate_resolver doq "$doq_port" "$ca" ;;
      *)
        echo "    - protocol: do53-udp"
        echo "      address: 127.0.0.1:$knot_port"
        ;;
    esac
    echo "upstreamTimeoutMs: 2000"
    echo "events:"
    echo "  sink: file"
    echo "  path: $dir/$target-events.jsonl"
  } >"$dir/$target.yaml"
}

write_configs() {  # write_configs MODE
  local mode=$1 dir="$work/$1" t
  mkdir -p "$dir"
  gate_config "$mode" dnsgate

  # dnsdist: no packet cache (none is created), backend forced up (no health
  # checks), no console, web server or carbon (none is configured), no
  # security polling (it would query the system resolver). Queries off the
  # allowlist get REFUSED from dnsdist itself.
  {
    echo 'setSecurityPollSuffix("")'
    echo "setLocal(\"127.0.0.1:$dnsdist_port\")"
    case "$mode" in
      dot) dnsdist_backend dot "$dot_port" "$ca" ;;
      doh) dnsdist_backend doh "$doh_port" "$ca" ;;
      *) echo "newServer({address=\"127.0.0.1:$knot_port\", name=\"knotd\"})" ;;
    esac
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

  # A protocol this dnsgate does not take (yet) skips the mode, loudly.
  if ! "$bin" check --config "$dir/dnsgate.yaml" >"$dir/check.out" 2>&1; then
    if [[ " ${do53_modes[*]} " == *" $mode "* ]]; then
      cat "$dir/check.out" >&2
      exit 1
    fi
    skip "$mode" "" "dnsgate check refused the $mode config: $(tail -n 1 "$dir/check.out")"
  fi

  # One dnsgate per I/O backend: a backend this dnsgate does not take (a
  # build from before the `io` key) skips that target, loudly.
  [[ " ${do53_modes[*]} " == *" $mode "* ]] || return 0
  for t in "${gate_targets[@]}"; do
    [ "$t" = dnsgate ] && continue
    gate_config "$mode" "$t" "${t#dnsgate-}"
    "$bin" check --config "$dir/$t.yaml" >"$dir/check-$t.out" 2>&1 ||
      drop_target "$mode" "$t" "dnsgate check refused io: ${t#dnsgate-}: $(tail -n 1 "$dir/check-$t.out")"
  done
  # Every backend skipped would leave the mode without dnsgate at all: run
  # it once without the `io` key instead.
  local listed=" ${targets_of[$mode]} "
  if [[ "$listed" != *" dnsgate"* ]]; then
    targets_of[$mode]=${listed/ dnsdist / dnsgate dnsdist }
    listed=" $do53_targets "
    [[ "$listed" == *" dnsgate "* ]] || do53_targets=${listed/ dnsdist / dnsgate dnsdist }
  fi
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
cpus_busy() {  # "busy0 total0 busy1 total1": jiffies of CPUs 0 and 1 from /proc/stat
  awk '$1 == "cpu0" || $1 == "cpu1" { t = 0; for (i = 2; i <= NF; i++) t += $i;
    printf "%d %d ", t - $5 - $6, t } END { print "" }' /proc/stat
}
busy_pct() {  # busy_pct "BEFORE" "AFTER" N: CPU N's busy share in between, in %
  awk -v b="$1" -v a="$2" -v n="$3" 'BEGIN { split(b, x, " "); split(a, y, " ");
    i = 2 * n + 1; d = y[i + 1] - x[i + 1]; printf "%.0f", (d > 0 ? 100 * (y[i] - x[i]) / d : 0) }'
}
upstream_conns() {  # established TCP connections of PID to 127.0.0.1:PORT
  ss -Htnp state established "( dport = :$2 )" 2>/dev/null | grep -c "pid=$1," || true
}
ticks_per_second=$(getconf CLK_TCK)

results="$work/throughput.tsv"
printf 'round\tmode\ttarget\tqps\tcompleted\tlost\tcpu_ticks\twriter_ticks\trcodes\tupstream_ticks\twall_ms\tcpu0_busy\tcpu1_busy\tupstream_conns\n' >"$results"
latency_cpu="$work/latency_cpu.tsv"
printf 'round\tmode\ttarget\tcpu_ticks\tanswers\twall_ms\tupstream_ticks\n' >"$latency_cpu"
memory="$work/memory.tsv"
printf 'round\tmode\ttarget\trss_kib\thwm_kib\n' >"$memory"
gate_runs="$work/dnsgate.tsv"
printf 'round\tmode\ttarget\treceived\tevents\teventsDropped\tstats\n' >"$gate_runs"

declare -A pid_of=([knotd]=$knot_pid)
declare -A running=()  # target -> 1 while its proxy answers, this mode and round

start_target() {  # start_target MODE TARGET: on the proxy's CPU; sets pid_of[TARGET]
  local dir="$work/$1" t=$2
  case "$t" in
    dnsgate*)
      : >"$dir/$t-events.jsonl"
      "${proxy_cpu[@]}" "$bin" run --config "$dir/$t.yaml" 2>"$dir/$t.err" &
      ;;
    floor)
      "${proxy_cpu[@]}" "$floor_relay" --listen "127.0.0.1:$floor_port" \
        --upstream "127.0.0.1:$knot_port" 2>"$dir/floor.err" &
      ;;
    dnsdist)
      "${proxy_cpu[@]}" /usr/bin/dnsdist --supervised --disable-syslog -C "$dir/dnsdist.conf" \
        >"$dir/dnsdist.log" 2>&1 &
      ;;
    dnsmasq)
      "${proxy_cpu[@]}" /usr/sbin/dnsmasq -k --conf-file="$dir/dnsmasq.conf" >/dev/null 2>&1 &
      ;;
  esac
  pid_of[$t]=$!
  pids+=("$!")
}

start_proxies() {  # start_proxies MODE ROUND
  local mode=$1 dir="$work/$1" t
  running=()
  for t in ${targets_of[$mode]}; do
    if [ "$t" = knotd ]; then running[knotd]=1; else start_target "$mode" "$t"; fi
  done
  for t in ${targets_of[$mode]}; do
    [ "$t" = knotd ] && continue
    if wait_for_dns "${port_of[$t]}" h1.bench.test; then
      running[$t]=1
    elif [[ " ${do53_modes[*]} " == *" $mode "* && "$baseline_targets" == *" $t "* ]]; then
      exit 1  # the Do53 modes are the bench's baseline: no figures without them
    else
      local why
      why=$(grep -v '^{' "$dir/$t".{err,log} 2>/dev/null | tail -n 2 | tr '\n' ' ' || true)
      skip "$mode" "$t" "round $2: $t did not answer over $mode within 10 s: $why"
    fi
  done
}

stop_proxies() {  # stop_proxies ROUND MODE
  local round=$1 mode=$2 dir="$work/$2" t
  for t in ${targets_of[$mode]}; do
    [ "$t" = knotd ] && continue
    kill -0 "${pid_of[$t]}" 2>/dev/null || continue
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$t" "$(vm_kib "${pid_of[$t]}" VmRSS)" \
      "$(vm_kib "${pid_of[$t]}" VmHWM)" >>"$memory"
  done
  for t in ${targets_of[$mode]}; do [ "$t" = knotd ] || stop_pid "${pid_of[$t]}"; done
  local stats received dropped events
  for t in ${targets_of[$mode]}; do
    [[ "$t" == dnsgate* ]] || continue
    stats=$(grep '^{' "$dir/$t.err" | tail -n 1 || true)
    received=$(sed -n 's/.*"received":\([0-9]*\).*/\1/p' <<<"$stats")
    dropped=$(sed -n 's/.*"eventsDropped":\([0-9]*\).*/\1/p' <<<"$stats")
    events=$(wc -l <"$dir/$t-events.jsonl")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$t" "${received:-?}" "$events" \
      "${dropped:-?}" "$stats" >>"$gate_runs"
    cp "$dir/$t.err" "$dir/$t-$round.err"
    rm -f "$dir/$t-events.jsonl"
  done
}

now_ms() { date +%s%3N; }

throughput_run() {  # throughput_run ROUND MODE TARGET
  local round=$1 mode=$2 target=$3 out="$work/$2/tp-$3-$1.out" before after
  local writer_before=0 writer_after=0 up_before up_after t0 t1 busy_before busy_after
  local file="$work/${query_file[$mode]}.txt" up=${upstream_pid[$mode]} conns=""
  # One pass over the query file first: not measured.
  "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "${port_of[$target]}" -d "$file" -n 1 \
    -c 10 -q 100 -t 2 >/dev/null 2>&1 || true
  before=$(cpu_ticks "${pid_of[$target]}")
  # dnsgate's event writer thread, to tell its share from the DNS loop's.
  [[ "$target" == dnsgate* ]] && writer_before=$(thread_ticks "${pid_of[$target]}" dnsgate-events)
  up_before=$(cpu_ticks "$up")
  busy_before=$(cpus_busy)
  t0=$(now_ms)
  "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "${port_of[$target]}" -d "$file" \
    -l "$seconds" -c 10 -q 100 -t 2 >"$out" 2>&1 || true
  t1=$(now_ms)
  after=$(cpu_ticks "${pid_of[$target]}")
  [[ "$target" == dnsgate* ]] && writer_after=$(thread_ticks "${pid_of[$target]}" dnsgate-events)
  up_after=$(cpu_ticks "$up")
  busy_after=$(cpus_busy)
  case "$mode" in
    dot) conns=$(upstream_conns "${pid_of[$target]}" "$dot_port") ;;
    doh) conns=$(upstream_conns "${pid_of[$target]}" "$doh_port") ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$target" \
    "$(awk '/Queries per second:/ { print $4 }' "$out")" \
    "$(awk '/Queries completed:/ { print $3 }' "$out")" \
    "$(awk '/Queries lost:/ { print $3 }' "$out")" \
    "$((after - before))" "$((writer_after - writer_before))" \
    "$(sed -n 's/^ *Response codes: *//p' "$out")" \
    "$((up_after - up_before))" "$((t1 - t0))" \
    "$(busy_pct "$busy_before" "$busy_after" 0)" "$(busy_pct "$busy_before" "$busy_after" 1)" \
    "$conns" >>"$results"
}

latency_run() {  # latency_run ROUND MODE TARGET
  local round=$1 mode=$2 target=$3 inflight=100 before after up_before up_after t0 t1
  local lat="$work/$mode/lat-$target-$round.txt" up=${upstream_pid[$mode]}
  # The encrypted modes allow more queries in flight: dnsdist's DoH needs
  # about 45 ms a query (see docs/performance.md), 90 in flight at 2,000/s.
  [[ " ${do53_modes[*]} " == *" $mode "* ]] || inflight=$latency_inflight_tls
  before=$(cpu_ticks "${pid_of[$target]}")
  up_before=$(cpu_ticks "$up")
  t0=$(now_ms)
  "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "${port_of[$target]}" -d "$work/${query_file[$mode]}.txt" \
    -l "$latency_seconds" -Q "$latency_qps" -c 1 -q "$inflight" -t 2 -v 2>&1 |
    awk '/^> / { print $2, $NF }' >"$lat" || true
  t1=$(now_ms)
  after=$(cpu_ticks "${pid_of[$target]}")
  up_after=$(cpu_ticks "$up")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$target" "$((after - before))" \
    "$(wc -l <"$lat")" "$((t1 - t0))" "$((up_after - up_before))" >>"$latency_cpu"
}

for mode in "${modes[@]}"; do write_configs "$mode"; done

for round in $(seq "$rounds"); do
  for mode in "${modes[@]}"; do
    mode_skipped "$mode" && continue
    start_proxies "$mode" "$round"
    # Rotate the order every round so no target always runs first.
    read -r -a mode_targets <<<"${targets_of[$mode]}"
    n=${#mode_targets[@]}
    order=("${mode_targets[@]:$(((round - 1) % n))}" "${mode_targets[@]:0:$(((round - 1) % n))}")
    for target in "${order[@]}"; do
      [ -n "${running[$target]:-}" ] || continue
      echo "bench: round $round/$rounds, $mode, $target" >&2
      throughput_run "$round" "$mode" "$target"
      latency_run "$round" "$mode" "$target"
    done
    stop_proxies "$round" "$mode"
  done
done

# --- connection reuse and memory per upstream protocol ----------------------
soak_tsv=""
if [ "$upstream_soak" = 1 ]; then
  echo "bench: bench/upstream_soak.sh, ${soak_seconds} s per protocol at ${soak_qps} queries/s" >&2
  soak_tsv="$work/soak.tsv"
  SOAK_OUT="$soak_tsv" TLS_UPSTREAM="$tls_upstream" BENCH_PIN="$pin" \
    UNBOUND_NODELAY="$unbound_nodelay" \
    bash "$here/upstream_soak.sh" "$bin" "$soak_seconds" "$soak_qps" >"$work/soak.out" 2>&1 || true
  cat "$work/soak.out" >&2
  [ -s "$soak_tsv" ] || soak_tsv=""
fi

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
  --command "$command_line" --dnsgate "$bin" --targets "$do53_targets" \
  --micro "$micro_json" --alloc "$alloc_line" \
  --encrypted-modes "${encrypted_modes[*]+"${encrypted_modes[*]}"}" --tls-upstream "$tls_upstream" \
  --latency-inflight-tls "$latency_inflight_tls" --soak "$soak_tsv" \
  --unbound-nodelay "$unbound_nodelay" \
  --doc "$repo/docs/performance.md" --write-doc "$write_doc"
