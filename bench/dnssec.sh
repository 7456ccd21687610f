#!/usr/bin/env bash
# The cost of DNSSEC validation (DESIGN §9): the `dnssec` mode of `make
# bench`. knotd signs a zone of 10,000 names itself (ECDSA P-256, NSEC);
# dnsgate forwards the same queries to it with `dnssec.mode: off` (the plain
# forward) and with `dnssec.mode: validate` (the zone's DS as the trust
# anchor, the key cache warm after one unmeasured pass), alternating, in
# rounds, pinned as bench/run.sh pins (dnsperf and knotd on CPU 0, dnsgate
# on CPU 1). Then the memory run: 100,000 distinct names of a signed
# wildcard, each queried once, with VmRSS and VmHWM before and after.
#
#   bench/dnssec.sh [DNSGATE_BIN] [SECONDS_PER_RUN] [ROUNDS]
#
# Defaults: build/dnsgate, 10 s, 3 rounds (about 2 minutes). Writes its
# table to stdout and, unless BENCH_WRITE_DOC=0, into docs/performance.md
# between the "dnssec bench" markers. Loopback only; every process started
# here is stopped by its PID on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "$here/lib/common.sh"

bin=$(realpath "${1:-$repo/build/dnsgate}")
seconds=${2:-10}
rounds=${3:-3}
knot_port=${KNOT_PORT:-25600}
gate_port=${GATE_PORT:-25653}
write_doc=${BENCH_WRITE_DOC:-1}
hosts=10000
distinct=100000

for tool in knotd keymgr kdig dnsperf taskset; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
    { echo "bench/dnssec.sh: $tool missing: run scripts/install-deps.sh" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "bench/dnssec.sh: no dnsgate at $bin" >&2; exit 1; }

work=$(mktemp -d /tmp/dnsgate-dnssec-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]+"${pids[@]}"}"; do terminate_pid "$pid"; done
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

load_cpu=(taskset -c 0)
proxy_cpu=(taskset -c 1)
[ "$(nproc)" -ge 2 ] || { load_cpu=(); proxy_cpu=(); }

# --- knotd signing signed.test ---------------------------------------------
mkdir -p "$work/knot/run" "$work/knot/db" "$work/knot/zones"
{
  echo '$ORIGIN signed.test.'
  echo '$TTL 3600'
  echo '@ SOA ns1 hostmaster 1 7200 3600 1209600 3600'
  echo '@ NS ns1'
  echo 'ns1 A 192.0.2.1'
  echo '*.wild A 192.0.2.2'
  awk -v n="$hosts" 'BEGIN { for (i = 0; i < n; i++) printf "h%d A 192.0.2.%d\n", i, i % 250 + 1 }'
} >"$work/knot/zones/signed.test.zone"
cat >"$work/knot/knot.conf" <<CONF
server:
    rundir: "$work/knot/run"
    listen: 127.0.0.1@$knot_port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: "$work/knot/knotd.log"
    any: warning
database:
    storage: "$work/knot/db"
policy:
  - id: bench
    algorithm: ecdsap256sha256
    manual: on
template:
  - id: default
    storage: "$work/knot/zones"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: signed.test.
    dnssec-signing: on
    dnssec-policy: bench
CONF
keymgr -c "$work/knot/knot.conf" signed.test. generate algorithm=ecdsap256sha256 ksk=yes zsk=yes \
  >/dev/null
anchor=$(keymgr -c "$work/knot/knot.conf" signed.test. ds | awk '$2 == "DS" && $4 == 13 && $5 == 2 { $1 = $1; print; exit }')
[ -n "$anchor" ] || { echo "bench/dnssec.sh: keymgr gave no DS" >&2; exit 1; }
"${load_cpu[@]}" knotd -c "$work/knot/knot.conf" >/dev/null 2>&1 &
knot_pid=$!
pids+=("$knot_pid")
for _ in $(seq 150); do
  kdig @127.0.0.1 -p "$knot_port" +dnssec +time=1 +retry=0 h1.signed.test A 2>/dev/null |
    grep -q RRSIG && break
  sleep 0.1
done
kdig @127.0.0.1 -p "$knot_port" +dnssec h1.signed.test A | grep -q RRSIG ||
  { echo "bench/dnssec.sh: knotd did not sign signed.test" >&2; exit 1; }

awk -v n="$hosts" 'BEGIN { for (i = 0; i < n; i++) printf "h%d.signed.test A\n", i }' >"$work/names.txt"
awk -v n="$distinct" 'BEGIN { for (i = 0; i < n; i++) printf "n%d.wild.signed.test A\n", i }' \
  >"$work/distinct.txt"

write_config() {  # write_config MODE
  {
    echo "cell: bench-dnssec"
    echo "listen:"
    echo "  udp: 127.0.0.1:$gate_port"
    echo "dnsAuthority:"
    echo "  hostnameAllowlist:"
    echo '    - "*.signed.test"'
    echo "  resolvers:"
    echo "    - protocol: do53-udp"
    echo "      address: 127.0.0.1:$knot_port"
    echo "upstreamTimeoutMs: 2000"
    echo "events:"
    echo "  sink: file"
    echo "  path: $work/$1.jsonl"
    if [ "$1" = validate ]; then
      echo "dnssec:"
      echo "  mode: validate"
      echo "  trustAnchors:"
      echo "    - \"$anchor\""
    fi
  } >"$work/$1.yaml"
  "$bin" check --config "$work/$1.yaml" >/dev/null
}
write_config off
write_config validate

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
vm_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

gate_pid=""
start_gate() {  # start_gate MODE
  "${proxy_cpu[@]}" "$bin" run --config "$work/$1.yaml" 2>"$work/$1.stderr" &
  gate_pid=$!
  pids+=("$gate_pid")
  wait_for_dns "$gate_port" h1.signed.test
}
stop_gate() {
  terminate_pid "$gate_pid"
  gate_pid=""
}

results="$work/results.tsv"
printf 'round\tmode\tqps\tcompleted\tcpu_ticks\trcodes\n' >"$results"
hz=$(getconf CLK_TCK)
for round in $(seq "$rounds"); do
  order=(off validate)
  [ $((round % 2)) = 0 ] && order=(validate off)
  for mode in "${order[@]}"; do
    start_gate "$mode"
    # One pass first, not measured: the key cache is warm after it.
    "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "$gate_port" -d "$work/names.txt" -n 1 -c 10 -q 100 \
      -t 2 >/dev/null 2>&1 || true
    before=$(cpu_ticks "$gate_pid")
    "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "$gate_port" -d "$work/names.txt" -l "$seconds" \
      -c 10 -q 100 -t 2 >"$work/$mode-$round.out" 2>&1 || true
    after=$(cpu_ticks "$gate_pid")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" \
      "$(awk '/Queries per second:/ { print $4 }' "$work/$mode-$round.out")" \
      "$(awk '/Queries completed:/ { print $3 }' "$work/$mode-$round.out")" \
      "$((after - before))" "$(sed -n 's/^ *Response codes: *//p' "$work/$mode-$round.out")" \
      >>"$results"
    stop_gate
  done
done

# --- cold start: the first answer of a fresh validator ------------------------
# Five rounds, each a fresh dnsgate: the first query (the DNSKEY of the
# anchor's zone fetched first: one more round trip to knotd), then the same
# name again (warm), and knotd asked directly for the round trip itself.
first_answer() {  # first_answer MODE: "cold warm direct" in µs, median of 5 fresh starts
  local times=() mode=$1
  for _ in 1 2 3 4 5; do
  "${proxy_cpu[@]}" "$bin" run --config "$work/$mode.yaml" 2>>"$work/cold.stderr" &
  gate_pid=$!
  pids+=("$gate_pid")
  # Ready when it refuses a name off the allowlist: no chain fetched yet.
  for _ in $(seq 100); do
    kdig @127.0.0.1 -p "$gate_port" +time=1 +retry=0 ready.invalid A 2>/dev/null | grep -q REFUSED &&
      break
    sleep 0.05
  done
  times+=("$(/usr/bin/python3 - "$gate_port" "$knot_port" <<'PY'
import socket, sys, time
import dns.message
def ask(port, name):
    q = dns.message.make_query(name, "A", want_dnssec=False).to_wire()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    t = time.perf_counter()
    s.sendto(q, ("127.0.0.1", port))
    s.recv(4096)
    return (time.perf_counter() - t) * 1e6
gate, knot = int(sys.argv[1]), int(sys.argv[2])
cold = ask(gate, "h7.signed.test.")
warm = min(ask(gate, "h7.signed.test.") for _ in range(5))
direct = min(ask(knot, "h7.signed.test.") for _ in range(5))
print(f"{cold:.0f} {warm:.0f} {direct:.0f}")
PY
)")
  stop_gate
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '
  { c[NR] = $1; w[NR] = $2; d[NR] = $3 }
  END { m = int((NR + 1) / 2); printf "first %d µs, then %d µs, knotd direct %d µs", c[m], w[m], d[m] }'
}
cold_summary="validate: $(first_answer validate); off: $(first_answer off) (medians of 5 fresh starts each)"

# --- memory: 100,000 distinct signed names, each once, both modes ------------
memory_run() {  # memory_run MODE: "done rss_before rss_after hwm"
  start_gate "$1"
  local before after hwm
  before=$(vm_kib "$gate_pid" VmRSS)
  "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "$gate_port" -d "$work/distinct.txt" -n 1 -c 10 -q 100 \
    -t 2 >"$work/distinct-$1.out" 2>&1 || true
  after=$(vm_kib "$gate_pid" VmRSS)
  hwm=$(vm_kib "$gate_pid" VmHWM)
  stop_gate
  echo "$(awk '/Queries completed:/ { print $3 }' "$work/distinct-$1.out") $before $after $hwm"
}
read -r distinct_done rss_before rss_after hwm_after <<<"$(memory_run validate)"
read -r off_done off_before off_after off_hwm <<<"$(memory_run off)"
stats=$(grep -o '{"received".*' "$work/validate.stderr" | tail -n 1 || true)
key_cache=$(sed -n 's/.*"dnssecKeyCache":\([0-9]*\).*/\1/p' <<<"$stats")

table=$(awk -F '\t' -v hz="$hz" '
  NR > 1 { qps[$2] += $3; done[$2] += $4; ticks[$2] += $5; n[$2]++ }
  END {
    for (m in n) us[m] = done[m] > 0 ? ticks[m] * 1e6 / hz / done[m] : 0
    printf "| mode | qps (mean) | CPU per query | ratio to off |\n|---|---|---|---|\n"
    split("off validate", order, " ")
    for (i = 1; i <= 2; i++) {
      m = order[i]
      printf "| %s | %.0f | %.1f µs | %.2f× |\n", m, qps[m] / n[m], us[m], (us["off"] > 0 ? us[m] / us["off"] : 0)
    }
  }' "$results")
report="$table

First answer of a fresh dnsgate (validate: the anchor is the zone's own DS, so one DNSKEY fetch and two verifications first): $cold_summary.

Memory, validate, $distinct_done of $distinct distinct names of a signed wildcard queried once each:
VmRSS $rss_before KiB before, $rss_after KiB after (VmHWM $hwm_after KiB); key cache entries at exit: ${key_cache:-?}.
The same with validation off ($off_done answered): VmRSS $off_before KiB before, $off_after KiB after (VmHWM $off_hwm KiB)."
echo "$report"
echo "bench/dnssec.sh: raw results in $results" >&2

if [ "$write_doc" = 1 ]; then
  doc="$repo/docs/performance.md"
  begin='<!-- dnssec bench: begin -->'
  end='<!-- dnssec bench: end -->'
  body="$begin
Measured by \`bench/dnssec.sh $seconds s × $rounds rounds\` on $(date -u +%Y-%m-%d), $(nproc) CPUs, commit $(git -C "$repo" rev-parse --short HEAD):

$report
$end"
  if grep -qF "$begin" "$doc"; then
    BODY="$body" BEGIN_MARK="$begin" END_MARK="$end" /usr/bin/python3 - "$doc" <<'PY'
import os, sys
path = sys.argv[1]
text = open(path).read()
b, e = os.environ["BEGIN_MARK"], os.environ["END_MARK"]
start, stop = text.index(b), text.index(e) + len(e)
open(path, "w").write(text[:start] + os.environ["BODY"] + text[stop:])
PY
  else
    printf '\n## DNSSEC validation\n\n%s\n' "$body" >>"$doc"
  fi
fi
