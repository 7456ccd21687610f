#!/usr/bin/env bash
# Measurements of `dnsgate supervise` (DESIGN.md §10), each in network
# namespaces of its own (ip netns add, lo only, deleted at the end):
#
#  (a) upgrade: dnsperf at QPS into a cell's namespace for SECONDS while the
#      supervisor gets SIGHUP 10 times (alternately a changed cell file and a
#      new dnsgate binary at the same path): queries lost, events vs queries.
#  (b) kill -9: the same load while the cell's proxy is killed 10 times; at
#      each kill a probe client (in the namespace) times death -> its first
#      answer; queries lost, events vs answered queries, events the
#      supervisor wrote from the dead proxy's queue.
#  (c) idle: CELLS cells under one supervisor, one namespace each (every
#      cell on 127.0.0.1:53 of its own namespace, as in production): RSS
#      and PSS per idle proxy, CPU of all of them over SECONDS.
#
#   bench/supervisor.sh [DNSGATE_BIN] [SECONDS] [QPS] [CELLS]
#
# Defaults: build/dnsgate, 60 s, 10000 queries/s, 50 cells; SCENARIOS="a b c"
# picks some. Needs root, knotd, dnsperf, kdig. Not part of `make test`.
# Loads are bounded in count and time; every process started here is
# stopped by its PID; every namespace made here is deleted.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib/common.sh
source "$here/lib/common.sh"
bin=$(readlink -f "${1:-build/dnsgate}")
seconds=${2:-60}
qps=${3:-10000}
ncells=${4:-50}
scenarios=${SCENARIOS:-a b c}
events_per_action=10
python=/usr/bin/python3

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, supervise)" >&2; exit 1; }
for tool in /usr/sbin/knotd dnsperf kdig ip "$bin" "$python"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (run 'make build')" >&2; exit 1; }
done

work=$(mktemp -d /tmp/dnsgate-supervise.XXXXXX)
chmod 0755 "$work"  # the proxies (nobody) exec the binary copy under it
tag="dgb$$"
namespaces=()
pids=()  # every process started here, stopped at exit by PID

cleanup() {
  set +e
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do terminate_pid "${pids[i]}"; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# stop_pid PID: terminate_pid, and no longer ours to stop at exit
stop_pid() {
  terminate_pid "$1"
  forget_pid "$1"
}
forget_pid() {
  local i
  for i in "${!pids[@]}"; do [ "${pids[i]}" = "$1" ] && unset 'pids[i]'; done
  pids=("${pids[@]}")
}

new_netns() {  # new_netns NAME
  ip netns add "$1"
  namespaces+=("$1")
  ip -n "$1" link set lo up
}

# wait_ns_dns NS PORT NAME: until 127.0.0.1:PORT in NS answers (about 10 s)
wait_ns_dns() {
  for _ in $(seq 100); do
    ip netns exec "$1" kdig @127.0.0.1 -p "$2" +time=1 +retry=0 "$3" A >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nothing answers on 127.0.0.1:$2 in $1" >&2
  return 1
}

# cell_file NAME NS UPSTREAM_PORT TIMEOUT_MS EVENTS
cell_file() {
  cat <<CONF
cell: $1
netns: $2
listen:
  udp: 127.0.0.1:53
dnsAuthority:
  hostnameAllowlist:
    - "*.load.test"
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:$3
upstreamTimeoutMs: $4
events:
  sink: file
  path: $5
CONF
}

# started_pids LOG CELL: every proxy PID the supervisor logged as started for CELL
started_pids() { sed -n "s/.*cell $2: proxy \([0-9]*\) started.*/\1/p" "$1"; }
latest_pid() { started_pids "$1" "$2" | tail -n 1; }

# start_supervisor DIR LOG BINARY: sets sup_pid
start_supervisor() {
  "$3" supervise --cells "$1" 2>"$2" >/dev/null &
  sup_pid=$!
  pids+=("$sup_pid")
}

stop_supervisor() {  # stop_supervisor PID: SIGTERM, wait; the final JSON stays in its log
  local rc=0
  kill -TERM "$1"
  wait "$1" || rc=$?
  forget_pid "$1"
  [ "$rc" = 0 ] || echo "supervisor exited with $rc" >&2
}

cpu_ticks() { awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }

# ---------------------------------------------------------------- shared load setup

knot_port=5300
for i in $(seq 0 999); do
  echo "host$i.load.test A"
  echo "host$i.denied.test A"
done >"$work/queries.txt"

# The probe client: kills the proxy, waits for its death, then times its
# own query (asked from inside the namespace) until answered.
cat >"$work/kill_probe.py" <<'PY'
import os, socket, struct, sys, time
pid, port = int(sys.argv[1]), int(sys.argv[2])
def state():
    try:
        data = open(f"/proc/{pid}/stat").read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rfind(")") + 2]
t0 = time.monotonic()
os.kill(pid, 9)
while state() not in (None, "Z", "X"):
    time.sleep(0.0002)
dead = time.monotonic()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
ident = os.getpid() & 0xFFFF
q = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + b"\x05probe\x04load\x04test\x00" + struct.pack("!HH", 1, 1)
s.sendto(q, ("127.0.0.1", port))
s.settimeout(5)
answered = None
try:
    while True:
        data = s.recv(4096)
        if data[:2] == q[:2]:
            answered = time.monotonic()
            break
except socket.timeout:
    pass
print(f"{(dead - t0) * 1000:.1f} {((answered - dead) * 1000) if answered else -1:.1f}")
PY

# load_cell SCEN: a namespace with knotd on 127.0.0.1:5300 and a cell dir
# with one cell on 127.0.0.1:53 there; sets ns, cells, events, knot_pid
load_cell() {
  local scen=$1
  ns="$tag-$scen"
  new_netns "$ns"
  knot_prepare "$work/$scen/knot" "$knot_port" load.test host 1000
  ip netns exec "$ns" /usr/sbin/knotd -c "$work/$scen/knot/knot.conf" >/dev/null 2>&1 &
  knot_pid=$!
  pids+=("$knot_pid")
  ip netns exec "$ns" bash -c "$(declare -f wait_for_dns); wait_for_dns $knot_port host1.load.test"
  cells="$work/$scen/cells"
  events="$work/$scen/events.jsonl"
  mkdir -p "$cells"
  cell_file bench "$ns" "$knot_port" 2000 "$events" >"$cells/bench.yaml"
}

# run_dnsperf NS OUT: in the background; sets perf_pid
run_dnsperf() {
  ip netns exec "$1" dnsperf -s 127.0.0.1 -p 53 -d "$work/queries.txt" -l "$seconds" -Q "$qps" \
    -c 10 -q 500 -t 5 >"$2" 2>&1 &
  perf_pid=$!
  pids+=("$perf_pid")
}

perf_field() { awk -v k="$2" '$0 ~ k { print $3; exit }' "$1"; }

rows=()
row() { rows+=("| $1 | $2 | $3 |"); }

# ---------------------------------------------------------------- (a) upgrade under load

if [[ " $scenarios " == *" a "* ]]; then
  echo "== (a) SIGHUP upgrade x$events_per_action under $qps q/s for $seconds s" >&2
  load_cell a
  mkdir -p "$work/a/bin"
  cp "$bin" "$work/a/bin/dnsgate"
  log="$work/a/supervise.err"
  start_supervisor "$cells" "$log" "$work/a/bin/dnsgate"
  wait_ns_dns "$ns" 53 host1.load.test
  sleep 0.3
  probe_events=$(wc -l <"$events")
  run_dnsperf "$ns" "$work/a/dnsperf.out"
  period=$(awk -v s="$seconds" -v n="$events_per_action" 'BEGIN { printf "%.3f", s / n }')
  sleep "$(awk -v p="$period" 'BEGIN { printf "%.3f", p / 2 }')"
  hup_ms=()
  for i in $(seq 1 "$events_per_action"); do
    before=$(started_pids "$log" bench | wc -l)
    if ((i % 2)); then
      sed -i "s/^upstreamTimeoutMs: .*/upstreamTimeoutMs: $((2000 + i))/" "$cells/bench.yaml"
    else
      cp "$bin" "$work/a/bin/dnsgate.new" && mv -f "$work/a/bin/dnsgate.new" "$work/a/bin/dnsgate"
    fi
    t0=$(date +%s%N)
    kill -HUP "$sup_pid"
    for _ in $(seq 500); do
      grep -q "cell bench: proxy $(latest_pid "$log" bench) serves" "$log" 2>/dev/null &&
        [ "$(started_pids "$log" bench | wc -l)" -gt "$before" ] && break
      sleep 0.01
    done
    hup_ms+=("$((($(date +%s%N) - t0) / 1000000))")
    if [ "$i" -lt "$events_per_action" ]; then
      sleep "$(awk -v p="$period" -v t="${hup_ms[-1]}" 'BEGIN { d = p - t / 1000; printf "%.3f", (d > 0 ? d : 0) }')"
    fi
  done
  wait "$perf_pid" || true
  forget_pid "$perf_pid"
  stop_supervisor "$sup_pid"
  sent=$(perf_field "$work/a/dnsperf.out" "Queries sent:")
  completed=$(perf_field "$work/a/dnsperf.out" "Queries completed:")
  lost=$(perf_field "$work/a/dnsperf.out" "Queries lost:")
  ev=$(($(wc -l <"$events") - probe_events))
  upgrades=$(($(started_pids "$log" bench | wc -l) - 1))
  grep -E "Queries (sent|completed|lost)|Queries per second" "$work/a/dnsperf.out" >&2
  row "(a) SIGHUP upgrades done (config / binary, alternately)" "$upgrades of $events_per_action; HUP -> new proxy serving: ${hup_ms[*]} ms" "$events_per_action"
  row "(a) queries lost (dnsperf)" "$lost of $sent ($completed answered)" "0"
  row "(a) events vs queries" "$ev events for $sent queries" "equal"
  stop_pid "$knot_pid"
fi

# ---------------------------------------------------------------- (b) kill -9 under load

if [[ " $scenarios " == *" b "* ]]; then
  echo "== (b) kill -9 x$events_per_action under $qps q/s for $seconds s" >&2
  load_cell b
  log="$work/b/supervise.err"
  start_supervisor "$cells" "$log" "$bin"
  wait_ns_dns "$ns" 53 host1.load.test
  sleep 0.3
  probe_events=$(wc -l <"$events")
  run_dnsperf "$ns" "$work/b/dnsperf.out"
  period=$(awk -v s="$seconds" -v n="$events_per_action" 'BEGIN { printf "%.3f", s / n }')
  sleep "$(awk -v p="$period" 'BEGIN { printf "%.3f", p / 2 }')"
  probes=()
  pid=""
  for i in $(seq 1 "$events_per_action"); do
    # the proxy that serves now (after a kill, wait for its successor)
    for _ in $(seq 2000); do
      next=$(latest_pid "$log" bench)
      [ -n "$next" ] && [ "$next" != "$pid" ] && kill -0 "$next" 2>/dev/null && break
      sleep 0.01
    done
    pid=$next
    out=$(ip netns exec "$ns" "$python" "$work/kill_probe.py" "$pid" 53)
    probes+=("$(echo "$out" | awk '{ print $2 }')")
    echo "kill $i: proxy $pid, death after ${out% *} ms, probe answered ${out#* } ms after death" >&2
    if [ "$i" -lt "$events_per_action" ]; then sleep "$period"; fi
  done
  wait "$perf_pid" || true
  forget_pid "$perf_pid"
  sleep 0.3
  stop_supervisor "$sup_pid"
  sent=$(perf_field "$work/b/dnsperf.out" "Queries sent:")
  completed=$(perf_field "$work/b/dnsperf.out" "Queries completed:")
  lost=$(perf_field "$work/b/dnsperf.out" "Queries lost:")
  grep -E "Queries (sent|completed|lost)|Queries per second" "$work/b/dnsperf.out" >&2
  # events of dnsperf's queries: all but the readiness probes and the kill
  # probes' (probe.load.test, allowed, NXDOMAIN from knotd)
  ev=$(($(wc -l <"$events") - probe_events - $(grep -c '"probe\.load\.test"' "$events" || true)))
  recovered=$(sed -n 's/.*cell bench: wrote \([0-9]*\) events proxy .* had queued.*/\1/p' "$log" |
    awk '{ s += $1; printf "%s%d", (NR > 1 ? " " : ""), $1 } END { printf " (sum %d)", s }')
  no_event=$((completed - ev))
  [ "$no_event" -lt 0 ] && no_event=0
  stats=$(printf '%s\n' "${probes[@]}" | sort -n | awk '
    { v[NR] = $1 } END { printf "min %.1f, median %.1f, max %.1f", v[1], v[int((NR + 1) / 2)], v[NR] }')
  restarts=$(grep -c "cell bench: restart" "$log" || true)
  row "(b) kills / restarts logged" "$events_per_action / $restarts" "-"
  latency=$(awk '/Average Latency/ { print $4; exit }' "$work/b/dnsperf.out")
  inflight=$(awk -v q="$qps" -v l="$latency" 'BEGIN { printf "%.1f", q * l }')
  row "(b) queries lost (dnsperf) vs in flight" "$lost of $sent, $(awk -v l="$lost" -v n="$events_per_action" 'BEGIN { printf "%.1f", l / n }') per kill; in flight at any moment about $inflight (q/s x mean latency ${latency} s)" "only those in flight"
  row "(b) events vs queries" "$ev events, $completed answered, $sent sent" "events >= answered"
  row "(b) events of answered queries lost (at least)" "$no_event" "0"
  row "(b) events the supervisor wrote from dead proxies' queues (per kill that left any)" "$recovered" "-"
  row "(b) death -> first answer of a probe query (ms)" "$stats" "50 ms"
  stop_pid "$knot_pid"
fi

# ---------------------------------------------------------------- (c) idle cells

if [[ " $scenarios " == *" c "* ]]; then
  echo "== (c) $ncells idle cells, one namespace each, for $seconds s" >&2
  mkdir -p "$work/c/cells" "$work/c/events"
  for i in $(seq 1 "$ncells"); do
    new_netns "$tag-c$i"
    cell_file "c$i" "$tag-c$i" "$knot_port" 2000 "$work/c/events/c$i.jsonl" >"$work/c/cells/c$i.yaml"
  done
  log="$work/c/supervise.err"
  t0=$(date +%s%N)
  start_supervisor "$work/c/cells" "$log" "$bin"
  for i in $(seq 1 "$ncells"); do
    # a denied name: answered without an upstream (none runs here)
    for _ in $(seq 100); do
      ip netns exec "$tag-c$i" kdig @127.0.0.1 +time=1 +retry=0 ready.denied.test A 2>/dev/null |
        grep -q "status: REFUSED" && break
      sleep 0.1
    done
  done
  up_ms=$((($(date +%s%N) - t0) / 1000000))
  mapfile -t proxies < <(for i in $(seq 1 "$ncells"); do latest_pid "$log" "c$i"; done)
  [ "${#proxies[@]}" = "$ncells" ] || { echo "only ${#proxies[@]} proxies started:" >&2; cat "$log" >&2; exit 1; }
  sleep 1
  cpu0=0
  for p in "${proxies[@]}"; do cpu0=$((cpu0 + $(cpu_ticks "$p"))); done
  sup0=$(cpu_ticks "$sup_pid")
  sleep "$seconds"
  cpu1=0
  for p in "${proxies[@]}"; do cpu1=$((cpu1 + $(cpu_ticks "$p"))); done
  sup1=$(cpu_ticks "$sup_pid")
  hz=$(getconf CLK_TCK)
  mem=$(for p in "${proxies[@]}"; do
    echo "$(awk '/^VmRSS/ { print $2 }' "/proc/$p/status") $(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup")"
  done | awk '{ r += $1; p += $2; if ($1 > m) m = $1 } END { printf "RSS mean %.0f KiB (max %d), PSS mean %.0f KiB; all %d: RSS %.1f MiB, PSS %.1f MiB", r / NR, m, p / NR, NR, r / 1024, p / 1024 }')
  sup_rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$sup_pid/status")
  stop_supervisor "$sup_pid"
  row "(c) $ncells cells (one namespace each) up and answering" "$up_ms ms" "-"
  row "(c) memory per idle proxy" "$mem" "-"
  row "(c) supervisor RSS" "$sup_rss KiB" "-"
  row "(c) CPU of $ncells idle proxies over $seconds s" "$(awk -v t=$((cpu1 - cpu0)) -v hz="$hz" -v n="$ncells" 'BEGIN { printf "%.0f ms (%.1f ms per cell)", t * 1000 / hz, t * 1000 / hz / n }')" "-"
  row "(c) CPU of the supervisor over $seconds s" "$(awk -v t=$((sup1 - sup0)) -v hz="$hz" 'BEGIN { printf "%.0f ms", t * 1000 / hz }')" "-"
fi

echo
echo "dnsgate supervise: $(basename "$bin") $("$bin" version 2>/dev/null | head -n 1), $(nproc) CPUs, $qps q/s, $seconds s"
echo
echo "| measurement | result | target |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
