#!/usr/bin/env bash
# The dnsgate demo, which doubles as a smoke test: starts knotd on loopback
# serving example.com., puts dnsgate in front of it with an allowlist, sends
# real queries with kdig (allowed, denied, malformed, upstream frozen), then
# stops everything and shows the stats and the events dnsgate wrote.
# Exits non-zero if any step did not behave as documented.
#
# Usage: scripts/demo.sh [path/to/dnsgate]      (make demo runs it)
# Environment: DEMO_UPSTREAM_PORT (default 25300), DEMO_LISTEN_PORT
# (default 25353), DEMO_KEEP=1 keeps the temporary directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
assets="$here/demo"
PY=/usr/bin/python3
KNOTD=/usr/sbin/knotd
KNOT_PORT=${DEMO_UPSTREAM_PORT:-25300}
GATE_PORT=${DEMO_LISTEN_PORT:-25353}
HOST=127.0.0.1

bin=${1:-build/dnsgate}

# ------------------------------------------------------------------ helpers
if [ -t 1 ]; then bold=$'\e[1m' red=$'\e[31m' green=$'\e[32m' off=$'\e[0m'; else bold='' red='' green='' off=''; fi
section() { printf '\n%s== %s ==%s\n' "$bold" "$*" "$off"; }
show_cmd() { printf '$ %s\n' "$*"; }
ok() { printf '  %sok%s: %s\n' "$green" "$off" "$*"; }
failures=0
fail() { printf '  %sFAIL%s: %s\n' "$red" "$off" "$*"; failures=$((failures + 1)); }
die() { printf '%sdemo: %s%s\n' "$red" "$*" "$off" >&2; exit 1; }
now_ns() { date +%s%N; }
indent() { sed 's/^/  /'; }

work='' knot_pid='' gate_pid=''

# Waits up to $2 tenths of a second for process $1 to exit; 0 if it did.
wait_gone() {
  local pid=$1 tenths=$2 i
  for ((i = 0; i < tenths; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  ! kill -0 "$pid" 2>/dev/null
}

# Stops a process this script started, by PID: SIGTERM, bounded wait, SIGKILL.
stop_pid() {
  local pid=$1 tenths=$2
  kill -0 "$pid" 2>/dev/null || return 0
  kill -CONT "$pid" 2>/dev/null || true   # a stopped process cannot act on SIGTERM
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$tenths"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 20 || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$gate_pid" ] && stop_pid "$gate_pid" 20
  [ -n "$knot_pid" ] && stop_pid "$knot_pid" 50
  if [ -n "$work" ] && [ -d "$work" ]; then
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
      echo "kept $work"
    else
      rm -rf "$work"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { [ -n "$(ss -Hlntu "sport = :$1" 2>/dev/null)" ]; }

# ------------------------------------------------------------ preconditions
[ -x "$bin" ] || die "no dnsgate binary at '$bin' (build it first: make build)"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
for tool in "$KNOTD" /usr/bin/kdig "$PY" ss; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (run scripts/install-deps.sh)"
done
for port in "$KNOT_PORT" "$GATE_PORT"; do
  if port_in_use "$port"; then
    die "port $port on this machine is already in use:
$(ss -Hlntup "sport = :$port" 2>/dev/null | sed 's/^/  /')
stop what uses it, or pick other ports: DEMO_UPSTREAM_PORT=... DEMO_LISTEN_PORT=... $0"
  fi
done

work=$(mktemp -d -t dnsgate-demo.XXXXXX)

printf '%sdnsgate demo%s  (%s, workdir %s)\n' "$bold" "$off" "$("$bin" version 2>&1 | head -n1)" "$work"

# ------------------------------------------------------------- 1. upstream
section "1. Upstream: knotd serving example.com. on $HOST:$KNOT_PORT"
mkdir -p "$work/knot/run" "$work/knot/db" "$work/knot/zones"
sed -e "s|@DIR@|$work|g" -e "s|@PORT@|$KNOT_PORT|g" "$assets/knot.conf.in" >"$work/knot.conf"
cp "$assets/example.com.zone" "$work/knot/zones/example.com.zone"
"$KNOTD" -c "$work/knot.conf" >"$work/knot/stdout" 2>&1 &
knot_pid=$!

knot_up=0
for _ in $(seq 50); do
  kill -0 "$knot_pid" 2>/dev/null || break
  probe=$(kdig @"$HOST" -p "$KNOT_PORT" +retry=0 +timeout=1 example.com SOA 2>/dev/null || true)
  if grep -q 'status: NOERROR' <<<"$probe"; then
    knot_up=1
    break
  fi
  sleep 0.1
done
if [ "$knot_up" != 1 ]; then
  cat "$work/knot/stdout" "$work/knot/knotd.log" 2>/dev/null | tail -n 20 | indent >&2
  die "knotd did not answer on $HOST:$KNOT_PORT within 5 s"
fi
echo "knotd is up (pid $knot_pid): www, api (A and AAAA) in example.com."

# -------------------------------------------------------------- 2. dnsgate
section "2. dnsgate: allow example.com and *.example.com, everything else is refused"
conf="$work/dnsgate.yaml"
events="$work/events.jsonl"
sed -e "s|@DIR@|$work|g" -e "s|@LISTEN@|$HOST:$GATE_PORT|g" -e "s|@UPSTREAM@|$HOST:$KNOT_PORT|g" \
  "$assets/dnsgate.yaml.in" >"$conf"
grep -v '^#' "$conf" | indent
echo
show_cmd "dnsgate check --config $conf"
if check_out=$("$bin" check --config "$conf" 2>&1); then
  printf '%s\n' "$check_out" | indent
else
  printf '%s\n' "$check_out" | indent
  die "dnsgate check rejected the demo config"
fi

show_cmd "dnsgate run --config $conf &"
"$bin" run --config "$conf" >"$work/dnsgate.stdout" 2>"$work/dnsgate.stderr" &
gate_pid=$!
gate_up=0
for _ in $(seq 50); do
  kill -0 "$gate_pid" 2>/dev/null || break
  # Bound by our process, not merely by someone: ss shows pid=N of the owner.
  owners=$(ss -Hlunp "sport = :$GATE_PORT" 2>/dev/null || true)
  if grep -q "pid=$gate_pid," <<<"$owners"; then
    gate_up=1
    break
  fi
  sleep 0.1
done
if [ "$gate_up" != 1 ]; then
  tail -n 20 "$work/dnsgate.stderr" | indent >&2
  die "dnsgate did not start listening on $HOST:$GATE_PORT within 5 s"
fi
echo "dnsgate is listening on $HOST:$GATE_PORT (pid $gate_pid), events go to $events"

# -------------------------------------------------------------- 3. queries
section "3. Queries from a workload (kdig)"
sent=0            # datagrams sent to dnsgate: one event each
last_ms=0 last_out=''

# ask NAME TYPE: one kdig query (one datagram: +retry=0) through dnsgate;
# prints the status line, any Extended DNS Error and the answer records.
ask() {
  local args=(@"$HOST" -p "$GATE_PORT" +edns +retry=0 +timeout=3 "$1" "$2")
  local t0 t1
  show_cmd "kdig ${args[*]}"
  t0=$(now_ns)
  last_out=$(kdig "${args[@]}" 2>&1) || true
  t1=$(now_ns)
  sent=$((sent + 1))
  last_ms=$(((t1 - t0) / 1000000))
  local status ede took
  status=$(sed -n 's/.*status: \([A-Z]*\).*/\1/p' <<<"$last_out" | head -n1)
  ede=$(sed -n 's/^;; EDE: /EDE /p' <<<"$last_out" | head -n1)
  # kdig's own round-trip time ("From ... in 0.3 ms"), else the wall clock.
  took=$(sed -n 's/^;; From .* in \([0-9.]* ms\)$/\1/p' <<<"$last_out" | head -n1)
  printf '  status %s%s, answered in %s\n' "${status:-none (no answer)}" "${ede:+, $ede}" "${took:-$last_ms ms}"
  awk '/^;; ANSWER SECTION:/{a=1; next} /^$/{a=0} a' <<<"$last_out" | tr -s ' \t' ' ' | indent
}
status_of() { sed -n 's/.*status: \([A-Z]*\).*/\1/p' <<<"$last_out" | head -n1; }
has_ede() { grep -q "^;; EDE: $1 " <<<"$last_out"; }

echo "-- an allowed name is forwarded to knotd and its answer relayed"
ask www.example.com A
if [ "$(status_of)" = NOERROR ] && grep -q '192\.0\.2\.10' <<<"$last_out"; then
  ok "NOERROR with knotd's address"
else
  fail "expected NOERROR with 192.0.2.10, got: $(status_of)"
fi

echo
echo "-- a name off the allowlist is refused locally; knotd never sees it"
ask evil.example.net A
if [ "$(status_of)" = REFUSED ] && has_ede 15; then
  ok "REFUSED with Extended DNS Error 15 (Blocked)"
else
  fail "expected REFUSED with EDE 15, got: $(status_of) $(grep '^;; EDE' <<<"$last_out" || true)"
fi

echo
echo "-- a malformed packet is dropped: no answer at all"
garbage='\x13\x37\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff'
malformed_py="import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(1.0)
s.sendto(b'$garbage',('$HOST',$GATE_PORT))
try: d,_=s.recvfrom(65535); print('  got %d bytes back' % len(d)); sys.exit(1)
except socket.timeout: print('  no answer within 1 s')"
show_cmd "$PY -c '<send 16 bytes 13 37 ff ff .. ff to $HOST:$GATE_PORT, wait 1 s>'   # QR=1: not a query"
sent=$((sent + 1))
if "$PY" -c "$malformed_py"; then
  ok "dropped"
else
  fail "dnsgate answered a malformed packet"
fi

echo
echo "-- the upstream stops answering: SERVFAIL after upstreamTimeoutMs (1000 ms)"
show_cmd "kill -STOP $knot_pid   # freeze knotd"
kill -STOP "$knot_pid"
ask api.example.com AAAA
show_cmd "kill -CONT $knot_pid   # thaw knotd"
kill -CONT "$knot_pid"
if [ "$(status_of)" = SERVFAIL ] && has_ede 22; then
  if [ "$last_ms" -ge 900 ] && [ "$last_ms" -le 2500 ]; then
    ok "SERVFAIL with Extended DNS Error 22 (No Reachable Authority), after the 1 s timeout"
  else
    fail "SERVFAIL came after ${last_ms} ms, expected about 1000 ms"
  fi
else
  fail "expected SERVFAIL with EDE 22, got: $(status_of) $(grep '^;; EDE' <<<"$last_out" || true)"
fi

# ----------------------------------------------------------------- 4. stop
section "4. Stop dnsgate (SIGTERM): final stats on stderr"
show_cmd "kill -TERM $gate_pid"
t0=$(now_ns)
kill -TERM "$gate_pid"
if wait_gone "$gate_pid" 20; then
  gate_rc=0
  wait "$gate_pid" || gate_rc=$?
  stop_ms=$((($(now_ns) - t0) / 1000000))
  gate_pid=''
  if [ "$gate_rc" = 0 ]; then
    ok "exited 0 after ${stop_ms} ms"
  else
    fail "dnsgate exited $gate_rc"
    tail -n 10 "$work/dnsgate.stderr" | indent
  fi
else
  fail "dnsgate still running 2 s after SIGTERM"
  stop_pid "$gate_pid" 10
  gate_pid=''
fi
stats=$(grep '^{' "$work/dnsgate.stderr" | tail -n1 || true)
printf '  %s\n' "${stats:-(no stats line on stderr)}"

section "5. Events: one CloudEvent per datagram ($events)"
# What each query above must have produced, in any order.
if ! "$PY" "$assets/show_events.py" "$events" --stats "$stats" \
  --expect 'forward allowed www.example.com NOERROR' \
  --expect 'refuse not_allowlisted evil.example.net REFUSED' \
  --expect 'drop malformed_query - -' \
  --expect 'servfail upstream_timeout api.example.com SERVFAIL'; then
  fail "events or stats do not match the $sent queries sent"
fi
[ -s "$work/dnsgate.stdout" ] && fail "dnsgate wrote to stdout although events go to a file"

stop_pid "$knot_pid" 50
knot_pid=''

echo
if [ "$failures" -gt 0 ]; then
  printf '%sdemo FAILED: %d check(s) did not pass%s\n' "$red" "$failures" "$off"
  exit 1
fi
printf '%sdemo passed%s: allowed, refused, dropped and timed-out queries behaved as documented.\n' "$green" "$off"
