#!/usr/bin/env bash
# Steady-load check of the UDP proxy: dnsperf sends a mix of allowed and
# denied names through dnsgate (knotd behind it, all on loopback) at a fixed
# rate for a fixed time, then this script checks that no query was lost,
# that the events file holds one line per query, and how RSS moved.
#
#   bench/udp_load.sh [DNSGATE_BIN] [SECONDS] [QPS]
#
# Defaults: build/dnsgate, 60 s, 10000 queries/s. TRANSPORT=tcp sends the
# same load over TCP (dnsperf -m tcp, pipelined connections) to dnsgate's
# TCP listener, which forwards over TCP. Loopback only; every process
# started here is stopped by its PID on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/common.sh
source "$here/lib/common.sh"
bin=$(readlink -f "${1:-build/dnsgate}")
seconds=${2:-60}
qps=${3:-10000}
knot_port=${KNOT_PORT:-25400}
gate_port=${GATE_PORT:-25453}
transport=${TRANSPORT:-udp}
case "$transport" in
  udp | tcp) ;;
  *) echo "TRANSPORT must be udp or tcp" >&2; exit 2 ;;
esac
probe_over_tcp=$([ "$transport" = tcp ] && echo 1 || echo 0)

for tool in /usr/sbin/knotd dnsperf "$bin"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (run 'make build')" >&2; exit 1; }
done

work=$(mktemp -d /tmp/dnsgate-load.XXXXXX)
knot_pid=""
gate_pid=""
cleanup() {
  [ -n "$gate_pid" ] && kill "$gate_pid" 2>/dev/null && wait "$gate_pid" 2>/dev/null || true
  [ -n "$knot_pid" ] && kill "$knot_pid" 2>/dev/null && wait "$knot_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A zone of 1,000 hosts, and a query file of 1,000 allowed and 1,000
# denied names, interleaved.
knot_prepare "$work/knot" "$knot_port" load.test host 1000
for i in $(seq 0 999); do
  echo "host$i.load.test A"
  echo "host$i.denied.test A"
done >"$work/queries.txt"

/usr/sbin/knotd -c "$work/knot/knot.conf" >/dev/null 2>&1 &
knot_pid=$!

cat >"$work/dnsgate.yaml" <<CONF
cell: load
listen:
  $transport: 127.0.0.1:$gate_port
dnsAuthority:
  hostnameAllowlist:
    - "*.load.test"
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:$knot_port
upstreamTimeoutMs: 2000
events:
  sink: file
  path: $work/events.jsonl
CONF

wait_for_dns "$knot_port" host1.load.test

"$bin" run --config "$work/dnsgate.yaml" 2>"$work/dnsgate.err" &
gate_pid=$!
wait_for_dns "$gate_port" host1.load.test "$probe_over_tcp"
# The two probes above are queries too; count the events they made.
sleep 0.3
probe_events=$(wc -l <"$work/events.jsonl")

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$gate_pid/status"; }
rss_start=$(rss_kib)
(
  while kill -0 "$gate_pid" 2>/dev/null; do
    echo "$(date +%s) $(rss_kib)"
    sleep 5
  done
) >"$work/rss.log" 2>/dev/null &
sampler_pid=$!

dnsperf -m "$transport" -s 127.0.0.1 -p "$gate_port" -d "$work/queries.txt" -l "$seconds" -Q "$qps" \
  -c 10 -q 500 -t 5 >"$work/dnsperf.out" 2>&1
rss_end=$(rss_kib)
rss_max=$(awk '{ if ($2 > m) m = $2 } END { print m }' "$work/rss.log")
kill "$sampler_pid" 2>/dev/null || true

kill -TERM "$gate_pid"
wait "$gate_pid" || true
gate_pid=""
stats=$(tail -n 1 "$work/dnsgate.err")

sent=$(awk '/Queries sent:/ {print $3}' "$work/dnsperf.out")
completed=$(awk '/Queries completed:/ {print $3}' "$work/dnsperf.out")
lost=$(awk '/Queries lost:/ {print $3}' "$work/dnsperf.out")
events=$(( $(wc -l <"$work/events.jsonl") - probe_events ))
forwarded=$(grep -c '"action":"forward"' "$work/events.jsonl" || true)
refused=$(grep -c '"action":"refuse"' "$work/events.jsonl" || true)

echo "== dnsperf"
grep -E "Queries (sent|completed|lost)|Response codes|Queries per second|Average Latency|Latency StdDev" "$work/dnsperf.out"
echo "== dnsgate"
echo "stats:        $stats"
echo "events:       $events for $sent queries sent (the forward count below includes $probe_events probe)"
echo "actions:      forward $forwarded, refuse $refused"
echo "RSS (KiB):    start $rss_start, end $rss_end, max $rss_max"
echo "RSS samples:  $(awk '{ printf "%s ", $2 }' "$work/rss.log")(every 5 s)"

status=0
[ "$lost" = "0" ] || { echo "FAIL: $lost queries lost"; status=1; }
[ "$events" = "$sent" ] || { echo "FAIL: $events events for $sent queries"; status=1; }
exit $status
