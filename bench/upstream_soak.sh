#!/usr/bin/env bash
# Connection reuse and flat memory per upstream protocol (issue 9): for each
# protocol, a fresh dnsgate with one resolver of that protocol takes a
# steady load of allowed names (dnsperf at a fixed rate) for SECONDS; its
# RSS is sampled from /proc/PID/status every second, and at the end its
# stats line (printed at SIGTERM) says how many connections it opened.
#
#   bench/upstream_soak.sh [DNSGATE_BIN] [SECONDS] [QPS]   (defaults: build/dnsgate, 60, 5000)
#
#   SOAK_PROTOCOLS="do53-udp dot doh doq"   the protocols, in this order
#   TLS_UPSTREAM=unbound    the DoT/DoH server: unbound (1.17, cache on) or
#                           dnsdist (1.7, no cache); both in front of knotd
#   UNBOUND_NODELAY=1       preload a TCP_NODELAY shim into unbound
#                           (bench/lib/tls_upstream.sh says why); 0: not
#   DOQ_SERVER=             the DoQ test server (default: the one built
#                           beside DNSGATE_BIN, tests/doq_server)
#   BENCH_PIN=1             dnsperf, knotd and the upstreams on CPU 0,
#                           dnsgate on CPU 1 (as bench/run.sh); 0: none
#   SOAK_OUT=FILE           also write one TSV row per protocol (bench/run.sh
#                           reads it into docs/performance.md)
#   SOAK_KEEP=0             1: keep the work dir
#   SOAK_PORT_BASE=25700    ports BASE (knotd), +53 (dnsgate), +63 (DoT),
#                           +64 (DoH), +65 (DoQ, UDP), +66 (dnsdist's Do53)
#
# Verdicts, per protocol: no query lost; connections opened ≤ 1 per
# 10,000 queries; RSS flat: from the sample at 10 s (buffers and tables
# touched by then) to the end it grows by at most 512 KiB (at 5,000 qps
# over 50 s, under 2 octets per query). A protocol dnsgate refuses (`dnsgate
# check`) or that does not answer is SKIPPED, loudly, with the reason; the
# others still run. Exit status 1 when a measured protocol fails a verdict.
#
# Loopback only. Every process started here is stopped by its PID on exit;
# every loop is bounded in count.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=bench/lib/tls_upstream.sh
source "$here/lib/tls_upstream.sh"
repo=$(cd "$here/.." && pwd)
bin=$(readlink -f "${1:-$repo/build/dnsgate}")
seconds=${2:-60}
qps=${3:-5000}
read -r -a protocols <<<"${SOAK_PROTOCOLS:-do53-udp dot doh doq}"
tls_upstream=${TLS_UPSTREAM:-unbound}
pin=${BENCH_PIN:-1}
base=${SOAK_PORT_BASE:-25700}
knot_port=$base
gate_port=$((base + 53))
dot_port=$((base + 63))
doh_port=$((base + 64))
doq_port=$((base + 65))
upstream_do53_port=$((base + 66))
flat_kib=512

for n in "$seconds" "$qps" "$base"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "not a positive integer: $n" >&2; exit 2; }
done
[ "$seconds" -ge 15 ] || { echo "SECONDS must be at least 15 (RSS is compared from 10 s on)" >&2; exit 2; }
case "$tls_upstream" in unbound | dnsdist) ;; *) echo "TLS_UPSTREAM: unbound or dnsdist" >&2; exit 2 ;; esac
for p in "${protocols[@]}"; do
  case "$p" in do53-udp | do53-tcp | dot | doh | doq) ;; *) echo "unknown protocol: $p" >&2; exit 2 ;; esac
done
need=(/usr/sbin/knotd dnsperf kdig taskset "$bin")
case " ${protocols[*]} " in *" dot "* | *" doh "* | *" doq "*) need+=(certtool) ;; esac
case " ${protocols[*]} " in
  *" dot "* | *" doh "*)
    if [ "$tls_upstream" = unbound ]; then need+=(/usr/sbin/unbound); else need+=(/usr/bin/dnsdist); fi ;;
esac
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (run 'make build' and bench/lib/install-peers.sh)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/dnsgate-upstream-soak.XXXXXX)
pids=()
cleanup() {
  local list=("${pids[@]+"${pids[@]}"}") i
  for ((i = ${#list[@]} - 1; i >= 0; i--)); do terminate_pid "${list[i]}"; done
  if [ "${SOAK_KEEP:-0}" = 1 ]; then echo "upstream soak: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

forget_pid() {
  local pid=$1 i kept=()
  for i in "${pids[@]}"; do [ "$i" = "$pid" ] || kept+=("$i"); done
  pids=("${kept[@]+"${kept[@]}"}")
}

if [ "$pin" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  load_cpu=(taskset -c 0)
  proxy_cpu=(taskset -c 1)
else
  load_cpu=()
  proxy_cpu=()
fi

# Why a protocol was not measured, one line each ("protocol<TAB>reason").
declare -A skipped=()

knot_prepare "$work/knot" "$knot_port" bench.test h 10000
awk 'BEGIN { for (i = 0; i < 10000; i++) printf "h%d.bench.test A\n", i }' >"$work/queries.txt"
"${load_cpu[@]}" /usr/sbin/knotd -c "$work/knot/knot.conf" >/dev/null 2>&1 &
pids+=("$!")
wait_for_dns "$knot_port" h1.bench.test

needs_tls=0
for p in "${protocols[@]}"; do case "$p" in dot | doh | doq) needs_tls=1 ;; esac; done
if [ "$needs_tls" = 1 ]; then tls_certs "$work/certs"; fi
ca="$work/certs/ca.pem"

for p in "${protocols[@]}"; do
  case "$p" in dot | doh) ;; *) continue ;; esac
  if [ "$tls_upstream" = unbound ]; then
    unbound_prepare "$work/unbound" "$work/certs" "$dot_port" "$doh_port" "$knot_port"
    preload=()
    if [ "${UNBOUND_NODELAY:-1}" = 1 ]; then
      shim=$(nodelay_shim "$work/shim")
      [ -n "$shim" ] && preload=(env "LD_PRELOAD=$shim")
    fi
    "${load_cpu[@]}" "${preload[@]}" /usr/sbin/unbound -d -c "$work/unbound/unbound.conf" \
      >"$work/unbound.out" 2>&1 &
  else
    dnsdist_upstream_prepare "$work/dnsdist" "$work/certs" "$dot_port" "$doh_port" \
      "$upstream_do53_port" "$knot_port"
    "${load_cpu[@]}" /usr/bin/dnsdist --supervised --disable-syslog \
      -C "$work/dnsdist/dnsdist-upstream.conf" >"$work/dnsdist.out" 2>&1 &
  fi
  pids+=("$!")
  if ! wait_for_dot "$dot_port" h1.bench.test "$ca" || ! wait_for_doh "$doh_port" h1.bench.test "$ca"; then
    skipped[dot]="the $tls_upstream DoT/DoH upstream did not answer"
    skipped[doh]=${skipped[dot]}
  fi
  break
done

for p in "${protocols[@]}"; do
  [ "$p" = doq ] || continue
  doq_bin=$(doq_server_bin "$bin")
  if [ -z "$doq_bin" ]; then
    skipped[doq]="no DoQ test server (build it: ninja -C $(dirname "$bin"), target dnsgate_doq_test_server)"
    break
  fi
  "${load_cpu[@]}" "$doq_bin" --listen "127.0.0.1:$doq_port" --cert "$work/certs/server.pem" \
    --key "$work/certs/server.key" --upstream "127.0.0.1:$knot_port" \
    >"$work/doq.out" 2>"$work/doq.err" &
  pids+=("$!")
  for _ in $(seq 50); do grep -q '^ready' "$work/doq.out" 2>/dev/null && break; sleep 0.1; done
  grep -q '^ready' "$work/doq.out" ||
    skipped[doq]="the DoQ test server did not start: $(tail -n 2 "$work/doq.err" | tr '\n' ' ')"
done

port_for() {
  case "$1" in do53-*) echo "$knot_port" ;; dot) echo "$dot_port" ;; doh) echo "$doh_port" ;; doq) echo "$doq_port" ;; esac
}
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
json_field() {  # json_field JSON EXPR: a value from the stats line, "?" when absent
  /usr/bin/python3 -c 'import json, sys
try:
    d = json.loads(sys.argv[1]); print(eval(sys.argv[2], {"d": d}))
except Exception:
    print("?")' "$1" "$2"
}

out_rows="$work/rows.tsv"
printf 'protocol\tstatus\tseconds\tqps_target\tsent\tcompleted\tlost\trcodes\tqueries\tconnects\thandshakes\tresumed\tfailures\tcpu_us\trss_start\trss_10s\trss_end\trss_max\thwm\tsamples\treason\n' >"$out_rows"

skip_row() {  # skip_row PROTOCOL REASON
  echo "upstream soak: SKIPPED $1: $2" >&2
  printf '%s\tskipped\t%s\t%s\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t%s\n' "$1" "$seconds" "$qps" \
    "$(tr '\t\n' '  ' <<<"$2")" >>"$out_rows"
}

for p in "${protocols[@]}"; do
  if [ -n "${skipped[$p]:-}" ]; then skip_row "$p" "${skipped[$p]}"; continue; fi
  dir="$work/$p"
  mkdir -p "$dir"
  {
    echo "cell: soak"
    echo "listen:"
    echo "  udp: 127.0.0.1:$gate_port"
    echo "dnsAuthority:"
    echo "  hostnameAllowlist:"
    echo '    - "*.bench.test"'
    echo "  resolvers:"
    gate_resolver "$p" "$(port_for "$p")" "$ca"
    echo "upstreamTimeoutMs: 2000"
    echo "events:"
    echo "  sink: file"
    echo "  path: $dir/events.jsonl"
  } >"$dir/dnsgate.yaml"
  if ! "$bin" check --config "$dir/dnsgate.yaml" >"$dir/check.out" 2>&1; then
    skip_row "$p" "dnsgate check refused the config: $(tail -n 1 "$dir/check.out")"
    continue
  fi
  "${proxy_cpu[@]}" "$bin" run --config "$dir/dnsgate.yaml" 2>"$dir/dnsgate.err" &
  gate=$!
  pids+=("$gate")
  if ! wait_for_dns "$gate_port" h1.bench.test 2>/dev/null; then
    terminate_pid "$gate"
    forget_pid "$gate"
    skip_row "$p" "dnsgate did not answer over $p: $(grep -v '^{' "$dir/dnsgate.err" | tail -n 2 | tr '\n' ' ')"
    continue
  fi
  echo "upstream soak: $p, ${seconds} s at $qps queries/s" >&2
  cpu_before=$(ticks "$gate")
  "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "$gate_port" -d "$work/queries.txt" -l "$seconds" \
    -Q "$qps" -c 10 -q 1000 -t 5 >"$dir/dnsperf.out" 2>&1 &
  perf_pid=$!
  pids+=("$perf_pid")
  : >"$dir/rss.txt"
  start=$SECONDS
  for _ in $(seq $((seconds + 15))); do
    kill -0 "$perf_pid" 2>/dev/null || break
    echo "$((SECONDS - start)) $(kib "$gate" VmRSS)" >>"$dir/rss.txt"
    sleep 1
  done
  wait "$perf_pid" 2>/dev/null || true
  forget_pid "$perf_pid"
  cpu_after=$(ticks "$gate")
  hwm=$(kib "$gate" VmHWM)
  terminate_pid "$gate"
  forget_pid "$gate"
  stats=$(grep '^{' "$dir/dnsgate.err" | tail -n 1 || true)
  completed=$(awk '/Queries completed:/ { print $3 }' "$dir/dnsperf.out")
  cpu_us=$(awk -v t=$((cpu_after - cpu_before)) -v hz="$(getconf CLK_TCK)" -v n="${completed:-0}" \
    'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "?" }')
  read -r rss_start rss_10s rss_end rss_max < <(awk '
    NR == 1 { first = $2 } $1 >= 10 && at10 == "" { at10 = $2 }
    { last = $2; if ($2 > max) max = $2 }
    END { print first + 0, (at10 == "" ? last : at10) + 0, last + 0, max + 0 }' "$dir/rss.txt")
  printf '%s\tok\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n' \
    "$p" "$seconds" "$qps" \
    "$(awk '/Queries sent:/ { print $3 }' "$dir/dnsperf.out")" "${completed:-?}" \
    "$(awk '/Queries lost:/ { print $3 }' "$dir/dnsperf.out")" \
    "$(sed -n 's/^ *Response codes: *//p' "$dir/dnsperf.out" | sed 's/ *([0-9.]*%)//g')" \
    "$(json_field "$stats" 'd["resolvers"][0]["queries"]')" \
    "$(json_field "$stats" 'd["resolvers"][0]["connects"]')" \
    "$(json_field "$stats" 'd["resolvers"][0]["handshakes"]')" \
    "$(json_field "$stats" 'd["resolvers"][0]["resumed"]')" \
    "$(json_field "$stats" 'd["resolvers"][0]["failures"]')" \
    "$cpu_us" "$rss_start" "$rss_10s" "$rss_end" "$rss_max" "${hwm:-?}" \
    "$(awk '{ printf "%s%s", (NR > 1 ? " " : ""), $2 }' "$dir/rss.txt")" >>"$out_rows"
  rm -f "$dir/events.jsonl"
done

[ -n "${SOAK_OUT:-}" ] && cp "$out_rows" "$SOAK_OUT"

# --- the summary and the verdicts -------------------------------------------
/usr/bin/python3 - "$out_rows" "$flat_kib" "$tls_upstream" <<'PY'
import csv, sys

rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8"), delimiter="\t"))
flat_kib, upstream = int(sys.argv[2]), sys.argv[3]
failed = False
print(f"upstream soak: DoT/DoH served by {upstream}; DoQ by the DoQ test server")
print(f"{'protocol':9} {'completed':>9} {'lost':>5} {'connects':>8} {'q/connect':>10} "
      f"{'cpu us/q':>8} {'RSS KiB start / 10 s / end / max':>34}  verdict")
for r in rows:
    if r["status"] != "ok":
        print(f"{r['protocol']:9} SKIPPED: {r['reason']}")
        continue
    problems = []
    try:
        queries, connects = int(r["queries"]), int(r["connects"])
    except ValueError:
        queries, connects = 0, -1
    if r["lost"] != "0":
        problems.append(f"{r['lost']} lost")
    if connects < 0:
        problems.append("no stats line")
    elif connects * 10000 > max(queries, 1):
        problems.append(f"{connects} connects for {queries} queries")
    growth = int(r["rss_end"]) - int(r["rss_10s"])
    if growth > flat_kib:
        problems.append(f"RSS grew {growth} KiB after 10 s")
    per = f"{queries / connects:,.0f}" if connects > 0 else "—"
    rss = f"{r['rss_start']} / {r['rss_10s']} / {r['rss_end']} / {r['rss_max']}"
    verdict = "ok" if not problems else "FAIL: " + "; ".join(problems)
    failed |= bool(problems)
    print(f"{r['protocol']:9} {r['completed']:>9} {r['lost']:>5} {r['connects']:>8} {per:>10} "
          f"{r['cpu_us']:>8} {rss:>34}  {verdict}")
sys.exit(1 if failed else 0)
PY
