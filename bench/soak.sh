#!/usr/bin/env bash
# Soak test (issue 5; not part of CI): dnsgate under steady mixed load for a
# long time against a scripted upstream that drops 10% of queries and
# delays some, some past the timeout. Reports crashes (must be 0), events
# vs queries (must be equal), answers reflected to malformed senders (must
# be 0) and RSS from start to end (must be flat).
#
#   bench/soak.sh [SECONDS] [QPS]        (defaults: 600 s, 1000 queries/s)
#
#   DNSGATE_BIN     the binary (default build/dnsgate)
#   MALFORMED_QPS   hostile datagrams per second besides dnsperf's (default 50)
#
# dnsperf sends allowed and denied names (half each); a Python sender sends
# the malformed ones. Loopback only; every process started here is stopped
# by its PID on exit; every loop is bounded in time.
set -euo pipefail

seconds=${1:-600}
qps=${2:-1000}
malformed_qps=${MALFORMED_QPS:-50}
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$(readlink -f "${DNSGATE_BIN:-$repo/build/dnsgate}")
py=/usr/bin/python3
timeout_ms=1000

for tool in dnsperf kdig "$py" "$bin"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (run 'make build')" >&2; exit 1; }
done

work=$(mktemp -d /tmp/dnsgate-soak.XXXXXX)
pids=()
gate_pid=""
cleanup() {
  for pid in "${pids[@]}" $gate_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}" $gate_pid; do
    wait "$pid" 2>/dev/null || true
  done
  [ -n "${KEEP_SOAK_DIR:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------- the upstream
cat >"$work/upstream.py" <<'PY'
"""Answers with one A record; drops 10% of queries; delays 20% by 20-400 ms
and 2% by 1.2-1.6 s (past dnsgate's 1 s timeout: those answers arrive late
and must be discarded). Stops on SIGTERM or after its time limit."""
import heapq, json, random, select, signal, socket, struct, sys, time

port_file, stats_file, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", 0))
open(port_file, "w").write(str(s.getsockname()[1]))
rng = random.Random(600)
count = {"received": 0, "answered": 0, "dropped": 0, "delayed": 0, "late": 0}
pending = []  # (due, seq, wire, addr)
seq = 0
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)


def answer(q):
    at = 12
    while at < len(q) and q[at] != 0:
        at += 1 + q[at]
    end = at + 5
    if len(q) < end:
        return None
    flags = 0x8180 | (struct.unpack("!H", q[2:4])[0] & 0x0100)
    return (q[:2] + struct.pack("!HHHHH", flags, 1, 1, 0, 0) + q[12:end] +
            b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1]))


deadline = time.monotonic() + limit
while not stop and time.monotonic() < deadline:
    wait = 0.05
    if pending:
        wait = max(0.0, min(wait, pending[0][0] - time.monotonic()))
    ready, _, _ = select.select([s], [], [], wait)
    if ready:
        for _ in range(256):
            try:
                q, addr = s.recvfrom(65535, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            count["received"] += 1
            a = answer(q)
            roll = rng.random()
            if a is None or roll < 0.10:
                count["dropped"] += 1
                continue
            if roll < 0.30:
                delay = rng.uniform(0.02, 0.4)
                count["delayed"] += 1
            elif roll < 0.32:
                delay = rng.uniform(1.2, 1.6)
                count["late"] += 1
            else:
                s.sendto(a, addr)
                count["answered"] += 1
                continue
            seq += 1
            heapq.heappush(pending, (time.monotonic() + delay, seq, a, addr))
    now = time.monotonic()
    while pending and pending[0][0] <= now:
        _, _, a, addr = heapq.heappop(pending)
        s.sendto(a, addr)
        count["answered"] += 1
json.dump(count, open(stats_file, "w"))
PY

# ---------------------------------------------------------------- the malformed sender
cat >"$work/malformed.py" <<'PY'
"""Sends hostile datagrams at a steady rate for a fixed time; counts what it
sent and anything that came back (nothing must)."""
import json, socket, struct, sys, time

port, rate, seconds, out = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]


def hdr(ident=0x1234, flags=0x0100, qd=1, an=0, ar=0):
    return struct.pack("!HHHHHH", ident, flags, qd, an, 0, ar)


q = b"\x01a\x04soak\x04test\x00\x00\x01\x00\x01"
packets = [
    b"", b"\x01", hdr()[:11], hdr(), hdr(qd=0), hdr(qd=2) + q, hdr(qd=65535) + q,
    hdr(flags=0x8180) + q, hdr() + b"\xc0\x0c\x00\x01\x00\x01", hdr() + b"\x01a\xc0\x0c\x00\x01\x00\x01",
    hdr() + b"\xc0\x03\x00\x01\x00\x01", hdr() + b"\x41a\x00\x00\x01\x00\x01", hdr() + b"\x81a\x00\x00\x01\x00\x01",
    hdr() + (b"\x3f" + b"x" * 63) * 4 + b"\x00\x00\x01\x00\x01", hdr(ar=1) + q, hdr() + q + b"\x00",
    hdr(ar=2) + q + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" * 2, hdr() + q + bytes(4000),
]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.setblocking(False)
sent = back = 0
start = time.monotonic()
while True:
    elapsed = time.monotonic() - start
    if elapsed >= seconds:
        break
    while sent < int(elapsed * rate) + 1:
        s.sendto(packets[sent % len(packets)], ("127.0.0.1", port))
        sent += 1
    try:
        while True:
            s.recv(65535)
            back += 1
    except BlockingIOError:
        pass
    time.sleep(0.005)
time.sleep(0.5)
try:
    while True:
        s.recv(65535)
        back += 1
except BlockingIOError:
    pass
json.dump({"sent": sent, "reflected": back}, open(out, "w"))
PY

# ---------------------------------------------------------------- queries and config
for i in $(seq 0 999); do
  echo "a$i.soak.test A"
  echo "d$i.denied.test A"
done >"$work/queries.txt"

"$py" "$work/upstream.py" "$work/upstream.port" "$work/upstream.json" "$((seconds + 120))" &
up_pid=$!
pids+=("$up_pid")
for _ in $(seq 100); do [ -s "$work/upstream.port" ] && break; sleep 0.05; done
up_port=$(cat "$work/upstream.port")
gate_port=$("$py" -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cat >"$work/dnsgate.yaml" <<CONF
cell: soak
listen:
  udp: 127.0.0.1:$gate_port
dnsAuthority:
  hostnameAllowlist:
    - "*.soak.test"
  resolvers:
    - protocol: do53-udp
      address: 127.0.0.1:$up_port
upstreamTimeoutMs: $timeout_ms
events:
  sink: file
  path: $work/events.jsonl
CONF

"$bin" run --config "$work/dnsgate.yaml" 2>"$work/dnsgate.err" &
gate_pid=$!
probes=0
for _ in $(seq 50); do
  probes=$((probes + 1))
  kdig @127.0.0.1 -p "$gate_port" +short +retry=0 +time=1 probe.denied.test A >/dev/null 2>&1 && break
  sleep 0.1
done

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$gate_pid/status" 2>/dev/null || echo 0; }
rss_start=$(rss_kib)
(
  end=$((SECONDS + seconds + 30))
  while kill -0 "$gate_pid" 2>/dev/null && [ $SECONDS -lt $end ]; do
    echo "$SECONDS $(rss_kib)"
    sleep 10
  done
) >"$work/rss.log" &
pids+=("$!")

echo "soak: ${seconds} s, dnsperf ${qps} q/s (half allowed, half denied) + ${malformed_qps} malformed/s," \
  "upstream drops 10%, delays 22% (2% past the ${timeout_ms} ms timeout)"
"$py" "$work/malformed.py" "$gate_port" "$malformed_qps" "$seconds" "$work/malformed.json" &
mal_pid=$!
pids+=("$mal_pid")
dnsperf -s 127.0.0.1 -p "$gate_port" -d "$work/queries.txt" -l "$seconds" -Q "$qps" -c 10 -q 2000 -t 5 \
  >"$work/dnsperf.out" 2>&1 || true
wait "$mal_pid" || true
sleep 2  # the last timeouts and late answers

crashes=0
if ! kill -0 "$gate_pid" 2>/dev/null; then
  crashes=1
  wait "$gate_pid" || echo "dnsgate died with exit code $?"
  gate_pid=""
fi
rss_end=$(rss_kib)
rss_60=$(awk '$1 >= 60 { print $2; exit }' "$work/rss.log")
rss_max=$(awk '{ if ($2 > m) m = $2 } END { print m + 0 }' "$work/rss.log")
if [ -n "$gate_pid" ]; then
  kill -TERM "$gate_pid"
  wait "$gate_pid" || { echo "dnsgate exited with $? after SIGTERM"; crashes=1; }
  gate_pid=""
fi
kill -TERM "$up_pid" 2>/dev/null || true
wait "$up_pid" || true

sent=$(awk '/Queries sent:/ {print $3}' "$work/dnsperf.out")
lost=$(awk '/Queries lost:/ {print $3}' "$work/dnsperf.out")
mal_sent=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$work/malformed.json")
reflected=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["reflected"])' "$work/malformed.json")
events=$(wc -l <"$work/events.jsonl")
queries=$((sent + mal_sent + probes))
stats=$(tail -n 1 "$work/dnsgate.err")
received=$("$py" -c 'import json,sys; print(json.loads(sys.argv[1])["received"])' "$stats" 2>/dev/null || echo "?")
count() { grep -c "\"reasonCode\":\"$1\"" "$work/events.jsonl" || true; }

echo "== dnsperf"
grep -E "Queries (sent|completed|lost)|Response codes|Queries per second|Average Latency" "$work/dnsperf.out" || true
echo "== upstream:  $(cat "$work/upstream.json")"
echo "== dnsgate"
echo "stats:        $stats"
echo "crashes:      $crashes"
echo "queries:      $queries sent ($sent dnsperf + $mal_sent malformed + $probes probe)"
echo "events:       $events (received $received)"
echo "by reason:    allowed $(count allowed), not_allowlisted $(count not_allowlisted)," \
  "malformed_query $(count malformed_query), upstream_timeout $(count upstream_timeout)," \
  "upstream_error $(count upstream_error), overloaded $(count overloaded)"
echo "latency:      $("$py" - "$work/events.jsonl" "$timeout_ms" <<'PY'
import json, sys
worst, late, limit = {}, 0, (int(sys.argv[2]) + 100) * 1000
for line in open(sys.argv[1]):
    d = json.loads(line)["data"]
    worst[d["reasonCode"]] = max(worst.get(d["reasonCode"], 0), d["latencyUs"])
    late += d["reasonCode"] == "upstream_timeout" and d["latencyUs"] > limit
print("max per reason (ms): " + ", ".join(f"{k} {v / 1000:.1f}" for k, v in sorted(worst.items())) +
      f"; timeouts answered over 100 ms late: {late}")
PY
)"
echo "reflected:    $reflected datagrams back to the malformed sender"
echo "RSS (KiB):    start $rss_start, at 60 s ${rss_60:-?}, end $rss_end, max $rss_max"
echo "RSS samples:  $(awk '{ printf "%s ", $2 }' "$work/rss.log")(every 10 s)"

status=0
[ "$crashes" = 0 ] || { echo "FAIL: dnsgate crashed"; status=1; }
[ "$events" = "$queries" ] || { echo "FAIL: $events events for $queries queries"; status=1; }
[ "$received" = "$queries" ] || { echo "FAIL: received $received for $queries queries"; status=1; }
[ "$lost" = 0 ] || { echo "FAIL: dnsperf lost $lost queries (each must get an answer)"; status=1; }
[ "$reflected" = 0 ] || { echo "FAIL: $reflected answers to malformed packets"; status=1; }
# Flat: after the first minute (buffers and the in-flight table touched),
# RSS grows by no more than 2 MiB + 2%.
if [ -n "${rss_60:-}" ] && [ "$rss_end" -gt $((rss_60 + 2048 + rss_60 / 50)) ]; then
  echo "FAIL: RSS grew from $rss_60 KiB at 60 s to $rss_end KiB"
  status=1
fi
[ $status = 0 ] && echo "soak: PASS"
exit $status
