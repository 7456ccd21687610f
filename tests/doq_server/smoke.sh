#!/usr/bin/env bash
# Smoke test of the DoQ test server, all on loopback:
#   tests/doq_server/smoke.sh BUILDDIR
# BUILDDIR holds dnsgate-doq-test-server and dnsgate-doq-test-client
# (tests/doq_server/build.sh BUILDDIR). It starts a knotd with a small zone,
# makes a test CA and certificate with certtool, and runs the server in every
# mode against the client. It checks the test server, not dnsgate.
set -euo pipefail

bin=$(cd "${1:?usage: $0 BUILDDIR}" && pwd)
server=$bin/dnsgate-doq-test-server
client=$bin/dnsgate-doq-test-client
work=$(mktemp -d /tmp/dnsgate-doq-smoke.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
passed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }

free_port() {
  /usr/bin/python3 -c '
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(type=socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        t.close(); u.close()'
}

# --- certificates -------------------------------------------------------------
cat >"$work/ca.tmpl" <<EOF
cn = "dnsgate DoQ smoke CA"
ca
cert_signing_key
expiration_days = 2
EOF
cat >"$work/server.tmpl" <<EOF
cn = "dns.example"
dns_name = "dns.example"
ip_address = "127.0.0.1"
tls_www_server
signing_key
expiration_days = 2
EOF
certtool --generate-privkey --key-type=ecdsa --outfile "$work/ca.key" 2>/dev/null
certtool --generate-self-signed --load-privkey "$work/ca.key" --template "$work/ca.tmpl" \
  --outfile "$work/ca.pem" 2>/dev/null
certtool --generate-privkey --key-type=ecdsa --outfile "$work/server.key" 2>/dev/null
certtool --generate-certificate --load-privkey "$work/server.key" --load-ca-certificate "$work/ca.pem" \
  --load-ca-privkey "$work/ca.key" --template "$work/server.tmpl" --outfile "$work/server.pem" 2>/dev/null

# --- knotd ----------------------------------------------------------------------
knot_port=$(free_port)
mkdir -p "$work/knot/run" "$work/knot/db" "$work/knot/zones"
big=$(for i in $(seq 1 15); do printf ' "%0255d"' "$i"; done)
cat >"$work/knot/zones/example.com.zone" <<EOF
\$ORIGIN example.com.
\$TTL 3600
@    SOA  ns1 hostmaster 1 7200 3600 1209600 3600
@    NS   ns1
ns1  A    192.0.2.53
www  A    192.0.2.10
big  TXT $big
EOF
cat >"$work/knot/knot.conf" <<EOF
server:
    rundir: "$work/knot/run"
    user: root:root
    listen: 127.0.0.1@$knot_port
control:
    listen: "$work/knot/run/knot.sock"
database:
    storage: "$work/knot/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$work/knot/zones"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: example.com.
    file: example.com.zone
EOF
/usr/sbin/knotd -c "$work/knot/knot.conf" >"$work/knotd.log" 2>&1 </dev/null &
pids+=($!)
for _ in $(seq 100); do
  kdig +short +timeout=1 +retry=0 @127.0.0.1 -p "$knot_port" www.example.com A 2>/dev/null | grep -q 192.0.2.10 && break
  sleep 0.1
done
kdig +short @127.0.0.1 -p "$knot_port" www.example.com A | grep -q 192.0.2.10 || fail "knotd did not start: $(cat "$work/knotd.log")"

# --- the DoQ server -----------------------------------------------------------
# start_server NAME MODE: runs the server on a free port; sets $port and $pid.
start_server() {
  local name=$1 mode=$2
  # Made here, not by the background job's redirection, which may come late.
  : >"$work/$name.out"
  "$server" --listen 127.0.0.1:0 --cert "$work/server.pem" --key "$work/server.key" \
    --upstream "127.0.0.1:$knot_port" --record "$work/$name.jsonl" --mode "$mode" \
    >"$work/$name.out" 2>"$work/$name.err" </dev/null &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    port=$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$work/$name.out" || true)
    [ -n "$port" ] && return
    kill -0 "$pid" 2>/dev/null || fail "$name: server exited: $(cat "$work/$name.err")"
    sleep 0.05
  done
  fail "$name: no ready line"
}
query() {
  "$client" --server "127.0.0.1:$port" --ca "$work/ca.pem" --server-name dns.example "$@"
}

start_server normal normal
out=$(query --name www.example.com --count 3 --connections 2)
[ "$(grep -c '^id=0 rcode=0 tc=false answers=1 A:192.0.2.10 ' <<<"$out")" = 6 ] || fail "normal: $out"
grep -q 'resumed=true' <<<"$out" || fail "normal: the second connection did not resume: $out"
ok "normal: 3 queries on each of 2 connections, id 0, the second connection resumed"
lines=$(wc -l <"$work/normal.jsonl")
[ "$lines" = 6 ] || fail "normal: $lines record lines"
/usr/bin/python3 - "$work/normal.jsonl" <<'EOF' || fail "normal: record: $(cat "$work/normal.jsonl")"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert sorted(r["conn"] for r in recs) == [1, 1, 1, 2, 2, 2], recs
assert all(r["id"] == 0 and r["len"] == len(r["hex"]) // 2 for r in recs), recs
assert sorted({r["stream"] for r in recs if r["conn"] == 1}) == [0, 4, 8], recs
assert [r["resumed"] for r in recs if r["conn"] == 2] == [True] * 3, recs
EOF
ok "normal: record lines carry conn, stream, len, id 0, hex, resumed"

out=$(query --name big.example.com --type TXT)
grep -q '^id=0 rcode=0 tc=false answers=1 type16:3840octets' <<<"$out" || fail "big: $out"
ok "a truncated UDP answer is fetched again over TCP and sent whole"

if out=$(query --id 7 2>&1); then fail "a query with id 7 was answered: $out"; fi
grep -qi 'application error 0x2' <<<"$out" || fail "id 7: $out"
ok "a query with a non-zero id closes the connection with DOQ_PROTOCOL_ERROR"

kill -TERM "$pid"
wait "$pid" || fail "SIGTERM: exit status $?"
ok "SIGTERM: exit status 0"

start_server nonzero nonzero-id
out=$(query)
grep -q '^id=4660 rcode=0 ' <<<"$out" || fail "nonzero-id: $out"
ok "nonzero-id: the answer carries id 0x1234"

start_server close close-after-answer
out=$(query)
grep -q '^id=0 rcode=0 .*A:192.0.2.10' <<<"$out" || fail "close-after-answer: $out"
sleep 0.3
if out=$(query --count 2 2>&1); then fail "close-after-answer: two queries answered on one connection: $out"; fi
grep -qi 'application error 0x0' <<<"$out" || fail "close-after-answer: $out"
ok "close-after-answer: one answer, then the connection closes with DOQ_NO_ERROR"

start_server reset reset-stream
if out=$(query 2>&1); then fail "reset-stream: answered: $out"; fi
grep -q 'canceled with error code 3' <<<"$out" || fail "reset-stream: $out"
[ "$(wc -l <"$work/reset.jsonl")" = 1 ] || fail "reset-stream: the query was not recorded"
ok "reset-stream: the stream is reset with DOQ_REQUEST_CANCELLED"

start_server noanswer no-answer
if out=$(query --timeout 1s 2>&1); then fail "no-answer: answered: $out"; fi
grep -qi 'deadline' <<<"$out" || fail "no-answer: $out"
[ "$(wc -l <"$work/noanswer.jsonl")" = 1 ] || fail "no-answer: the query was not recorded"
ok "no-answer: the query is read and never answered"

start_server stall stall-handshake
if out=$(query --timeout 1s 2>&1); then fail "stall-handshake: answered: $out"; fi
grep -qi 'deadline\|timeout' <<<"$out" || fail "stall-handshake: $out"
ok "stall-handshake: the handshake never completes"
kill -TERM "$pid"
wait "$pid" || fail "stall-handshake: SIGTERM: exit status $?"

echo "smoke: $passed passed, 0 failed"
