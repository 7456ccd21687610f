#!/usr/bin/env bash
# Measurements of event delivery (DESIGN.md §11, issue 12): `dnsgate run`
# with `events.sink: nats` and its on-disk spool, in front of a knotd it
# starts, each scenario with fresh nats-server(s) and a fresh stream:
#
#  (a) outage: dnsperf at QPS for SECONDS while the one JetStream server is
#      killed (SIGKILL) at SECONDS/3 and restarted on the same store at
#      2*SECONDS/3; after the backlog drains: messages and distinct
#      Nats-Msg-Id in the stream vs queries sent and dnsgate's `received`;
#      DNS latency (a probe client at 100 q/s timing every answer, besides
#      dnsperf) during the outage vs the same run with `sink: file`;
#      dnsgate's RSS (VmRSS every second) during the outage; spool peak.
#  (b) the same against a three-node JetStream cluster (R3 stream, dnsgate
#      given the three URLs); the stream's leader is killed at SECONDS/3 and
#      restarted at 2*SECONDS/3: exactly once after dedup.
#  (c) throughput of the nats sink: (c1) dnsperf at its maximum rate with
#      refused names (one event each, no upstream) for CSECONDS with the
#      server up: events acknowledged per second while loaded; (c2) the
#      same load with the server stopped fills the spool, then the server
#      comes back: events acknowledged per second while the spool drains,
#      with the CPU of every thread of dnsgate and nats-server meanwhile.
#  (d) memory: SECONDS with no server at all at QPS events/s: RSS first vs
#      last sample, spool on disk; then a server comes and all is delivered.
#
#   bench/delivery.sh [DNSGATE_BIN] [SECONDS] [QPS]
#
# Defaults: build/dnsgate, 60 s, 10000 queries/s; SCENARIOS="a b c d"
# picks some, CSECONDS (default 20) is the length of the (c) loads,
# DRAIN_WAIT (default 300) bounds every wait for a backlog to drain.
# Needs knotd, dnsperf, kdig, nats-server, node with the `nats` npm package
# in tests/integration/node_modules (scripts/install-deps.sh), taskset.
# Not part of `make test`. Loopback only; loads are bounded in count and
# time; every process started here is stopped by its PID.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=bench/lib/nats.sh
source "$here/lib/nats.sh"
bin=$(readlink -f "${1:-build/dnsgate}")
seconds=${2:-60}
qps=${3:-10000}
scenarios=${SCENARIOS:-a b c d}
cseconds=${CSECONDS:-20}
drain_wait=${DRAIN_WAIT:-300}
python=/usr/bin/python3
NATS_NODE_MODULES=${NATS_NODE_MODULES:-$root/tests/integration/node_modules}

for tool in /usr/sbin/knotd dnsperf kdig taskset node curl "$NATS_SERVER" "$bin" "$python"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
[ -d "$NATS_NODE_MODULES/nats" ] || { echo "missing: $NATS_NODE_MODULES/nats (scripts/install-deps.sh)" >&2; exit 1; }

work=$(mktemp -d /tmp/dnsgate-delivery.XXXXXX)
pids=()  # every process started here, stopped at exit by PID

cleanup() {
  set +e
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do terminate_pid "${pids[i]}"; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

forget_pid() {
  local i
  for i in "${!pids[@]}"; do [ "${pids[i]}" = "$1" ] && unset 'pids[i]'; done
  pids=("${pids[@]}")
}
stop_pid() { terminate_pid "$1"; forget_pid "$1"; }
kill9_pid() { kill -KILL "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; forget_pid "$1"; }

# Two cores: the load (dnsperf, the probe, knotd) on CPU 0, dnsgate on CPU 1,
# nats-server and the node tools where the scheduler puts them. PIN=0: none.
if [ "${PIN:-1}" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  load_cpu=(taskset -c 0) proxy_cpu=(taskset -c 1)
else
  load_cpu=() proxy_cpu=()
fi

now() { date +%s.%N; }
sleep_until() { # sleep_until EPOCH
  local d
  d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
  sleep "$d"
}

# ---------------------------------------------------------------- helpers in Python

cat >"$work/helper.py" <<'PY'
import json, os, select, socket, struct, sys, time

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        return free_port()
    u.close()
    return port

def dir_bytes(d):
    total = 0
    for root, _, files in os.walk(d):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total

def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None

def sample(pid, spool, out, seconds):
    """every second: epoch, VmRSS kB, spool bytes on disk (blocks)"""
    end = time.time() + seconds
    with open(out, "w") as f:
        while time.time() < end:
            r = rss_kb(pid)
            if r is None:
                return
            f.write(f"{time.time():.3f} {r} {dir_bytes(spool)}\n")
            f.flush()
            time.sleep(1.0)

def probe(port, seconds, out, rate=100.0):
    """`rate` queries/s, each its own id; per query: epoch sent, latency ms (-1: no answer in 2 s)"""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    pending, done = {}, []
    start = time.time()
    i = 0
    def q(ident, n):
        name = b"".join(bytes([len(p)]) + p for p in [f"host{n}".encode(), b"load", b"test"]) + b"\x00"
        return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 1, 1)
    while True:
        t = time.time()
        if t - start < seconds and t >= start + i / rate:
            ident = i % 65536
            if ident in pending:
                done.append((pending.pop(ident), -1))
            pending[ident] = time.time()
            s.sendto(q(ident, i % 1000), ("127.0.0.1", port))
            i += 1
            continue
        if t - start >= seconds and not pending:
            break
        if t - start >= seconds + 2.5:
            break
        r, _, _ = select.select([s], [], [], 0.002)
        if r:
            while True:
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    break
                ident = struct.unpack("!H", data[:2])[0]
                t0 = pending.pop(ident, None)
                if t0 is not None:
                    done.append((t0, (time.time() - t0) * 1000))
        for ident, t0 in list(pending.items()):
            if time.time() - t0 > 2:
                done.append((pending.pop(ident), -1))
    for t0 in pending.values():
        done.append((t0, -1))
    with open(out, "w") as f:
        for t0, ms in sorted(done):
            f.write(f"{t0:.6f} {ms:.3f}\n")
    print(i)

def pct(out, t_from, t_to):
    """p50 p99 max of the probe latencies sent in [t_from, t_to), count, unanswered"""
    lat, lost, gap, prev = [], 0, 0.0, None
    for line in open(out):
        t, ms = map(float, line.split())
        if float(t_from) <= t < float(t_to):
            gap = max(gap, t - prev) if prev is not None else 0.0
            prev = t
            if ms < 0:
                lost += 1
            else:
                lat.append(ms)
    lat.sort()
    if not lat:
        print("- - - 0", lost, f"{gap * 1000:.0f}")
        return
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    # the last field: the longest pause of the probe's own sending (ms), a
    # stalled load generator (a busy machine) shows there, not in dnsgate
    print(f"{p(0.5):.2f} {p(0.99):.2f} {lat[-1]:.2f} {len(lat)} {lost} {gap * 1000:.0f}")

def samples(out, t_from, t_to):
    """from the sampler's file: rss max in [t_from, t_to) kB, first and last rss, spool max"""
    rows = [tuple(map(float, l.split())) for l in open(out) if l.strip()]
    win = [r for r in rows if float(t_from) <= r[0] < float(t_to)] or rows
    print(int(max(r[1] for r in win)), int(win[0][1]), int(win[-1][1]), int(max(r[2] for r in rows)),
          int(min(r[1] for r in rows)), int(max(r[1] for r in rows)))

def metric(port, name):
    with socket.create_connection(("127.0.0.1", int(port)), timeout=2) as c:
        c.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode(errors="replace").splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            print(int(float(line.split()[-1])))
            return
    print(-1)

def stat(path, key):
    """a key (a.b) of the JSON stats line, the last line of dnsgate's stderr"""
    lines = [l for l in open(path, errors="replace").read().splitlines() if l.startswith("{")]
    v = json.loads(lines[-1])
    for k in key.split("."):
        v = v[k]
    print(v)

def threads(out, *pids):
    """per-thread CPU ticks of every pid, to `out` (JSON)"""
    snap = {"t": time.time(), "threads": {}}
    for pid in pids:
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    raw = open(f"/proc/{pid}/task/{tid}/stat").read()
                except FileNotFoundError:
                    continue
                comm = raw[raw.index("(") + 1: raw.rindex(")")]
                f = raw[raw.rindex(")") + 2:].split()
                snap["threads"][f"{pid}/{tid}"] = [comm, int(f[11]) + int(f[12])]
        except FileNotFoundError:
            pass
    json.dump(snap, open(out, "w"))

def threaddiff(a, b, *names):
    """% of one CPU per thread between two snapshots; names: PID=label"""
    label = dict(n.split("=", 1) for n in names)
    A, B = json.load(open(a)), json.load(open(b))
    dt = B["t"] - A["t"]
    hz = os.sysconf("SC_CLK_TCK")
    per_proc, rows = {}, []
    for key, (comm, ticks) in B["threads"].items():
        d = ticks - A["threads"].get(key, [comm, 0])[1]
        pid = key.split("/")[0]
        pct = 100.0 * d / hz / dt
        per_proc[pid] = per_proc.get(pid, 0) + pct
        rows.append((pct, label.get(pid, pid), comm))
    rows.sort(reverse=True)
    for pid, tot in per_proc.items():
        print(f"{label.get(pid, pid)} total {tot:.0f}%")
    for pct, who, comm in rows[:14]:
        if pct >= 1:
            print(f"  {who} thread {comm}: {pct:.0f}%")

if __name__ == "__main__":
    fn = globals()[sys.argv[1]]
    args = sys.argv[2:]
    if fn is sample:
        sample(int(args[0]), args[1], args[2], float(args[3]))
    elif fn is probe:
        probe(int(args[0]), float(args[1]), args[2])
    else:
        r = fn(*args)
        if r is not None:
            print(r)
PY
helper() { "$python" "$work/helper.py" "$@"; }
free_port() { helper free_port; }

# ---------------------------------------------------------------- knotd, queries

knot_port=$(free_port)
knot_prepare "$work/knot" "$knot_port" load.test host 1000
"${load_cpu[@]}" /usr/sbin/knotd -c "$work/knot/knot.conf" >/dev/null 2>&1 &
knot_pid=$!
pids+=("$knot_pid")
wait_for_dns "$knot_port" host1.load.test
for i in $(seq 0 999); do echo "host$i.load.test A"; done >"$work/allowed.txt"
for i in $(seq 0 999); do echo "host$i.denied.test A"; done >"$work/refused.txt"
nats_write_tool

# gate_config FILE SINK URLS SPOOL_DIR PORT METRICS_PORT
gate_config() {
  {
    cat <<CONF
cell: bench
listen:
  udp: 127.0.0.1:$5
dnsAuthority:
  hostnameAllowlist:
    - "*.load.test"
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:$knot_port
upstreamTimeoutMs: 2000
metrics:
  listen: 127.0.0.1:$6
events:
  sink: $2
CONF
    if [ "$2" = file ]; then
      echo "  path: $4/events.jsonl"
    else
      cat <<CONF
  nats:
    url: "$3"
    subject: dnsgate.events.{cell}
    stream: DNSGATE
  spool:
    dir: "$4"
    maxBytes: 8589934592
CONF
    fi
  } >"$1"
}

# start_gate DIR SINK [URLS]: dnsgate run in DIR; sets gate_pid gate_port gate_mport
start_gate() {
  local dir=$1
  mkdir -p "$dir"
  gate_port=$(free_port)
  gate_mport=$(free_port)
  gate_config "$dir/dnsgate.yaml" "$2" "${3:-}" "$dir/spool" "$gate_port" "$gate_mport"
  mkdir -p "$dir/spool"
  "${proxy_cpu[@]}" "$bin" run --config "$dir/dnsgate.yaml" >"$dir/dnsgate.out" 2>"$dir/dnsgate.err" &
  gate_pid=$!
  pids+=("$gate_pid")
  wait_for_dns "$gate_port" host1.load.test
}

# stop_gate DIR: SIGTERM, wait (2 s of last delivery + margin), the stats line in DIR/dnsgate.err
stop_gate() {
  local rc=0
  kill -TERM "$gate_pid"
  for _ in $(seq 150); do kill -0 "$gate_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$gate_pid" 2>/dev/null && { echo "dnsgate did not stop in 15 s: killed" >&2; kill -KILL "$gate_pid"; }
  wait "$gate_pid" || rc=$?
  forget_pid "$gate_pid"
  [ "$rc" = 0 ] || echo "dnsgate exited with $rc" >&2
  tail -n 3 "$1/dnsgate.err" | grep -v '^{' >&2 || true
}

gmetric() { # gmetric NAME: one counter of dnsgate's /metrics (-1 when absent)
  curl -fs -m 2 "http://127.0.0.1:$gate_mport/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { v = $2 } END { printf "%d\n", (v == "" ? -1 : v) }'
}

# run_load DIR SECONDS QFILE [QPS]: dnsperf (QPS, or its maximum rate when
# empty) and the 100 q/s probe, both in the background; sets perf_pid,
# probe_pid, load_t0
run_load() {
  local q=()
  [ -n "${4:-}" ] && q=(-Q "$4")
  load_t0=$(now)
  "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "$gate_port" -d "$3" -l "$2" "${q[@]}" -c 10 -q 500 -t 5 \
    >"$1/dnsperf.out" 2>&1 &
  perf_pid=$!
  pids+=("$perf_pid")
  probe_pid=
  if [ -n "${4:-}" ]; then
    "${load_cpu[@]}" "$python" "$work/helper.py" probe "$gate_port" "$2" "$1/probe.txt" >"$1/probe.sent" &
    probe_pid=$!
    pids+=("$probe_pid")
  fi
}
wait_load() {
  wait "$perf_pid" || true
  forget_pid "$perf_pid"
  if [ -n "$probe_pid" ]; then wait "$probe_pid" || true; forget_pid "$probe_pid"; fi
}
perf_field() { awk -v k="$2" '$0 ~ k { print $3; exit }' "$1"; }
perf_latency() { awk '/Average Latency/ { printf "%.2f", $4 * 1000; exit }' "$1"; }

# start_sampler DIR SECONDS: VmRSS and spool bytes every second; sets sampler_pid
start_sampler() {
  "$python" "$work/helper.py" sample "$gate_pid" "$1/spool" "$1/samples.txt" "$2" &
  sampler_pid=$!
  pids+=("$sampler_pid")
}

# start_nats_single DIR: sets nats_pid (and nats_url etc., nats.sh)
start_nats_single() {
  "${nats_cmd[@]}" >>"$1/nats-server.log" 2>&1 &
  nats_pid=$!
  pids+=("$nats_pid")
  nats_ready "$nats_mon" "$nats_pid"
}

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

rows=()
row() { rows+=("| $1 | $2 |"); }

# check_stream DIR SERVERS SCEN: waits for the backlog, stops dnsgate, counts; adds rows
check_stream() {
  local dir=$1 servers=$2 scen=$3 received wait_json count_json sent probe_sent
  received=$(($(gmetric dnsgate_received_total) - $(gmetric dnsgate_events_dropped_total)))
  wait_json=$(nats_js "$servers" wait DNSGATE "$received" "$drain_wait")
  echo "$scen drain: $wait_json (dnsgate received less dropped: $received)" >&2
  stop_gate "$dir"
  count_json=$(nats_js "$servers" count DNSGATE)
  echo "$scen stream: $count_json" >&2
  echo "$count_json" >"$dir/count.json"
  received=$(helper stat "$dir/dnsgate.err" received)
  sent=$(perf_field "$dir/dnsperf.out" "Queries sent:")
  probe_sent=$(cat "$dir/probe.sent" 2>/dev/null || echo 0)
  local msgs distinct dropped verdict="MISMATCH"
  msgs=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages"])' "$dir/count.json")
  distinct=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["distinctIds"])' "$dir/count.json")
  dropped=$(helper stat "$dir/dnsgate.err" eventsDropped)
  if [ "$msgs" = "$received" ] && [ "$distinct" = "$received" ] && [ "$dropped" = 0 ]; then
    verdict="exact"
  elif [ "$msgs" = "$((received - dropped))" ] && [ "$distinct" = "$msgs" ]; then
    verdict="exact for the $msgs events stored, $dropped dropped before the spool (eventsDropped)"
  fi
  row "$scen messages in the stream / distinct Nats-Msg-Id / dnsgate received" \
    "$msgs / $distinct / $received: **$verdict** (dnsperf sent $sent + probe $probe_sent + $((received - sent - probe_sent)) readiness queries)"
  row "$scen dnsgate delivery stats at exit" "$(helper stat "$dir/dnsgate.err" delivery | tr -d "'{}" | sed 's/, /, /g'); eventsDropped $(helper stat "$dir/dnsgate.err" eventsDropped)"
}

# ---------------------------------------------------------------- (a) single server killed and restarted

third=$(awk -v s="$seconds" 'BEGIN { printf "%.3f", s / 3 }')

outage_load() { # outage_load DIR: the load with a kill at 1/3 and restart at 2/3; kill_pid_fn/restart_fn set by caller
  local dir=$1
  start_sampler "$dir" $((seconds + drain_wait + 60))
  run_load "$dir" "$seconds" "$work/allowed.txt" "$qps"
  kill_at=$(awk -v t="$load_t0" -v d="$third" 'BEGIN { printf "%.3f", t + d }')
  restart_at=$(awk -v t="$load_t0" -v d="$third" 'BEGIN { printf "%.3f", t + 2 * d }')
  sleep_until "$kill_at"
  kill_at=$(now)
  "$kill_fn"
  sleep_until "$restart_at"
  restart_at=$(now)
  "$restart_fn"
  wait_load
}

latency_rows() { # latency_rows SCEN DIR FILE_DIR
  local o f
  o=$(helper pct "$2/probe.txt" "$kill_at" "$restart_at")
  f=$(helper pct "$3/probe.txt" "$file_kill_at" "$file_restart_at")
  row "$1 DNS latency during the outage, probe p50 / p99 / max ms (answered, unanswered; longest pause of the probe's sending)" \
    "nats: $(awk '{ printf "%s / %s / %s (%s, %s; %s ms)", $1, $2, $3, $4, $5, $6 }' <<<"$o"); file sink, same window: $(awk '{ printf "%s / %s / %s (%s, %s; %s ms)", $1, $2, $3, $4, $5, $6 }' <<<"$f")"
  row "$1 dnsperf whole run: average latency ms, lost" \
    "nats: $(perf_latency "$2/dnsperf.out") ms, $(perf_field "$2/dnsperf.out" "Queries lost:") lost; file: $(perf_latency "$3/dnsperf.out") ms, $(perf_field "$3/dnsperf.out" "Queries lost:") lost"
  local s
  s=$(helper samples "$2/samples.txt" "$kill_at" "$restart_at")
  row "$1 dnsgate VmRSS max during the outage (first / last sample of it); spool on disk at its peak" \
    "$(awk '{ printf "%.1f MiB (%.1f / %.1f)", $1 / 1024, $2 / 1024, $3 / 1024 }' <<<"$s"); spool $(mb "$(awk '{ print $4 }' <<<"$s")") MiB"
}

file_baseline() { # the same load with sink: file; sets file_kill_at, file_restart_at
  local dir=$work/file
  [ -n "${file_kill_at:-}" ] && return 0
  echo "== baseline: sink file, $qps q/s for $seconds s" >&2
  start_gate "$dir" file
  run_load "$dir" "$seconds" "$work/allowed.txt" "$qps"
  file_kill_at=$(awk -v t="$load_t0" -v d="$third" 'BEGIN { printf "%.3f", t + d }')
  file_restart_at=$(awk -v t="$load_t0" -v d="$third" 'BEGIN { printf "%.3f", t + 2 * d }')
  wait_load
  stop_gate "$dir"
  grep -E "Queries (sent|lost)|Average Latency" "$dir/dnsperf.out" >&2
}

a_kill() { kill9_pid "$nats_pid"; echo "   killed nats-server at +$(awk -v a="$(now)" -v b="$load_t0" 'BEGIN { printf "%.1f", a - b }') s" >&2; }
a_restart() { start_nats_single "$work/a"; echo "   restarted nats-server at +$(awk -v a="$(now)" -v b="$load_t0" 'BEGIN { printf "%.1f", a - b }') s" >&2; }

if [[ " $scenarios " == *" a "* ]]; then
  file_baseline
  echo "== (a) sink nats, one server killed at $third s and restarted at 2x, $qps q/s for $seconds s" >&2
  dir=$work/a
  mkdir -p "$dir"
  nats_single "$dir"
  start_nats_single "$dir"
  nats_js "$nats_url" add DNSGATE 'dnsgate.events.>' 1 >&2
  start_gate "$dir" nats "$nats_url"
  kill_fn=a_kill restart_fn=a_restart
  outage_load "$dir"
  grep -E "Queries (sent|lost)|Average Latency" "$dir/dnsperf.out" >&2
  latency_rows "(a)" "$dir" "$work/file"
  check_stream "$dir" "$nats_url" "(a)"
  stop_pid "$sampler_pid" 2>/dev/null || true
  stop_pid "$nats_pid"
fi

# ---------------------------------------------------------------- (b) three-node cluster losing the leader

b_kill() {
  kill9_pid "${ncl_pid[$victim]}"
  echo "   killed n$((victim + 1)) at +$(awk -v a="$(now)" -v b="$load_t0" 'BEGIN { printf "%.1f", a - b }') s" >&2
}
b_restart() {
  "$NATS_SERVER" -c "${ncl_conf[$victim]}" >>"$work/b/n$((victim + 1)).log" 2>&1 &
  ncl_pid[victim]=$!
  pids+=("${ncl_pid[$victim]}")
  echo "   restarted n$((victim + 1)) at +$(awk -v a="$(now)" -v b="$load_t0" 'BEGIN { printf "%.1f", a - b }') s" >&2
}

if [[ " $scenarios " == *" b "* ]]; then
  file_baseline
  echo "== (b) sink nats, 3-node cluster, R3 stream, the leader killed at $third s and restarted at 2x" >&2
  dir=$work/b
  mkdir -p "$dir"
  nats_cluster "$dir"
  ncl_pid=()
  for i in 0 1 2; do
    "$NATS_SERVER" -c "${ncl_conf[i]}" >>"$dir/n$((i + 1)).log" 2>&1 &
    ncl_pid+=("$!")
    pids+=("$!")
  done
  for i in 0 1 2; do nats_ready "${ncl_mon[i]}" "${ncl_pid[i]}"; done
  add=$(nats_js "$ncl_urls" add DNSGATE 'dnsgate.events.>' 3)
  echo "$add" >&2
  leader=$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["leader"])' "$add")
  victim=$((${leader#n} - 1))
  start_gate "$dir" nats "$ncl_urls"
  kill_fn=b_kill restart_fn=b_restart
  outage_load "$dir"
  nats_ready "${ncl_mon[victim]}" "${ncl_pid[victim]}" || true
  grep -E "Queries (sent|lost)|Average Latency" "$dir/dnsperf.out" >&2
  latency_rows "(b)" "$dir" "$work/file"
  row "(b) node killed" "n$((victim + 1)), the stream's leader at the start"
  check_stream "$dir" "$ncl_urls" "(b)"
  stop_pid "$sampler_pid" 2>/dev/null || true
  for i in 2 1 0; do stop_pid "${ncl_pid[i]}"; done
fi

# ---------------------------------------------------------------- (c) throughput of the sink

# rate_until DIR TARGET SECONDS: samples dnsgate_events_delivered_total every
# 0.25 s until it reaches TARGET (bounded); prints events/s from its first
# move to the target, and the time taken
rate_until() {
  local t_first="" d0 d t
  d0=$(gmetric dnsgate_events_delivered_total)
  : >"$1/rate.txt"
  for _ in $(seq $(($3 * 4))); do
    d=$(gmetric dnsgate_events_delivered_total)
    t=$(now)
    echo "$t $d" >>"$1/rate.txt"
    [ -z "$t_first" ] && [ "$d" -gt "$d0" ] && t_first=$t && d0=$d
    [ "$d" -ge "$2" ] && break
    sleep 0.25
  done
  awk -v t0="$t_first" -v d0="$d0" 'END { if (t0 == "" || $1 == t0) print "0 0"; else printf "%.0f %.1f %d\n", ($2 - d0) / ($1 - t0), $1 - t0, $2 }' "$1/rate.txt"
}

if [[ " $scenarios " == *" c "* ]]; then
  echo "== (c0) reference: sink file, dnsperf at its maximum rate with refused names for $cseconds s" >&2
  dir=$work/c0
  start_gate "$dir" file
  run_load "$dir" "$cseconds" "$work/refused.txt"
  wait_load
  stop_gate "$dir"
  row "(c0) reference, sink file, dnsperf max rate, refused names, $cseconds s: queries received/s, eventsDropped" \
    "$(($(helper stat "$dir/dnsgate.err" received) / cseconds))/s received, $(helper stat "$dir/dnsgate.err" eventsDropped) events dropped of $(helper stat "$dir/dnsgate.err" received)"

  echo "== (c1) sink nats, server up, dnsperf at its maximum rate with refused names for $cseconds s" >&2
  dir=$work/c1
  mkdir -p "$dir"
  nats_single "$dir"
  start_nats_single "$dir"
  nats_js "$nats_url" add DNSGATE 'dnsgate.events.>' 1 >&2
  start_gate "$dir" nats "$nats_url"
  d0=$(gmetric dnsgate_events_delivered_total)
  r0=$(gmetric dnsgate_received_total)
  run_load "$dir" "$cseconds" "$work/refused.txt"
  t0=$(now)
  sleep 3
  helper threads "$dir/thr0.json" "$gate_pid" "$nats_pid" "$perf_pid"
  sleep $((cseconds - 6))
  helper threads "$dir/thr1.json" "$gate_pid" "$nats_pid" "$perf_pid"
  wait_load
  t1=$(now)
  d1=$(gmetric dnsgate_events_delivered_total)
  r1=$(gmetric dnsgate_received_total)
  cpu_c1=$(helper threaddiff "$dir/thr0.json" "$dir/thr1.json" "$gate_pid=dnsgate" "$nats_pid=nats-server" "$perf_pid=dnsperf")
  echo "$cpu_c1" >&2
  live=$(awk -v a="$d0" -v b="$d1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
  recv=$(awk -v a="$r0" -v b="$r1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
  rest=$(rate_until "$dir" "$((r1 - $(gmetric dnsgate_events_dropped_total)))" "$drain_wait")
  row "(c1) under load (server up, dnsperf max rate, refused names, $cseconds s): queries received/s, events acknowledged/s" \
    "$recv/s received, **$live/s acknowledged** (then the rest at $(awk '{ print $1 }' <<<"$rest")/s)"
  row "(c1) CPU per process/thread (% of one core, between +3 s and +$((cseconds - 3)) s)" "$(tr '\n' ';' <<<"$cpu_c1" | sed 's/;  */; /g; s/;$//')"
  cp "$work/c1/dnsperf.out" "$work/c1-dnsperf.out"
  check_stream "$dir" "$nats_url" "(c1)" || true
  stop_pid "$nats_pid"

  echo "== (c2) the spool filled with the server stopped ($cseconds s of dnsperf at max), then drained" >&2
  dir=$work/c2
  mkdir -p "$dir"
  nats_single "$dir"
  start_nats_single "$dir"
  nats_js "$nats_url" add DNSGATE 'dnsgate.events.>' 1 >&2
  stop_pid "$nats_pid"
  start_gate "$dir" nats "$nats_url"
  run_load "$dir" "$cseconds" "$work/refused.txt"
  wait_load
  filled=$(($(gmetric dnsgate_received_total) - $(gmetric dnsgate_events_dropped_total)))
  spool_b=$(gmetric dnsgate_spool_bytes)
  start_nats_single "$dir"
  helper threads "$dir/thr0.json" "$gate_pid" "$nats_pid"
  drain=$(rate_until "$dir" "$filled" "$drain_wait")
  helper threads "$dir/thr1.json" "$gate_pid" "$nats_pid"
  cpu_c2=$(helper threaddiff "$dir/thr0.json" "$dir/thr1.json" "$gate_pid=dnsgate" "$nats_pid=nats-server")
  echo "$cpu_c2" >&2
  row "(c2) drain of a full spool ($filled events, $(mb "$spool_b") MiB): events acknowledged/s" \
    "**$(awk '{ print $1 }' <<<"$drain")/s** ($(awk '{ print $3 " events in " $2 " s" }' <<<"$drain"), timed from the first acknowledgement)"
  row "(c2) CPU per process/thread during the drain (% of one core)" "$(tr '\n' ';' <<<"$cpu_c2" | sed 's/;  */; /g; s/;$//')"
  check_stream "$dir" "$nats_url" "(c2)" || true
  stop_pid "$nats_pid"
fi

# ---------------------------------------------------------------- (d) memory through a long outage

if [[ " $scenarios " == *" d "* ]]; then
  echo "== (d) no server for $seconds s at $qps events/s" >&2
  dir=$work/d
  mkdir -p "$dir"
  nats_single "$dir"
  start_gate "$dir" nats "$nats_url"
  start_sampler "$dir" $((seconds + drain_wait + 60))
  run_load "$dir" "$seconds" "$work/allowed.txt" "$qps"
  t_start=$(now)
  wait_load
  t_end=$(now)
  s=$(helper samples "$dir/samples.txt" "$(awk -v t="$t_start" 'BEGIN { printf "%.3f", t + 2 }')" "$t_end")
  spool_end=$(gmetric dnsgate_spool_bytes)
  row "(d) VmRSS through the ${seconds} s outage: first (+2 s) / last / max sample" \
    "$(awk '{ printf "%.1f / %.1f / %.1f MiB", $2 / 1024, $3 / 1024, $1 / 1024 }' <<<"$s")"
  row "(d) spool at the end of the outage" "$(mb "$spool_end") MiB (dnsgate_spool_bytes), $(gmetric dnsgate_events_spooled_total) events spooled"
  start_nats_single "$dir"
  nats_js "$nats_url" add DNSGATE 'dnsgate.events.>' 1 >&2
  check_stream "$dir" "$nats_url" "(d)"
  stop_pid "$sampler_pid" 2>/dev/null || true
  stop_pid "$nats_pid"
fi

# ---------------------------------------------------------------- the table

echo
echo "dnsgate $("$bin" version | awk '{ print $2 }'), $(nproc) cores, SECONDS=$seconds QPS=$qps CSECONDS=$cseconds, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| measure | result |"
echo "|---|---|"
printf '%s\n' "${rows[@]}"
