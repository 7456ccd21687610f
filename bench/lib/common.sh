# shellcheck shell=bash
# Shared by the bench scripts (sourced, not run): the knotd upstream they
# all put behind dnsgate, the wait for a DNS server to answer, and stopping
# a process they started.

# knot_prepare DIR PORT ZONE PREFIX HOSTS: a zone ZONE holding HOSTS names
# PREFIX0 .. PREFIX<HOSTS-1>, each with an A record, and a knot.conf for one
# UDP worker listening on 127.0.0.1@PORT, all under DIR. Start knotd with
# `knotd -c DIR/knot.conf`.
knot_prepare() {
  local dir=$1 port=$2 zone=$3 prefix=$4 hosts=$5
  mkdir -p "$dir/run" "$dir/db" "$dir/zones"
  # shellcheck disable=SC2016  # zone-file text, not shell expansions
  {
    echo "\$ORIGIN $zone."
    echo '$TTL 3600'
    echo '@ SOA ns1 hostmaster 1 7200 3600 1209600 3600'
    echo '@ NS ns1'
    echo 'ns1 A 192.0.2.1'
    awk -v n="$hosts" -v p="$prefix" \
      'BEGIN { for (i = 0; i < n; i++) printf "%s%d A 192.0.2.%d\n", p, i, i % 250 + 1 }'
  } >"$dir/zones/$zone.zone"
  cat >"$dir/knot.conf" <<CONF
server:
    rundir: "$dir/run"
    listen: 127.0.0.1@$port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: "$dir/knotd.log"
    any: warning
database:
    storage: "$dir/db"
template:
  - id: default
    storage: "$dir/zones"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: $zone.
CONF
}

# wait_for_dns PORT NAME [TCP]: until 127.0.0.1:PORT answers NAME (about
# 10 s at most); TCP=1 asks over TCP.
wait_for_dns() {
  local port=$1 name=$2 tcp=()
  [ "${3:-0}" = 1 ] && tcp=(+tcp)
  for _ in $(seq 100); do
    kdig @127.0.0.1 -p "$port" "${tcp[@]}" +time=1 +retry=0 "$name" A >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nothing answers on 127.0.0.1:$port" >&2
  return 1
}

# terminate_pid PID: TERM, wait (about 5 s at most), then KILL, and reap it.
terminate_pid() {
  local pid=$1
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
